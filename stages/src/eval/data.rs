//! Benchmark records: [`Field`] (a JSON value whose objects keep their key order, which
//! TruthfulQA's `{answer: label}` maps rely on), [`Doc`] (one record with the file and
//! line it came from) and [`load_docs`] for JSONL, JSON arrays, header-less CSV and plain
//! text (the whole file is one record with a `text` field).
//!
//! Every parse error names the file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{EvalError, Result};

/// A JSON-like value; objects keep the order of their keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Field>),
    /// An object, in file order.
    Map(Vec<(String, Field)>),
}

impl Field {
    /// Member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Field> {
        match self {
            Field::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Short name of the kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Bool(_) => "a boolean",
            Field::Num(_) => "a number",
            Field::Str(_) => "a string",
            Field::List(_) => "a list",
            Field::Map(_) => "an object",
        }
    }

    /// The value as template text: strings as is, numbers without a trailing `.0`.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Field::Str(s) => Some(s.clone()),
            Field::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{}", *n as i64)),
            Field::Num(n) => Some(n.to_string()),
            Field::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Field, E> {
                Ok(Field::Null)
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Field, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Field, E> {
                Ok(Field::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Field, E> {
                Ok(Field::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Field, E> {
                Ok(Field::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Field, E> {
                Ok(Field::Num(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Field, E> {
                Ok(Field::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Field, E> {
                Ok(Field::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Field, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(Field::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Field, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Field>()? {
                    out.push((k, v));
                }
                Ok(Field::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One benchmark record.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// 0-based index in its file.
    pub index: usize,
    /// 1-based line of the record (JSON arrays: index + 1).
    pub line: usize,
    /// The record's fields (an object).
    pub fields: Field,
}

impl Doc {
    /// A field by name.
    pub fn get(&self, key: &str) -> Option<&Field> {
        self.fields.get(key)
    }

    /// Add or replace a field (e.g. the MMLU subject taken from the file name).
    pub fn set(&mut self, key: &str, value: Field) {
        if let Field::Map(entries) = &mut self.fields {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key.to_string(), value)),
            }
        }
    }
}

/// How a data file is laid out.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects.
    JsonArray,
    /// Comma-separated values without a header; these are the column names.
    Csv(Vec<String>),
    /// Plain text (`.txt`, `.md`): one record, its `text` field the whole file.
    Text,
}

impl Format {
    /// Guess from the file extension (CSV needs column names from the task).
    pub fn from_path(path: &Path, columns: &[String]) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv(columns.to_vec()),
            Some("json") => Format::JsonArray,
            Some("txt" | "md") => Format::Text,
            _ => Format::Jsonl,
        }
    }
}

/// Read every record of `path`.
pub fn load_docs(path: &Path, format: &Format) -> Result<Vec<Doc>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    match format {
        Format::Jsonl => parse_jsonl(path, &text),
        Format::JsonArray => parse_json_array(path, &text),
        Format::Csv(columns) => parse_csv(path, &text, columns),
        Format::Text => Ok(vec![Doc {
            index: 0,
            line: 1,
            fields: Field::Map(vec![("text".into(), Field::Str(text))]),
        }]),
    }
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Field = serde_json::from_str(line)
            .map_err(|e| EvalError::data(path, i + 1, format!("malformed JSON: {e}")))?;
        if !matches!(fields, Field::Map(_)) {
            return Err(EvalError::data(
                path,
                i + 1,
                format!("expected a JSON object, found {}", fields.kind()),
            ));
        }
        docs.push(Doc {
            index: docs.len(),
            line: i + 1,
            fields,
        });
    }
    Ok(docs)
}

fn parse_json_array(path: &Path, text: &str) -> Result<Vec<Doc>> {
    let value: Field = serde_json::from_str(text)
        .map_err(|e| EvalError::data(path, e.line(), format!("malformed JSON: {e}")))?;
    let Field::List(items) = value else {
        return Err(EvalError::data(
            path,
            1,
            format!("expected a JSON array of objects, found {}", value.kind()),
        ));
    };
    let line_of = record_lines(text);
    let mut docs = Vec::with_capacity(items.len());
    for (i, fields) in items.into_iter().enumerate() {
        let line = line_of.get(i).copied().unwrap_or(i + 1);
        if !matches!(fields, Field::Map(_)) {
            return Err(EvalError::data(
                path,
                line,
                format!("record {i}: expected an object, found {}", fields.kind()),
            ));
        }
        docs.push(Doc {
            index: i,
            line,
            fields,
        });
    }
    Ok(docs)
}

/// Line numbers where the top-level objects of a JSON array start.
fn record_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut depth, mut line, mut in_str, mut escaped) = (0usize, 1usize, false, false);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                if depth == 1 && c == '{' {
                    lines.push(line);
                }
                depth += 1;
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    lines
}

/// RFC 4180 CSV without a header: quoted fields, `""` escapes, newlines inside quotes.
fn parse_csv(path: &Path, text: &str, columns: &[String]) -> Result<Vec<Doc>> {
    if columns.is_empty() {
        return Err(EvalError::data(
            path,
            1,
            "CSV file but the task names no `columns`",
        ));
    }
    let mut docs = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start_line = line;
        let mut record: Vec<String> = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut at_cell_start = true;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(EvalError::data(
                        path,
                        start_line,
                        "unterminated quoted field",
                    ));
                }
                record.push(std::mem::take(&mut cell));
                break;
            };
            if c == '\n' {
                line += 1;
            }
            if quoted {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        cell.push('"');
                    } else {
                        quoted = false;
                    }
                } else {
                    cell.push(c);
                }
                continue;
            }
            match c {
                '"' if at_cell_start => {
                    quoted = true;
                    at_cell_start = false;
                }
                ',' => {
                    record.push(std::mem::take(&mut cell));
                    at_cell_start = true;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    record.push(std::mem::take(&mut cell));
                    break;
                }
                _ => {
                    cell.push(c);
                    at_cell_start = false;
                }
            }
        }
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() != columns.len() {
            return Err(EvalError::data(
                path,
                start_line,
                format!(
                    "expected {} columns ({}), found {}",
                    columns.len(),
                    columns.join(", "),
                    record.len()
                ),
            ));
        }
        let fields = columns
            .iter()
            .cloned()
            .zip(record.into_iter().map(Field::Str))
            .collect();
        docs.push(Doc {
            index: docs.len(),
            line: start_line,
            fields: Field::Map(fields),
        });
    }
    Ok(docs)
}

/// A record's location for error messages.
pub fn at(path: &Path, doc: &Doc, message: impl Into<String>) -> EvalError {
    EvalError::data(PathBuf::from(path), doc.line, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_newlines() {
        let text = "a,\"b, c\",\"x\"\"y\"\n\"multi\nline\",2,3\n";
        let cols: Vec<String> = ["p", "q", "r"].iter().map(|s| s.to_string()).collect();
        let docs = parse_csv(Path::new("t.csv"), text, &cols).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("q"), Some(&Field::Str("b, c".into())));
        assert_eq!(docs[0].get("r"), Some(&Field::Str("x\"y".into())));
        assert_eq!(docs[1].get("p"), Some(&Field::Str("multi\nline".into())));
        assert_eq!(docs[1].line, 2);
    }

    #[test]
    fn json_objects_keep_order() {
        let f: Field = serde_json::from_str(r#"{"z": 1, "a": 0, "m": 1}"#).unwrap();
        let Field::Map(e) = f else { panic!() };
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn json_array_lines() {
        let text = "[\n  {\"a\": 1},\n  {\n    \"a\": \"}\"\n  }\n]";
        let docs = parse_json_array(Path::new("t.json"), text).unwrap();
        assert_eq!(docs[0].line, 2);
        assert_eq!(docs[1].line, 3);
    }
}
