//! Helpers shared by the data stages: the `on_error` policy, walking input paths,
//! locating a `tokenizer.json`, atomic file writes and metric maps.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use slayer_engine::{Metrics, StageInput};

use super::error::{DataError, Result};

/// What to do with a bad record (malformed line, invalid UTF-8, missing field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop with an error naming the file and line (default).
    #[default]
    Fail,
    /// Skip the record and count it in the `skipped` metric.
    Skip,
}

/// One input file with its label (what `source` columns and errors call it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Label: the input's label, plus the path below it when the input is a directory.
    pub label: String,
    /// Path relative to the input root (a file input: its file name).
    pub relative: String,
    /// Absolute path.
    pub path: PathBuf,
}

/// Every file of `input`: files as given, directories walked recursively in sorted
/// order (hidden entries, names starting with `.`, are skipped).
pub fn input_files(input: &StageInput) -> Result<Vec<InputFile>> {
    let mut out = Vec::new();
    for (label, path) in &input.items {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            for f in found {
                let rel = f
                    .strip_prefix(path)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(InputFile {
                    label: format!("{}/{rel}", label.trim_end_matches('/')),
                    relative: rel,
                    path: f,
                });
            }
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(InputFile {
                label: label.clone(),
                relative: name,
                path: path.clone(),
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The `tokenizer.json` an input points at: the file itself, or `dir/tokenizer.json`.
pub fn tokenizer_file(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let f = path.join("tokenizer.json");
        if f.is_file() {
            Ok(f)
        } else {
            Err(DataError::file(
                path,
                "directory has no tokenizer.json (expected a tokenizer.json file or a directory holding one)",
            ))
        }
    } else {
        Ok(path.to_path_buf())
    }
}

/// A loaded `tokenizer.json` with the blake3 of its bytes.
pub struct LoadedTokenizer {
    /// The tokenizer.
    pub inner: tokenizers::Tokenizer,
    /// Hex blake3 of the file's bytes (recorded in shard metadata).
    pub hash: String,
    /// The file.
    pub path: PathBuf,
    /// Whether long texts may be encoded in chunks with identical ids
    /// ([`super::chunk::splits_safely`]).
    pub chunkable: bool,
}

/// Load the tokenizer an input points at (see [`tokenizer_file`]).
pub fn load_tokenizer(path: &Path) -> Result<LoadedTokenizer> {
    let file = tokenizer_file(path)?;
    let bytes = std::fs::read(&file).map_err(|e| DataError::io(&file, e))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| DataError::file(&file, format!("not UTF-8 ({e})")))?;
    let inner = crate::model::tokenizer::parse_tokenizer_json(text)
        .map_err(|e| DataError::file(&file, format!("not a valid tokenizer.json: {e}")))?;
    let chunkable = serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| super::chunk::splits_safely(&v));
    Ok(LoadedTokenizer {
        inner,
        hash: blake3::hash(&bytes).to_hex().to_string(),
        path: file,
        chunkable,
    })
}

/// The id of the first of `candidates` present in the vocabulary.
pub fn find_token(tok: &tokenizers::Tokenizer, candidates: &[&str]) -> Option<(String, u32)> {
    candidates
        .iter()
        .find_map(|c| tok.token_to_id(c).map(|id| (c.to_string(), id)))
}

/// End-of-text token texts tried, in order, when a stage needs one and is not told.
pub const EOS_CANDIDATES: &[&str] = &[
    "<|endoftext|>",
    "</s>",
    "<|end_of_text|>",
    "<eos>",
    "<|im_end|>",
];

/// Beginning-of-text token texts tried, in order.
pub const BOS_CANDIDATES: &[&str] = &["<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>"];

/// Resolve a special token: the named one (must exist) or the first candidate found.
pub fn special_id(
    tok: &LoadedTokenizer,
    named: Option<&str>,
    candidates: &[&str],
    what: &str,
) -> Result<(String, u32)> {
    match named {
        Some(t) => tok
            .inner
            .token_to_id(t)
            .map(|id| (t.to_string(), id))
            .ok_or_else(|| {
                DataError::file(
                    &tok.path,
                    format!("{what} token `{t}` is not in the vocabulary"),
                )
            }),
        None => find_token(&tok.inner, candidates).ok_or_else(|| {
            DataError::file(
                &tok.path,
                format!(
                    "no {what} token found (tried {}); name one with the `{what}_token` parameter",
                    candidates.join(", ")
                ),
            )
        }),
    }
}

/// A file written under a temporary name and renamed into place by [`AtomicFile::finish`],
/// so an interrupted write never leaves a complete-looking file.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    writer: BufWriter<std::fs::File>,
}

impl AtomicFile {
    /// Start writing `dest` (parent directories are created).
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let tmp = tmp_path(dest);
        let file = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Append bytes.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer
            .write_all(bytes)
            .map_err(|e| DataError::io(&self.tmp, e))
    }

    /// Append one JSON value and a newline.
    pub fn write_json_line<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.writer, value)
            .map_err(|e| DataError::io(&self.tmp, std::io::Error::other(e)))?;
        self.write_all(b"\n")
    }

    /// Flush and rename into place.
    pub fn finish(self) -> Result<()> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| DataError::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| DataError::io(&self.dest, e))
    }
}

/// `dir/name` -> `dir/.name.tmp`.
pub fn tmp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp"))
}

/// Builds a [`Metrics`] map from `(name, count)` pairs.
pub fn metrics<const N: usize>(pairs: [(&str, u64); N]) -> Metrics {
    let mut m = Metrics::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.into());
    }
    m
}

/// Serde defaults shared by the data kinds' parameter structs.
pub fn yes() -> bool {
    true
}
/// Default name of the text field/column.
pub fn text_field() -> String {
    "text".into()
}
/// Default name of the document id field.
pub fn id_field() -> String {
    "id".into()
}
/// Default name of the source field.
pub fn source_field() -> String {
    "source".into()
}
