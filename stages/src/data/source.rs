//! Streaming readers of raw records: [`Records`] walks input files one record at a time
//! (a JSONL line, a JSON-array element, a Parquet row or a whole text file) and yields
//! each as a JSON object with its position; [`extract_document`] turns a record into a
//! [`Document`]. Nothing holds more than one file's current batch in memory.
//!
//! | extension | format | record |
//! |---|---|---|
//! | `.jsonl`, `.ndjson` | JSON lines | one object per non-blank line |
//! | `.json` | JSON array or JSON lines | one element / line |
//! | `.parquet` | Parquet | one row (the projected columns) |
//! | anything else | UTF-8 text | the whole file as `{"text": …}` |

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::arrow_value::cell;
use super::common::{InputFile, OnError};
use super::error::{DataError, Result};

/// How to read input files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By extension: `.jsonl`/`.ndjson`/`.json` JSON, `.parquet` Parquet, else text.
    #[default]
    Auto,
    /// JSON lines (or a JSON array).
    Jsonl,
    /// Parquet.
    Parquet,
    /// Plain UTF-8 text, one document per file.
    Text,
}

/// Where a record came from.
#[derive(Debug, Clone)]
pub struct Position {
    /// The file.
    pub file: Arc<InputFile>,
    /// 1-based line (JSONL), 0-based row (Parquet) or element (JSON array); 0 for text.
    pub index: u64,
    /// The kind of `index`.
    pub unit: Unit,
}

/// What [`Position::index`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// 1-based line of a JSONL file.
    Line,
    /// 0-based row of a Parquet file.
    Row,
    /// 0-based element of a JSON array.
    Element,
    /// A whole file.
    File,
}

impl Position {
    /// An error at this position.
    pub fn error(&self, message: impl Into<String>) -> DataError {
        let path = &self.file.path;
        match self.unit {
            Unit::Line => DataError::line(path, self.index, message),
            Unit::Row => DataError::Row {
                path: path.clone(),
                row: self.index,
                message: message.into(),
            },
            Unit::Element => {
                DataError::file(path, format!("element {}: {}", self.index, message.into()))
            }
            Unit::File => DataError::file(path, message),
        }
    }

    /// A default id: `label` for a whole file, `label:N` otherwise.
    pub fn default_id(&self) -> String {
        match self.unit {
            Unit::File => self.file.label.clone(),
            _ => format!("{}:{}", self.file.label, self.index),
        }
    }
}

/// One record: a JSON object and where it came from.
#[derive(Debug, Clone)]
pub struct Record {
    /// The record's fields.
    pub value: Value,
    /// Its position.
    pub pos: Position,
}

/// A document: what `tokenize` and `tokenizer.train` consume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Identifier (unique within a corpus by convention, not enforced).
    pub id: String,
    /// Where it came from (file label or a `source` field).
    pub source: String,
    /// The text.
    pub text: String,
}

/// Which fields make a document.
#[derive(Debug, Clone)]
pub struct Fields {
    /// The text field.
    pub text: String,
    /// The id field (absent -> position-based id).
    pub id: String,
    /// The source field (absent -> the file label).
    pub source: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            text: "text".into(),
            id: "id".into(),
            source: "source".into(),
        }
    }
}

/// A record's document, or an error naming the file and line when the text field is
/// missing or not a string.
pub fn extract_document(rec: Record, fields: &Fields) -> Result<Document> {
    let Record { value, pos } = rec;
    let Value::Object(mut obj) = value else {
        return Err(pos.error("expected a JSON object"));
    };
    let text = match obj.remove(&fields.text) {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(pos.error(format!(
                "field `{}` is {}, expected a string",
                fields.text,
                kind_of(&other)
            )));
        }
        None => {
            return Err(pos.error(format!(
                "missing field `{}` (fields present: {})",
                fields.text,
                obj.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let id = match obj.get(&fields.id) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => pos.default_id(),
    };
    let source = match obj.get(&fields.source) {
        Some(Value::String(s)) => s.clone(),
        _ => pos.file.label.clone(),
    };
    Ok(Document { id, source, text })
}

/// A JSON value's kind, for messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Streams the records of a list of files in order. Errors on a record come out as
/// `Some(Err)`; with [`OnError::Skip`] they are counted in [`Records::skipped`] and
/// skipped (a file that cannot be opened is skipped whole).
pub struct Records {
    files: VecDeque<Arc<InputFile>>,
    format: Format,
    /// Parquet columns to read (None = all).
    columns: Option<Vec<String>>,
    current: Option<FileRecords>,
    on_error: OnError,
    skipped: u64,
    /// Largest record read (a text file's size, a JSON line's length) and the
    /// parameter that set it, for errors.
    max_record_bytes: (u64, &'static str),
}

enum FileRecords {
    Lines {
        reader: Box<dyn BufRead + Send>,
        line: u64,
        file: Arc<InputFile>,
        buf: Vec<u8>,
        max_bytes: (u64, &'static str),
    },
    Array {
        items: std::vec::IntoIter<Value>,
        index: u64,
        file: Arc<InputFile>,
    },
    Parquet {
        reader: ParquetRecordBatchReader,
        batch: Option<arrow_array::RecordBatch>,
        in_batch: usize,
        row: u64,
        file: Arc<InputFile>,
    },
}

impl Records {
    /// Records of `files`. `columns` limits what is read from Parquet files.
    pub fn new(
        files: Vec<InputFile>,
        format: Format,
        columns: Option<Vec<String>>,
        on_error: OnError,
    ) -> Records {
        Records {
            files: files.into_iter().map(Arc::new).collect(),
            format,
            columns,
            current: None,
            on_error,
            skipped: 0,
            max_record_bytes: (u64::MAX, ""),
        }
    }

    /// Refuse records over `bytes` before reading them whole: a text file larger than
    /// that, a JSON line longer than that (its bytes are skipped, not buffered). JSON
    /// array files and Parquet rows are not bounded here.
    /// `param` names the limit in errors.
    pub fn with_max_record_bytes(mut self, bytes: u64, param: &'static str) -> Records {
        self.max_record_bytes = (bytes, param);
        self
    }

    /// Records skipped so far under [`OnError::Skip`].
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Apply the error policy to a result: `Ok(Some)` to use, `Ok(None)` skipped.
    pub fn policy<T>(&mut self, r: Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if self.on_error == OnError::Skip => {
                let _ = e;
                self.skipped += 1;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn open(&mut self, file: Arc<InputFile>) -> Result<Option<Record>> {
        let fmt = match self.format {
            Format::Auto => detect(&file.path),
            f => f,
        };
        let path = file.path.clone();
        match fmt {
            Format::Text | Format::Auto => {
                let size = std::fs::metadata(&path)
                    .map_err(|e| DataError::io(&path, e))?
                    .len();
                let (max, param) = self.max_record_bytes;
                if size > max {
                    return Err(DataError::file(
                        &path,
                        format!("{size} bytes, more than {param} ({max})"),
                    ));
                }
                let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
                let text = utf8(bytes, &path)?;
                let mut obj = serde_json::Map::new();
                obj.insert("text".into(), Value::String(text));
                Ok(Some(Record {
                    value: Value::Object(obj),
                    pos: Position {
                        file,
                        index: 0,
                        unit: Unit::File,
                    },
                }))
            }
            Format::Jsonl => {
                let f = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
                let mut reader = BufReader::with_capacity(1 << 20, f);
                let starts_array = {
                    let head = reader.fill_buf().map_err(|e| DataError::io(&path, e))?;
                    head.iter()
                        .find(|b| !b.is_ascii_whitespace())
                        .is_some_and(|&b| b == b'[')
                };
                if starts_array {
                    let mut bytes = Vec::new();
                    reader
                        .read_to_end(&mut bytes)
                        .map_err(|e| DataError::io(&path, e))?;
                    let items: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| {
                        DataError::line(&path, e.line() as u64, format!("malformed JSON: {e}"))
                    })?;
                    self.current = Some(FileRecords::Array {
                        items: items.into_iter(),
                        index: 0,
                        file,
                    });
                } else {
                    self.current = Some(FileRecords::Lines {
                        reader: Box::new(reader),
                        line: 0,
                        file,
                        buf: Vec::new(),
                        max_bytes: self.max_record_bytes,
                    });
                }
                Ok(None)
            }
            Format::Parquet => {
                let f = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(f)
                    .map_err(|e| DataError::parquet(&path, e))?;
                let builder = match &self.columns {
                    Some(cols) => {
                        let schema = builder.schema().clone();
                        let idx: Vec<usize> = cols
                            .iter()
                            .filter_map(|c| schema.index_of(c).ok())
                            .collect();
                        let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
                        builder.with_projection(mask)
                    }
                    None => builder,
                };
                let reader = builder
                    .with_batch_size(256)
                    .build()
                    .map_err(|e| DataError::parquet(&path, e))?;
                self.current = Some(FileRecords::Parquet {
                    reader,
                    batch: None,
                    in_batch: 0,
                    row: 0,
                    file,
                });
                Ok(None)
            }
        }
    }

    fn next_raw(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(cur) = &mut self.current {
                match cur.next() {
                    Some(Err(e @ (DataError::Io { .. } | DataError::Arrow { .. }))) => {
                        // The rest of this file cannot be read.
                        self.current = None;
                        return Some(Err(e));
                    }
                    Some(r) => return Some(r),
                    None => self.current = None,
                }
            }
            let file = self.files.pop_front()?;
            match self.open(file) {
                Ok(Some(rec)) => return Some(Ok(rec)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            let r = self.next_raw()?;
            match self.policy(r) {
                Ok(Some(rec)) => return Some(Ok(rec)),
                Ok(None) => continue,
                Err(e) => {
                    // A failed file is not resumed.
                    self.current = None;
                    self.files.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl FileRecords {
    fn next(&mut self) -> Option<Result<Record>> {
        match self {
            FileRecords::Lines {
                reader,
                line,
                file,
                buf,
                max_bytes,
            } => loop {
                buf.clear();
                let (max, param) = *max_bytes;
                let limit = max.saturating_add(1);
                // Reserve the whole bound once (address space only: pages are touched as
                // bytes arrive), so a line near the limit does not double the buffer.
                if max < 1 << 30 && buf.capacity() < limit as usize {
                    buf.reserve_exact(limit as usize);
                }
                let n = match reader.by_ref().take(limit).read_until(b'\n', buf) {
                    Ok(n) => n,
                    Err(e) => return Some(Err(DataError::io(&file.path, e))),
                };
                if n == 0 {
                    return None;
                }
                *line += 1;
                let pos = Position {
                    file: file.clone(),
                    index: *line,
                    unit: Unit::Line,
                };
                if n as u64 == limit && buf.last() != Some(&b'\n') {
                    let rest = match skip_line(reader) {
                        Ok(rest) => rest,
                        Err(e) => return Some(Err(DataError::io(&file.path, e))),
                    };
                    return Some(Err(pos.error(format!(
                        "the line has {} bytes, more than {param} ({max})",
                        n as u64 + rest
                    ))));
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Err(e) = std::str::from_utf8(buf) {
                    return Some(Err(pos.error(format!(
                        "invalid UTF-8 at byte {} of the line",
                        e.valid_up_to()
                    ))));
                }
                return Some(match serde_json::from_slice::<Value>(buf) {
                    Ok(value @ Value::Object(_)) => Ok(Record { value, pos }),
                    Ok(other) => {
                        Err(pos.error(format!("expected a JSON object, found {}", kind_of(&other))))
                    }
                    Err(e) => Err(pos.error(format!("malformed JSON: {e}"))),
                });
            },
            FileRecords::Array { items, index, file } => {
                let value = items.next()?;
                let pos = Position {
                    file: file.clone(),
                    index: *index,
                    unit: Unit::Element,
                };
                *index += 1;
                Some(Ok(Record { value, pos }))
            }
            FileRecords::Parquet {
                reader,
                batch,
                in_batch,
                row,
                file,
            } => loop {
                if let Some(b) = batch
                    && *in_batch < b.num_rows()
                {
                    let i = *in_batch;
                    *in_batch += 1;
                    let pos = Position {
                        file: file.clone(),
                        index: *row,
                        unit: Unit::Row,
                    };
                    *row += 1;
                    let mut obj = serde_json::Map::new();
                    for (f, col) in b.schema().fields().iter().zip(b.columns()) {
                        match cell(col, i) {
                            Ok(v) => {
                                obj.insert(f.name().clone(), v);
                            }
                            Err(m) => {
                                return Some(Err(pos.error(format!("column `{}`: {m}", f.name()))));
                            }
                        }
                    }
                    return Some(Ok(Record {
                        value: Value::Object(obj),
                        pos,
                    }));
                }
                match reader.next()? {
                    Ok(b) => {
                        *batch = Some(b);
                        *in_batch = 0;
                    }
                    Err(e) => return Some(Err(DataError::arrow(&file.path, e))),
                }
            },
        }
    }
}

/// Consumes the rest of a line without keeping it; returns how many bytes it had.
fn skip_line(reader: &mut dyn BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(skipped);
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(skipped + i as u64 + 1);
            }
            None => {
                let len = chunk.len();
                reader.consume(len);
                skipped += len as u64;
            }
        }
    }
}

/// The format of `path` by extension.
pub fn detect(path: &Path) -> Format {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".jsonl") || name.ends_with(".ndjson") || name.ends_with(".json") {
        Format::Jsonl
    } else if name.ends_with(".parquet") {
        Format::Parquet
    } else {
        Format::Text
    }
}

/// Bytes as UTF-8, or an error naming the line of the first invalid byte.
pub fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        DataError::line(path, line, format!("invalid UTF-8 (byte {at} of the file)"))
    })
}
