//! The `prune` stage kind: delete the last D blocks (or any list of blocks) and
//! re-initialise the final kept block from the deleted ones (the S strategy's
//! `merge: discarded | with_final`), marking it trainable. An incoming `trainable.json`
//! (e.g. from `expand`) is carried over with its indices renumbered.

use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::artifact::{SurgerySource, write_result};
use super::expand::{default_shard_size, log_plan, plan_metrics, shard_size, write_card};
use super::plan::{LayerPlan, Merge};
use crate::model::safetensors_stream::parse_size;

/// The `prune` stage kind.
pub struct Prune;

/// Parameters of `prune`: exactly one of `delete` and `remove`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneParams {
    /// Delete the last D blocks.
    #[serde(default)]
    pub delete: Option<usize>,
    /// Delete these blocks (0-based indices of the input model).
    #[serde(default)]
    pub remove: Option<Vec<usize>>,
    /// Re-initialise the final kept block from the deleted blocks after it:
    /// `discarded` (their mean), `with_final` (mean of it and them) or `none`.
    #[serde(default = "discarded")]
    pub merge: Merge,
    /// Largest safetensors shard written (`5GB`, `500MB`, `2GiB`, bytes).
    #[serde(default = "default_shard_size")]
    pub max_shard_size: String,
}

fn discarded() -> Merge {
    Merge::Discarded
}

impl TypedStage for Prune {
    type Params = PruneParams;
    const KIND: &'static str = "prune";
    // 2: streamed from the safetensors (tensors in save_pretrained order, sharded).
    // 3: the model carries a model card (README.md).
    const VERSION: u32 = 3;
    const SUMMARY: &'static str = "Delete the last D blocks (or a list) and merge them into the final kept block; writes a model card (README.md)";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::required(
            "model",
            "an HF-layout model directory, possibly with trainable.json",
        )])
    }

    fn outputs(_: &PruneParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("model", "model")]
    }

    fn validate(p: &PruneParams) -> Result<(), ParamError> {
        match (&p.delete, &p.remove) {
            (Some(_), Some(_)) => Err(ParamError::new(
                "remove",
                "give either `delete` (last D blocks) or `remove` (a list), not both",
            )),
            (None, None) => Err(ParamError::new(
                "",
                "say what to delete: `delete: D` (the last D blocks) or `remove: [i, ...]`",
            )),
            (Some(0), _) => Err(ParamError::new("delete", "must be at least 1")),
            (_, Some(list)) if list.is_empty() => {
                Err(ParamError::new("remove", "the list of blocks is empty"))
            }
            _ => shard_size(&p.max_shard_size).map(|_| ()),
        }
    }

    fn run(&self, p: PruneParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let src = ctx.input("model")?.single("model")?;
        let max_shard = parse_size(&p.max_shard_size).map_err(StageError::msg)?;
        let source = SurgerySource::open(src).map_err(StageError::other)?;
        let n = source.blocks();
        let removed: Vec<usize> = match (&p.delete, &p.remove) {
            (Some(d), _) if *d >= n => {
                return Err(StageError::msg(format!(
                    "delete: {d} would leave no block: the model has {n}"
                )));
            }
            (Some(d), _) => (n - d..n).collect(),
            (None, Some(list)) => list.clone(),
            (None, None) => Vec::new(),
        };
        let plan = LayerPlan::prune(n, &removed, p.merge).map_err(StageError::other)?;
        log_plan(ctx, &plan);
        let written = write_result(&source, &plan, &ctx.out("model"), max_shard, &|n, total| {
            ctx.progress.advance(n, total)
        })
        .map_err(StageError::other)?;
        write_card(ctx, src, &plan, &written)?;
        Ok(plan_metrics(&plan, &written))
    }
}
