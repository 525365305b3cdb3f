//! Importance scored by benchmark accuracy (paper Fig. 2(b)/(c)): every removal and
//! insertion variant of the model is evaluated on eval tasks (MMLU, ARC, …) by the eval
//! stage's own scorer ([`evaluate`]: the same prompts, few-shot choice, shared-context
//! batching and metrics), so a variant's numbers are exactly what `slayer exec eval`
//! reports for the model `prune`/`expand` would write for it.
//!
//! A variant is the loaded model with its block list edited: block `i` dropped; a copy of
//! block `i` inserted after it; or the mean of blocks `i` and `i + 1` inserted between
//! them (f32, not zeroed: the function changes, which is what is measured). Blocks are
//! shared with the loaded model (burn tensors are reference-counted), so a variant costs
//! no copy of the weights; the averaged block is built for its variant and dropped after.

use std::time::Instant;

use burn::prelude::Backend;
use serde_json::{Map, Value};

use super::error::{ImportanceError, Result};
use crate::eval::run::metrics_json;
use crate::eval::task::Task;
use crate::eval::{RunConfig, evaluate};
use crate::model::{Llama, Tokenizer};
use crate::surgery::mean_block;

/// Which variants to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variants {
    pub remove: bool,
    pub insert_copy: bool,
    pub insert_average: bool,
}

/// One edit of the model's block list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The model as loaded.
    Base,
    /// Without block `i`.
    Remove(usize),
    /// With a copy of block `i` after it.
    InsertCopy(usize),
    /// With the mean of blocks `i` and `i + 1` between them.
    InsertAverage(usize),
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variant::Base => write!(f, "the model"),
            Variant::Remove(i) => write!(f, "the model without block {i}"),
            Variant::InsertCopy(i) => write!(f, "the model with a copy of block {i} after it"),
            Variant::InsertAverage(i) => {
                write!(
                    f,
                    "the model with the mean of blocks {i} and {} between them",
                    i + 1
                )
            }
        }
    }
}

/// The eval metrics of every variant: `metrics.json` objects (task -> metric -> value).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSweep {
    /// The metric plotted and tabulated (e.g. `acc`), averaged over `tasks`.
    pub metric: String,
    /// The tasks as named in the parameters (a group such as `mmlu` is its size-weighted
    /// entry of `metrics.json`, as lm-eval reports it).
    pub tasks: Vec<String>,
    pub base: Map<String, Value>,
    /// Per removed block (`L` entries, empty when not measured).
    pub remove: Vec<Map<String, Value>>,
    /// Per block a copy follows (`L` entries, empty when not measured).
    pub insert_copy: Vec<Map<String, Value>>,
    /// Per block an average follows (`L - 1` entries, empty when not measured).
    pub insert_average: Vec<Map<String, Value>>,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl EvalSweep {
    /// The mean of [`EvalSweep::metric`] over the tasks of `metrics` (tasks lacking it
    /// are left out; none: NaN).
    pub fn score(&self, metrics: &Map<String, Value>) -> f64 {
        let values: Vec<f64> = self
            .tasks
            .iter()
            .filter_map(|t| metrics.get(t)?.get(&self.metric)?.as_f64())
            .collect();
        if values.is_empty() {
            f64::NAN
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        }
    }

    /// [`EvalSweep::score`] of each entry of `variants`.
    pub fn scores(&self, variants: &[Map<String, Value>]) -> Vec<f64> {
        variants.iter().map(|m| self.score(m)).collect()
    }
}

/// `model` with `variant` applied to its block list.
pub fn variant_model<B: Backend>(model: &Llama<B>, variant: Variant) -> Result<Llama<B>> {
    let l = model.blocks.len();
    let check = |i: usize, limit: usize| {
        if i < limit {
            Ok(())
        } else {
            Err(ImportanceError::Invalid(format!(
                "{variant}: the model has {l} blocks"
            )))
        }
    };
    let mut m = model.clone();
    match variant {
        Variant::Base => {}
        Variant::Remove(i) => {
            check(i, l)?;
            m.blocks.remove(i);
        }
        Variant::InsertCopy(i) => {
            check(i, l)?;
            m.blocks.insert(i + 1, model.blocks[i].clone());
        }
        Variant::InsertAverage(i) => {
            check(i + 1, l)?;
            let mean = mean_block(&model.config(), &[&model.blocks[i], &model.blocks[i + 1]])?;
            m.blocks.insert(i + 1, mean);
        }
    }
    Ok(m)
}

/// What [`sweep`] evaluates and how it scores.
pub struct EvalSettings<'a> {
    /// Tasks resolved by the eval stage (a group expanded to its subjects).
    pub tasks: &'a [Task],
    /// The task names as asked for (the keys scored).
    pub names: &'a [String],
    pub cfg: &'a RunConfig,
    /// The metric scored (`acc`, `acc_norm`, `exact_match`, …).
    pub metric: &'a str,
}

/// Evaluates `model` and the chosen variants; `tick` is called once per variant
/// evaluated.
pub fn sweep<B: Backend>(
    model: &Llama<B>,
    tok: &Tokenizer,
    settings: &EvalSettings,
    which: Variants,
    tick: &dyn Fn(),
) -> Result<EvalSweep> {
    let EvalSettings {
        tasks,
        names,
        cfg,
        metric,
    } = *settings;
    let start = Instant::now();
    let l = model.blocks.len();
    if l == 0 {
        return Err(ImportanceError::Invalid("the model has no blocks".into()));
    }
    let score = |v: Variant| -> Result<Map<String, Value>> {
        let m = variant_model(model, v)?;
        let results = evaluate(&m, tok, tasks, cfg, &|_, _| {})
            .map_err(|e| ImportanceError::Invalid(format!("evaluating {v}: {e}")))?;
        tick();
        Ok(metrics_json(&results))
    };
    let all = |on: bool, n: usize, make: fn(usize) -> Variant| -> Result<Vec<_>> {
        if on {
            (0..n).map(|i| score(make(i))).collect()
        } else {
            Ok(Vec::new())
        }
    };
    let base = score(Variant::Base)?;
    let remove = all(which.remove, l, Variant::Remove)?;
    let insert_copy = all(which.insert_copy, l, Variant::InsertCopy)?;
    let insert_average = all(which.insert_average, l - 1, Variant::InsertAverage)?;
    let tasks: Vec<String> = names.to_vec();
    if let Some(missing) = tasks.iter().find(|t| {
        base.get(*t)
            .and_then(|m| m.get(metric))
            .and_then(Value::as_f64)
            .is_none()
    }) {
        return Err(ImportanceError::Invalid(format!(
            "task `{missing}` reports no metric `{metric}` (it has: {}); choose one with `eval_metric`",
            base.get(missing)
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        )));
    }
    Ok(EvalSweep {
        metric: metric.to_string(),
        tasks,
        base,
        remove,
        insert_copy,
        insert_average,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The number of evaluations [`sweep`] runs for `l` blocks.
pub fn evaluations(l: usize, which: Variants) -> u64 {
    let l = l as u64;
    1 + u64::from(which.remove) * l
        + u64::from(which.insert_copy) * l
        + u64::from(which.insert_average) * l.saturating_sub(1)
}
