//! The `eval` stage kind: [`Eval`] with its parameters [`EvalParams`].
//!
//! Inputs: `model` (an HF directory with `tokenizer.json`, or a `.gguf` file) and the
//! optional `data` (a file every task reads, or a folder that replaces `data_dir`).
//! Outputs: `metrics` (`metrics.json`, keyed by task) and `items` (`items.parquet`, one
//! row per item). The metrics are also returned for the run record.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use slayer_engine::stage::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::error::{EvalError, Result};
use super::output::write_items;
use super::run::{RunConfig, TaskResult, evaluate, metrics_json};
use super::task::{Task, resolve};
use crate::model::device::BackendTask;
use crate::model::{DeviceSpec, Residency, load_model_as, load_tokenizer};

/// The `eval` stage kind.
pub struct Eval;

fn d_seed() -> u64 {
    1234
}
fn d_batch() -> usize {
    16
}
fn d_samples() -> usize {
    1
}
fn d_memory() -> u64 {
    2048
}

/// Parameters of `eval`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    /// Tasks: built-in names (`arc_easy`, `arc_challenge`, `mmlu`, `mmlu_<subject>`,
    /// `hellaswag`, `winogrande`, `piqa`, `boolq`, `openbookqa`, `copa`, `truthfulqa_mc1`,
    /// `truthfulqa_mc2`, `gsm8k`, `humaneval`, `synthetic`; perplexity: `perplexity` (of
    /// the `data` input: text, JSONL with `text`, or Parquet token shards) and `wikitext`)
    /// or paths to task files (`.yaml`/`.json`, relative to the manifest).
    pub tasks: Vec<String>,
    /// Folder holding the benchmark files (relative to the manifest); e.g. a copy of
    /// `shared/data/evals`.
    #[serde(default)]
    pub data_dir: String,
    /// Score only the first `limit` items of each task.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Demonstrations per item; default: each task's (the paper's) setting.
    #[serde(default)]
    pub num_fewshot: Option<usize>,
    /// Seed of the demonstrations' choice and of sampling.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Continuations (perplexity tasks: rolling windows) scored per forward pass.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Longest sequence (perplexity tasks: the rolling window); default the model's
    /// `max_position_embeddings`.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Prepend the tokenizer's special tokens (BOS); lm-eval's `add_bos_token`.
    #[serde(default)]
    pub add_bos: bool,
    /// Generation tasks (GSM8K, HumanEval): most new tokens per answer; default: each
    /// task's `max_gen_toks` (lm-eval's `--gen_kwargs max_gen_toks=N`).
    #[serde(default)]
    pub max_gen_toks: Option<usize>,
    /// HumanEval: samples per problem (pass@k needs k of them).
    #[serde(default = "d_samples")]
    pub num_samples: usize,
    /// HumanEval: sampling temperature (0 = greedy).
    #[serde(default)]
    pub temperature: f32,
    /// HumanEval: seconds per program (default: the task's, 10).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// HumanEval: address-space limit per program, MiB.
    #[serde(default = "d_memory")]
    pub memory_mb: u64,
}

impl TypedStage for Eval {
    type Params = EvalParams;
    const KIND: &'static str = "eval";
    const VERSION: u32 = 3; // 2: recall targets scored exactly as written; 3: items carry per-item metrics
    const SUMMARY: &'static str =
        "Score a model on benchmarks (lm-eval-compatible log-likelihoods, generation, HumanEval)";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![
            InputSpec::required(
                "model",
                "HF model directory with tokenizer.json, or a .gguf file",
            ),
            InputSpec::optional(
                "data",
                "a data file every task reads, or a folder that replaces data_dir",
            ),
        ])
    }

    fn outputs(_: &EvalParams) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("metrics", "metrics.json"),
            OutputSpec::new("items", "items.parquet"),
        ]
    }

    fn validate(p: &EvalParams) -> std::result::Result<(), ParamError> {
        validate_params(p)
    }

    fn uses_device() -> bool {
        true
    }

    fn default_threads() -> usize {
        0
    }

    fn run(&self, p: EvalParams, ctx: &StageContext) -> std::result::Result<Metrics, StageError> {
        run_stage(&p, ctx).map_err(StageError::other)
    }
}

fn rel(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// The eval stage's parameter checks (shared with `importance`'s `eval` settings).
pub fn validate_params(p: &EvalParams) -> std::result::Result<(), ParamError> {
    if p.tasks.is_empty() {
        return Err(ParamError::new(
            "tasks",
            "name at least one task, e.g. [arc_easy]",
        ));
    }
    ParamError::at_least_one("batch_size", Some(p.batch_size))?;
    if p.limit == Some(0) {
        return Err(ParamError::new(
            "limit",
            "must be at least 1 (or left out for all items)",
        ));
    }
    ParamError::at_least_one("num_samples", Some(p.num_samples))?;
    ParamError::at_least_one("max_gen_toks", p.max_gen_toks)?;
    if p.temperature.is_nan() || p.temperature < 0.0 {
        return Err(ParamError::new("temperature", "must be >= 0"));
    }
    if let Some(t) = p.timeout_s
        && !crate::eval::task::timeout_in_range(t)
    {
        return Err(ParamError::new(
            "timeout_s",
            format!("must be {}, got {t}", crate::eval::task::TIMEOUT_RANGE),
        ));
    }
    Ok(())
}

/// The scoring settings of `p`; `work_dir` is the manifest's directory, `data_input`
/// the stage's `data` input.
pub fn run_config(p: &EvalParams, work_dir: &Path, data_input: Option<PathBuf>) -> RunConfig {
    RunConfig {
        data_dir: (!p.data_dir.is_empty()).then(|| rel(work_dir, &p.data_dir)),
        data_input,
        limit: p.limit,
        num_fewshot: p.num_fewshot,
        seed: p.seed,
        batch_size: p.batch_size,
        max_length: p.max_length,
        add_bos: p.add_bos,
        max_gen_toks: p.max_gen_toks,
        num_samples: p.num_samples,
        temperature: p.temperature,
        memory_mb: p.memory_mb,
        timeout_s: p.timeout_s,
    }
}

/// Resolve the task list (duplicates dropped, order kept).
pub fn resolve_tasks(names: &[String], base: &Path) -> Result<Vec<Task>> {
    let mut tasks: Vec<Task> = Vec::new();
    for n in names {
        for t in resolve(n, base)? {
            if !tasks.iter().any(|x| x.name == t.name) {
                tasks.push(t);
            }
        }
    }
    Ok(tasks)
}

struct EvalJob<'a> {
    model_path: &'a Path,
    tasks: &'a [Task],
    cfg: &'a RunConfig,
    ctx: &'a StageContext,
}

impl BackendTask for EvalJob<'_> {
    type Output = Result<Vec<TaskResult>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let tok = load_tokenizer(self.model_path)?;
        let model = load_model_as::<B>(self.model_path, &device, Residency::Stored)?;
        let progress = &self.ctx.progress;
        let t0 = std::time::Instant::now();
        let done = std::sync::atomic::AtomicU64::new(0);
        let on_progress = |task: &str, n: u64| {
            let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
            progress.inc(n);
            let rate = d as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            progress.set_message(format!("{task} {rate:.1} items/s"));
        };
        let mut results = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            let r = evaluate(
                &model,
                &tok,
                std::slice::from_ref(task),
                self.cfg,
                &on_progress,
            )?;
            for t in &r {
                self.ctx.log.line(format!(
                    "{}: {} items in {:.2}s: {}",
                    t.name,
                    t.metrics.n,
                    t.seconds,
                    t.metrics.to_json()
                ));
            }
            results.extend(r);
        }
        Ok(results)
    }
}

fn run_stage(p: &EvalParams, ctx: &StageContext) -> Result<Metrics> {
    let model_path = ctx
        .input("model")
        .and_then(|i| i.single("model").map(Path::to_path_buf))
        .map_err(|e| EvalError::Invalid(e.to_string()))?;
    let data_input = match ctx.inputs.get("data") {
        Some(i) => Some(
            i.single("data")
                .map(Path::to_path_buf)
                .map_err(|e| EvalError::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let tasks = resolve_tasks(&p.tasks, &ctx.work_dir)?;
    let cfg = run_config(p, &ctx.work_dir, data_input);
    // Progress total: items per task (known only after loading; limit gives a bound).
    if let Some(l) = p.limit {
        ctx.progress.set_total((l * tasks.len()) as u64);
    }
    let device = DeviceSpec::from_str(&ctx.device)?;
    let results = device.dispatch(EvalJob {
        model_path: &model_path,
        tasks: &tasks,
        cfg: &cfg,
        ctx,
    })??;
    let metrics = metrics_json(&results);
    let rows: Vec<_> = results
        .iter()
        .flat_map(|r| {
            r.rows.iter().enumerate().map(|(k, row)| {
                let mut row = row.clone();
                if r.rows.len() == r.metrics.n {
                    row.metrics = r.metrics.item_values(k);
                }
                row
            })
        })
        .collect();
    write_items(&ctx.out("items.parquet"), &rows)?;
    let path = ctx.out("metrics.json");
    let mut text = serde_json::to_string_pretty(&metrics)
        .map_err(|e| EvalError::Invalid(format!("serialising metrics: {e}")))?;
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| EvalError::io(&path, e))?;
    Ok(metrics)
}
