//! End-to-end tests of the model commands: `exec model.import`, `inspect`, and model
//! stages inside a manifest.

mod common;

use std::path::Path;

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("stages/tests/fixtures/tiny_llama")
        .display()
        .to_string()
}

#[test]
fn exec_model_import_writes_an_hf_directory_at_out() {
    let ws = common::Workspace::new();
    let out = ws.path().join("imported");
    let run = ws.slayer(&[
        "exec",
        "model.import",
        "--set",
        &format!("path={}", fixture()),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let metrics: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(metrics["blocks"], 3, "{metrics}");
    assert!(out.join("config.json").is_file() && out.join("model.safetensors").is_file());
    let inspect = ws.slayer(&["inspect", out.to_str().unwrap()]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(
        inspect.stdout.contains("blocks      3"),
        "{}",
        inspect.stdout
    );
}

#[test]
fn exec_refuses_to_overwrite_a_foreign_directory() {
    let ws = common::Workspace::new();
    ws.write("mine/notes.txt", "keep me");
    let run = ws.slayer(&[
        "exec",
        "model.import",
        "--set",
        &format!("path={}", fixture()),
        "--out",
        ws.path().join("mine").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("was not written by `slayer exec`"),
        "{}",
        run.stderr
    );
    assert!(ws.path().join("mine/notes.txt").exists());
}

#[test]
fn model_init_in_a_manifest_is_cached_and_deterministic() {
    let ws = common::Workspace::new();
    ws.write(
        "slayer.yaml",
        r#"
stages:
  tiny:
    kind: model.init
    with: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
           num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, seed: 7}
"#,
    );
    let first = ws.slayer(&["run"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let show: serde_json::Value =
        serde_json::from_str(&ws.slayer(&["show", "tiny", "--json"]).stdout).unwrap();
    let hash = show["outputs"]["model"]["hash"].clone();
    assert_eq!(show["metrics"]["blocks"], 2);
    // Forcing a rerun reproduces the same bytes (seeded init).
    let again = ws.slayer(&["run", "--force", "tiny"]);
    assert_eq!(again.ran(), common::set(&["tiny"]));
    let show: serde_json::Value =
        serde_json::from_str(&ws.slayer(&["show", "tiny", "--json"]).stdout).unwrap();
    assert_eq!(show["outputs"]["model"]["hash"], hash);
}

#[test]
fn cuda_without_the_feature_is_a_one_line_error() {
    let ws = common::Workspace::new();
    let run = ws.slayer(&[
        "perplexity",
        "--model",
        &fixture(),
        "--file",
        "nothing.txt",
        "--device",
        "cuda:0",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("cuda"), "{}", run.stderr);
}

#[test]
fn exec_of_a_stage_that_fails_exits_1_and_bad_flags_exit_2() {
    let ws = common::Workspace::new();
    let out = ws.path().join("out");
    let out = out.to_str().unwrap();
    let failed = ws.slayer(&["exec", "command", "--set", "run=exit 3", "--out", out]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("command exited with status 3"),
        "{}",
        failed.stderr
    );
    let usage = ws.slayer(&["exec", "command", "--set", "runn=true", "--out", out]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}
