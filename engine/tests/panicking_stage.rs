//! A Rust stage that panics fails alone: the panic is caught where the stage runs (in
//! this process, or in the `slayer __instance` child process, which calls the same
//! `job::run_job`), reported with its message, its staging dir removed, its descendants
//! skipped, and an independent stage still finishes.

mod common;

use std::collections::BTreeMap;

use common::Workspace;
use slayer_engine::stage::{InputSpecs, Metrics, OutputSpec, StageContext, StageError, TypedStage};
use slayer_engine::{Failure, Outcome, Pipeline, Registry, RunOptions, execute};

/// A stage kind that panics while running.
struct Explode;

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExplodeParams {}

impl TypedStage for Explode {
    type Params = ExplodeParams;
    const KIND: &'static str = "explode";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "panics (test kind)";
    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(Vec::new())
    }
    fn outputs(_: &ExplodeParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("o", "o")]
    }
    fn run(&self, _: ExplodeParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        std::fs::write(ctx.out("o"), "half").map_err(|e| StageError::io(&ctx.out("o"), e))?;
        let index = BTreeMap::<u8, u8>::new().len() + 3;
        panic!("index {index} out of range");
    }
}

#[test]
fn a_panicking_stage_fails_alone() {
    let ws = Workspace::new(
        "slayer.yaml",
        r#"
stages:
  boom: {kind: explode}
  after:
    kind: command
    inputs: {o: boom.o}
    with: {run: "cp $SLAYER_IN_O $SLAYER_OUT/o", outputs: {o: o}}
  independent:
    kind: command
    with: {run: "echo fine > $SLAYER_OUT/o", outputs: {o: o}}
"#,
    );
    let mut registry = Registry::with_builtins();
    registry.add_typed(Explode);
    let pipeline = Pipeline::load(&ws.manifest, &registry).expect("load");
    let opts = RunOptions {
        jobs: 2,
        keep_going: true,
        quiet: true,
        ..RunOptions::default()
    };
    let results = execute(&pipeline, &ws.store(), &opts).expect("execute");
    let outcome = |name: &str| {
        results
            .iter()
            .find(|r| r.stage == name)
            .map(|r| r.outcome.clone())
            .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
    };
    assert_eq!(
        outcome("boom"),
        Outcome::Failed(Failure::Panic("index 3 out of range".into()))
    );
    assert!(
        matches!(outcome("after"), Outcome::Skipped(_)),
        "{results:?}"
    );
    assert!(
        matches!(outcome("independent"), Outcome::Ran { .. }),
        "{results:?}"
    );
    let tmp: Vec<_> = std::fs::read_dir(ws.path().join(".slayer/tmp"))
        .expect("tmp dir")
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}
