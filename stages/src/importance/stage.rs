//! The `importance` stage kind: loads the model on the stage's device, reads the token
//! set, runs [`measure`] and writes `importance.json`, `importance.csv`,
//! `importance.parquet` and `importance.svg`.

use std::path::{Path, PathBuf};

use burn::prelude::Backend;
use serde::{Deserialize, Serialize};
use slayer_engine::stage::Progress;
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::error::{ImportanceError, Result};
use super::output::{RunInfo, to_json, write_csv, write_json, write_parquet};
use super::sweep::{Importance, SweepOptions, measure};
use super::tokens::{TokenSource, WindowOptions, load_windows};
use crate::model::device::BackendTask;
use crate::model::{DeviceSpec, Residency, load_model_as, load_tokenizer};
use crate::surgery::Init;

/// The `importance` stage kind.
pub struct ImportanceStage;

/// A measurement of the importance stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Angular distance between the residual stream before and after each block.
    Angular,
    /// Perplexity with each block removed.
    Remove,
    /// Perplexity with one extra block inserted after each block (`insert_init`).
    Insert,
}

/// Reduction of the per-token angular distance shown in the figure (both are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reduce {
    /// Mean over all tokens (ShortGPT's block influence).
    Mean,
    /// The last token of each window (Gromov et al.).
    Last,
}

/// Parameters of `importance`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportanceParams {
    /// Tokens to score, from the start of the text / the first shard rows.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Window length: the tokens are cut into windows of at most this many, each scored
    /// on its own.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Angular-distance reduction shown in the figure (`mean` or `last`; both are in
    /// importance.json).
    #[serde(default = "default_reduce")]
    pub reduce: Reduce,
    /// Measurements to run.
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    /// Initialisations of the inserted block for the insertion sweep.
    #[serde(default = "default_inits")]
    pub insert_init: Vec<Init>,
    /// Residual streams per batched block forward. Default: 1 on the CPU (where
    /// batching does not pay), 8 on a GPU.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Reuse the base model's prefix activations in the sweeps (false: one full forward
    /// pass per sweep item, for benchmarks; same numbers).
    #[serde(default = "yes")]
    pub reuse_prefix: bool,
    /// Let the tokenizer add its special tokens (e.g. BOS) to a text input.
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
}

fn default_max_tokens() -> usize {
    4096
}
fn default_seq_len() -> usize {
    1024
}
fn default_reduce() -> Reduce {
    Reduce::Mean
}
fn default_metrics() -> Vec<Metric> {
    vec![Metric::Angular, Metric::Remove, Metric::Insert]
}
fn default_inits() -> Vec<Init> {
    vec![Init::Copy, Init::Average]
}
fn yes() -> bool {
    true
}

const OUTPUTS: [(&str, &str); 4] = [
    ("importance", "importance.json"),
    ("table", "importance.csv"),
    ("parquet", "importance.parquet"),
    ("figure", "importance.svg"),
];

impl TypedStage for ImportanceStage {
    type Params = ImportanceParams;
    const KIND: &'static str = "importance";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Angular distance per block and removal / insertion perplexity sweeps (paper Fig. 2)";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![
            InputSpec::required("model", "an HF model directory or a .gguf file"),
            InputSpec::optional(
                "text",
                "a plain text file, or Parquet shards with `input_ids` (a file or a directory)",
            ),
            InputSpec::optional("data", "Parquet shards with `input_ids` (same as `text`)"),
        ])
    }

    fn outputs(_: &ImportanceParams) -> Vec<OutputSpec> {
        OUTPUTS
            .iter()
            .map(|(name, path)| OutputSpec::new(name, path))
            .collect()
    }

    fn validate(p: &ImportanceParams) -> std::result::Result<(), ParamError> {
        if p.max_tokens < 2 {
            return Err(ParamError::new("max_tokens", "must be at least 2"));
        }
        if p.seq_len < 2 {
            return Err(ParamError::new("seq_len", "must be at least 2"));
        }
        ParamError::at_least_one("batch_size", p.batch_size)?;
        if p.metrics.is_empty() {
            return Err(ParamError::new(
                "metrics",
                "name at least one of angular, remove, insert",
            ));
        }
        if p.metrics.contains(&Metric::Insert) && p.insert_init.is_empty() {
            return Err(ParamError::new(
                "insert_init",
                "the insertion sweep needs copy, average or both",
            ));
        }
        Ok(())
    }

    fn uses_device() -> bool {
        true
    }

    fn default_threads() -> usize {
        0
    }

    fn run(
        &self,
        p: ImportanceParams,
        ctx: &StageContext,
    ) -> std::result::Result<Metrics, StageError> {
        run(&p, ctx).map_err(StageError::other)
    }
}

/// Sweep on a backend chosen at run time.
struct Task<'a> {
    model: &'a Path,
    windows: &'a [Vec<u32>],
    opts: SweepOptions,
    progress: &'a Progress,
}

impl BackendTask for Task<'_> {
    type Output = Result<Importance>;
    fn run<B: Backend>(self, device: B::Device) -> Result<Importance> {
        let model = load_model_as::<B>(self.model, &device, Residency::Stored)?;
        let blocks = model.blocks.len() as u64;
        self.progress.set_total(blocks * self.windows.len() as u64);
        self.progress.set_message("sweeping blocks");
        let progress = self.progress.clone();
        measure(&model, self.windows, &self.opts, &move || progress.inc(1))
    }
}

fn run(p: &ImportanceParams, ctx: &StageContext) -> Result<Metrics> {
    let model = ctx
        .input("model")
        .and_then(|i| i.single("model"))
        .map_err(|e| ImportanceError::Input {
            name: "model".into(),
            message: e.to_string(),
        })?
        .to_path_buf();
    let mut paths: Vec<PathBuf> = Vec::new();
    for name in ["text", "data"] {
        if let Some(input) = ctx.inputs.get(name) {
            paths.extend(input.paths().map(Path::to_path_buf));
        }
    }
    if paths.is_empty() {
        return Err(ImportanceError::Input {
            name: "text".into(),
            message: "give the tokens to score: `text` (a text file or Parquet shards) or `data`"
                .into(),
        });
    }
    let sources: Vec<TokenSource> = paths
        .iter()
        .map(|p| TokenSource::detect(p))
        .collect::<Result<_>>()?;
    let needs_tokenizer = sources.iter().any(|s| matches!(s, TokenSource::Text(_)));
    let tokenizer = if needs_tokenizer {
        Some(load_tokenizer(&model)?)
    } else {
        None
    };
    ctx.progress.set_message("reading tokens");
    let windows = load_windows(
        &sources,
        tokenizer.as_ref(),
        WindowOptions {
            max_tokens: p.max_tokens,
            seq_len: p.seq_len,
            add_special_tokens: p.add_special_tokens,
        },
    )?;
    let insert = p.metrics.contains(&Metric::Insert);
    let opts = SweepOptions {
        angular: p.metrics.contains(&Metric::Angular),
        remove: p.metrics.contains(&Metric::Remove),
        insert_copy: insert && p.insert_init.contains(&Init::Copy),
        insert_average: insert && p.insert_init.contains(&Init::Average),
        batch_size: 1,
        reuse_prefix: p.reuse_prefix,
    };
    let device: DeviceSpec = ctx.device.parse()?;
    let opts = SweepOptions {
        batch_size: p.batch_size.unwrap_or(match device {
            DeviceSpec::Cpu => 1,
            DeviceSpec::Cuda(_) => 8,
        }),
        ..opts
    };
    ctx.log.line(format!(
        "importance: {} windows, {} tokens, device {device}",
        windows.len(),
        windows.iter().map(Vec::len).sum::<usize>()
    ));
    let imp = device.dispatch(Task {
        model: &model,
        windows: &windows,
        opts,
        progress: &ctx.progress,
    })??;
    let reduce = match p.reduce {
        Reduce::Mean => "mean",
        Reduce::Last => "last",
    };
    let label = model.file_name().map_or_else(
        || model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let info = RunInfo {
        model: model.display().to_string(),
        data: paths.iter().map(|p| p.display().to_string()).collect(),
        seq_len: p.seq_len,
        reduce: reduce.into(),
        device: format!("{} {device}", device.backend_name()),
    };
    write_json(&ctx.out("importance.json"), &to_json(&imp, &info))?;
    write_csv(&ctx.out("importance.csv"), &imp)?;
    write_parquet(&ctx.out("importance.parquet"), &imp)?;
    let subtitle = format!(
        "{label}: {} blocks, {} tokens in {} window(s), base perplexity {:.3}",
        imp.blocks, imp.tokens, imp.windows, imp.base_ppl
    );
    let svg_path = ctx.out("importance.svg");
    std::fs::write(&svg_path, super::svg::figure(&imp, reduce, &subtitle))
        .map_err(|e| ImportanceError::io(&svg_path, e))?;
    ctx.log.line(format!(
        "importance: {:.2} s, {} block forwards (naive {}), {} head passes",
        imp.seconds, imp.block_forwards, imp.naive_block_forwards, imp.head_passes
    ));
    Ok(metrics(&imp))
}

fn metrics(imp: &Importance) -> Metrics {
    let mut m = Metrics::new();
    m.insert("blocks".into(), imp.blocks.into());
    m.insert("tokens".into(), imp.tokens.into());
    m.insert("base_ppl".into(), imp.base_ppl.into());
    m.insert("seconds".into(), imp.seconds.into());
    m.insert("block_forwards".into(), imp.block_forwards.into());
    m.insert(
        "naive_block_forwards".into(),
        imp.naive_block_forwards.into(),
    );
    let argmax = |v: &[f64]| {
        v.iter()
            .enumerate()
            .filter(|(_, x)| x.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
    };
    if let Some(i) = argmax(&imp.remove_ppl) {
        m.insert("most_important_block".into(), i.into());
    }
    if let Some(i) = argmax(&imp.angular_mean) {
        m.insert("largest_angular_distance_block".into(), i.into());
    }
    m
}
