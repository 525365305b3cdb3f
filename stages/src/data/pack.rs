//! `pack`: tokenized documents -> fixed-length training sequences (`seq_len` tokens per
//! row, `input_ids` + `loss_mask`) for continued pre-training, mixing several sources.
//!
//! Each source (an item of the `shards` input) is read in a seeded order: its shard
//! files shuffled, then documents drawn at random from a buffer of `shuffle_buffer`
//! documents (memory stays bounded; the order is the same for the same seed). Sources
//! are interleaved by deficit: the next document comes from the source furthest below
//! its target share of tokens, so the realised mix is within one document of the ratio.
//!
//! The token stream (documents, EOS between them) is cut at the budget — `token_budget`,
//! or without one every token of every source (with `mix`: the largest budget no
//! source runs out under) — and chopped into rows; the last partial row is padded
//! (`loss_mask` false on padding) or dropped. Every token of the cut stream appears
//! exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::error::{DataError, Result};
use super::shard::{
    Compression, IdsReader, META_EOS, META_KIND, META_TOKENIZER, ShardOptions, ShardWriter,
    column_u32, file_metadata, ids_builder, list_u32, mask_builder, sequences_schema, shard_files,
};
use crate::rng::SplitMix64;

/// The `pack` stage kind.
pub struct Pack;

fn seq_len() -> usize {
    2048
}
fn shuffle_buffer() -> usize {
    8192
}
fn shard_rows() -> u64 {
    65_536
}

/// What to do with the last, partial sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Last {
    /// Pad it with `pad_id` (`loss_mask` false on the padding).
    #[default]
    Pad,
    /// Drop it.
    Drop,
}

/// What to do when a source runs out before the budget is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Exhausted {
    /// Stop packing (fewer tokens than the budget; metric `exhausted` = 1).
    #[default]
    Stop,
    /// Read the source again in a new seeded order (upsampling; metric `epochs_<name>`).
    Repeat,
}

/// Parameters of `pack`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackParams {
    /// Tokens per sequence (row).
    #[serde(default = "seq_len")]
    pub seq_len: usize,
    /// Mixing ratios by source name, e.g. `{math: 5, code: 2}` (token shares 5/7 and
    /// 2/7). A name matches a source's label, one of its grid values (`tok[src=math]`
    /// matches `math`) or its file/directory name. Empty: every source in proportion to
    /// its size.
    #[serde(default)]
    pub mix: BTreeMap<String, f64>,
    /// Total tokens to emit (padding excluded); none = everything (see `mix`).
    #[serde(default)]
    pub token_budget: Option<u64>,
    /// Seed of the document order.
    #[serde(default)]
    pub seed: u64,
    /// Insert EOS between documents unless a document already ends with it (as
    /// `tokenize` writes them by default).
    #[serde(default = "super::common::yes")]
    pub eos_between: bool,
    /// EOS id; default: the `slayer.eos_id` the shards record.
    #[serde(default)]
    pub eos_id: Option<u32>,
    /// Padding id for the last sequence; default: the EOS id (0 if none).
    #[serde(default)]
    pub pad_id: Option<u32>,
    /// The last, partial sequence: `pad` or `drop`.
    #[serde(default)]
    pub last: Last,
    /// A source that runs out before the budget: `stop` or `repeat` it.
    #[serde(default)]
    pub on_exhausted: Exhausted,
    /// Documents held per source for the random draw (more = better shuffle, more memory).
    #[serde(default = "shuffle_buffer")]
    pub shuffle_buffer: usize,
    /// Sequences per output shard.
    #[serde(default = "shard_rows")]
    pub shard_rows: u64,
    /// Parquet codec.
    #[serde(default)]
    pub compression: Compression,
}

impl TypedStage for Pack {
    type Params = PackParams;
    const KIND: &'static str = "pack";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Tokenized documents -> fixed-length sequences (input_ids, loss_mask), mixing sources by ratio under a token budget";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::required(
            "shards",
            "tokenized shards (`tokenize` outputs); several sources via a gathered input `tok[*].shards`",
        )])
    }

    fn outputs(_: &PackParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("sequences", "sequences")]
    }

    fn validate(p: &PackParams) -> Result<(), ParamError> {
        ParamError::at_least_one("seq_len", Some(p.seq_len))?;
        ParamError::at_least_one("shuffle_buffer", Some(p.shuffle_buffer))?;
        ParamError::at_least_one("shard_rows", Some(p.shard_rows))?;
        ParamError::at_least_one("token_budget", p.token_budget)?;
        for (k, v) in &p.mix {
            if !(v.is_finite() && *v > 0.0) {
                return Err(ParamError {
                    path: vec![
                        slayer_engine::yaml::PathSegment::Key("mix".into()),
                        slayer_engine::yaml::PathSegment::Key(k.clone()),
                    ],
                    message: format!("ratio must be a positive number, got {v}"),
                });
            }
        }
        Ok(())
    }

    fn run(&self, p: PackParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let input = ctx.input("shards")?;
        let sources: Vec<(String, PathBuf)> = input.items.clone();
        let report = pack(&p, &sources, &ctx.out("sequences"), &|n| {
            ctx.progress.inc(n)
        })?;
        ctx.log.line(format!("pack: {report:?}"));
        Ok(report.metrics())
    }
}

/// What `pack` did.
#[derive(Debug, Clone, Default)]
pub struct PackReport {
    /// Rows written.
    pub sequences: u64,
    /// Real tokens written (padding excluded).
    pub tokens: u64,
    /// Padding tokens.
    pub padding: u64,
    /// Tokens of the last document cut off at the budget, plus a dropped last row.
    pub cut: u64,
    /// Per source: (name, documents used, tokens emitted, epochs started).
    pub sources: Vec<(String, u64, u64, u64)>,
    /// Whether a source ran out and packing stopped early.
    pub exhausted: bool,
}

impl PackReport {
    fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.insert("sequences".into(), self.sequences.into());
        m.insert("tokens".into(), self.tokens.into());
        m.insert("padding".into(), self.padding.into());
        m.insert("cut".into(), self.cut.into());
        m.insert("exhausted".into(), u64::from(self.exhausted).into());
        let docs: u64 = self.sources.iter().map(|s| s.1).sum();
        m.insert("documents".into(), docs.into());
        for (name, d, t, e) in &self.sources {
            m.insert(format!("documents.{name}"), (*d).into());
            m.insert(format!("tokens.{name}"), (*t).into());
            m.insert(format!("epochs.{name}"), (*e).into());
            if self.tokens > 0 {
                m.insert(
                    format!("share.{name}"),
                    (*t as f64 / self.tokens as f64).into(),
                );
            }
        }
        m
    }
}

/// Names a source answers to in `mix`.
fn source_names(label: &str, path: &Path) -> Vec<String> {
    let mut names = vec![label.to_string()];
    if let Some((stage, rest)) = label.split_once('[') {
        names.push(stage.to_string());
        for kv in rest.trim_end_matches(']').split(',') {
            if let Some((_, v)) = kv.split_once('=') {
                names.push(v.to_string());
            }
        }
    }
    for p in [Some(path), path.parent()].into_iter().flatten() {
        if let Some(n) = p.file_name() {
            let n = n.to_string_lossy();
            names.push(n.trim_end_matches(".parquet").to_string());
        }
    }
    names
}

/// One source read in seeded order.
struct Source {
    name: String,
    files: Vec<PathBuf>,
    share: f64,
    total: u64,
    rng: SplitMix64,
    seed: u64,
    index: u64,
    queue: Vec<PathBuf>,
    reader: Option<IdsReader>,
    batch: Option<(RecordBatch, usize)>,
    buffer: Vec<Vec<u32>>,
    cap: usize,
    documents: u64,
    emitted: u64,
    epochs: u64,
}

impl Source {
    fn start_epoch(&mut self) {
        let mut order = self.files.clone();
        let mut rng = SplitMix64::with_stream(self.seed, (self.index << 32) ^ self.epochs);
        rng.shuffle(&mut order);
        order.reverse(); // popped from the back
        self.queue = order;
        self.epochs += 1;
    }

    /// Next raw document from the files, in file order (None when all are read).
    fn read_one(&mut self) -> Result<Option<Vec<u32>>> {
        loop {
            if let Some((b, i)) = &mut self.batch
                && *i < b.num_rows()
            {
                let path = self.files.first().cloned().unwrap_or_default();
                let ids = list_u32(b.column(0), *i, &path)?;
                *i += 1;
                return Ok(Some(ids));
            }
            self.batch = None;
            if let Some(r) = &mut self.reader {
                if let Some(b) = r.next_batch()? {
                    self.batch = Some((b, 0));
                    continue;
                }
                self.reader = None;
            }
            match self.queue.pop() {
                Some(f) => self.reader = Some(IdsReader::open(&f, &["input_ids"], 1024)?),
                None => return Ok(None),
            }
        }
    }

    /// Next document in shuffled order; with `repeat`, a new epoch when exhausted.
    fn next_doc(&mut self, repeat: bool) -> Result<Option<Vec<u32>>> {
        while self.buffer.len() < self.cap {
            match self.read_one()? {
                Some(d) => self.buffer.push(d),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            if !repeat || self.total == 0 {
                return Ok(None);
            }
            self.start_epoch();
            return self.next_doc(false);
        }
        let i = self.rng.below(self.buffer.len());
        Ok(Some(self.buffer.swap_remove(i)))
    }
}

/// Packs `sources` (label, shards path) into sequence shards under `dir`.
pub fn pack(
    p: &PackParams,
    sources: &[(String, PathBuf)],
    dir: &Path,
    progress: &dyn Fn(u64),
) -> Result<PackReport> {
    if sources.is_empty() {
        return Err(DataError::Invalid("input `shards`: no sources".into()));
    }
    // Files, totals and metadata of every source.
    let mut shared = SharedMeta::default();
    let mut srcs = sources
        .iter()
        .enumerate()
        .map(|(index, (label, path))| open_source(p, index, label, path, &mut shared))
        .collect::<Result<Vec<_>>>()?;
    assign_shares(p, sources, &mut srcs)?;
    let budget = token_budget(p, &srcs);
    let eos = p.eos_id.or(shared.eos);
    let pad = p.pad_id.or(eos).unwrap_or(0);
    let separator = if p.eos_between { eos } else { None };
    let mut out = sequence_sink(p, dir, shared.tokenizer.map(|(h, _)| h), eos)?;

    let repeat = p.on_exhausted == Exhausted::Repeat;
    for s in &mut srcs {
        s.start_epoch();
    }
    let mut report = PackReport::default();
    let mut emitted = 0u64;
    let mut active: Vec<bool> = srcs.iter().map(|s| s.share > 0.0).collect();
    while emitted < budget {
        // The active source furthest below its share.
        let pick = (0..srcs.len()).filter(|&i| active[i]).min_by(|&a, &b| {
            let da = srcs[a].emitted as f64 / srcs[a].share;
            let db = srcs[b].emitted as f64 / srcs[b].share;
            da.total_cmp(&db).then(a.cmp(&b))
        });
        let Some(i) = pick else { break };
        let Some(mut doc) = srcs[i].next_doc(repeat)? else {
            active[i] = false;
            if !p.mix.is_empty() {
                // A mixed source ran dry: continuing would skew the ratio.
                report.exhausted = true;
                break;
            }
            continue;
        };
        if let Some(e) = separator
            && doc.last() != Some(&e)
        {
            doc.push(e);
        }
        let room = budget - emitted;
        if doc.len() as u64 > room {
            report.cut += doc.len() as u64 - room;
            doc.truncate(room as usize);
        }
        let s = &mut srcs[i];
        s.documents += 1;
        s.emitted += doc.len() as u64;
        emitted += doc.len() as u64;
        progress(doc.len() as u64);
        out.push(&doc)?;
    }
    if emitted < budget && p.token_budget.is_some() {
        report.exhausted = true;
    }
    let (sequences, tokens, padding, dropped) = out.finish(p.last, pad)?;
    report.sequences = sequences;
    report.tokens = tokens;
    report.padding = padding;
    report.cut += dropped;
    report.sources = srcs
        .iter()
        .map(|s| (s.name.clone(), s.documents, s.emitted, s.epochs))
        .collect();
    if sequences == 0 {
        return Err(DataError::Invalid(format!(
            "pack: no sequence written ({emitted} tokens available, seq_len {}, last: {:?})",
            p.seq_len, p.last
        )));
    }
    Ok(report)
}

/// What every source's files must agree on (the tokenizer) or may say (the EOS id).
#[derive(Default)]
struct SharedMeta {
    /// The tokenizer hash and the first file that named it.
    tokenizer: Option<(String, PathBuf)>,
    /// The first EOS id a file names.
    eos: Option<u32>,
}

/// Source `index` (`label`, files at `path`): its files, its token total (summed from
/// the `n_tokens` column), its seeded order; its files' metadata checked against and
/// added to `shared`.
fn open_source(
    p: &PackParams,
    index: usize,
    label: &str,
    path: &Path,
    shared: &mut SharedMeta,
) -> Result<Source> {
    let files = shard_files(path)?;
    let mut total = 0u64;
    for f in &files {
        let meta = file_metadata(f)?;
        if let Some(h) = meta.get(META_TOKENIZER) {
            match &shared.tokenizer {
                Some((h0, f0)) if h0 != h => {
                    return Err(DataError::file(
                        f,
                        format!(
                            "tokenized with a different tokenizer ({h}) than {} ({h0}); every source must share one",
                            f0.display()
                        ),
                    ));
                }
                None => shared.tokenizer = Some((h.clone(), f.clone())),
                _ => {}
            }
        }
        if let Some(e) = meta.get(META_EOS).and_then(|e| e.parse::<u32>().ok()) {
            shared.eos.get_or_insert(e);
        }
        let mut r = IdsReader::open(f, &["n_tokens"], 65_536)?;
        while let Some(b) = r.next_batch()? {
            total += column_u32(b.column(0), f)?
                .iter()
                .map(|&n| u64::from(n))
                .sum::<u64>();
        }
    }
    Ok(Source {
        name: label.to_string(),
        files,
        share: 0.0,
        total,
        rng: SplitMix64::with_stream(p.seed, 0x9ac4 ^ index as u64),
        seed: p.seed,
        index: index as u64,
        queue: Vec::new(),
        reader: None,
        batch: None,
        buffer: Vec::new(),
        cap: p.shuffle_buffer,
        documents: 0,
        emitted: 0,
        epochs: 0,
    })
}

/// Tokens to emit: `token_budget`, else everything (no mix), else as much as keeps every
/// mixed source at its share until the first runs dry.
fn token_budget(p: &PackParams, srcs: &[Source]) -> u64 {
    match p.token_budget {
        Some(b) => b,
        None if p.mix.is_empty() => srcs.iter().map(|s| s.total).sum(),
        None => srcs
            .iter()
            .filter(|s| s.share > 0.0)
            .map(|s| (s.total as f64 / s.share).floor() as u64)
            .min()
            .unwrap_or(0),
    }
}

/// The sequences' shard writer in `dir`, its files carrying the tokenizer hash, the EOS
/// id, the kind and the sequence length.
fn sequence_sink(
    p: &PackParams,
    dir: &Path,
    tokenizer: Option<String>,
    eos: Option<u32>,
) -> Result<SequenceSink> {
    let mut meta = BTreeMap::new();
    if let Some(h) = tokenizer {
        meta.insert(META_TOKENIZER.to_string(), h);
    }
    if let Some(e) = eos {
        meta.insert(META_EOS.to_string(), e.to_string());
    }
    meta.insert(META_KIND.to_string(), "pack".to_string());
    meta.insert("slayer.seq_len".to_string(), p.seq_len.to_string());
    let writer = ShardWriter::new(
        ShardOptions {
            dir: dir.to_path_buf(),
            max_rows: Some(p.shard_rows),
            max_tokens: None,
            compression: p.compression,
            metadata: meta,
        },
        sequences_schema(),
    )?;
    Ok(SequenceSink::new(writer, p.seq_len))
}

/// Sets each source's share from `mix` (or from the sizes).
fn assign_shares(p: &PackParams, labels: &[(String, PathBuf)], srcs: &mut [Source]) -> Result<()> {
    if p.mix.is_empty() {
        let sum: u64 = srcs.iter().map(|s| s.total).sum();
        for s in srcs.iter_mut() {
            s.share = if sum == 0 {
                0.0
            } else {
                s.total as f64 / sum as f64
            };
        }
        return Ok(());
    }
    let sum: f64 = p.mix.values().sum();
    let names: Vec<Vec<String>> = labels
        .iter()
        .map(|(l, path)| source_names(l, path))
        .collect();
    for (key, ratio) in &p.mix {
        let hits: Vec<usize> = (0..srcs.len())
            .filter(|&i| names[i].iter().any(|n| n == key))
            .collect();
        match hits.as_slice() {
            [i] => {
                srcs[*i].name = key.clone();
                srcs[*i].share = ratio / sum;
            }
            [] => {
                return Err(DataError::Invalid(format!(
                    "mix: no source named `{key}` (sources: {})",
                    labels
                        .iter()
                        .map(|(l, _)| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            _ => {
                return Err(DataError::Invalid(format!(
                    "mix: `{key}` matches {} sources; use their full labels",
                    hits.len()
                )));
            }
        }
    }
    if let Some((i, _)) = srcs.iter().enumerate().find(|(_, s)| s.share == 0.0) {
        return Err(DataError::Invalid(format!(
            "mix: source `{}` has no ratio (give every source one, e.g. {}: 1)",
            labels[i].0,
            names[i].last().cloned().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Accumulates the token stream into `seq_len` rows and writes them in batches.
struct SequenceSink {
    writer: ShardWriter,
    seq_len: usize,
    current: Vec<u32>,
    rows: Vec<Vec<u32>>,
    masks: Vec<usize>,
    sequences: u64,
    tokens: u64,
}

impl SequenceSink {
    fn new(writer: ShardWriter, seq_len: usize) -> SequenceSink {
        SequenceSink {
            writer,
            seq_len,
            current: Vec::with_capacity(seq_len),
            rows: Vec::new(),
            masks: Vec::new(),
            sequences: 0,
            tokens: 0,
        }
    }

    fn push(&mut self, mut ids: &[u32]) -> Result<()> {
        while !ids.is_empty() {
            let take = (self.seq_len - self.current.len()).min(ids.len());
            self.current.extend_from_slice(&ids[..take]);
            ids = &ids[take..];
            if self.current.len() == self.seq_len {
                let row = std::mem::replace(&mut self.current, Vec::with_capacity(self.seq_len));
                self.emit(row, self.seq_len)?;
            }
        }
        Ok(())
    }

    /// A row whose first `real` tokens count (the rest is padding).
    fn emit(&mut self, row: Vec<u32>, real: usize) -> Result<()> {
        self.tokens += real as u64;
        self.sequences += 1;
        self.rows.push(row);
        self.masks.push(real);
        if self.rows.len() >= 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.rows.len();
        let mut ids = ids_builder(n, n * self.seq_len);
        let mut mask = mask_builder(n, n * self.seq_len);
        for (row, &real) in self.rows.iter().zip(&self.masks) {
            ids.values().append_slice(row);
            ids.append(true);
            for j in 0..row.len() {
                mask.values().append_value(j < real);
            }
            mask.append(true);
        }
        let columns: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(mask.finish())];
        let batch = RecordBatch::try_new(sequences_schema(), columns)
            .map_err(|e| DataError::Invalid(format!("building a sequences batch: {e}")))?;
        let lens: Vec<u32> = self.masks.iter().map(|&r| r as u32).collect();
        self.writer.write(&batch, &lens)?;
        self.rows.clear();
        self.masks.clear();
        Ok(())
    }

    /// Handles the partial row; returns (sequences, real tokens, padding, dropped tokens).
    fn finish(mut self, last: Last, pad: u32) -> Result<(u64, u64, u64, u64)> {
        let mut padding = 0;
        let mut dropped = 0;
        if !self.current.is_empty() {
            let real = self.current.len();
            match last {
                Last::Pad => {
                    let mut row = std::mem::take(&mut self.current);
                    padding = (self.seq_len - real) as u64;
                    row.resize(self.seq_len, pad);
                    self.emit(row, real)?;
                }
                Last::Drop => dropped = real as u64,
            }
        }
        self.flush()?;
        let (_, _, _) = self.writer.finish()?;
        Ok((self.sequences, self.tokens, padding, dropped))
    }
}
