//! A stand-in for `slayer exec eval` while the binary's registry does not list the kind
//! yet: runs the stage from the JSON in `SLAYER_EVAL_EXEC` (`{"model": DIR, "data": PATH
//! or null, "out": DIR, "params": {..}}`) and prints the metrics JSON. Used by
//! `dev/eval_lm_eval_parity.py --slayer test` and `bench/eval_arc_easy_vs_lm_eval.py`.
//! Ignored unless asked for: `cargo test -p slayer-stages --test eval exec:: -- --ignored`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use slayer_engine::Registry;
use slayer_engine::stage::StageContext;

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
    let mut ctx = StageContext {
        work_dir: std::env::current_dir().unwrap(),
        scratch_dir: scratch.path().to_path_buf(),
        threads: 0,
        ..StageContext::local("eval", &out)
    }
    .with_input("model", "model", Path::new(spec["model"].as_str().unwrap()));
    if let Some(d) = spec["data"].as_str() {
        ctx = ctx.with_input("data", "data", Path::new(d));
    }
    let metrics = stage.run(&params, &ctx).unwrap();
    println!(
        "SLAYER_METRICS {}",
        serde_json::to_string(&metrics).unwrap()
    );
}
