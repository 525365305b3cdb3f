//! `items.parquet`: one row per scored item, for auditing every number.
//!
//! Columns: `task`, `item` (index in the file), `item_id`, `prompt_hash` (blake3 of the
//! full prompt, 16 hex digits), `logliks` (one per choice), `is_greedy` (per choice),
//! `pred`, `pred_norm`, `gold` (-1 where not applicable), `correct`, `correct_norm`,
//! `score` (the item's main metric value: acc, mc2, exact match or pass rate),
//! `generation` and `extracted` (generation tasks), `n_tokens`, `n_bytes` and `n_words`
//! (perplexity tasks: the document's predicted tokens and its counted bytes and words;
//! `logliks` holds its one log-likelihood and `score` its bits per byte).

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, ListBuilder};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};

use super::error::{EvalError, Result};

/// One row of `items.parquet`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemRecord {
    /// Task name.
    pub task: String,
    /// Index of the record in its file.
    pub item: i64,
    /// Stable id.
    pub item_id: String,
    /// blake3 of the prompt (16 hex digits).
    pub prompt_hash: String,
    /// Log-likelihood of each choice.
    pub logliks: Vec<f64>,
    /// Whether each choice was the greedy continuation.
    pub is_greedy: Vec<bool>,
    /// Predicted choice by log-likelihood (-1: none).
    pub pred: i64,
    /// Predicted choice by length-normalised log-likelihood (-1: none).
    pub pred_norm: i64,
    /// Gold choice (-1: none).
    pub gold: i64,
    /// The main prediction is right.
    pub correct: bool,
    /// The normalised prediction is right.
    pub correct_norm: bool,
    /// The item's main metric value.
    pub score: f64,
    /// Generated text (generation tasks).
    pub generation: Option<String>,
    /// Extracted answer or execution outcome (generation tasks).
    pub extracted: Option<String>,
    /// Perplexity tasks: `(tokens, bytes, words)` of the document.
    pub counts: Option<[i64; 3]>,
    /// This item's value of each per-item metric (`acc`, `recall_greedy`, …), written as
    /// a JSON object in the `metrics` column.
    pub metrics: Vec<(String, f64)>,
}

/// Hash of a prompt for the `prompt_hash` column.
pub fn prompt_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

/// Write `rows` to `path` (zstd-compressed Parquet).
pub fn write_items(path: &Path, rows: &[ItemRecord]) -> Result<()> {
    let err = |m: String| EvalError::Output {
        path: path.to_path_buf(),
        message: m,
    };
    let mut lls = ListBuilder::new(Float64Builder::new());
    let mut greedy = ListBuilder::new(BooleanBuilder::new());
    for r in rows {
        lls.values().append_slice(&r.logliks);
        lls.append(true);
        for &g in &r.is_greedy {
            greedy.values().append_value(g);
        }
        greedy.append(true);
    }
    let strings = |f: &dyn Fn(&ItemRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let ints = |f: &dyn Fn(&ItemRecord) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let counts = |k: usize| -> ArrayRef {
        Arc::new(Int64Array::from(
            rows.iter()
                .map(|r| r.counts.map(|c| c[k]))
                .collect::<Vec<_>>(),
        ))
    };
    let bools = |f: &dyn Fn(&ItemRecord) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("task", strings(&|r| Some(r.task.as_str())), false),
        ("item", ints(&|r| r.item), false),
        ("item_id", strings(&|r| Some(r.item_id.as_str())), false),
        (
            "prompt_hash",
            strings(&|r| Some(r.prompt_hash.as_str())),
            false,
        ),
        ("logliks", Arc::new(lls.finish()), false),
        ("is_greedy", Arc::new(greedy.finish()), false),
        ("pred", ints(&|r| r.pred), false),
        ("pred_norm", ints(&|r| r.pred_norm), false),
        ("gold", ints(&|r| r.gold), false),
        ("correct", bools(&|r| r.correct), false),
        ("correct_norm", bools(&|r| r.correct_norm), false),
        (
            "score",
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.score).collect::<Vec<_>>(),
            )),
            false,
        ),
        ("generation", strings(&|r| r.generation.as_deref()), true),
        (
            "metrics",
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| {
                        let m: serde_json::Map<String, serde_json::Value> = r
                            .metrics
                            .iter()
                            .map(|(k, v)| (k.clone(), (*v).into()))
                            .collect();
                        serde_json::Value::Object(m).to_string()
                    })
                    .collect::<Vec<_>>(),
            )),
            false,
        ),
        ("extracted", strings(&|r| r.extracted.as_deref()), true),
        ("n_tokens", counts(0), true),
        ("n_bytes", counts(1), true),
        ("n_words", counts(2), true),
    ];
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, a, nullable)| Field::new(*name, a.data_type().clone(), *nullable))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect())
        .map_err(|e| err(e.to_string()))?;
    let file = std::fs::File::create(path).map_err(|e| EvalError::io(path, e))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| err(e.to_string()))?;
    writer.write(&batch).map_err(|e| err(e.to_string()))?;
    writer.close().map_err(|e| err(e.to_string()))?;
    Ok(())
}
