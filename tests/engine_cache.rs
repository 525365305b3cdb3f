//! End-to-end tests of incremental runs with `command` stages: what reruns after an
//! edit, early cutoff, damaged outputs, killed runs, concurrent runs, and grids.

mod common;

use common::{GRID, Workspace, set};

const PIPELINE: &str = r#"
name: chain
stages:
  upper:
    kind: command
    inputs: {src: data/raw.txt}
    with:
      run: "tr a-z A-Z < $SLAYER_IN_SRC > $SLAYER_OUT/text.txt"
      outputs: {text: text.txt}
      params: {mode: upper}
  count:
    kind: command
    inputs: {text: upper.text}
    with: {run: "wc -c < $SLAYER_IN_TEXT > $SLAYER_OUT/n", outputs: {n: n}}
  other:
    kind: command
    with: {run: "echo independent > $SLAYER_OUT/o", outputs: {o: o}}
"#;

fn chain() -> Workspace {
    let ws = Workspace::new();
    ws.write("data/raw.txt", "hello world\n");
    ws.write("slayer.yaml", PIPELINE);
    let first = ws.slayer(&["run"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(first.ran(), set(&["upper", "count", "other"]));
    ws
}

#[test]
fn rerun_without_change_is_all_cached() {
    let ws = chain();
    let again = ws.slayer(&["run"]);
    assert_eq!(again.code, 0);
    assert!(again.ran().is_empty(), "{}", again.stdout);
    assert_eq!(again.cached(), set(&["upper", "count", "other"]));
    let status = ws.slayer(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().all(|s| s["state"] == "cached"),
        "{v}"
    );
}

#[test]
fn param_edit_reruns_that_stage_and_descendants() {
    let ws = chain();
    ws.write(
        "slayer.yaml",
        &PIPELINE.replace("mode: upper", "mode: shout"),
    );
    let why = ws.slayer(&["why", "count"]);
    assert!(
        why.stdout.contains("upper, which will rerun"),
        "{}",
        why.stdout
    );
    assert!(
        why.stdout
            .contains("param params.mode changed upper -> shout"),
        "{}",
        why.stdout
    );
    let run = ws.slayer(&["run"]);
    // `upper` reruns; its bytes are unchanged, so `count` stays cached (early cutoff).
    assert_eq!(run.ran(), set(&["upper"]));
    assert_eq!(run.cached(), set(&["count", "other"]));
}

#[test]
fn another_manifests_stage_of_the_same_name_is_not_its_previous_run() {
    let ws = chain();
    ws.write(
        "second.yaml",
        &PIPELINE
            .replace("name: chain", "name: second")
            .replace("mode: upper", "mode: shout"),
    );
    // `upper` of manifest `second` has never run: no diff against `chain`'s `upper`.
    let why = ws.slayer(&["why", "second.yaml", "upper"]);
    assert!(why.stdout.contains("never run"), "{}", why.stdout);
    assert!(!why.stdout.contains("changed"), "{}", why.stdout);
    // Within one manifest the diff still names the edit.
    ws.write(
        "slayer.yaml",
        &PIPELINE.replace("mode: upper", "mode: loud"),
    );
    let why = ws.slayer(&["why", "upper"]);
    assert!(
        why.stdout
            .contains("param params.mode changed upper -> loud"),
        "{}",
        why.stdout
    );
}

#[test]
fn changed_output_reruns_descendants() {
    let ws = chain();
    ws.write(
        "slayer.yaml",
        &PIPELINE.replace("tr a-z A-Z", "tr a-z A-Z | rev"),
    );
    let run = ws.slayer(&["run"]);
    assert_eq!(run.ran(), set(&["upper", "count"]), "{}", run.stdout);
}

#[test]
fn raw_input_edit_reruns_consumers() {
    let ws = chain();
    ws.write("data/raw.txt", "hello there, world\n");
    let status = ws.slayer(&["status"]);
    assert!(
        status.stdout.contains("input src (data/raw.txt) changed"),
        "{}",
        status.stdout
    );
    let run = ws.slayer(&["run"]);
    assert_eq!(run.ran(), set(&["upper", "count"]));
    assert_eq!(run.cached(), set(&["other"]));
}

#[test]
fn deleted_or_modified_output_reruns_that_stage() {
    let ws = chain();
    let show = ws.slayer(&["show", "count", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let n_path = v["output_paths"]["n"].as_str().unwrap().to_string();
    std::fs::remove_file(&n_path).unwrap();
    let status = ws.slayer(&["status"]);
    assert!(
        status.stdout.contains("output n missing on disk"),
        "{}",
        status.stdout
    );
    assert_eq!(ws.slayer(&["run"]).ran(), set(&["count"]));

    let v: serde_json::Value =
        serde_json::from_str(&ws.slayer(&["show", "upper", "--json"]).stdout).unwrap();
    let text = v["output_paths"]["text"].as_str().unwrap().to_string();
    let mut perms = std::fs::metadata(&text).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&text, perms).unwrap();
    std::fs::write(&text, "TAMPERED\n").unwrap();
    let status = ws.slayer(&["status"]);
    assert!(
        status.stdout.contains("output text modified on disk"),
        "{}",
        status.stdout
    );
    let run = ws.slayer(&["run"]);
    assert!(run.ran().contains("upper"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "HELLO WORLD\n");
}

#[test]
fn killed_run_leaves_no_record_and_is_redone() {
    let ws = Workspace::new();
    ws.write(
        "slayer.yaml",
        r#"
stages:
  slow:
    kind: command
    with:
      run: "echo partial > $SLAYER_OUT/out; touch started; sleep 30; echo done >> $SLAYER_OUT/out"
      outputs: {out: out}
      params: {sleep: 30}
"#,
    );
    let mut child = ws.cmd().args(["run", "-q"]).spawn().unwrap();
    let started = ws.path().join("started");
    for _ in 0..200 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(started.exists(), "stage never started");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let status = ws.slayer(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v[0]["state"], "missing", "{v}");
    let runs = std::fs::read_dir(ws.path().join(".slayer/runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(runs, 0, "a killed stage must leave no run record");
    // The rerun (now fast) succeeds and publishes.
    ws.write(
        "slayer.yaml",
        r#"
stages:
  slow:
    kind: command
    with:
      run: "echo partial > $SLAYER_OUT/out; echo done >> $SLAYER_OUT/out"
      outputs: {out: out}
      params: {sleep: 0}
"#,
    );
    let run = ws.slayer(&["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.ran(), set(&["slow"]));
}

#[test]
fn concurrent_runs_share_one_execution() {
    let ws = Workspace::new();
    ws.write(
        "slayer.yaml",
        r#"
stages:
  a:
    kind: command
    with: {run: "echo x >> runs.log; sleep 1; echo a > $SLAYER_OUT/a", outputs: {a: a}}
  b:
    kind: command
    inputs: {a: a.a}
    with: {run: "cat $SLAYER_IN_A > $SLAYER_OUT/b; echo b >> $SLAYER_OUT/b", outputs: {b: b}}
"#,
    );
    // `a` appends to a log outside its output dir so we can count executions.
    let log_marker = ws.path().join("runs.log");
    let spawn = || {
        ws.cmd()
            .args(["run"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (c1, c2) = (spawn(), spawn());
    let (o1, o2) = (
        c1.wait_with_output().unwrap(),
        c2.wait_with_output().unwrap(),
    );
    assert!(o1.status.success() && o2.status.success());
    let (r1, r2) = (common::to_run(o1), common::to_run(o2));
    // Each stage ran exactly once across both processes; the other process reused it.
    for stage in ["a", "b"] {
        let runs = r1.ran().contains(stage) as u8 + r2.ran().contains(stage) as u8;
        assert_eq!(runs, 1, "{stage}: {}\n---\n{}", r1.stdout, r2.stdout);
    }
    let log = std::fs::read_to_string(&log_marker).unwrap();
    assert_eq!(log.lines().count(), 1, "stage `a` executed more than once");
    let verify = ws.slayer(&["verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert!(ws.slayer(&["run"]).ran().is_empty());
}

#[test]
fn grid_runs_shared_upstream_once_and_new_values_only() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", GRID);
    let run = ws.slayer(&["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let ran = run.ran();
    assert!(ran.contains("shared"));
    assert_eq!(ran.iter().filter(|s| s.starts_with("cell[")).count(), 15);
    assert!(ran.contains("cell[a=2,b=z]"), "{ran:?}");
    assert!(ran.contains("report"));
    ws.write("slayer.yaml", &GRID.replace("[1, 2, 3]", "[1, 2, 3, 4]"));
    let run = ws.slayer(&["run"]);
    let ran = run.ran();
    let new_cells: Vec<_> = ran.iter().filter(|s| s.starts_with("cell[")).collect();
    assert_eq!(new_cells.len(), 5, "{ran:?}");
    assert!(new_cells.iter().all(|s| s.starts_with("cell[a=4,")));
    assert!(!ran.contains("shared"));
    assert!(ran.contains("report"));
}

#[test]
fn exclude_drops_grid_combinations() {
    let ws = Workspace::new();
    ws.write(
        "slayer.yaml",
        &GRID.replace("stages:", "exclude: [{a: 1, b: x}]\nstages:"),
    );
    let dry = ws.slayer(&["run", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(!dry.stdout.contains("cell[a=1,b=x]"));
    assert!(dry.stdout.contains("cell[a=1,b=y]"));
    assert!(dry.stdout.contains("16 instances"), "{}", dry.stdout);
}

#[test]
fn failure_skips_descendants_and_keep_going_runs_the_rest() {
    let ws = Workspace::new();
    ws.write(
        "slayer.yaml",
        r#"
stages:
  bad:
    kind: command
    with: {run: "echo boom >&2; exit 3", outputs: {x: x}}
  child:
    kind: command
    inputs: {x: bad.x}
    with: {run: "true"}
  fine:
    kind: command
    with: {run: "echo ok > $SLAYER_OUT/o", outputs: {o: o}}
"#,
    );
    let run = ws.slayer(&["run", "--keep-going", "-j", "1"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("FAILED   bad: command exited with status 3"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("boom"),
        "the log tail is shown: {}",
        run.stdout
    );
    assert!(
        run.stdout.contains("skipped  child: upstream bad failed"),
        "{}",
        run.stdout
    );
    assert!(run.ran().contains("fine"));
}

#[test]
fn lineage_walks_back_to_raw_files() {
    let ws = chain();
    let out = ws.slayer(&["lineage", "count"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("count (command"), "{}", out.stdout);
    assert!(out.stdout.contains("upper (command"), "{}", out.stdout);
    assert!(out.stdout.contains("file data/raw.txt"), "{}", out.stdout);
}

#[test]
fn gc_frees_results_no_manifest_reaches() {
    let ws = chain();
    ws.write("slayer.yaml", &PIPELINE.replace("independent", "changed"));
    assert_eq!(ws.slayer(&["run"]).ran(), set(&["other"]));
    let gc = ws.slayer(&["gc"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.contains("removed 1 records"), "{}", gc.stdout);
    assert!(ws.slayer(&["run"]).ran().is_empty());
}

/// Moves `path`'s mtime an hour back, so the stat cache entry the next run records for
/// it is old enough to be trusted (entries for files modified within 100 ms of hashing
/// are re-read: the racy-git rule), whatever the speed of the machine.
fn age(path: &str) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    // Opened for reading: store outputs are read-only, and the owner may set times.
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(old).unwrap();
}

/// Overwrites `path` with `text` of the same length and puts its mtime back, as bit rot
/// or a careful edit would leave it: size, mtime and inode all unchanged.
fn rot_in_place(path: &str, text: &str) {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.len(), text.len() as u64, "same size");
    let mtime = meta.modified().unwrap();
    let mut perms = meta.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    std::fs::write(path, text).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(mtime).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

#[test]
fn verify_inputs_finds_changes_that_kept_size_and_mtime() {
    let ws = chain();
    // An input edited behind an unchanged size and mtime: trusted by a plain run (the
    // documented trade-off of the stat cache), found by --verify-inputs.
    let raw = ws.path().join("data/raw.txt");
    age(raw.to_str().unwrap());
    assert!(
        ws.slayer(&["run"]).ran().is_empty(),
        "same content, new mtime"
    );
    rot_in_place(raw.to_str().unwrap(), "HELLO world\n");
    let plain = ws.slayer(&["run"]);
    assert_eq!(plain.code, 0, "{}{}", plain.stdout, plain.stderr);
    assert!(plain.ran().is_empty(), "{}", plain.stdout);
    let verified = ws.slayer(&["run", "--verify-inputs"]);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    // `upper` reruns; its output is the same text, so `count` is cut off early.
    assert_eq!(verified.ran(), set(&["upper"]), "{}", verified.stdout);

    // A reused output that rotted in the store.
    let v: serde_json::Value =
        serde_json::from_str(&ws.slayer(&["show", "upper", "--json"]).stdout).unwrap();
    let text = v["output_paths"]["text"].as_str().unwrap().to_string();
    age(&text);
    assert!(
        ws.slayer(&["run"]).ran().is_empty(),
        "same content, new mtime"
    );
    rot_in_place(&text, "HELLO WORLF\n");
    assert!(ws.slayer(&["run"]).ran().is_empty());
    let verified = ws.slayer(&["run", "--verify-inputs"]);
    assert!(verified.ran().contains("upper"), "{}", verified.stdout);
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "HELLO WORLD\n");
    // Once refreshed, the stat cache is trusted again.
    assert!(ws.slayer(&["run"]).ran().is_empty());
}
