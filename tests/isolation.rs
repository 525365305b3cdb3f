//! The local executor's stage isolation: every attempt runs in a child process of its
//! own, so a stage that aborts or is OOM-killed fails alone, and neither Ctrl-C nor a
//! SIGKILL of `slayer` leaves a process of the run behind.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Workspace, set};

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `path` exists (a stage wrote it), panicking after 20 s.
fn wait_for_file(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids a stage wrote on one line, once it has written `n` of them.
fn read_pids(path: &Path, n: usize) -> Vec<u32> {
    let t0 = Instant::now();
    loop {
        let pids: Vec<u32> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.len() >= n {
            return pids;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} incomplete",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_all_gone(pids: &[u32]) {
    let t0 = Instant::now();
    while pids.iter().any(|&p| alive(p)) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "processes of the run still alive: {left:?}"
    );
}

#[test]
fn an_aborting_or_killed_stage_fails_alone() {
    let ws = Workspace::new();
    // `$PPID` of the stage's shell is the stage process itself.
    ws.write(
        "slayer.yaml",
        r#"
stages:
  abort:
    kind: command
    with: {run: "kill -ABRT $PPID; sleep 5", outputs: {o: o}}
  oom:
    kind: command
    with: {run: "kill -KILL $PPID; sleep 5", outputs: {o: o}}
  after:
    kind: command
    inputs: {o: abort.o}
    with: {run: "cp $SLAYER_IN_O $SLAYER_OUT/o", outputs: {o: o}}
  independent:
    kind: command
    with: {run: "sleep 1; echo fine > $SLAYER_OUT/o", outputs: {o: o}}
"#,
    );
    let run = ws.slayer(&["run", "--keep-going", "-j", "3"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.ran(), set(&["independent"]), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("FAILED   abort: the stage process was killed by signal 6 (SIGABRT)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("FAILED   oom: the stage process was killed by signal 9 (SIGKILL), e.g. by the kernel's out-of-memory killer"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("skipped  after: upstream abort failed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 ran, 0 cached, 2 failed"),
        "{}",
        run.stdout
    );
    // Nothing of the failed attempts is left in the store's temp dir.
    let tmp: Vec<_> = std::fs::read_dir(ws.path().join(".slayer/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

/// A manifest of two slow stages that record the pids of everything they start: the
/// stage process, its shell, and a background `sleep` of the shell.
const SLOW: &str = r#"
stages:
  one:
    kind: command
    with:
      run: "sleep 300 & echo $PPID $$ $! > ../pids-one; wait"
      outputs: {o: o}
  two:
    kind: command
    with:
      run: "sleep 300 & echo $PPID $$ $! > ../pids-two; wait"
      outputs: {o: o}
"#;

/// The executor keeps why an attempt failed, typed, across the process boundary: a
/// stage that fails is a stage failure, one that panics inside its process a panic (both
/// read back from the child's `result.json`), a process that dies without a result a
/// process failure.
#[test]
fn a_child_process_failure_keeps_its_kind() {
    use slayer_engine::executor::Isolation;
    use slayer_engine::{Failure, Outcome, Pipeline, Registry, RunOptions, execute};
    let ws = Workspace::new();
    let manifest = ws.write(
        "slayer.yaml",
        r#"
stages:
  fails:
    kind: command
    with: {run: "exit 3", outputs: {o: o}}
  dies:
    kind: command
    with: {run: "kill -ABRT $PPID; sleep 5", outputs: {o: o}}
"#,
    );
    let registry = Registry::with_builtins();
    let pipeline = Pipeline::load(&manifest, &registry).expect("load");
    let store = slayer_cache::Store::open(ws.path()).expect("store");
    let opts = RunOptions {
        jobs: 2,
        keep_going: true,
        quiet: true,
        isolation: Isolation::ChildProcess {
            program: env!("CARGO_BIN_EXE_slayer").into(),
        },
        ..RunOptions::default()
    };
    let results = execute(&pipeline, &store, &opts).expect("execute");
    let failure = |name: &str| match results.iter().find(|r| r.stage == name) {
        Some(r) => match &r.outcome {
            Outcome::Failed(f) => f.clone(),
            other => panic!("{name}: {other:?}"),
        },
        None => panic!("no result for {name}"),
    };
    match failure("fails") {
        Failure::Stage(m) => assert!(m.contains("status 3"), "{m}"),
        other => panic!("fails: {other:?}"),
    }
    match failure("dies") {
        Failure::Process(m) => assert!(m.contains("SIGABRT"), "{m}"),
        other => panic!("dies: {other:?}"),
    }
}

fn start_slow(ws: &Workspace) -> (std::process::Child, Vec<u32>) {
    let work = ws.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    ws.write("work/slayer.yaml", SLOW);
    let child = ws
        .cmd()
        .current_dir(&work)
        .args(["run", "-q", "-j", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    for stage in ["one", "two"] {
        let file = ws.path().join(format!("pids-{stage}"));
        wait_for_file(&file);
        pids.extend(read_pids(&file, 3));
    }
    assert_eq!(pids.len(), 6, "{pids:?}");
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?}");
    (child, pids)
}

#[test]
fn sigkill_of_slayer_leaves_no_process_of_the_run() {
    let ws = Workspace::new();
    let (mut child, pids) = start_slow(&ws);
    child.kill().unwrap(); // SIGKILL: slayer cannot clean up itself
    child.wait().unwrap();
    assert_all_gone(&pids);
    let runs = std::fs::read_dir(ws.path().join("work/.slayer/runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 0, "a killed run must publish nothing");
}

#[test]
fn sigint_stops_every_stage_and_records_nothing() {
    let ws = Workspace::new();
    let (child, pids) = start_slow(&ws);
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let t0 = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{out:?}"
    );
    assert_all_gone(&pids);
    let store = ws.path().join("work/.slayer");
    assert_eq!(std::fs::read_dir(store.join("runs")).unwrap().count(), 0);
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "staging dirs left: {tmp:?}");
    // The store is consistent: verify is clean and a rerun would run both stages.
    let verify = ws.slayer(&["verify", "work"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn the_record_holds_what_the_stage_process_cost() {
    let ws = Workspace::new();
    // dd holds one 64 MiB block in memory.
    ws.write(
        "slayer.yaml",
        r#"
stages:
  big:
    kind: command
    with: {run: "dd if=/dev/zero of=/dev/null bs=64M count=2 2>/dev/null; echo > $SLAYER_OUT/o", outputs: {o: o}}
"#,
    );
    let run = ws.slayer(&["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let show = ws.slayer(&["show", "big", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let usage = &v["usage"];
    let peak = usage["peak_rss_bytes"].as_f64().unwrap_or(0.0);
    assert!(peak >= 64.0 * 1024.0 * 1024.0, "{usage}");
    assert!(peak < 1e9, "{usage}");
    assert!(usage["cpu_user_s"].as_f64().is_some(), "{usage}");
    assert!(
        usage["cpu_system_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{usage}"
    );
}
