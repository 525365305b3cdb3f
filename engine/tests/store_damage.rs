//! A damaged store is reported, not fatal: corrupt run records are named and treated as
//! missing by status, run, gc and lineage; `verify` reports corrupt records, dangling
//! and modified outputs and `--repair` removes them; `status` works on a read-only store.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::{Workspace, fingerprint, ran};
use slayer_engine::{Registry, StaleReason, State, commands, plan};

const CHAIN: &str = r#"
name: chain
stages:
  up:
    kind: command
    with:
      run: "echo upstream > $SLAYER_OUT/text.txt"
      outputs: {text: text.txt}
      params: {mode: one}
  down:
    kind: command
    inputs: {text: up.text}
    with: {run: "cp $SLAYER_IN_TEXT $SLAYER_OUT/copy.txt", outputs: {copy: copy.txt}}
"#;

fn record_path(ws: &Workspace, fp: &str) -> std::path::PathBuf {
    ws.path().join(".slayer/runs").join(format!("{fp}.json"))
}

/// Truncates a record file to half its length.
fn truncate(path: &Path) {
    let text = fs::read(path).expect("read record");
    fs::write(path, &text[..text.len() / 2]).expect("truncate record");
}

fn statuses(ws: &Workspace) -> Vec<plan::StageStatus> {
    plan::plan(&ws.pipeline(), &ws.store(), &BTreeSet::new()).expect("plan")
}

#[test]
fn a_truncated_record_is_named_and_treated_as_missing() {
    let ws = Workspace::new("slayer.yaml", CHAIN);
    let first = ws.run();
    let up = fingerprint(&first, "up");
    let path = record_path(&ws, &up);
    truncate(&path);

    let s = statuses(&ws);
    assert_ne!(s[0].state, State::Cached);
    assert!(
        matches!(&s[0].reasons[0], StaleReason::RecordCorrupt { path: p, problem }
            if p == &path.display().to_string() && problem.contains("truncated")),
        "{:?}",
        s[0].reasons
    );
    assert!(s[0].reason.contains("corrupt"), "{}", s[0].reason);

    // lineage of the consumer names the damaged upstream record instead of failing.
    let store = ws.store();
    let down = store
        .record(&fingerprint(&first, "down"))
        .expect("read down")
        .expect("down's record");
    let tree = slayer_engine::lineage::render(&store, &down).expect("lineage");
    assert!(tree.contains("is corrupt"), "{tree}");

    // gc carries on, and a run recomputes the result and replaces the file.
    ws.store().gc(&BTreeSet::from([up.clone()])).expect("gc");
    let again = ws.run();
    assert!(ran(&again, "up"), "{again:?}");
    assert!(ws.store().record(&up).expect("read").is_some());
}

#[test]
fn an_unrelated_bad_record_does_not_hide_previous_runs() {
    let ws = Workspace::new("slayer.yaml", CHAIN);
    ws.run();
    fs::write(
        ws.path().join(".slayer/runs/unrelated.json"),
        "{\"fingerprint\": ",
    )
    .expect("write");
    ws.write_manifest(&CHAIN.replace("mode: one", "mode: two"));
    let s = statuses(&ws);
    assert_eq!(s[0].state, State::Stale, "{:?}", s[0].reasons);
    assert!(
        matches!(&s[0].reasons[0], StaleReason::ParamChanged { key, .. } if key == "params.mode"),
        "{:?}",
        s[0].reasons
    );
}

#[test]
fn a_record_under_another_fingerprints_name_is_corrupt() {
    let ws = Workspace::new("slayer.yaml", CHAIN);
    let first = ws.run();
    let (up, down) = (fingerprint(&first, "up"), fingerprint(&first, "down"));
    fs::copy(record_path(&ws, &down), record_path(&ws, &up)).expect("copy");
    let err = ws.store().record(&up).expect_err("a mismatched record");
    assert!(err.to_string().contains(&format!("not of `{up}`")), "{err}");
}

#[test]
fn verify_reports_and_repair_removes_damage() {
    let ws = Workspace::new("slayer.yaml", CHAIN);
    let first = ws.run();
    let (up, down) = (fingerprint(&first, "up"), fingerprint(&first, "down"));
    let store = ws.store();
    assert!(store.verify().expect("verify").is_clean());

    // down's output replaced by a different file (a new inode, not an in-place edit).
    let down_rec = store.record(&down).expect("read").expect("down");
    let copy = store.output_path(&down_rec, "copy").expect("path");
    fs::remove_file(&copy).expect("rm");
    fs::write(&copy, "something else\n").expect("replace");
    // up's object deleted: its out dir still has the bytes, the store no longer does.
    let up_rec = store.record(&up).expect("read").expect("up");
    let hash = &up_rec.outputs["text"].hash.0;
    let object = ws
        .path()
        .join(".slayer/cache/objects")
        .join(&hash[..2])
        .join(&hash[2..]);
    fs::remove_file(&object).expect("rm object");
    // and an unrelated truncated record.
    let bad = ws.path().join(".slayer/runs/bad.json");
    fs::write(&bad, "{\"fingerprint\": \"bad\", ").expect("write");

    let report = store.verify().expect("verify");
    assert_eq!(report.records_with_modified_outputs, vec![down.clone()]);
    assert_eq!(report.dangling_outputs.len(), 1, "{report:?}");
    assert_eq!(report.dangling_outputs[0].0, up);
    assert_eq!(report.corrupt_records.len(), 1, "{report:?}");
    assert_eq!(report.corrupt_records[0].0, bad);
    assert!(commands::verify(ws.path(), false).is_err());
    assert!(bad.exists(), "verify without --repair changes nothing");

    assert!(
        commands::verify(ws.path(), true).is_err(),
        "problems were found"
    );
    assert!(!bad.exists());
    assert!(store.record(&up).expect("read").is_none());
    assert!(store.record(&down).expect("read").is_none());
    commands::verify(ws.path(), false).expect("clean after repair");
    let again = ws.run();
    assert!(ran(&again, "up") && ran(&again, "down"), "{again:?}");
}

#[cfg(unix)]
#[test]
fn status_works_on_a_read_only_store() {
    let ws = Workspace::new("slayer.yaml", CHAIN);
    ws.run();
    // Without a stat cache every output is re-hashed, so status wants to save one.
    let root = ws.path().join(".slayer");
    for entry in fs::read_dir(root.join("cache")).expect("cache dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("stat-"))
        {
            fs::remove_file(&path).expect("remove stat cache");
        }
    }
    set_read_only(&root, true);
    let probe = root.join("locks/probe");
    let enforced = fs::write(&probe, "").is_err();
    if enforced {
        commands::status(&ws.manifest, &Registry::with_builtins(), true, None)
            .expect("status on a read-only store");
    } else {
        // Running as root: permissions are not enforced, nothing to check here.
        let _ = fs::remove_file(&probe);
        eprintln!("skipped: permissions are not enforced for this user");
    }
    set_read_only(&root, false);
}

#[cfg(unix)]
fn set_read_only(dir: &Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(dir).expect("stat");
    if meta.is_dir() {
        let mode = if read_only { 0o555 } else { 0o755 };
        if !read_only {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod");
        }
        for entry in fs::read_dir(dir).expect("list") {
            set_read_only(&entry.expect("entry").path(), read_only);
        }
        if read_only {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }
}
