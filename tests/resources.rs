//! GPUs and memory as scheduled resources: a stage declaring `resources: {gpus: 1}` runs
//! beside an independent CPU stage when a GPU is available (`--gpus`, or detected), and
//! alone when none is; two GPU stages at once get different GPUs (`CUDA_VISIBLE_DEVICES`);
//! two stages declaring `resources: {memory: 3GiB}` run together when the budget
//! (`--memory`, or the machine's) holds both, one after the other when it does not.

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

/// Two GPU stages that meet (as in [`MEETING`]) and write the GPUs they were given.
const TWO_GPU_STAGES: &str = r#"
stages:
  a:
    kind: command
    resources: {gpus: 1}
    with:
      run: "echo \"$CUDA_VISIBLE_DEVICES\" > a-gpus; touch a-started; for i in $(seq 30); do [ -f b-started ] && break; sleep 0.1; done; [ -f b-started ] && echo > $SLAYER_OUT/o"
      outputs: {o: o}
  b:
    kind: command
    resources: {gpus: 1}
    with:
      run: "echo \"$CUDA_VISIBLE_DEVICES\" > b-gpus; touch b-started; for i in $(seq 30); do [ -f a-started ] && break; sleep 0.1; done; [ -f a-started ] && echo > $SLAYER_OUT/o"
      outputs: {o: o}
"#;

/// Run [`TWO_GPU_STAGES`] with slayer's `CUDA_VISIBLE_DEVICES` (`None`: unset) and
/// `args`; the GPUs each stage saw and the GPUs its record names, sorted.
fn gpus_given(visible: Option<&str>, args: &[&str]) -> Vec<(String, String)> {
    let ws = Workspace::new();
    ws.write("slayer.yaml", TWO_GPU_STAGES);
    let mut cmd = ws.cmd();
    match visible {
        Some(v) => cmd.env("CUDA_VISIBLE_DEVICES", v),
        None => cmd.env_remove("CUDA_VISIBLE_DEVICES"),
    };
    let run = common::to_run(cmd.args(["run", "-j", "2"]).args(args).output().unwrap());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let mut recorded = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(ws.path().join(".slayer/runs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        let gpus = record["job"]["gpus"].as_str().unwrap_or("-").to_string();
        recorded.insert(record["stage"].as_str().unwrap().to_string(), gpus);
    }
    let mut seen: Vec<(String, String)> = ["a", "b"]
        .map(|stage| {
            let seen = std::fs::read_to_string(ws.path().join(format!("{stage}-gpus"))).unwrap();
            (seen.trim().to_string(), recorded[stage].clone())
        })
        .to_vec();
    seen.sort();
    seen
}

fn pairs(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter().map(|s| (s.to_string(), s.to_string())).collect()
}

#[test]
fn two_gpu_stages_at_once_get_different_gpus() {
    assert_eq!(gpus_given(None, &["--gpus", "2"]), pairs(&["0", "1"]));
}

#[test]
fn gpus_are_named_as_cuda_visible_devices_names_them() {
    assert_eq!(gpus_given(Some("3,5"), &[]), pairs(&["3", "5"]));
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
