//! Parquet shards: the schemas of the data stages, a rolling [`ShardWriter`] (each shard
//! is written under a temporary name and renamed when closed, so a crash never leaves a
//! complete-looking shard) and readers for the columns downstream stages need.
//!
//! | schema | columns |
//! |---|---|
//! | [`documents_schema`] (`tokenize`) | `doc_id: utf8`, `source: utf8`, `input_ids: list<uint32>`, `n_tokens: uint32` |
//! | [`sequences_schema`] (`pack`) | `input_ids: list<uint32>`, `loss_mask: list<bool>` |
//! | [`sft_schema`] (`sft.format`) | `doc_id: utf8`, `input_ids: list<uint32>`, `loss_mask: list<bool>`, `n_tokens: uint32` |
//!
//! File-level key-value metadata carries `slayer.*` keys (the tokenizer's blake3 hash,
//! BOS/EOS ids, the producing stage kind).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, ListBuilder, StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::tmp_path;
use super::error::{DataError, Result};

/// Metadata key: hex blake3 of the `tokenizer.json` the ids come from.
pub const META_TOKENIZER: &str = "slayer.tokenizer.blake3";
/// Metadata key: the EOS id (when the producer knew one).
pub const META_EOS: &str = "slayer.eos_id";
/// Metadata key: the BOS id (when the producer knew one).
pub const META_BOS: &str = "slayer.bos_id";
/// Metadata key: the stage kind that wrote the shard.
pub const META_KIND: &str = "slayer.kind";

/// Parquet compression codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd level 1: small files, fast (default).
    #[default]
    Zstd,
    /// Snappy: fastest.
    Snappy,
    /// None.
    None,
}

fn ids_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::UInt32, false))
}

fn mask_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Boolean, false))
}

/// Schema of tokenized documents.
pub fn documents_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("input_ids", DataType::List(ids_field()), false),
        Field::new("n_tokens", DataType::UInt32, false),
    ]))
}

/// Schema of packed sequences.
pub fn sequences_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("input_ids", DataType::List(ids_field()), false),
        Field::new("loss_mask", DataType::List(mask_field()), false),
    ]))
}

/// Schema of SFT samples.
pub fn sft_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("input_ids", DataType::List(ids_field()), false),
        Field::new("loss_mask", DataType::List(mask_field()), false),
        Field::new("n_tokens", DataType::UInt32, false),
    ]))
}

/// Builds `list<uint32>` columns.
pub fn ids_builder(rows: usize, values: usize) -> ListBuilder<UInt32Builder> {
    ListBuilder::with_capacity(UInt32Builder::with_capacity(values), rows).with_field(ids_field())
}

/// Builds `list<bool>` columns.
pub fn mask_builder(rows: usize, values: usize) -> ListBuilder<BooleanBuilder> {
    ListBuilder::with_capacity(BooleanBuilder::with_capacity(values), rows).with_field(mask_field())
}

/// Builds `utf8` columns.
pub fn string_builder(rows: usize, bytes: usize) -> StringBuilder {
    StringBuilder::with_capacity(rows, bytes)
}

/// Where and how shards are written.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Directory of the shards (created).
    pub dir: PathBuf,
    /// Most rows per shard.
    pub max_rows: Option<u64>,
    /// Most tokens per shard (a shard is closed once it reaches this).
    pub max_tokens: Option<u64>,
    /// Codec.
    pub compression: Compression,
    /// `slayer.*` key-value metadata written into every shard.
    pub metadata: BTreeMap<String, String>,
}

struct Open {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
    rows: u64,
    tokens: u64,
}

/// Writes record batches into `part-00000.parquet`, `part-00001.parquet`, … rolling
/// over at the row or token limit.
pub struct ShardWriter {
    opts: ShardOptions,
    schema: SchemaRef,
    props: WriterProperties,
    open: Option<Open>,
    finished: Vec<PathBuf>,
    rows: u64,
    tokens: u64,
}

/// Row groups are flushed at about this many buffered bytes (bounds writer memory).
const ROW_GROUP_BYTES: usize = 64 << 20;

impl ShardWriter {
    /// A writer of `schema` batches.
    pub fn new(opts: ShardOptions, schema: SchemaRef) -> Result<ShardWriter> {
        std::fs::create_dir_all(&opts.dir).map_err(|e| DataError::io(&opts.dir, e))?;
        let compression = match opts.compression {
            Compression::Zstd => PqCompression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
            Compression::Snappy => PqCompression::SNAPPY,
            Compression::None => PqCompression::UNCOMPRESSED,
        };
        let kv: Vec<KeyValue> = opts
            .metadata
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let mut props = WriterProperties::builder()
            .set_compression(compression)
            // Token ids gain nothing from dictionaries; strings that repeat do.
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_max_row_group_row_count(Some(1 << 20))
            .set_key_value_metadata(Some(kv));
        for f in schema.fields() {
            if f.data_type() == &DataType::Utf8 && f.name() == "source" {
                props =
                    props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
            }
        }
        Ok(ShardWriter {
            opts,
            schema,
            props: props.build(),
            open: None,
            finished: Vec::new(),
            rows: 0,
            tokens: 0,
        })
    }

    fn open_next(&mut self) -> Result<&mut Open> {
        if self.open.is_none() {
            let dest = self
                .opts
                .dir
                .join(format!("part-{:05}.parquet", self.finished.len()));
            let tmp = tmp_path(&dest);
            let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
                .map_err(|e| DataError::parquet(&tmp, e))?;
            self.open = Some(Open {
                writer,
                tmp,
                dest,
                rows: 0,
                tokens: 0,
            });
        }
        self.open
            .as_mut()
            .ok_or_else(|| DataError::Invalid("shard writer has no open shard".into()))
    }

    fn full(&self, o: &Open) -> bool {
        self.opts.max_rows.is_some_and(|m| o.rows >= m)
            || self.opts.max_tokens.is_some_and(|m| o.tokens >= m)
    }

    /// Appends `batch`, whose rows hold `row_tokens[i]` tokens each; splits it across
    /// shards as the limits require.
    pub fn write(&mut self, batch: &RecordBatch, row_tokens: &[u32]) -> Result<()> {
        let mut start = 0usize;
        while start < batch.num_rows() {
            let max_rows = self.opts.max_rows;
            let max_tokens = self.opts.max_tokens;
            let open = self.open_next()?;
            // How many rows fit before this shard is full (at least one).
            let mut end = start;
            let (mut rows, mut tokens) = (open.rows, open.tokens);
            while end < batch.num_rows() {
                if max_rows.is_some_and(|m| rows >= m) || max_tokens.is_some_and(|m| tokens >= m) {
                    break;
                }
                rows += 1;
                tokens += u64::from(row_tokens[end]);
                end += 1;
            }
            let slice = batch.slice(start, end - start);
            open.writer
                .write(&slice)
                .map_err(|e| DataError::parquet(&open.tmp, e))?;
            if open.writer.in_progress_size() >= ROW_GROUP_BYTES {
                open.writer
                    .flush()
                    .map_err(|e| DataError::parquet(&open.tmp, e))?;
            }
            let added = (rows - open.rows, tokens - open.tokens);
            open.rows = rows;
            open.tokens = tokens;
            self.rows += added.0;
            self.tokens += added.1;
            start = end;
            let full = self.open.as_ref().is_some_and(|o| self.full(o));
            if full {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(o) = self.open.take() {
            let file = o
                .writer
                .into_inner()
                .map_err(|e| DataError::parquet(&o.tmp, e))?;
            file.sync_all().map_err(|e| DataError::io(&o.tmp, e))?;
            drop(file);
            std::fs::rename(&o.tmp, &o.dest).map_err(|e| DataError::io(&o.dest, e))?;
            self.finished.push(o.dest);
        }
        Ok(())
    }

    /// Closes the last shard; returns every shard written, rows and tokens.
    pub fn finish(mut self) -> Result<(Vec<PathBuf>, u64, u64)> {
        self.close_current()?;
        Ok((self.finished, self.rows, self.tokens))
    }
}

/// The `.parquet` files of a shards input: the file itself or the sorted `*.parquet`
/// files below a directory.
pub fn shard_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    collect_parquet(path, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(DataError::file(path, "no .parquet files found"));
    }
    Ok(files)
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let p = e.map_err(|e| DataError::io(dir, e))?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            collect_parquet(&p, out)?;
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
    Ok(())
}

/// The `slayer.*` (and other) key-value metadata of a Parquet file.
pub fn file_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| DataError::parquet(path, e))?;
    Ok(builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
                .collect()
        })
        .unwrap_or_default())
}

/// Reads the `input_ids` column (and, when present and asked for, `loss_mask`) of a
/// shard batch by batch.
pub struct IdsReader {
    path: PathBuf,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
}

impl IdsReader {
    /// Open `path`, projecting `columns` (which must exist).
    pub fn open(path: &Path, columns: &[&str], batch_rows: usize) -> Result<IdsReader> {
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| DataError::parquet(path, e))?;
        let schema = builder.schema().clone();
        let mut idx = Vec::new();
        for c in columns {
            idx.push(schema.index_of(c).map_err(|_| {
                DataError::file(
                    path,
                    format!(
                        "no column `{c}` (columns: {}); expected shards written by `tokenize`",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| DataError::parquet(path, e))?;
        Ok(IdsReader {
            path: path.to_path_buf(),
            reader,
        })
    }

    /// The next batch, or None at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.reader.next() {
            None => Ok(None),
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => Err(DataError::arrow(&self.path, e)),
        }
    }
}

/// Row `row` of a `list<uint32>` column.
pub fn list_u32(col: &ArrayRef, row: usize, path: &Path) -> Result<Vec<u32>> {
    let list = col
        .as_list_opt::<i32>()
        .ok_or_else(|| DataError::file(path, "column is not list<uint32>"))?;
    let values = list.value(row);
    let ids = values
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| DataError::file(path, "list items are not uint32"))?;
    Ok(ids.values().to_vec())
}

/// Every row of a `uint32` column.
pub fn column_u32(col: &ArrayRef, path: &Path) -> Result<Vec<u32>> {
    let a = col
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| DataError::file(path, "column is not uint32"))?;
    Ok((0..a.len()).map(|i| a.value(i)).collect())
}
