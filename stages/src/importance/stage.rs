//! The `importance` stage kind: loads the model on the stage's device, reads the token
//! set (or, scored by `eval`, renders the tasks' prompts), runs [`measure`] and/or the
//! eval sweep ([`eval_sweep::sweep`]) and writes `importance.json`, `importance.csv`,
//! `importance.parquet` and `importance.svg`.

use std::path::{Path, PathBuf};

use burn::prelude::Backend;
use serde::{Deserialize, Serialize};
use slayer_engine::stage::Progress;
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::error::{ImportanceError, Result};
use super::eval_sweep::{self, EvalSettings, EvalSweep, Variants};
use super::output::{RunInfo, to_json, write_csv, write_json, write_parquet};
use super::sweep::{Importance, SweepOptions, measure};
use super::tokens::{TokenSource, WindowOptions, load_windows};
use crate::eval::EvalParams;
use crate::eval::stage::{resolve_tasks, run_config, validate_params};
use crate::eval::task::Task as EvalTask;
use crate::model::device::BackendTask;
use crate::model::{DeviceSpec, Residency, Tokenizer, load_model_as, load_tokenizer};
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

/// How the removal and insertion variants are scored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Perplexity of the token set (`text`/`data`).
    #[default]
    Perplexity,
    /// Benchmark accuracy: the `eval` settings' tasks run on every variant (paper Fig.
    /// 2(b)/(c), MMLU and ARC).
    Eval,
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
    /// How removal/insertion variants are scored: `perplexity` of the token set, or
    /// `eval`: the tasks of `eval` run on every variant, exactly as the `eval` stage
    /// would run them on the model `prune`/`expand` would write.
    #[serde(default)]
    pub score: Score,
    /// With `score: eval`: the `eval` stage's parameters (`tasks`, `data_dir`, `limit`,
    /// `num_fewshot`, …). Without a `text`/`data` input, the angular distance is then
    /// measured over the tasks' prompts (each item's rendered context, its last
    /// `seq_len` tokens).
    #[serde(default)]
    pub eval: Option<EvalParams>,
    /// With `score: eval`: the metric plotted and tabulated, averaged over the tasks (a
    /// group such as `mmlu` counts as one, size-weighted).
    #[serde(default = "default_eval_metric")]
    pub eval_metric: String,
}

fn default_eval_metric() -> String {
    "acc".into()
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
        match (p.score, &p.eval) {
            (Score::Eval, None) => Err(ParamError::new(
                "eval",
                "score: eval needs the eval settings, e.g. eval: {tasks: [arc_easy], limit: 100}",
            )),
            (Score::Eval, Some(e)) => validate_params(e).map_err(|mut err| {
                err.path
                    .insert(0, slayer_engine::yaml::PathSegment::Key("eval".into()));
                err
            }),
            (Score::Perplexity, Some(_)) => Err(ParamError::new(
                "eval",
                "eval settings are used only with score: eval",
            )),
            (Score::Perplexity, None) => Ok(()),
        }
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

/// The eval half of a run: what to evaluate and how.
struct EvalJob<'a> {
    tokenizer: &'a Tokenizer,
    settings: EvalSettings<'a>,
    which: Variants,
}

/// Sweep on a backend chosen at run time.
struct Task<'a> {
    model: &'a Path,
    /// Token windows for [`measure`]; empty: nothing token-based is measured.
    windows: &'a [Vec<u32>],
    opts: SweepOptions,
    eval: Option<EvalJob<'a>>,
    progress: &'a Progress,
}

impl BackendTask for Task<'_> {
    type Output = Result<(Importance, Option<EvalSweep>)>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let model = load_model_as::<B>(self.model, &device, Residency::Stored)?;
        let blocks = model.blocks.len();
        let evaluations = self
            .eval
            .as_ref()
            .map_or(0, |e| eval_sweep::evaluations(blocks, e.which));
        self.progress
            .set_total(blocks as u64 * self.windows.len() as u64 + evaluations);
        let progress = self.progress.clone();
        let tick = move || progress.inc(1);
        let imp = if self.windows.is_empty() {
            Importance::unmeasured(blocks)
        } else {
            self.progress.set_message("sweeping blocks");
            measure(&model, self.windows, &self.opts, &tick)?
        };
        let sweep = match &self.eval {
            Some(e) => {
                self.progress.set_message("evaluating variants");
                Some(eval_sweep::sweep(
                    &model,
                    e.tokenizer,
                    &e.settings,
                    e.which,
                    &tick,
                )?)
            }
            None => None,
        };
        Ok((imp, sweep))
    }
}

/// The token windows of the `text`/`data` inputs (empty when there are none).
fn input_windows(
    p: &ImportanceParams,
    ctx: &StageContext,
    model: &Path,
    tokenizer: &mut Option<Tokenizer>,
) -> Result<(Vec<PathBuf>, Vec<Vec<u32>>)> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for name in ["text", "data"] {
        if let Some(input) = ctx.inputs.get(name) {
            paths.extend(input.paths().map(Path::to_path_buf));
        }
    }
    if paths.is_empty() {
        return Ok((paths, Vec::new()));
    }
    let sources: Vec<TokenSource> = paths
        .iter()
        .map(|p| TokenSource::detect(p))
        .collect::<Result<_>>()?;
    if tokenizer.is_none() && sources.iter().any(|s| matches!(s, TokenSource::Text(_))) {
        *tokenizer = Some(load_tokenizer(model)?);
    }
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
    Ok((paths, windows))
}

/// One window per task item: its (first) rendered context, few-shot demonstrations
/// included, tokenized as the eval stage does and cut to its last `seq_len` tokens.
fn prompt_windows(
    tasks: &[EvalTask],
    cfg: &crate::eval::RunConfig,
    tok: &Tokenizer,
    seq_len: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut windows = Vec::new();
    for task in tasks {
        let items = crate::eval::run::task_items(task, cfg)
            .map_err(|e| ImportanceError::Invalid(e.to_string()))?;
        for item in items {
            let Some(context) = item.contexts.first() else {
                continue;
            };
            let mut ids = tok.encode(context, cfg.add_bos)?;
            if ids.len() > seq_len {
                ids.drain(..ids.len() - seq_len);
            }
            if ids.len() >= 2 {
                windows.push(ids);
            }
        }
    }
    Ok(windows)
}

/// The `metrics.json` key of each task named in the eval settings: a task's own name
/// (a task file's `name`), or the group of a name that stands for several (`mmlu`).
fn score_keys(names: &[String], work_dir: &Path) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| {
            let tasks = crate::eval::task::resolve(n, work_dir)
                .map_err(|e| ImportanceError::Invalid(format!("eval: {e}")))?;
            Ok(match tasks.as_slice() {
                [one] => one.name.clone(),
                [first, ..] => first.group.clone().unwrap_or_else(|| n.clone()),
                [] => n.clone(),
            })
        })
        .collect()
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
    let eval_params = match p.score {
        Score::Eval => p.eval.as_ref(),
        Score::Perplexity => None,
    };
    let mut tokenizer = match eval_params {
        Some(_) => Some(load_tokenizer(&model)?),
        None => None,
    };
    let (paths, mut windows) = input_windows(p, ctx, &model, &mut tokenizer)?;
    let angular = p.metrics.contains(&Metric::Angular);
    let insert = p.metrics.contains(&Metric::Insert);
    let which = Variants {
        remove: p.metrics.contains(&Metric::Remove),
        insert_copy: insert && p.insert_init.contains(&Init::Copy),
        insert_average: insert && p.insert_init.contains(&Init::Average),
    };
    let resolved = match eval_params {
        Some(e) => Some((
            resolve_tasks(&e.tasks, &ctx.work_dir)
                .map_err(|err| ImportanceError::Invalid(format!("eval: {err}")))?,
            run_config(e, &ctx.work_dir, None),
        )),
        None => None,
    };
    let data: Vec<String> = match (&resolved, paths.is_empty()) {
        (None, true) => {
            return Err(ImportanceError::Input {
                name: "text".into(),
                message: "give the tokens to score: `text` (a text file or Parquet shards) or \
                          `data`"
                    .into(),
            });
        }
        (Some((tasks, cfg)), true) if angular => {
            let tok = tokenizer.as_ref().expect("loaded for score: eval");
            windows = prompt_windows(tasks, cfg, tok, p.seq_len)?;
            let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
            vec![format!("prompts of {}", names.join(", "))]
        }
        _ => paths.iter().map(|p| p.display().to_string()).collect(),
    };
    if !angular && resolved.is_some() {
        windows.clear();
    }
    let opts = SweepOptions {
        angular,
        remove: which.remove && resolved.is_none(),
        insert_copy: which.insert_copy && resolved.is_none(),
        insert_average: which.insert_average && resolved.is_none(),
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
    let names = match eval_params {
        Some(e) => score_keys(&e.tasks, &ctx.work_dir)?,
        None => Vec::new(),
    };
    let eval = match (&resolved, &tokenizer) {
        (Some((tasks, cfg)), Some(tok)) => Some(EvalJob {
            tokenizer: tok,
            settings: EvalSettings {
                tasks,
                names: &names,
                cfg,
                metric: &p.eval_metric,
            },
            which,
        }),
        _ => None,
    };
    let (imp, sweep) = device.dispatch(Task {
        model: &model,
        windows: &windows,
        opts,
        eval,
        progress: &ctx.progress,
    })??;
    let reduce = match p.reduce {
        Reduce::Mean => "mean",
        Reduce::Last => "last",
    };
    let info = RunInfo {
        model: model.display().to_string(),
        data,
        seq_len: p.seq_len,
        reduce: reduce.into(),
        device: format!("{} {device}", device.backend_name()),
    };
    write_outputs(ctx, &model, &imp, sweep.as_ref(), &info)?;
    ctx.log.line(format!(
        "importance: {:.2} s, {} block forwards (naive {}), {} head passes",
        imp.seconds, imp.block_forwards, imp.naive_block_forwards, imp.head_passes
    ));
    if let Some(s) = &sweep {
        ctx.log.line(format!(
            "importance: {} evaluations of {} in {:.2} s",
            eval_sweep::evaluations(imp.blocks, which),
            s.tasks.join(", "),
            s.seconds
        ));
    }
    let mut m = metrics(&imp);
    if let Some(s) = &sweep {
        sweep_metrics(s, &mut m);
    }
    Ok(m)
}

/// importance.json, .csv, .parquet and .svg of a run on `model`.
fn write_outputs(
    ctx: &StageContext,
    model: &Path,
    imp: &Importance,
    sweep: Option<&EvalSweep>,
    info: &RunInfo,
) -> Result<()> {
    let label = model.file_name().map_or_else(
        || model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    write_json(&ctx.out("importance.json"), &to_json(imp, sweep, info))?;
    write_csv(&ctx.out("importance.csv"), imp, sweep)?;
    write_parquet(&ctx.out("importance.parquet"), imp, sweep)?;
    let subtitle = match sweep {
        Some(s) => format!(
            "{label}: {} blocks, {} of {} (base {:.3})",
            imp.blocks,
            s.metric,
            s.tasks.join(", "),
            s.score(&s.base)
        ),
        None => format!(
            "{label}: {} blocks, {} tokens in {} window(s), base perplexity {:.3}",
            imp.blocks, imp.tokens, imp.windows, imp.base_ppl
        ),
    };
    let svg_path = ctx.out("importance.svg");
    std::fs::write(
        &svg_path,
        super::svg::figure(imp, sweep, &info.reduce, &subtitle),
    )
    .map_err(|e| ImportanceError::io(&svg_path, e))
}

/// The evaluation sweep's metrics: the base score, its time, and the block whose removal
/// costs the most.
fn sweep_metrics(s: &EvalSweep, m: &mut Metrics) {
    m.insert(format!("base_{}", s.metric), s.score(&s.base).into());
    m.insert("eval_seconds".into(), s.seconds.into());
    if let Some((i, _)) = s
        .scores(&s.remove)
        .iter()
        .enumerate()
        .filter(|(_, x)| x.is_finite())
        .min_by(|a, b| a.1.total_cmp(b.1))
    {
        m.insert("most_important_block".into(), i.into());
    }
}

fn metrics(imp: &Importance) -> Metrics {
    let mut m = Metrics::new();
    m.insert("blocks".into(), imp.blocks.into());
    m.insert("tokens".into(), imp.tokens.into());
    if imp.windows > 0 {
        m.insert("base_ppl".into(), imp.base_ppl.into());
    }
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
