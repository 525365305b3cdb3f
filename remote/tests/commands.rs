//! `slayer push` / `slayer pull` over a manifest (engine commands) against moto: a
//! two-stage pipeline run in one workspace is pushed, then pulled into fresh workspaces
//! in topological order, in full and metrics-only; the remote URL comes from the flag
//! or from `slayer.toml`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::{Moto, MotoRemote};
use slayer_cache::Store;
use slayer_engine::commands;
use slayer_engine::plan::{self, State};
use slayer_engine::{Pipeline, Registry, RunOptions, execute};
use slayer_remote::S3Options;

const MANIFEST: &str = r#"
name: x
stages:
  up:
    kind: command
    inputs: {raw: data.txt}
    with: {run: "tr a-z A-Z < $SLAYER_IN_RAW > $SLAYER_OUT/text.txt", outputs: {text: text.txt}}
  down:
    kind: command
    inputs: {text: up.text}
    with: {run: "mkdir $SLAYER_OUT/d && cp $SLAYER_IN_TEXT $SLAYER_OUT/d/copy.txt", outputs: {dir: d}}
"#;

fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    // A `.slayer` dir pins the workspace to this temp dir.
    fs::create_dir(dir.path().join(".slayer")).unwrap();
    fs::write(dir.path().join("data.txt"), "some raw data\n").unwrap();
    let manifest = dir.path().join("x.yaml");
    fs::write(&manifest, MANIFEST).unwrap();
    (dir, manifest)
}

fn states(manifest: &Path) -> Vec<State> {
    let registry = Registry::with_builtins();
    let pipeline = Pipeline::load(manifest, &registry).unwrap();
    let store = Store::open(&commands::workspace_for(manifest)).unwrap();
    plan::plan(&pipeline, &store, &BTreeSet::new())
        .unwrap()
        .into_iter()
        .map(|s| s.state)
        .collect()
}

#[test]
fn a_pushed_pipeline_pulls_into_a_fresh_workspace_in_topological_order() {
    let moto = Moto::start();
    let remote = moto.remote("ws", S3Options::default());
    let registry = Registry::with_builtins();

    let (a, manifest_a) = workspace();
    let pipeline = Pipeline::load(&manifest_a, &registry).unwrap();
    let store_a = Store::open(a.path()).unwrap();
    let opts = RunOptions {
        jobs: 1,
        quiet: true,
        ..RunOptions::default()
    };
    execute(&pipeline, &store_a, &opts).unwrap();
    assert_eq!(states(&manifest_a), [State::Cached, State::Cached]);
    commands::push(&manifest_a, &registry, &remote).unwrap();

    // Full pull: `down`'s fingerprint is only known once `up` is pulled.
    let (b, manifest_b) = workspace();
    assert_eq!(states(&manifest_b), [State::Missing, State::Missing]);
    commands::pull(&manifest_b, &registry, &remote, false).unwrap();
    assert_eq!(states(&manifest_b), [State::Cached, State::Cached]);
    let store_b = Store::open(b.path()).unwrap();
    let copy = |s: &Store| {
        let r = s
            .records()
            .unwrap()
            .into_iter()
            .find(|r| r.stage == "down")
            .unwrap();
        fs::read_to_string(s.output_path(&r, "dir").unwrap().join("copy.txt")).unwrap()
    };
    assert_eq!(copy(&store_b), "SOME RAW DATA\n");
    assert_eq!(copy(&store_b), copy(&store_a));

    // Metrics-only pull, remote from slayer.toml: both records, no result cached.
    let (c, manifest_c) = workspace();
    let err = commands::remote_url(&manifest_c, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("slayer.toml"), "{err}");
    fs::write(
        c.path().join("slayer.toml"),
        format!("remote = \"{}\"\n", remote.url()),
    )
    .unwrap();
    assert_eq!(
        commands::remote_url(&manifest_c, None).unwrap(),
        remote.url()
    );
    assert_eq!(
        commands::remote_url(&manifest_c, Some("s3://other")).unwrap(),
        "s3://other"
    );
    commands::pull(&manifest_c, &registry, &remote, true).unwrap();
    let store_c = Store::open(c.path()).unwrap();
    let only = store_c.records_only().unwrap();
    let mut stages: Vec<_> = only.iter().map(|r| r.stage.as_str()).collect();
    stages.sort();
    assert_eq!(stages, ["down", "up"]);
    assert_eq!(store_c.records().unwrap(), vec![]);
    assert_eq!(states(&manifest_c), [State::Missing, State::Missing]);

    // Pulling what the remote lacks is reported, not an error; changed raw data means
    // new fingerprints that the remote does not have.
    fs::write(c.path().join("data.txt"), "other data\n").unwrap();
    commands::pull(&manifest_c, &registry, &remote, false).unwrap();
    assert_eq!(states(&manifest_c), [State::Missing, State::Missing]);
}
