//! `tokenize`: documents -> Parquet shards of token ids, one row per document
//! (see [`super::shard::documents_schema`]).
//!
//! Three stages overlap: a reader thread streams documents in batches of about
//! [`BATCH_BYTES`] of text, a rayon pool of the stage's threads encodes each batch, and a
//! writer thread appends it to the current shard. Channels between them hold at most two
//! batches, so memory stays bounded whatever the corpus size, and batches keep their
//! order, so the shards are the same bytes for any thread count.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::chunk::{CHUNK_BYTES, chunk_ranges};
use super::common::{
    BOS_CANDIDATES, EOS_CANDIDATES, LoadedTokenizer, OnError, input_files, load_tokenizer, metrics,
    special_id,
};
use super::error::{DataError, Result};
use super::shard::{
    Compression, META_BOS, META_EOS, META_KIND, META_TOKENIZER, ShardOptions, ShardWriter,
    documents_schema, ids_builder, string_builder,
};
use super::source::{Document, Fields, Format, Records, extract_document};

/// Text per encoding batch: large enough to keep every thread busy, small enough that
/// a handful of batches in flight cost little memory.
pub const BATCH_BYTES: usize = 4 << 20;

/// The `tokenize` stage kind.
pub struct Tokenize;

fn shard_tokens() -> Option<u64> {
    Some(50_000_000)
}

fn max_document_bytes() -> u64 {
    64 << 20
}

/// Parameters of `tokenize`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeParams {
    /// How to read the corpus files: `auto` (by extension: `.jsonl`/`.json` JSON lines,
    /// `.parquet` Parquet, anything else one text document per file), `jsonl`,
    /// `parquet` or `text`.
    #[serde(default)]
    pub format: Format,
    /// Field (JSONL) or column (Parquet) holding the text.
    #[serde(default = "super::common::text_field")]
    pub text_field: String,
    /// Field holding the document id; absent -> `file:line` (or the file's label).
    #[serde(default = "super::common::id_field")]
    pub id_field: String,
    /// Field holding the source name; absent -> the file's label.
    #[serde(default = "super::common::source_field")]
    pub source_field: String,
    /// Prepend the BOS token to every document.
    #[serde(default)]
    pub add_bos: bool,
    /// Append the EOS token to every document (the separator `pack` relies on).
    #[serde(default = "super::common::yes")]
    pub add_eos: bool,
    /// BOS token text; default: the first of `<s>`, `<|begin_of_text|>`, `<bos>`,
    /// `<|endoftext|>` in the vocabulary.
    #[serde(default)]
    pub bos_token: Option<String>,
    /// EOS token text; default: the first of `<|endoftext|>`, `</s>`, `<|end_of_text|>`,
    /// `<eos>`, `<|im_end|>` in the vocabulary.
    #[serde(default)]
    pub eos_token: Option<String>,
    /// Let the tokenizer's post-processor add its own special tokens (as HF
    /// `tokenizer(text)` does); off by default, BOS/EOS come from `add_bos`/`add_eos`.
    #[serde(default)]
    pub add_special_tokens: bool,
    /// Most rows (documents) per shard; none = no row limit.
    #[serde(default)]
    pub shard_rows: Option<u64>,
    /// A shard is closed once it holds this many tokens; none = no token limit.
    #[serde(default = "shard_tokens")]
    pub shard_tokens: Option<u64>,
    /// Parquet codec: `zstd` (level 1), `snappy` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Drop documents whose text encodes to no token (counted as `dropped`).
    #[serde(default = "super::common::yes")]
    pub drop_empty: bool,
    /// Bad records (malformed JSON line, invalid UTF-8, missing field, a document over
    /// `max_document_bytes`): `fail` with the file and line, or `skip` and count them in
    /// `skipped`.
    #[serde(default)]
    pub on_error: OnError,
    /// Largest document, in bytes (default 64 MiB): its text, and also the record it
    /// comes in (a text file's size, a JSON line's length), which is refused before it is
    /// read. Long documents are encoded in exact chunks when the tokenizer allows it
    /// (byte-level BPE), in a few hundred MB whatever their size; other tokenizers need
    /// ~100 bytes of memory per byte of a document, which this bounds.
    #[serde(default = "max_document_bytes")]
    pub max_document_bytes: u64,
}

impl TypedStage for Tokenize {
    type Params = TokenizeParams;
    const KIND: &'static str = "tokenize";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Documents (JSONL, Parquet or text files) -> Parquet shards of token ids, one row per document";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![
            InputSpec::required(
                "corpus",
                "documents: JSONL, Parquet or text files, or directories of them",
            ),
            InputSpec::required(
                "tokenizer",
                "a tokenizer.json file, or a directory holding one",
            ),
        ])
    }

    fn outputs(_: &TokenizeParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("shards", "shards")]
    }

    fn validate(p: &TokenizeParams) -> Result<(), ParamError> {
        ParamError::at_least_one("shard_rows", p.shard_rows)?;
        ParamError::at_least_one("shard_tokens", p.shard_tokens)?;
        ParamError::at_least_one("max_document_bytes", Some(p.max_document_bytes))?;
        Ok(())
    }

    fn default_threads() -> usize {
        0
    }

    fn run(&self, p: TokenizeParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let corpus = ctx.input("corpus")?;
        let tok_path = ctx.input("tokenizer")?.single("tokenizer")?;
        let tok = load_tokenizer(tok_path)?;
        let files = input_files(corpus)?;
        let total_bytes: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(&f.path).ok())
            .map(|m| m.len())
            .sum();
        ctx.progress.set_total(total_bytes);
        let out = tokenize_files(&p, &tok, files, &ctx.out("shards"), ctx.threads, &|n| {
            ctx.progress.inc(n)
        })?;
        ctx.log.line(format!(
            "tokenize: {} documents, {} tokens, {} shards (tokenizer {})",
            out.documents, out.tokens, out.shards, tok.hash
        ));
        Ok(metrics([
            ("documents", out.documents),
            ("tokens", out.tokens),
            ("shards", out.shards),
            ("dropped", out.dropped),
            ("skipped", out.skipped),
            ("bytes", out.bytes),
        ]))
    }
}

/// Counts from one `tokenize` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizeCounts {
    /// Documents written.
    pub documents: u64,
    /// Tokens written (BOS/EOS included).
    pub tokens: u64,
    /// Shards written.
    pub shards: u64,
    /// Empty documents dropped.
    pub dropped: u64,
    /// Bad records skipped (`on_error: skip`).
    pub skipped: u64,
    /// Bytes of text read.
    pub bytes: u64,
}

/// One encoded batch, in input order.
struct Encoded {
    docs: Vec<Document>,
    ids: Vec<Vec<u32>>,
}

/// Tokenizes `files` into shards under `dir` with `threads` encoding threads.
pub fn tokenize_files(
    p: &TokenizeParams,
    tok: &LoadedTokenizer,
    files: Vec<super::common::InputFile>,
    dir: &std::path::Path,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<TokenizeCounts> {
    let bos = if p.add_bos {
        Some(special_id(tok, p.bos_token.as_deref(), BOS_CANDIDATES, "bos")?.1)
    } else {
        None
    };
    let eos = if p.add_eos {
        Some(special_id(tok, p.eos_token.as_deref(), EOS_CANDIDATES, "eos")?.1)
    } else {
        None
    };
    let mut meta = BTreeMap::new();
    meta.insert(META_TOKENIZER.to_string(), tok.hash.clone());
    meta.insert(META_KIND.to_string(), "tokenize".to_string());
    if let Some(id) = bos {
        meta.insert(META_BOS.to_string(), id.to_string());
    }
    let known_eos = eos.or_else(|| {
        special_id(tok, p.eos_token.as_deref(), EOS_CANDIDATES, "eos")
            .ok()
            .map(|t| t.1)
    });
    if let Some(id) = known_eos {
        meta.insert(META_EOS.to_string(), id.to_string());
    }
    let writer = ShardWriter::new(
        ShardOptions {
            dir: dir.to_path_buf(),
            max_rows: p.shard_rows,
            max_tokens: p.shard_tokens,
            compression: p.compression,
            metadata: meta,
        },
        documents_schema(),
    )?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("tokenize-{i}"))
        .build()
        .map_err(|e| DataError::Invalid(format!("cannot start encoding threads: {e}")))?;
    let fields = Fields {
        text: p.text_field.clone(),
        id: p.id_field.clone(),
        source: p.source_field.clone(),
    };
    let columns = vec![
        p.text_field.clone(),
        p.id_field.clone(),
        p.source_field.clone(),
    ];
    let records = Records::new(files, p.format, Some(columns), p.on_error)
        .with_max_record_bytes(p.max_document_bytes, "max_document_bytes");

    let (doc_tx, doc_rx) = sync_channel::<Result<Vec<Document>>>(2);
    let (enc_tx, enc_rx) = sync_channel::<Encoded>(2);
    let inner = &tok.inner;
    std::thread::scope(|s| -> Result<TokenizeCounts> {
        let limit = p.max_document_bytes;
        let reader = s.spawn(move || read_batches(records, &fields, limit, doc_tx));
        let writer_thread = s.spawn(move || write_batches(writer, enc_rx));
        let mut counts = TokenizeCounts::default();
        let mut failure: Option<DataError> = None;
        for batch in doc_rx.iter() {
            let docs = match batch {
                Ok(d) => d,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let bytes: u64 = docs.iter().map(|d| d.text.len() as u64).sum();
            let split = tok.chunkable && !p.add_special_tokens;
            let encoded =
                pool.install(|| encode_docs(inner, &docs, p.add_special_tokens, bos, eos, split));
            let ids = match encoded {
                Ok(ids) => ids,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            counts.bytes += bytes;
            progress(bytes);
            let (docs, ids): (Vec<Document>, Vec<Vec<u32>>) = docs
                .into_iter()
                .zip(ids)
                .filter(|(_, ids)| {
                    let empty =
                        ids.len() == usize::from(bos.is_some()) + usize::from(eos.is_some());
                    if empty && p.drop_empty {
                        counts.dropped += 1;
                        false
                    } else {
                        true
                    }
                })
                .unzip();
            if enc_tx.send(Encoded { docs, ids }).is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        drop(enc_tx);
        drop(doc_rx);
        let skipped = reader
            .join()
            .map_err(|_| DataError::Invalid("document reader thread panicked".into()))?;
        let written = writer_thread
            .join()
            .map_err(|_| DataError::Invalid("shard writer thread panicked".into()))?;
        if let Some(e) = failure {
            // The shards closed so far are whole files but not the whole corpus: remove
            // them so that nothing looks like a complete output.
            if let Ok((shards, _, _)) = &written {
                for f in shards {
                    let _ = std::fs::remove_file(f);
                }
            }
            return Err(e);
        }
        let (shards, rows, tokens) = written?;
        counts.skipped = skipped;
        counts.documents = rows;
        counts.tokens = tokens;
        counts.shards = shards.len() as u64;
        if rows == 0 {
            return Err(DataError::Invalid(
                "input `corpus`: no documents (every file was empty, dropped or skipped)".into(),
            ));
        }
        Ok(counts)
    })
}

/// Token ids of `docs` with the BOS/EOS policy applied, encoded in parallel on the
/// current rayon pool. With `split`, long documents are encoded in exact chunks
/// ([`super::chunk`]): less memory, and one long file no longer holds up a batch.
pub fn encode_docs(
    tok: &tokenizers::Tokenizer,
    docs: &[Document],
    add_special_tokens: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    split: bool,
) -> Result<Vec<Vec<u32>>> {
    let tasks: Vec<(usize, Range<usize>)> = docs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            let ranges = if split && d.text.len() > CHUNK_BYTES {
                chunk_ranges(&d.text, CHUNK_BYTES)
            } else {
                std::iter::once(0..d.text.len()).collect()
            };
            ranges.into_iter().map(move |r| (i, r))
        })
        .collect();
    let pieces: Vec<Vec<u32>> = tasks
        .par_iter()
        .map(|(i, r)| {
            let doc = &docs[*i];
            tok.encode_fast(&doc.text[r.clone()], add_special_tokens)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| {
                    DataError::Invalid(format!("document `{}`: tokenizer failed: {e}", doc.id))
                })
        })
        .collect::<Result<_>>()?;
    let mut out: Vec<Vec<u32>> = docs.iter().map(|_| bos.into_iter().collect()).collect();
    for ((i, _), piece) in tasks.iter().zip(pieces) {
        out[*i].extend_from_slice(&piece);
    }
    for ids in &mut out {
        ids.extend(eos);
    }
    Ok(out)
}

/// Reader thread: documents in batches of about [`BATCH_BYTES`]; returns the skip count.
/// A document over `max_bytes` is a bad record (file, line and id in the error).
fn read_batches(
    mut records: Records,
    fields: &Fields,
    max_bytes: u64,
    tx: SyncSender<Result<Vec<Document>>>,
) -> u64 {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(rec) = records.next() {
        let doc = match rec.and_then(|r| {
            let pos = r.pos.clone();
            let doc = extract_document(r, fields)?;
            let len = doc.text.len() as u64;
            if len > max_bytes {
                return Err(pos.error(format!(
                    "document `{}` has {len} bytes of text, more than max_document_bytes \
                     ({max_bytes}); split it or raise max_document_bytes",
                    doc.id
                )));
            }
            Ok(doc)
        }) {
            Ok(d) => Some(d),
            Err(e) => match records.policy::<Document>(Err(e)) {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return records.skipped();
                }
            },
        };
        if let Some(doc) = doc {
            bytes += doc.text.len();
            batch.push(doc);
            if bytes >= BATCH_BYTES || batch.len() >= 65_536 {
                if tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                    return records.skipped();
                }
                bytes = 0;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch));
    }
    records.skipped()
}

/// Writer thread: Arrow batches into rolling shards.
fn write_batches(
    mut writer: ShardWriter,
    rx: Receiver<Encoded>,
) -> Result<(Vec<std::path::PathBuf>, u64, u64)> {
    for enc in rx.iter() {
        let (batch, lens) = documents_batch(&enc.docs, &enc.ids)?;
        writer.write(&batch, &lens)?;
    }
    writer.finish()
}

/// An Arrow batch of the documents schema.
pub fn documents_batch(docs: &[Document], ids: &[Vec<u32>]) -> Result<(RecordBatch, Vec<u32>)> {
    let n = docs.len();
    let total: usize = ids.iter().map(Vec::len).sum();
    let mut doc_id = string_builder(n, docs.iter().map(|d| d.id.len()).sum());
    let mut source = string_builder(n, docs.iter().map(|d| d.source.len()).sum());
    let mut list = ids_builder(n, total);
    let mut lens = Vec::with_capacity(n);
    for (d, ids) in docs.iter().zip(ids) {
        doc_id.append_value(&d.id);
        source.append_value(&d.source);
        list.values().append_slice(ids);
        list.append(true);
        lens.push(u32::try_from(ids.len()).map_err(|_| {
            DataError::Invalid(format!("document `{}` has more than 2^32 tokens", d.id))
        })?);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(doc_id.finish()),
        Arc::new(source.finish()),
        Arc::new(list.finish()),
        Arc::new(UInt32Array::from(lens.clone())),
    ];
    let batch = RecordBatch::try_new(documents_schema(), columns)
        .map_err(|e| DataError::Invalid(format!("building a documents batch: {e}")))?;
    Ok((batch, lens))
}
