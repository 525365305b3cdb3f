//! The `expand` stage kind: insert new blocks according to a layout (LLaMA Pro groups,
//! the S strategy's shallow-half expansion with deep-block deletion and merge).

use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::artifact::{SurgerySource, Written, write_result};
use super::layout::Layout;
use super::plan::{ExpandOptions, Init, LayerPlan, Merge};
use crate::model::safetensors_stream::parse_size;
use crate::model_card::{self, Provenance, Step};

/// The `expand` stage kind.
pub struct Expand;

/// Parameters of `expand`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpandParams {
    /// Layout in the paper's notation, e.g. `(4+1)x8` (LLaMA Pro), `(2+1)x8|16`,
    /// `(2+1)x8|13|1◇` (S strategy: expand the first half, delete the last 2 blocks and
    /// merge them into the final kept one). ASCII: `x` for ×, `<>` or `avg` for ◇.
    pub layout: String,
    /// Initialisation of new blocks: `copy` (of the block before) or `average` (of the
    /// two neighbours, every tensor incl. norms). Default: `average` when the layout
    /// carries ◇, else `copy`.
    #[serde(default)]
    pub init: Option<Init>,
    /// Zero `o_proj` and `down_proj` of new blocks so the expanded model computes the
    /// same function as the source.
    #[serde(default = "yes")]
    pub zero_out: bool,
    /// How a trailing `|1` block is re-initialised: `discarded` (mean of the deleted
    /// blocks), `with_final` (mean of it and the deleted blocks) or `none`.
    #[serde(default = "discarded")]
    pub merge: Merge,
    /// Largest safetensors shard written, as transformers spells it (`5GB`, `500MB`,
    /// `2GiB`, bytes); a model that fits is one `model.safetensors`.
    #[serde(default = "default_shard_size")]
    pub max_shard_size: String,
}

fn yes() -> bool {
    true
}
fn discarded() -> Merge {
    Merge::Discarded
}
/// `max_shard_size`'s default, transformers' own.
pub(crate) fn default_shard_size() -> String {
    "5GB".into()
}

/// `max_shard_size` in bytes, or the parameter error.
pub(crate) fn shard_size(text: &str) -> Result<u64, ParamError> {
    parse_size(text).map_err(|e| param_err("max_shard_size", e))
}

fn param_err(key: &str, e: impl std::fmt::Display) -> ParamError {
    ParamError::new(key, e.to_string())
}

impl TypedStage for Expand {
    type Params = ExpandParams;
    const KIND: &'static str = "expand";
    // 2: streamed from the safetensors (tensors in save_pretrained order, sharded).
    // 3: the model carries a model card (README.md).
    const VERSION: u32 = 3;
    const SUMMARY: &'static str = "Insert new blocks by a layout such as (2+1)x8|13|1◇; writes `model` with trainable.json and a model card (README.md)";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::required(
            "model",
            "an HF-layout model directory (e.g. `model.import`'s `model`)",
        )])
    }

    fn outputs(_: &ExpandParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("model", "model")]
    }

    fn validate(p: &ExpandParams) -> Result<(), ParamError> {
        let layout = Layout::parse(&p.layout).map_err(|e| param_err("layout", e))?;
        if p.init == Some(Init::Copy) && layout.average() {
            return Err(ParamError::new(
                "init",
                format!("layout `{layout}` carries ◇ (average init) but `init: copy` was given"),
            ));
        }
        shard_size(&p.max_shard_size)?;
        Ok(())
    }

    fn run(&self, p: ExpandParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let src = ctx.input("model")?.single("model")?;
        let layout = Layout::parse(&p.layout).map_err(StageError::other)?;
        let max_shard = parse_size(&p.max_shard_size).map_err(StageError::msg)?;
        let source = SurgerySource::open(src).map_err(StageError::other)?;
        let opts = ExpandOptions {
            init: p.init,
            zero_out: p.zero_out,
            merge: p.merge,
        };
        // Planned from config.json alone: a layout that does not fit fails here, before
        // any tensor is read.
        let plan = LayerPlan::expand(&layout, source.blocks(), opts).map_err(StageError::other)?;
        log_plan(ctx, &plan);
        ctx.progress
            .set_message(format!("writing {} blocks", plan.len()));
        let written = write_result(&source, &plan, &ctx.out("model"), max_shard, &|n, total| {
            ctx.progress.advance(n, total)
        })
        .map_err(StageError::other)?;
        write_card(ctx, src, &plan, &written)?;
        Ok(plan_metrics(&plan, &written))
    }
}

/// The output's model card: the input's lineage plus this surgery.
pub(crate) fn write_card(
    ctx: &StageContext,
    src: &std::path::Path,
    plan: &LayerPlan,
    written: &Written,
) -> Result<(), StageError> {
    let step = Step::surgery(&Provenance::of(ctx), plan, &written.trainable.trainable);
    model_card::write_card(src, step, &ctx.out("model"), &ctx.log).map_err(StageError::other)?;
    Ok(())
}

/// One log line per output block.
pub(crate) fn log_plan(ctx: &StageContext, plan: &LayerPlan) {
    ctx.log.line(format!(
        "{} {}: {} -> {} blocks, plan {}",
        plan.operation,
        plan.layout.as_deref().unwrap_or(""),
        plan.source_blocks,
        plan.len(),
        plan.hash()
    ));
    for (i, b) in plan.blocks.iter().enumerate() {
        let mark = if b.trainable { " [trainable]" } else { "" };
        ctx.log.line(format!("  {i:>3}: {}{mark}", b.describe()));
    }
}

/// Metrics of a surgery: the plan and the bytes copied, computed and zeroed.
pub(crate) fn plan_metrics(plan: &LayerPlan, written: &Written) -> Metrics {
    let trainable = written.trainable.trainable.len();
    let s = &written.stream;
    let mut m = Metrics::new();
    m.insert("bytes_copied".into(), s.copied_bytes.into());
    m.insert("bytes_averaged".into(), s.computed_bytes.into());
    m.insert("bytes_zeroed".into(), s.zero_bytes.into());
    m.insert(
        "shards".into(),
        s.files
            .iter()
            .filter(|f| f.ends_with(".safetensors"))
            .count()
            .into(),
    );
    m.insert("source_blocks".into(), plan.source_blocks.into());
    m.insert("blocks".into(), plan.len().into());
    m.insert("deleted".into(), plan.deleted.len().into());
    m.insert("trainable_blocks".into(), trainable.into());
    if let Some(l) = &plan.layout {
        m.insert("layout".into(), l.clone().into());
    }
    m.insert("plan_hash".into(), plan.hash().into());
    m
}
