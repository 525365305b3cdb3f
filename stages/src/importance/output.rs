//! Writing an [`Importance`] (and an [`EvalSweep`] when variants were scored by eval):
//! `importance.json` (arrays by block, for other tools; the eval sweep's full
//! `metrics.json` object of every variant under `eval`), `importance.csv` and
//! `importance.parquet` (one row per block; `insert_average_*` is empty on the last
//! block, where nothing follows to average with; eval-scored runs add
//! `remove_<metric>`, `insert_copy_<metric>`, `insert_average_<metric>`).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};

use super::error::{ImportanceError, Result};
use super::eval_sweep::EvalSweep;
use super::sweep::Importance;

/// Descriptive fields written next to the numbers.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The model path or label.
    pub model: String,
    /// The token source(s).
    pub data: Vec<String>,
    /// Window length asked for.
    pub seq_len: usize,
    /// The reduction shown in the figure (`mean` or `last`).
    pub reduce: String,
    /// Backend and device (`flex cpu`, `cuda:0`).
    pub device: String,
}

/// `importance.json`'s contents.
pub fn to_json(imp: &Importance, eval: Option<&EvalSweep>, info: &RunInfo) -> Value {
    let mut v = json!({
        "model": info.model,
        "data": info.data,
        "device": info.device,
        "blocks": imp.blocks,
        "windows": imp.windows,
        "seq_len": info.seq_len,
        "tokens": imp.tokens,
        "predicted_tokens": imp.predicted,
        "reduce": info.reduce,
        "base_nll": imp.base_nll,
        "base_ppl": imp.base_ppl,
        "angular_mean": imp.angular_mean,
        "angular_last": imp.angular_last,
        "remove_ppl": imp.remove_ppl,
        "insert_copy_ppl": imp.insert_copy_ppl,
        "insert_average_ppl": imp.insert_average_ppl,
        "cost": {
            "seconds": imp.seconds,
            "block_forwards": imp.block_forwards,
            "naive_block_forwards": imp.naive_block_forwards,
            "head_passes": imp.head_passes,
        },
    });
    if let (Some(e), Some(obj)) = (eval, v.as_object_mut()) {
        obj.insert(
            "eval".into(),
            json!({
                "metric": e.metric,
                "tasks": e.tasks,
                "base": e.score(&e.base),
                "remove": e.scores(&e.remove),
                "insert_copy": e.scores(&e.insert_copy),
                "insert_average": e.scores(&e.insert_average),
                "seconds": e.seconds,
                "metrics": {
                    "base": e.base,
                    "remove": e.remove,
                    "insert_copy": e.insert_copy,
                    "insert_average": e.insert_average,
                },
            }),
        );
    }
    v
}

/// Write `value` as pretty JSON with a trailing newline.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| ImportanceError::Invalid(format!("serialising {}: {e}", path.display())))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| ImportanceError::io(path, e))
}

/// The table's value columns (after `block`): name and values by block.
fn columns(imp: &Importance, eval: Option<&EvalSweep>) -> Vec<(String, Vec<f64>)> {
    let mut cols: Vec<(String, Vec<f64>)> = vec![
        ("angular_mean".into(), imp.angular_mean.clone()),
        ("angular_last".into(), imp.angular_last.clone()),
        ("remove_ppl".into(), imp.remove_ppl.clone()),
        ("insert_copy_ppl".into(), imp.insert_copy_ppl.clone()),
        ("insert_average_ppl".into(), imp.insert_average_ppl.clone()),
    ];
    if let Some(e) = eval {
        for (name, variants) in [
            ("remove", &e.remove),
            ("insert_copy", &e.insert_copy),
            ("insert_average", &e.insert_average),
        ] {
            cols.push((format!("{name}_{}", e.metric), e.scores(variants)));
        }
    }
    cols
}

/// `importance.csv`: one row per block, empty cells where a value does not exist.
pub fn write_csv(path: &Path, imp: &Importance, eval: Option<&EvalSweep>) -> Result<()> {
    let cols = columns(imp, eval);
    let mut text = String::from("block");
    for (name, _) in &cols {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    for i in 0..imp.blocks {
        text.push_str(&i.to_string());
        for (_, col) in &cols {
            text.push(',');
            if let Some(v) = col.get(i) {
                text.push_str(&format!("{v}"));
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| ImportanceError::io(path, e))
}

/// `importance.parquet`: the same table, nullable float columns.
pub fn write_parquet(path: &Path, imp: &Importance, eval: Option<&EvalSweep>) -> Result<()> {
    let mut fields = vec![Field::new("block", DataType::UInt32, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from_iter_values(
        (0..imp.blocks).map(|i| i as u32),
    ))];
    for (name, col) in columns(imp, eval) {
        fields.push(Field::new(name, DataType::Float64, true));
        arrays.push(Arc::new(Float64Array::from_iter(
            (0..imp.blocks).map(|i| col.get(i).copied()),
        )));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| ImportanceError::parquet(path, e))?;
    let file = File::create(path).map_err(|e| ImportanceError::io(path, e))?;
    let mut writer =
        ArrowWriter::try_new(file, schema, None).map_err(|e| ImportanceError::parquet(path, e))?;
    writer
        .write(&batch)
        .map_err(|e| ImportanceError::parquet(path, e))?;
    writer
        .close()
        .map_err(|e| ImportanceError::parquet(path, e))?;
    Ok(())
}
