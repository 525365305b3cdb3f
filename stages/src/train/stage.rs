//! [`TrainStage`]: the `train` stage kind — inputs `model`, `data` and optional
//! `eval_data`; outputs `model` (HF-layout dir), `log` (`log.csv`), `log_parquet`,
//! `curve` (`loss.svg`); the model carries a model card (`README.md`) naming the input's
//! lineage and this run's recipe; checkpoints in the scratch dir so a killed run resumes.

use std::ops::ControlFlow;

use slayer_engine::stage::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::params::TrainParams;
use super::ranks::RankProgram;
use super::trainer::{TrainJob, run_training};
use crate::model::DeviceSpec;
use crate::model_card::Provenance;

/// The `train` stage kind.
pub struct TrainStage;

impl TypedStage for TrainStage {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    // 2: the model carries a model card (README.md) with the input's lineage.
    // 3: the card's recipe leaves out the placement parameters (a 2-rank and a 1-rank run
    // write the same model directory, so what reads it stays cached).
    const VERSION: u32 = 3;
    const SUMMARY: &'static str = "Continued pre-training or SFT of the trainable blocks (AdamW, schedule, resume); the model carries a model card (README.md)";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![
            InputSpec::required(
                "model",
                "HF-layout model dir; `trainable.json` in it lists the expanded blocks",
            ),
            InputSpec::required(
                "data",
                "packed Parquet sequences (`input_ids`, `loss_mask`)",
            ),
            InputSpec::optional("eval_data", "held-out packed Parquet sequences"),
        ])
    }

    fn outputs(_p: &TrainParams) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("model", "model"),
            OutputSpec::new("log", "log.csv"),
            OutputSpec::new("log_parquet", "log.parquet"),
            OutputSpec::new("curve", "loss.svg"),
        ]
    }

    fn validate(p: &TrainParams) -> Result<(), ParamError> {
        p.validate()
    }

    fn uses_device() -> bool {
        true
    }

    fn default_threads() -> usize {
        0
    }

    // How many processes share the work, and whether blocks are recomputed in the
    // backward: with an explicit `micro_batch` the result is bit-identical for any number
    // of ranks (docs/data-parallel.md), and with or without recomputation
    // (`recomputing_blocks_trains_to_the_same_bytes`), so a run resumes from its
    // checkpoints after either changes.
    const PLACEMENT_PARAMS: &'static [&'static str] = &super::params::PLACEMENT_PARAMS;

    fn run(&self, params: TrainParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let device: DeviceSpec = ctx.device.parse().map_err(StageError::other)?;
        let model_dir = ctx.input("model")?.single("model")?.to_path_buf();
        let data = ctx
            .input("data")?
            .paths()
            .map(|p| p.to_path_buf())
            .collect();
        let eval_data = ctx
            .inputs
            .get("eval_data")
            .map(|i| i.paths().map(|p| p.to_path_buf()).collect())
            .unwrap_or_default();
        let job = TrainJob {
            params,
            model_dir,
            data,
            eval_data,
            out_dir: ctx.out_dir.clone(),
            scratch_dir: ctx.scratch_dir.clone(),
            device,
            progress: ctx.progress.clone(),
            log: ctx.log.clone(),
            rank_program: RankProgram::slayer(),
            provenance: Provenance::of(ctx),
        };
        let s =
            run_training(&job, &mut |_| ControlFlow::Continue(())).map_err(StageError::other)?;
        let mut m = Metrics::new();
        let mut put = |k: &str, v: serde_json::Value| {
            m.insert(k.to_string(), v);
        };
        put("final_loss", s.final_loss.into());
        if let Some(e) = s.eval_loss {
            put("eval_loss", e.into());
        }
        put("steps", s.steps.into());
        put("tokens", s.tokens.into());
        put("tokens_per_s", s.tokens_per_s.into());
        put("trainable_params", s.trainable_params.into());
        put("total_params", s.total_params.into());
        put("optimizer_state_params", s.optimizer_state_params.into());
        put("peak_rss_mb", s.peak_rss_mb.into());
        for (name, bytes) in s.memory.metrics() {
            put(name, bytes.into());
        }
        if s.ranks > 1 {
            put("ranks", s.ranks.into());
            put("allreduce_s_per_step", s.allreduce_s_per_step.into());
        }
        if let Some(r) = s.resumed_from {
            put("resumed_from_step", r.into());
        }
        Ok(m)
    }
}
