//! Malformed manifests under tests/manifests/bad/: each must be rejected before anything
//! runs, with exit code 2 and an error naming `file:line:col` and what was expected.
//! Each file states its expectation in two header comments: `# expect: TEXT` and
//! `# at: LINE:COL` (a trailing `:` accepts any column).

mod common;

use std::path::Path;

#[test]
fn every_malformed_manifest_is_rejected_with_a_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "only {} malformed manifests",
        files.len()
    );
    let ws = common::Workspace::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap_or_else(|| panic!("{}: no `# {key}:` header", file.display()))
                .to_string()
        };
        let (expect, at) = (header("expect"), header("at"));
        // Copy into a fresh dir so no run could touch the repo; a marker shows nothing ran.
        let target = ws.path().join(file.file_name().unwrap());
        std::fs::write(&target, &text).unwrap();
        let run = ws.slayer(&["run", target.to_str().unwrap()]);
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(run.code, 2, "{name}: exit code\n{}", run.stderr);
        assert!(
            run.stderr.contains(&expect),
            "{name}: expected `{expect}` in\n{}",
            run.stderr
        );
        let location = format!("{}:{at}", target.display());
        assert!(
            run.stderr.contains(&location),
            "{name}: expected `{location}` in\n{}",
            run.stderr
        );
        assert!(
            run.stderr.lines().count() < 40,
            "{name}: error longer than a screen"
        );
        assert!(
            run.stdout.is_empty(),
            "{name}: something ran: {}",
            run.stdout
        );
    }
    assert!(
        !ws.path().join(".slayer/runs").exists()
            || std::fs::read_dir(ws.path().join(".slayer/runs"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn unknown_stage_on_the_command_line_suggests_a_name() {
    let ws = common::Workspace::new();
    ws.write(
        "slayer.yaml",
        "stages:\n  upper: {kind: command, with: {run: \"true\"}}\n",
    );
    let run = ws.slayer(&["why", "uper"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("did you mean `upper`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn schema_lists_every_kind() {
    let ws = common::Workspace::new();
    let run = ws.slayer(&["schema"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let kinds = &v["properties"]["stages"]["additionalProperties"]["properties"]["kind"]["enum"];
    let kinds: Vec<&str> = kinds
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert!(
        kinds.contains(&"command") && kinds.contains(&"files"),
        "{kinds:?}"
    );
}
