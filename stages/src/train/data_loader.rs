//! Packed training data: [`PackedData`] reads the `pack` stage's Parquet shards (one row
//! per training sequence: `input_ids: list<uint32>` and, for SFT, `loss_mask:
//! list<bool>`; integer id and mask types are accepted too) and [`DataOrder`] walks them
//! in a seeded order, reshuffled every epoch.
//!
//! The position in the data is one number, the *cursor*: how many sequences have been
//! consumed since the start. Epoch `e = cursor / n` is a permutation derived from
//! `(seed, e)` alone, so a checkpoint only needs the cursor to resume the exact order.
//! Sequences are held in memory as packed `u32` (4 bytes per token).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, ListBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, GenericListArray, OffsetSizeTrait, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::TrainError;
use crate::rng::SplitMix64;

/// Column with the token ids.
pub const IDS_COLUMN: &str = "input_ids";
/// Column with the per-token loss mask (SFT).
pub const MASK_COLUMN: &str = "loss_mask";

/// Fixed-length training sequences in memory.
#[derive(Debug, Clone)]
pub struct PackedData {
    /// Tokens per sequence.
    pub seq_len: usize,
    ids: Vec<u32>,
    /// Per token; `None` when no file had a `loss_mask` column.
    mask: Option<Vec<bool>>,
    /// The Parquet files read, in order.
    pub files: Vec<PathBuf>,
}

impl PackedData {
    /// Read every `*.parquet` under each path (a file, or a directory searched
    /// recursively, files in sorted order).
    pub fn open(paths: &[PathBuf]) -> Result<Self, TrainError> {
        let mut files = Vec::new();
        for p in paths {
            collect_parquet(p, &mut files)?;
        }
        let Some(first) = files.first() else {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(TrainError::data(
                paths.first().map_or(Path::new("."), PathBuf::as_path),
                format!("no .parquet file in {}", shown.join(", ")),
            ));
        };
        let first = first.clone();
        let mut seq_len = 0usize;
        let mut parts = Vec::new();
        let mut read = Vec::new();
        for f in &files {
            let (len, ids, mask) = read_file(f)?;
            if ids.is_empty() {
                continue;
            }
            if seq_len == 0 {
                seq_len = len;
            } else if len != seq_len {
                return Err(TrainError::data(
                    f,
                    format!(
                        "sequences have {len} tokens, but those of {} have {seq_len}",
                        first.display()
                    ),
                ));
            }
            parts.push((ids, mask));
            read.push(f.clone());
        }
        if seq_len < 2 {
            return Err(TrainError::data(
                &first,
                "sequences need at least 2 tokens (an input and a target)",
            ));
        }
        let any_mask = parts.iter().any(|p| p.1.is_some());
        let total: usize = parts.iter().map(|p| p.0.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut mask = any_mask.then(|| Vec::with_capacity(total));
        for (part_ids, part_mask) in parts {
            if let Some(m) = mask.as_mut() {
                // A file without a mask (not produced by `pack`) trains on every token.
                match part_mask {
                    Some(pm) => m.extend(pm),
                    None => m.extend(std::iter::repeat_n(true, part_ids.len())),
                }
            }
            ids.extend(part_ids);
        }
        Ok(PackedData {
            seq_len,
            ids,
            mask,
            files: read,
        })
    }

    /// Build from in-memory rows (tests, tools). Every row must have the same length.
    pub fn from_rows(rows: &[(Vec<u32>, Option<Vec<bool>>)]) -> Result<Self, TrainError> {
        let seq_len = rows.first().map_or(0, |r| r.0.len());
        let here = Path::new("<rows>");
        let mut ids = Vec::with_capacity(rows.len() * seq_len);
        let any_mask = rows.iter().any(|r| r.1.is_some());
        let mut mask = Vec::new();
        for (i, (r, m)) in rows.iter().enumerate() {
            if r.len() != seq_len {
                return Err(TrainError::data(
                    here,
                    format!("row {i} has {} tokens", r.len()),
                ));
            }
            ids.extend_from_slice(r);
            if any_mask {
                match m {
                    Some(m) if m.len() == seq_len => mask.extend_from_slice(m),
                    Some(m) => {
                        return Err(TrainError::data(
                            here,
                            format!("row {i} mask has {} entries", m.len()),
                        ));
                    }
                    None => mask.extend(std::iter::repeat_n(true, seq_len)),
                }
            }
        }
        if seq_len < 2 {
            return Err(TrainError::data(here, "sequences need at least 2 tokens"));
        }
        Ok(PackedData {
            seq_len,
            ids,
            mask: any_mask.then_some(mask),
            files: Vec::new(),
        })
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.ids.len() / self.seq_len.max(1)
    }

    /// Whether there is no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a `loss_mask` was read.
    pub fn has_mask(&self) -> bool {
        self.mask.is_some()
    }

    /// Token ids of sequence `i`.
    pub fn ids(&self, i: usize) -> &[u32] {
        &self.ids[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// Loss mask of sequence `i` (`None` when the data has none).
    pub fn mask(&self, i: usize) -> Option<&[bool]> {
        self.mask
            .as_ref()
            .map(|m| &m[i * self.seq_len..(i + 1) * self.seq_len])
    }

    /// The largest token id (to check against the vocabulary).
    pub fn max_id(&self) -> u32 {
        self.ids.iter().copied().max().unwrap_or(0)
    }
}

fn collect_parquet(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), TrainError> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| TrainError::io(path, e))?;
    let mut children: Vec<PathBuf> = Vec::new();
    for e in entries {
        children.push(e.map_err(|e| TrainError::io(path, e))?.path());
    }
    children.sort();
    for c in children {
        if c.is_dir() {
            collect_parquet(&c, out)?;
        } else if c.extension().is_some_and(|e| e == "parquet") {
            out.push(c);
        }
    }
    Ok(())
}

type FileRows = (usize, Vec<u32>, Option<Vec<bool>>);

/// One file: (seq_len, flat ids, flat mask).
fn read_file(path: &Path) -> Result<FileRows, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| TrainError::data(path, e.to_string()))?;
    let schema = builder.schema().clone();
    if schema.field_with_name(IDS_COLUMN).is_err() {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(TrainError::data(
            path,
            format!(
                "no `{IDS_COLUMN}` column (columns: {}); is this the output of `pack`?",
                names.join(", ")
            ),
        ));
    }
    let has_mask = schema.field_with_name(MASK_COLUMN).is_ok();
    let reader = builder
        .build()
        .map_err(|e| TrainError::data(path, e.to_string()))?;
    let mut seq_len = 0usize;
    let mut ids = Vec::new();
    let mut mask = has_mask.then(Vec::new);
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| TrainError::data(path, e.to_string()))?;
        let id_rows = list_rows(path, &batch, IDS_COLUMN)?;
        let mask_rows = if has_mask {
            Some(list_rows(path, &batch, MASK_COLUMN)?)
        } else {
            None
        };
        for (r, (start, end)) in id_rows.offsets.iter().enumerate() {
            let len = end - start;
            if seq_len == 0 {
                seq_len = len;
            }
            if len != seq_len {
                return Err(TrainError::data(
                    path,
                    format!(
                        "row {} has {len} tokens, earlier rows have {seq_len}; packed \
                         sequences must all have the same length",
                        row + r
                    ),
                ));
            }
            append_ids(path, &id_rows.values, *start, *end, &mut ids)?;
            if let (Some(m), Some(mr)) = (mask.as_mut(), mask_rows.as_ref()) {
                let (ms, me) = mr.offsets[r];
                if me - ms != len {
                    return Err(TrainError::data(
                        path,
                        format!(
                            "row {}: `{MASK_COLUMN}` has {} entries for {len} tokens",
                            row + r,
                            me - ms
                        ),
                    ));
                }
                append_mask(path, &mr.values, ms, me, m)?;
            }
        }
        row += id_rows.offsets.len();
    }
    Ok((seq_len, ids, mask))
}

struct ListRows {
    offsets: Vec<(usize, usize)>,
    values: ArrayRef,
}

impl ListRows {
    fn of<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> ListRows {
        ListRows {
            offsets: list
                .value_offsets()
                .windows(2)
                .map(|w| (w[0].as_usize(), w[1].as_usize()))
                .collect(),
            values: list.values().clone(),
        }
    }
}

fn list_rows(path: &Path, batch: &RecordBatch, name: &str) -> Result<ListRows, TrainError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| TrainError::data(path, format!("no `{name}` column")))?;
    if let Some(list) = col.as_list_opt::<i32>() {
        return Ok(ListRows::of(list));
    }
    if let Some(list) = col.as_list_opt::<i64>() {
        return Ok(ListRows::of(list));
    }
    Err(TrainError::data(
        path,
        format!("column `{name}` is {}, expected a list", col.data_type()),
    ))
}

fn append_ids(
    path: &Path,
    values: &ArrayRef,
    start: usize,
    end: usize,
    out: &mut Vec<u32>,
) -> Result<(), TrainError> {
    let bad = |v: i128| TrainError::data(path, format!("token id {v} is out of range"));
    macro_rules! ints {
        ($t:ty) => {{
            let a = values.as_primitive::<$t>();
            for &v in &a.values()[start..end] {
                out.push(u32::try_from(v).map_err(|_| bad(v as i128))?);
            }
        }};
    }
    match values.data_type() {
        DataType::UInt32 => {
            out.extend_from_slice(&values.as_primitive::<UInt32Type>().values()[start..end])
        }
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::UInt16 => ints!(UInt16Type),
        other => {
            return Err(TrainError::data(
                path,
                format!("`{IDS_COLUMN}` holds {other}, expected integers (uint32)"),
            ));
        }
    }
    Ok(())
}

fn append_mask(
    path: &Path,
    values: &ArrayRef,
    start: usize,
    end: usize,
    out: &mut Vec<bool>,
) -> Result<(), TrainError> {
    match values.data_type() {
        DataType::Boolean => {
            let a: &BooleanArray = values.as_boolean();
            out.extend((start..end).map(|i| a.value(i)));
        }
        DataType::UInt8 => {
            let a = values.as_primitive::<UInt8Type>();
            out.extend(a.values()[start..end].iter().map(|&v| v != 0));
        }
        DataType::Int32 => {
            let a = values.as_primitive::<Int32Type>();
            out.extend(a.values()[start..end].iter().map(|&v| v != 0));
        }
        DataType::Int64 => {
            let a = values.as_primitive::<Int64Type>();
            out.extend(a.values()[start..end].iter().map(|&v| v != 0));
        }
        other => {
            return Err(TrainError::data(
                path,
                format!("`{MASK_COLUMN}` holds {other}, expected bool or uint8"),
            ));
        }
    }
    Ok(())
}

/// Write rows as a packed Parquet file (`input_ids: list<uint32>`, and `loss_mask:
/// list<bool>` when any row has one) — the `pack` stage's schema; for tests and tools.
pub fn write_packed(path: &Path, rows: &[(Vec<u32>, Option<Vec<bool>>)]) -> Result<(), TrainError> {
    let with_mask = rows.iter().any(|r| r.1.is_some());
    let mut ids = ListBuilder::new(UInt32Builder::new());
    let mut masks = ListBuilder::new(BooleanBuilder::new());
    for (row, m) in rows {
        ids.values().append_slice(row);
        ids.append(true);
        if with_mask {
            match m {
                Some(m) => masks.values().append_slice(m),
                None => masks.values().append_n(row.len(), true),
            }
            masks.append(true);
        }
    }
    let ids: ArrayRef = Arc::new(ids.finish());
    let mut fields = vec![Field::new(IDS_COLUMN, ids.data_type().clone(), false)];
    let mut columns = vec![ids];
    if with_mask {
        let masks: ArrayRef = Arc::new(masks.finish());
        fields.push(Field::new(MASK_COLUMN, masks.data_type().clone(), false));
        columns.push(masks);
    }
    let schema = Arc::new(Schema::new(fields));
    let err = |e: &dyn std::fmt::Display| TrainError::data(path, e.to_string());
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(&e))?;
    let file = File::create(path).map_err(|e| TrainError::io(path, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| err(&e))?;
    writer.write(&batch).map_err(|e| err(&e))?;
    writer.close().map_err(|e| err(&e))?;
    Ok(())
}

/// The order sequences are visited in: epoch `e` is a permutation seeded by
/// `(seed, e)` (or the file order without shuffling).
#[derive(Debug, Clone)]
pub struct DataOrder {
    n: usize,
    seed: u64,
    shuffle: bool,
    epoch: Option<(u64, Vec<usize>)>,
}

impl DataOrder {
    /// An order over `n` sequences.
    pub fn new(n: usize, seed: u64, shuffle: bool) -> Self {
        DataOrder {
            n,
            seed,
            shuffle,
            epoch: None,
        }
    }

    /// The sequence index at `cursor` (sequences consumed so far).
    pub fn at(&mut self, cursor: u64) -> usize {
        let n = self.n.max(1) as u64;
        let (epoch, offset) = (cursor / n, (cursor % n) as usize);
        if !self.shuffle {
            return offset;
        }
        if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch = Some((epoch, permutation(self.n, self.seed, epoch)));
        }
        self.epoch.as_ref().map_or(offset, |(_, p)| p[offset])
    }

    /// `count` sequence indices starting at `cursor`.
    pub fn take(&mut self, cursor: u64, count: usize) -> Vec<usize> {
        (0..count as u64).map(|i| self.at(cursor + i)).collect()
    }
}

/// Fisher-Yates permutation of `0..n` from `(seed, epoch)`.
pub fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(Vec<u32>, Option<Vec<bool>>)> = (0..5)
            .map(|i| (vec![i, i + 1, i + 2], Some(vec![false, true, i % 2 == 0])))
            .collect();
        write_packed(&dir.path().join("a.parquet"), &rows).unwrap();
        let d = PackedData::open(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!((d.len(), d.seq_len), (5, 3));
        assert_eq!(d.ids(2), &[2, 3, 4]);
        assert_eq!(d.mask(3).unwrap(), &[false, true, false]);
        let mut o = DataOrder::new(5, 7, true);
        let mut first: Vec<usize> = o.take(0, 5);
        first.sort();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        assert_ne!(o.take(0, 5), o.take(5, 5), "epochs differ");
        assert_eq!(DataOrder::new(5, 7, false).take(3, 4), vec![3, 4, 0, 1]);
    }
}
