//! Corpus stages: raw files or records -> one normalised JSONL corpus (`corpus.jsonl`,
//! one `{"id","source","text"}` — or `"messages"` — object per line) that `tokenize`,
//! `tokenizer.train` and `sft.format` read.
//!
//! - `corpus.files`: local text/code files (include/exclude globs, extension filter,
//!   size limits, exact-duplicate removal by blake3 of the content), one document per
//!   file or split by a separator.
//! - `corpus.jsonl` / `corpus.parquet`: records from JSONL (or JSON array) / Parquet
//!   files, picking a text field or a chat `messages` field; optional exact dedup.

use std::collections::HashSet;

use glob::{MatchOptions, Pattern};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::common::{AtomicFile, InputFile, OnError, input_files, metrics};
use super::error::{DataError, Result};
use super::source::{Fields, Format, Record, Records, extract_document, kind_of, utf8};

fn all() -> Vec<String> {
    vec!["**/*".into()]
}
fn min_bytes() -> u64 {
    1
}
fn max_bytes() -> u64 {
    1 << 20
}

fn corpus_output() -> Vec<OutputSpec> {
    vec![OutputSpec::new("corpus", "corpus.jsonl")]
}

/// The `corpus.files` stage kind.
pub struct CorpusFiles;

/// Parameters of `corpus.files`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorpusFilesParams {
    /// Globs a file's path (relative to its input directory) must match one of,
    /// e.g. `["**/*.py"]`.
    #[serde(default = "all")]
    pub include: Vec<String>,
    /// Globs that exclude a file, e.g. `["**/test/**"]`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Keep only these extensions (without the dot, e.g. `[py, rs]`); empty = any.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Skip files smaller than this many bytes (counted in `too_small`).
    #[serde(default = "min_bytes")]
    pub min_bytes: u64,
    /// Skip files larger than this many bytes (counted in `too_large`).
    #[serde(default = "max_bytes")]
    pub max_bytes: u64,
    /// Drop files whose content equals an earlier file's (blake3), counted in
    /// `duplicates`.
    #[serde(default = "super::common::yes")]
    pub dedup: bool,
    /// Split each file into documents at this separator (empty parts dropped); none =
    /// one document per file.
    #[serde(default)]
    pub split: Option<String>,
    /// Unreadable or non-UTF-8 files: `fail` naming the file (and line), or `skip` and
    /// count them in `skipped`.
    #[serde(default)]
    pub on_error: OnError,
}

impl TypedStage for CorpusFiles {
    type Params = CorpusFilesParams;
    const KIND: &'static str = "corpus.files";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Local text/code files (globs, size limits, dedup) -> corpus.jsonl";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::required(
            "files",
            "files, globs or directories of text/code",
        )])
    }

    fn outputs(_: &CorpusFilesParams) -> Vec<OutputSpec> {
        corpus_output()
    }

    fn validate(p: &CorpusFilesParams) -> Result<(), ParamError> {
        for (key, globs) in [("include", &p.include), ("exclude", &p.exclude)] {
            for g in globs {
                Pattern::new(g)
                    .map_err(|e| ParamError::new(key, format!("bad glob `{g}`: {e}")))?;
            }
        }
        if p.min_bytes > p.max_bytes {
            return Err(ParamError::new("min_bytes", "must not exceed max_bytes"));
        }
        if p.split.as_deref() == Some("") {
            return Err(ParamError::new("split", "the separator is empty"));
        }
        Ok(())
    }

    fn run(&self, p: CorpusFilesParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let files = input_files(ctx.input("files")?)?;
        ctx.progress.set_total(files.len() as u64);
        let c = collect_files(&p, &files, &ctx.out("corpus.jsonl"), &|| {
            ctx.progress.inc(1)
        })?;
        Ok(metrics([
            ("files", c.files),
            ("documents", c.documents),
            ("bytes", c.bytes),
            ("duplicates", c.duplicates),
            ("filtered", c.filtered),
            ("too_small", c.too_small),
            ("too_large", c.too_large),
            ("skipped", c.skipped),
        ]))
    }
}

/// Counts from `corpus.files`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilesCounts {
    /// Files kept.
    pub files: u64,
    /// Documents written.
    pub documents: u64,
    /// Bytes of text written.
    pub bytes: u64,
    /// Files dropped as exact duplicates.
    pub duplicates: u64,
    /// Files not matching include/exclude/extensions.
    pub filtered: u64,
    /// Files under `min_bytes`.
    pub too_small: u64,
    /// Files over `max_bytes`.
    pub too_large: u64,
    /// Unreadable or non-UTF-8 files skipped.
    pub skipped: u64,
}

fn patterns(globs: &[String]) -> Result<Vec<Pattern>> {
    globs
        .iter()
        .map(|g| Pattern::new(g).map_err(|e| DataError::Invalid(format!("bad glob `{g}`: {e}"))))
        .collect()
}

/// Whether `file` passes include/exclude/extensions.
fn selected(
    file: &InputFile,
    include: &[Pattern],
    exclude: &[Pattern],
    extensions: &[String],
) -> bool {
    let opts = MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    let rel = file.relative.as_str();
    let ext_ok = extensions.is_empty()
        || std::path::Path::new(rel)
            .extension()
            .is_some_and(|e| extensions.iter().any(|x| x.trim_start_matches('.') == e));
    ext_ok
        && include.iter().any(|p| p.matches_with(rel, opts))
        && !exclude.iter().any(|p| p.matches_with(rel, opts))
}

/// Writes the selected files of `files` as documents to `out`.
pub fn collect_files(
    p: &CorpusFilesParams,
    files: &[InputFile],
    out: &std::path::Path,
    tick: &dyn Fn(),
) -> Result<FilesCounts> {
    let include = patterns(&p.include)?;
    let exclude = patterns(&p.exclude)?;
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut c = FilesCounts::default();
    let mut w = AtomicFile::create(out)?;
    for f in files {
        tick();
        if !selected(f, &include, &exclude, &p.extensions) {
            c.filtered += 1;
            continue;
        }
        let size = match std::fs::metadata(&f.path) {
            Ok(m) => m.len(),
            Err(e) if p.on_error == OnError::Skip => {
                let _ = e;
                c.skipped += 1;
                continue;
            }
            Err(e) => return Err(DataError::io(&f.path, e)),
        };
        if size < p.min_bytes {
            c.too_small += 1;
            continue;
        }
        if size > p.max_bytes {
            c.too_large += 1;
            continue;
        }
        let text = match std::fs::read(&f.path)
            .map_err(|e| DataError::io(&f.path, e))
            .and_then(|b| utf8(b, &f.path))
        {
            Ok(t) => t,
            Err(_) if p.on_error == OnError::Skip => {
                c.skipped += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if p.dedup && !seen.insert(*blake3::hash(text.as_bytes()).as_bytes()) {
            c.duplicates += 1;
            continue;
        }
        c.files += 1;
        let parts: Vec<&str> = match &p.split {
            Some(sep) => text
                .split(sep.as_str())
                .filter(|s| !s.trim().is_empty())
                .collect(),
            None => vec![text.as_str()],
        };
        let many = parts.len() > 1;
        for (k, part) in parts.into_iter().enumerate() {
            let id = if many {
                format!("{}#{k}", f.label)
            } else {
                f.label.clone()
            };
            c.documents += 1;
            c.bytes += part.len() as u64;
            w.write_json_line(&DocLine {
                id: &id,
                source: &f.label,
                text: part,
            })?;
        }
    }
    w.finish()?;
    Ok(c)
}

#[derive(Serialize)]
struct DocLine<'a> {
    id: &'a str,
    source: &'a str,
    text: &'a str,
}

/// `corpus.jsonl` and `corpus.parquet`: the same stage with a different default format.
pub struct CorpusRecords<const PARQUET: bool>;

/// Parameters of `corpus.jsonl` / `corpus.parquet`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorpusRecordsParams {
    /// Field (JSONL) or column (Parquet) holding the text.
    #[serde(default = "super::common::text_field")]
    pub text_field: String,
    /// Take this chat field (`[{role, content}]`) instead of a text field; output lines
    /// then carry `messages` for `sft.format`.
    #[serde(default)]
    pub messages_field: Option<String>,
    /// Field holding the document id; absent -> `file:line`.
    #[serde(default = "super::common::id_field")]
    pub id_field: String,
    /// Field holding the source name; absent -> the file's label.
    #[serde(default = "super::common::source_field")]
    pub source_field: String,
    /// Drop records whose text (or messages) equals an earlier one's (blake3).
    #[serde(default)]
    pub dedup: bool,
    /// Bad records (malformed line, invalid UTF-8, missing field): `fail` naming file
    /// and line, or `skip` and count them in `skipped`.
    #[serde(default)]
    pub on_error: OnError,
}

impl<const PARQUET: bool> TypedStage for CorpusRecords<PARQUET> {
    type Params = CorpusRecordsParams;
    const KIND: &'static str = if PARQUET {
        "corpus.parquet"
    } else {
        "corpus.jsonl"
    };
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = if PARQUET {
        "Documents from Parquet files (text or chat messages column) -> corpus.jsonl"
    } else {
        "Documents from JSONL/JSON files (text or chat messages field) -> corpus.jsonl"
    };

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::required(
            "files",
            if PARQUET {
                "Parquet files or directories of them"
            } else {
                "JSONL/JSON files or directories of them"
            },
        )])
    }

    fn outputs(_: &CorpusRecordsParams) -> Vec<OutputSpec> {
        corpus_output()
    }

    fn run(&self, p: CorpusRecordsParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let files = input_files(ctx.input("files")?)?;
        let format = if PARQUET {
            Format::Parquet
        } else {
            Format::Jsonl
        };
        let records = Records::new(files, format, None, p.on_error);
        let c = collect_records(&p, records, &ctx.out("corpus.jsonl"))?;
        Ok(metrics([
            ("documents", c.0),
            ("duplicates", c.1),
            ("skipped", c.2),
        ]))
    }
}

/// Writes normalised records; returns (documents, duplicates, skipped).
pub fn collect_records(
    p: &CorpusRecordsParams,
    mut records: Records,
    out: &std::path::Path,
) -> Result<(u64, u64, u64)> {
    let fields = Fields {
        text: p.text_field.clone(),
        id: p.id_field.clone(),
        source: p.source_field.clone(),
    };
    let mut w = AtomicFile::create(out)?;
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let (mut docs, mut dups) = (0u64, 0u64);
    while let Some(rec) = records.next() {
        let rec = rec?;
        let line = match &p.messages_field {
            None => records.policy(extract_document(rec, &fields).map(|d| RecordLine {
                id: d.id,
                source: d.source,
                text: Some(d.text),
                messages: None,
            }))?,
            Some(field) => {
                let r = messages(&rec, field).map(|messages| RecordLine {
                    id: match rec.value.get(&p.id_field) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        _ => rec.pos.default_id(),
                    },
                    source: match rec.value.get(&p.source_field) {
                        Some(Value::String(s)) => s.clone(),
                        _ => rec.pos.file.label.clone(),
                    },
                    text: None,
                    messages: Some(messages),
                });
                records.policy(r)?
            }
        };
        let Some(line) = line else { continue };
        if p.dedup {
            let key = match (&line.text, &line.messages) {
                (Some(t), _) => t.clone(),
                (None, Some(m)) => serde_json::to_string(m).unwrap_or_default(),
                (None, None) => String::new(),
            };
            if !seen.insert(*blake3::hash(key.as_bytes()).as_bytes()) {
                dups += 1;
                continue;
            }
        }
        docs += 1;
        w.write_json_line(&line)?;
    }
    w.finish()?;
    Ok((docs, dups, records.skipped()))
}

/// One line of a normalised corpus; field order is fixed by this struct, so the bytes
/// do not depend on serde_json's map features.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordLine {
    /// Document id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// The text (text corpora).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The conversation (chat corpora).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
}

/// A chat message, normalised to `role` and `content`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant` (ShareGPT `human`/`gpt` mapped).
    pub role: String,
    /// The text.
    pub content: String,
}

/// The messages of `field` (`[{role, content}]`, or ShareGPT `[{from, value}]`).
fn messages(rec: &Record, field: &str) -> Result<Vec<Message>> {
    let items = match rec.value.get(field) {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(rec.pos.error(format!(
                "field `{field}` is {}, expected an array of messages",
                kind_of(other)
            )));
        }
        None => return Err(rec.pos.error(format!("missing field `{field}`"))),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let get = |keys: &[&str]| keys.iter().find_map(|k| m.get(*k).and_then(Value::as_str));
            match (get(&["role", "from"]), get(&["content", "value"])) {
                (Some(role), Some(content)) => Ok(Message {
                    role: match role {
                        "human" => "user",
                        "gpt" => "assistant",
                        r => r,
                    }
                    .to_string(),
                    content: content.to_string(),
                }),
                _ => Err(rec.pos.error(format!(
                    "message {i} needs string fields `role` and `content`"
                ))),
            }
        })
        .collect()
}
