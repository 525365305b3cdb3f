//! GPUs and memory as scheduled resources: a stage declaring `resources: {gpus: 1}` runs
//! beside an independent CPU stage when a GPU is available (`--gpus`, or detected), and
//! alone when none is; two stages declaring `resources: {memory: 3GiB}` run together
//! when the budget (`--memory`, or the machine's) holds both, one after the other when
//! it does not.

mod common;

use common::{Workspace, set};

/// Two stages that each wait (up to 3 s) for the other to have started: they succeed
/// only if they run at the same time.
const MEETING: &str = r#"
stages:
  on_gpu:
    kind: command
    resources: {gpus: 1}
    with:
      run: "touch gpu-started; for i in $(seq 30); do [ -f cpu-started ] && break; sleep 0.1; done; [ -f cpu-started ] && echo > $SLAYER_OUT/o"
      outputs: {o: o}
  on_cpu:
    kind: command
    with:
      run: "touch cpu-started; for i in $(seq 30); do [ -f gpu-started ] && break; sleep 0.1; done; [ -f gpu-started ] && echo > $SLAYER_OUT/o"
      outputs: {o: o}
"#;

#[test]
fn a_gpu_stage_runs_beside_a_cpu_stage_when_a_gpu_is_free() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", MEETING);
    let run = ws.slayer(&["run", "--gpus", "1", "-j", "2"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.ran(), set(&["on_gpu", "on_cpu"]));
}

#[test]
fn without_a_gpu_the_gpu_stage_runs_alone() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", MEETING);
    let run = ws.slayer(&["run", "--gpus", "0", "-j", "2", "--keep-going"]);
    // One after the other: the first waits in vain and fails (the second then finds the
    // first's marker); run together, both would succeed.
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.ran().len(), 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("1 ran, 0 cached, 1 failed"),
        "{}",
        run.stdout
    );
}

#[test]
fn cuda_visible_devices_is_the_detected_gpu_count() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", MEETING);
    let out = ws
        .cmd()
        .env("CUDA_VISIBLE_DEVICES", "0")
        .args(["run", "-j", "2"])
        .output()
        .unwrap();
    let run = common::to_run(out);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.ran(), set(&["on_gpu", "on_cpu"]));
}

/// [`MEETING`]'s two stages, each declaring 3 GiB.
fn meeting_in_memory() -> String {
    MEETING
        .replace("resources: {gpus: 1}", "resources: {memory: 3GiB}")
        .replace(
            "  on_cpu:\n    kind: command\n",
            "  on_cpu:\n    kind: command\n    resources: {memory: 3GiB}\n",
        )
}

#[test]
fn stages_run_together_when_the_memory_budget_holds_both() {
    let ws = Workspace::new();
    let manifest = meeting_in_memory();
    assert_eq!(manifest.matches("memory: 3GiB").count(), 2, "{manifest}");
    ws.write("slayer.yaml", &manifest);
    let run = ws.slayer(&["run", "--memory", "6GiB", "-j", "2"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.ran(), set(&["on_gpu", "on_cpu"]));
}

#[test]
fn stages_wait_for_memory_when_the_budget_holds_one() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", &meeting_in_memory());
    let run = ws.slayer(&["run", "--memory", "5GiB", "-j", "2", "--keep-going"]);
    // One after the other: the first waits in vain and fails.
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("1 ran, 0 cached, 1 failed"),
        "{}",
        run.stdout
    );
    let bad = ws.slayer(&["run", "--memory", "lots"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("memory `lots`"), "{}", bad.stderr);
}
