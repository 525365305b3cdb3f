//! `slayer run` with a remote cache on S3 (a real moto server, started through
//! `tests/infra/s3-up.sh`): a second workspace with the same manifest and remote runs
//! nothing, `pull --metrics-only` fetches records and no output bytes, and an object
//! damaged in the bucket is detected, its stage rerun.

mod common;
#[path = "infra/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Run, Workspace, set, shrunk_quickstart};
use moto::{BUCKET, Moto};

/// A workspace whose `slayer.toml` names the team's remote.
fn workspace(manifest: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("slayer.yaml", manifest);
    ws.write("slayer.toml", &format!("remote = \"s3://{BUCKET}/team\"\n"));
    ws
}

fn slayer(moto: &Moto, ws: &Workspace, args: &[&str]) -> Run {
    let out = ws
        .cmd()
        .envs(moto.vars.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .unwrap();
    common::to_run(out)
}

/// Instance name -> `outputs` of its record, from `runs/` (or `runs-remote/`).
fn outputs(ws: &Workspace, dir: &str) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_dir(ws.path().join(".slayer").join(dir))
        .unwrap()
        .map(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            (
                v["stage"].as_str().unwrap().to_string(),
                v["outputs"].clone(),
            )
        })
        .collect()
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() { files_under(&p) } else { 1 }
            })
            .sum()
    })
}

#[test]
fn a_second_workspace_pulls_every_result_and_runs_nothing() {
    let moto = Moto::start();
    let manifest = shrunk_quickstart();
    let a = workspace(&manifest);
    let first = slayer(&moto, &a, &["run"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(first.ran().len(), 51, "{}", first.stdout);
    assert!(!first.stdout.contains("warning"), "{}", first.stdout);

    // A fresh workspace sees the results as remote before running.
    let b = workspace(&manifest);
    let status = slayer(&moto, &b, &["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("cached (remote)"),
        "{}",
        status.stdout
    );

    let second = slayer(&moto, &b, &["run"]);
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert!(second.ran().is_empty(), "{}", second.stdout);
    assert_eq!(
        second.stdout.matches(" (remote)").count(),
        51,
        "{}",
        second.stdout
    );
    assert_eq!(outputs(&b, "runs"), outputs(&a, "runs"));
    let verify = slayer(&moto, &b, &["verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let report = slayer(&moto, &b, &["report"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert!(
        report
            .stdout
            .contains("| recall_b[seed=1,strategy=s_strategy] |"),
        "{}",
        report.stdout
    );

    // Metrics only: every record, not one object byte.
    let c = workspace(&manifest);
    let gets = |log: &str| {
        log.matches(&format!("\"GET /{BUCKET}/team/objects/"))
            .count()
    };
    let before = gets(&moto.requests());
    let pull = slayer(&moto, &c, &["pull", "--metrics-only"]);
    assert_eq!(pull.code, 0, "{}{}", pull.stdout, pull.stderr);
    assert_eq!(
        gets(&moto.requests()),
        before,
        "metrics-only pull read objects"
    );
    assert_eq!(outputs(&c, "runs-remote"), outputs(&a, "runs"));
    assert_eq!(files_under(&c.path().join(".slayer/cache/objects")), 0);
    // ... which is enough for the results table, and not mistaken for cached results.
    let table = slayer(&moto, &c, &["report"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert_eq!(table.stdout, report.stdout);
    let status = slayer(&moto, &c, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().all(|s| s["state"] != "cached"),
        "{v}"
    );
}

const CHAIN: &str = r#"
stages:
  upper:
    kind: command
    with: {run: "echo hello world | tr a-z A-Z > $SLAYER_OUT/text.txt", outputs: {text: text.txt}}
  count:
    kind: command
    inputs: {text: upper.text}
    with: {run: "wc -c < $SLAYER_IN_TEXT > $SLAYER_OUT/n", outputs: {n: n}}
"#;

#[test]
fn an_object_damaged_in_the_bucket_is_detected_and_its_stage_rerun() {
    let moto = Moto::start();
    let a = workspace(CHAIN);
    let first = slayer(&moto, &a, &["run"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let hash = outputs(&a, "runs")["upper"]["text"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    // moto checks no signatures, only who the access key says is asking.
    let endpoint = moto.var("AWS_ENDPOINT_URL").unwrap();
    let url = format!("{endpoint}/{BUCKET}/team/objects/{hash}");
    let auth = format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0",
        moto.var("AWS_ACCESS_KEY_ID").unwrap()
    );
    let put = Command::new("curl")
        .args(["-sS", "-f", "-X", "PUT", "-H", &auth])
        .args(["--data-binary", "HELLO W0RLD\n", &url])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "could not overwrite {url}: {}",
        String::from_utf8_lossy(&put.stderr)
    );

    let b = workspace(CHAIN);
    let run = slayer(&moto, &b, &["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("warning  upper: remote cache"))
        .unwrap_or_else(|| panic!("no warning about the damaged object:\n{}", run.stdout));
    assert!(warning.contains(&hash[..12]), "{warning}");
    assert_eq!(run.ran(), set(&["upper"]), "{}", run.stdout);
    assert!(
        run.stdout.contains("cached   count (remote)"),
        "{}",
        run.stdout
    );
    assert_eq!(outputs(&b, "runs"), outputs(&a, "runs"));
    let text = std::fs::read_to_string(
        b.path()
            .join(".slayer/out")
            .join(
                serde_json::from_str::<serde_json::Value>(
                    &slayer(&moto, &b, &["show", "upper", "--json"]).stdout,
                )
                .unwrap()["fingerprint"]
                    .as_str()
                    .unwrap(),
            )
            .join("text.txt"),
    )
    .unwrap();
    assert_eq!(text, "HELLO WORLD\n");
    // The damaged object was dropped from the bucket and the rerun pushed it again.
    let c = workspace(CHAIN);
    let again = slayer(&moto, &c, &["run"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.ran().is_empty(), "{}", again.stdout);
    assert!(!again.stdout.contains("warning"), "{}", again.stdout);
}
