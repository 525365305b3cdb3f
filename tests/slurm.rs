//! The Slurm executor against a real single-node Slurm (munged + slurmctld + slurmd,
//! brought up by `tests/infra/slurm-up.sh`; `.ci/run` installs the packages). Without
//! Slurm these tests fail, they do not skip.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{GRID, Workspace, set};

/// `SLURM_CONF` of the test cluster, started once per test binary.
fn slurm_conf() -> &'static str {
    static CONF: OnceLock<String> = OnceLock::new();
    CONF.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/infra/slurm-up.sh");
        let out = Command::new("bash")
            .arg(script)
            .env("SLURM_LOCAL_DIR", "/tmp/slayer-test-slurm")
            .output()
            .expect("run tests/infra/slurm-up.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "could not start the test Slurm cluster (install munge slurmctld slurmd \
             slurm-client, as .ci/run does):\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .expect("slurm-up.sh printed no SLURM_CONF")
            .to_string()
    })
}

/// The tests share one two-CPU node: they take turns, so no test waits on another's jobs.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn slayer(ws: &Workspace, args: &[&str]) -> common::Run {
    let out = ws
        .cmd()
        .env("SLURM_CONF", slurm_conf())
        .args(args)
        .output()
        .unwrap();
    common::to_run(out)
}

/// `slayer run --executor slurm ARGS` in the background, its output captured.
fn spawn_slurm_run(ws: &Workspace, args: &[&str]) -> std::process::Child {
    ws.cmd()
        .env("SLURM_CONF", slurm_conf())
        .args(["run", "--executor", "slurm"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn slurm_tool(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .env("SLURM_CONF", slurm_conf())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every record of a workspace: instance name -> record JSON.
fn records(ws: &Workspace) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_dir(ws.path().join(".slayer/runs"))
        .unwrap()
        .map(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            (v["stage"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Waits until `squeue` shows a job of this name RUNNING; returns its id.
fn running_job(name: &str) -> String {
    let t0 = Instant::now();
    loop {
        let out = slurm_tool("squeue", &["-h", "-t", "RUNNING", "-o", "%i %j"]);
        if let Some(id) = out
            .lines()
            .find(|l| l.ends_with(&format!("slayer-{name}")))
            .and_then(|l| l.split_whitespace().next())
        {
            return id.to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no running job for {name}: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_grid_runs_as_slurm_jobs_with_the_same_results_as_locally() {
    let _turn = one_at_a_time();
    let (slurm, local) = (Workspace::new(), Workspace::new());
    for ws in [&slurm, &local] {
        ws.write("slayer.yaml", GRID);
    }
    let run = slayer(&slurm, &["run", "--executor", "slurm"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.ran().len(), 17, "{}", run.stdout);
    let here = local.slayer(&["run"]);
    assert_eq!(here.code, 0, "{}{}", here.stdout, here.stderr);

    let (on_slurm, locally) = (records(&slurm), records(&local));
    assert_eq!(on_slurm.len(), 17);
    let mut job_ids = std::collections::BTreeSet::new();
    for (stage, rec) in &on_slurm {
        assert_eq!(rec["job"]["scheduler"], "slurm", "{stage}: {rec}");
        let id = rec["job"]["job_id"].as_str().unwrap().to_string();
        assert!(
            !rec["job"]["node"].as_str().unwrap_or("").is_empty(),
            "{rec}"
        );
        job_ids.insert(id);
        assert_eq!(
            rec["outputs"], locally[stage]["outputs"],
            "{stage}: outputs differ from a local run"
        );
        assert_eq!(rec["fingerprint"], locally[stage]["fingerprint"]);
    }
    assert_eq!(job_ids.len(), 17, "one Slurm job per instance: {job_ids:?}");
    // Slurm knows these jobs and says they completed.
    for id in &job_ids {
        let state = slurm_tool("squeue", &["-h", "-t", "all", "-j", id, "-o", "%T"]);
        assert_eq!(state.trim(), "COMPLETED", "job {id}");
    }
    // A rerun submits nothing.
    let before = slurm_tool("squeue", &["-h", "-t", "all", "-o", "%i"])
        .lines()
        .count();
    let again = slayer(&slurm, &["run", "--executor", "slurm"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert!(again.ran().is_empty(), "{}", again.stdout);
    let after = slurm_tool("squeue", &["-h", "-t", "all", "-o", "%i"])
        .lines()
        .count();
    assert_eq!(before, after, "a cached rerun submitted jobs");
}

#[test]
fn a_cancelled_job_is_reported_its_descendants_skipped_and_the_next_run_completes_it() {
    let _turn = one_at_a_time();
    let ws = Workspace::new();
    ws.write("hold", "");
    ws.write(
        "slayer.yaml",
        r#"
stages:
  held:
    kind: command
    with: {run: "while [ -f hold ]; do sleep 0.2; done; echo ok > $SLAYER_OUT/o", outputs: {o: o}}
  after:
    kind: command
    inputs: {o: held.o}
    with: {run: "cp $SLAYER_IN_O $SLAYER_OUT/o", outputs: {o: o}}
"#,
    );
    let child = spawn_slurm_run(&ws, &[]);
    let id = running_job("held");
    slurm_tool("scancel", &[&id]);
    let run = common::to_run(child.wait_with_output().unwrap());
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("FAILED   held: Slurm job {id} CANCELLED")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("skipped  after: upstream held failed"),
        "{}",
        run.stdout
    );
    assert!(records(&ws).is_empty());
    std::fs::remove_file(ws.path().join("hold")).unwrap();
    let next = slayer(&ws, &["run", "--executor", "slurm"]);
    assert_eq!(next.code, 0, "{}{}", next.stdout, next.stderr);
    assert_eq!(next.ran(), set(&["held", "after"]));
}

#[test]
fn a_stage_past_its_time_limit_is_reported_as_timeout_or_resubmitted_with_retries() {
    let _turn = one_at_a_time();
    let ws = Workspace::new();
    // `resumable` hangs on its first attempt only (as a train stage resuming from its
    // checkpoint finishes the second time).
    ws.write(
        "slayer.yaml",
        r#"
stages:
  slow:
    kind: command
    resources: {slurm: {time: "1"}}
    with: {run: "sleep 600; echo late > $SLAYER_OUT/o", outputs: {o: o}}
  resumable:
    kind: command
    resources: {retries: 1, slurm: {time: "1"}}
    with:
      run: "if [ -f attempted ]; then echo done > $SLAYER_OUT/o; else touch attempted; sleep 600; fi"
      outputs: {o: o}
"#,
    );
    let run = slayer(&ws, &["run", "--executor", "slurm", "--keep-going"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let failed = run
        .stdout
        .lines()
        .find(|l| l.starts_with("FAILED   slow: Slurm job"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        failed.contains(" TIMEOUT on ") && failed.ends_with("(it ran past its time limit)"),
        "{failed}"
    );
    assert_eq!(run.ran(), set(&["resumable"]), "{}", run.stdout);
    // Slurm's own message and the resubmission are in the stage logs.
    let logs = std::fs::read_dir(ws.path().join(".slayer/logs")).unwrap();
    let text: String = logs
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(text.contains("DUE TO TIME LIMIT"), "{text}");
    assert!(text.contains("TIMEOUT on"), "{text}");
    assert!(text.contains("resubmitting (retry 1 of 1)"), "{text}");
    let records = records(&ws);
    assert_eq!(records.len(), 1);
    assert_eq!(records["resumable"]["job"]["scheduler"], "slurm");
}

#[test]
fn sigint_cancels_every_job_of_the_run_and_records_nothing() {
    let _turn = one_at_a_time();
    let ws = Workspace::new();
    ws.write(
        "slayer.yaml",
        r#"
stages:
  p:
    kind: command
    with: {run: "sleep 300; echo > $SLAYER_OUT/o", outputs: {o: o}, params: {n: 1}}
  q:
    kind: command
    with: {run: "sleep 300; echo > $SLAYER_OUT/o", outputs: {o: o}, params: {n: 2}}
"#,
    );
    let child = spawn_slurm_run(&ws, &["-q"]);
    let ids = [running_job("p"), running_job("q")];
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    for id in &ids {
        let state = slurm_tool("squeue", &["-h", "-t", "all", "-j", id, "-o", "%T"]);
        assert_eq!(state.trim(), "CANCELLED", "job {id}");
    }
    let left = records(&ws);
    assert!(left.is_empty(), "records after the interrupt: {left:#?}");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
