//! The token set an importance measurement scores: a plain text file (tokenized with
//! the model's tokenizer) or Parquet shards with an `input_ids` list column (as written
//! by `tokenize`, or by HF `datasets`: uint32, int32 or int64 items), cut into windows.
//!
//! A text is one token stream: its first `max_tokens` tokens are cut into consecutive
//! windows of `seq_len` (the last may be shorter). Shards are read row by row, each row
//! cut into windows of at most `seq_len`, until `max_tokens` tokens are taken. Windows
//! of fewer than 2 tokens predict nothing and are dropped. Every window is scored on
//! its own, so no padding is ever involved.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::{ImportanceError, Result};
use crate::model::Tokenizer;

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A UTF-8 text file.
    Text(PathBuf),
    /// Parquet files with an `input_ids` column, read in order.
    Shards(Vec<PathBuf>),
}

impl TokenSource {
    /// Classify `path`: a `.parquet` file or a directory holding `.parquet` files (searched
    /// recursively, sorted) is shards, anything else a text file.
    pub fn detect(path: &Path) -> Result<TokenSource> {
        if path.is_dir() {
            let mut files = Vec::new();
            collect_parquet(path, &mut files)?;
            files.sort();
            if files.is_empty() {
                return Err(ImportanceError::Input {
                    name: "text".into(),
                    message: format!("{}: a directory without .parquet files", path.display()),
                });
            }
            return Ok(TokenSource::Shards(files));
        }
        if path.extension().is_some_and(|e| e == "parquet") {
            return Ok(TokenSource::Shards(vec![path.to_path_buf()]));
        }
        Ok(TokenSource::Text(path.to_path_buf()))
    }
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ImportanceError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| ImportanceError::io(dir, e))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_parquet(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// How to cut the token set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOptions {
    /// Total tokens to take.
    pub max_tokens: usize,
    /// Longest window.
    pub seq_len: usize,
    /// Let the tokenizer add its special tokens (e.g. BOS) to a text.
    pub add_special_tokens: bool,
}

/// Cut `ids` into windows of at most `seq_len`, appending to `out`; windows shorter
/// than 2 tokens are dropped. Returns the tokens kept.
fn push_windows(ids: &[u32], seq_len: usize, out: &mut Vec<Vec<u32>>) -> usize {
    let mut kept = 0;
    for w in ids.chunks(seq_len.max(2)) {
        if w.len() >= 2 {
            out.push(w.to_vec());
            kept += w.len();
        }
    }
    kept
}

/// The windows of `sources` (in order) under `opts`; `tokenizer` is needed for texts.
pub fn load_windows(
    sources: &[TokenSource],
    tokenizer: Option<&Tokenizer>,
    opts: WindowOptions,
) -> Result<Vec<Vec<u32>>> {
    let mut windows = Vec::new();
    let mut taken = 0usize;
    for source in sources {
        if taken >= opts.max_tokens {
            break;
        }
        match source {
            TokenSource::Text(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| ImportanceError::io(path, e))?;
                let tok = tokenizer.ok_or_else(|| ImportanceError::Input {
                    name: "model".into(),
                    message: "a text input needs the model's tokenizer (tokenizer.json)".into(),
                })?;
                let ids = tok.encode(&text, opts.add_special_tokens)?;
                let n = ids.len().min(opts.max_tokens - taken);
                taken += push_windows(&ids[..n], opts.seq_len, &mut windows);
            }
            TokenSource::Shards(files) => {
                for file in files {
                    if taken >= opts.max_tokens {
                        break;
                    }
                    read_shard(file, opts, &mut taken, &mut windows)?;
                }
            }
        }
    }
    Ok(windows)
}

fn read_shard(
    path: &Path,
    opts: WindowOptions,
    taken: &mut usize,
    windows: &mut Vec<Vec<u32>>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| ImportanceError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| ImportanceError::parquet(path, e))?;
    let schema = builder.schema().clone();
    let index = schema.index_of("input_ids").map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        ImportanceError::parquet(
            path,
            format!(
                "no `input_ids` column (columns: {}); expected token shards",
                names.join(", ")
            ),
        )
    })?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(256)
        .build()
        .map_err(|e| ImportanceError::parquet(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| ImportanceError::parquet(path, e))?;
        let col = batch.column(0);
        for row in 0..col.len() {
            if *taken >= opts.max_tokens {
                return Ok(());
            }
            let ids = list_row(col, row, path)?;
            let n = ids.len().min(opts.max_tokens - *taken);
            *taken += push_windows(&ids[..n], opts.seq_len, windows);
        }
    }
    Ok(())
}

/// Row `row` of a list column of integer ids.
fn list_row(col: &ArrayRef, row: usize, path: &Path) -> Result<Vec<u32>> {
    let values = match col.data_type() {
        DataType::List(_) => col.as_list::<i32>().value(row),
        DataType::LargeList(_) => col.as_list::<i64>().value(row),
        other => {
            return Err(ImportanceError::parquet(
                path,
                format!("`input_ids` is {other}, expected a list of integers"),
            ));
        }
    };
    let bad = |v: i64| {
        ImportanceError::parquet(path, format!("row {row}: token id {v} is not a valid id"))
    };
    match values.data_type() {
        DataType::UInt32 => Ok(values.as_primitive::<UInt32Type>().values().to_vec()),
        DataType::Int32 => values
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&v| u32::try_from(v).map_err(|_| bad(i64::from(v))))
            .collect(),
        DataType::Int64 => values
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| u32::try_from(v).map_err(|_| bad(v)))
            .collect(),
        other => Err(ImportanceError::parquet(
            path,
            format!("`input_ids` items are {other}, expected uint32, int32 or int64"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_budget_and_drop_singletons() {
        let mut out = Vec::new();
        let kept = push_windows(&[1, 2, 3, 4, 5], 2, &mut out);
        assert_eq!(out, vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(kept, 4);
    }
}
