//! A stand-in for `slayer exec eval` while the binary's registry does not list the kind
//! yet: runs the stage from the JSON in `SLAYER_EVAL_EXEC` (`{"model": DIR, "data": PATH
//! or null, "out": DIR, "params": {..}}`) and prints the metrics JSON. Used by
//! `dev/eval_lm_eval_parity.py --slayer test` and `bench/eval_arc_easy_vs_lm_eval.py`.
//! Ignored unless asked for: `cargo test -p slayer-stages --test eval exec:: -- --ignored`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use slayer_engine::Registry;
use slayer_engine::stage::{Logger, Progress, StageContext, StageInput};

#[test]
#[ignore = "driven by SLAYER_EVAL_EXEC"]
fn eval_exec_from_env() {
    let spec = std::env::var_os("SLAYER_EVAL_EXEC")
        .expect("SLAYER_EVAL_EXEC is not set: this test runs the eval stage it describes");
    let spec: Value = serde_json::from_str(spec.to_str().unwrap()).unwrap();
    let mut registry = Registry::default();
    slayer_stages::eval::register(&mut registry);
    let stage = registry.get("eval").unwrap().clone();
    let params = stage.check_params(&spec["params"]).unwrap();
    let out = PathBuf::from(spec["out"].as_str().unwrap());
    std::fs::create_dir_all(&out).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut inputs = BTreeMap::new();
    let model = PathBuf::from(spec["model"].as_str().unwrap());
    inputs.insert(
        "model".to_string(),
        StageInput {
            items: vec![("model".into(), model)],
        },
    );
    if let Some(d) = spec["data"].as_str() {
        inputs.insert(
            "data".to_string(),
            StageInput {
                items: vec![("data".into(), d.into())],
            },
        );
    }
    let ctx = StageContext {
        stage: "eval".into(),
        inputs,
        out_dir: out,
        work_dir: std::env::current_dir().unwrap(),
        scratch_dir: scratch.path().to_path_buf(),
        device: "cpu".into(),
        threads: 0,
        progress: Progress::hidden(),
        log: Logger::discard(),
    };
    let metrics = stage.run(&params, &ctx).unwrap();
    println!(
        "SLAYER_METRICS {}",
        serde_json::to_string(&metrics).unwrap()
    );
}
