//! Per-item outcomes of an evaluation, read from the eval stage's `items.parquet`: what
//! the report's confidence intervals and McNemar tests pair up.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::{Array, BooleanArray, Float64Array, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use slayer_engine::StageError;

/// One item's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The item's value of each per-item metric (the `metrics` column; empty in files
    /// written before it existed).
    pub metrics: BTreeMap<String, f64>,
    /// The main prediction is right (`acc`).
    pub correct: bool,
    /// The length-normalised prediction is right (`acc_norm`).
    pub correct_norm: bool,
    /// The item's main metric value (e.g. recall, exact match, pass@1).
    pub score: f64,
}

impl Outcome {
    /// The item's value of `metric`: from its `metrics` column, else 0/1 for
    /// `acc`/`acc_norm` and its score otherwise.
    pub fn value(&self, metric: &str) -> f64 {
        if let Some(v) = self.metrics.get(metric) {
            return *v;
        }
        match metric {
            "acc" => f64::from(u8::from(self.correct)),
            "acc_norm" => f64::from(u8::from(self.correct_norm)),
            _ => self.score,
        }
    }

    /// Whether the item counts as right for `metric` (McNemar pairs): the 0/1 value, or a
    /// score of 1.
    pub fn right(&self, metric: &str) -> bool {
        self.value(metric) >= 1.0
    }
}

/// Outcomes by task, then item id.
pub type Outcomes = BTreeMap<String, BTreeMap<String, Outcome>>;

/// Column `name` of `batch` as array type `A` (`kind` names it in the error).
fn typed<A: Array + Clone + 'static>(
    batch: &arrow_array::RecordBatch,
    name: &str,
    kind: &str,
    bad: &dyn Fn(String) -> StageError,
) -> Result<A, StageError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| bad(format!("no column `{name}`")))?
        .as_any()
        .downcast_ref::<A>()
        .cloned()
        .ok_or_else(|| bad(format!("column `{name}` is not {kind}")))
}

/// Reads `items.parquet` (columns `task`, `item_id`, `correct`, `correct_norm`, `score`).
pub fn read(path: &Path) -> Result<Outcomes, StageError> {
    let bad = |m: String| StageError::msg(format!("{}: {m}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let wanted = ["task", "item_id", "correct", "correct_norm", "score"];
    let schema = builder.schema().clone();
    let index: Vec<usize> = wanted
        .iter()
        .map(|c| {
            schema.index_of(c).map_err(|_| {
                bad(format!(
                    "no column `{c}` (not an eval stage's items.parquet?)"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut index = index;
    if let Ok(i) = schema.index_of("metrics") {
        index.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), index);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Outcomes::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let (task, id) = (
            typed::<StringArray>(&batch, "task", "text", &bad)?,
            typed::<StringArray>(&batch, "item_id", "text", &bad)?,
        );
        let correct = typed::<BooleanArray>(&batch, "correct", "boolean", &bad)?;
        let norm = typed::<BooleanArray>(&batch, "correct_norm", "boolean", &bad)?;
        let score = typed::<Float64Array>(&batch, "score", "a float", &bad)?;
        let metrics = match batch.column_by_name("metrics") {
            Some(_) => Some(typed::<StringArray>(&batch, "metrics", "text", &bad)?),
            None => None,
        };
        for i in 0..batch.num_rows() {
            let per_item: BTreeMap<String, f64> = match &metrics {
                Some(m) => serde_json::from_str(m.value(i)).map_err(|e| {
                    bad(format!(
                        "row {i}: column `metrics` is not a JSON object of numbers: {e}"
                    ))
                })?,
                None => BTreeMap::new(),
            };
            let outcome = Outcome {
                metrics: per_item,
                correct: correct.value(i),
                correct_norm: norm.value(i),
                score: if score.is_null(i) {
                    f64::NAN
                } else {
                    score.value(i)
                },
            };
            out.entry(task.value(i).to_string())
                .or_default()
                .insert(id.value(i).to_string(), outcome);
        }
    }
    Ok(out)
}
