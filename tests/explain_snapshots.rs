//! What `slayer status` and `slayer why` print, and a rejected manifest's error, compared
//! with committed snapshots (`tests/snapshots/*.txt`, the workspace path redacted to
//! `<ws>`): a changed input file, a changed parameter, a stale upstream and a missing
//! input. A wording change shows as a diff here; `SLAYER_UPDATE_SNAPSHOTS=1` rewrites the
//! files after a deliberate change.

mod common;

use common::Workspace;

const MANIFEST: &str = r#"stages:
  shared:
    kind: command
    inputs: {d: data.txt}
    with: {run: "cat $SLAYER_IN_D > $SLAYER_OUT/s", outputs: {s: s}}
  cell:
    kind: command
    inputs: {s: shared.s}
    with: {run: "cat $SLAYER_IN_S > $SLAYER_OUT/c", outputs: {c: c}}
  lone:
    kind: command
    with: {run: "echo lone > $SLAYER_OUT/l", outputs: {l: l}}
"#;

/// `text` equals the snapshot `name` once the workspace path is redacted.
fn assert_snapshot(ws: &Workspace, name: &str, text: &str) {
    let root = ws.path().to_str().unwrap();
    let text = text.replace(root, "<ws>");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("SLAYER_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (SLAYER_UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        text, want,
        "{name} changed (SLAYER_UPDATE_SNAPSHOTS=1 rewrites it)"
    );
}

#[test]
fn status_why_and_errors_read_as_the_snapshots() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", MANIFEST);
    ws.write("data.txt", "one\n");
    let run = ws.slayer(&["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    ws.write("data.txt", "two\n");
    ws.write("slayer.yaml", &MANIFEST.replace("echo lone", "echo alone"));
    let status = ws.slayer(&["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let why: String = ["cell", "lone"]
        .iter()
        .map(|stage| {
            let why = ws.slayer(&["why", stage]);
            assert_eq!(why.code, 0, "{}", why.stderr);
            why.stdout
        })
        .collect();
    assert_snapshot(&ws, "status_after_edits.txt", &status.stdout);
    assert_snapshot(&ws, "why_after_edits.txt", &why);

    ws.write(
        "slayer.yaml",
        &MANIFEST.replace("inputs: {d: data.txt}", "inputs: {d: missing.txt}"),
    );
    let rejected = ws.slayer(&["status"]);
    assert_eq!(rejected.code, 2, "{}", rejected.stdout);
    assert_snapshot(&ws, "missing_input_error.txt", &rejected.stderr);
}
