//! Perplexity tasks, scored as lm-evaluation-harness's `loglikelihood_rolling`: every
//! token of a document is predicted, in windows of at most the model's length.
//!
//! The first window is the prefix token followed by the document's first `max_len - 1`
//! tokens and predicts its first `max_len` tokens; each later window predicts the next
//! `max_len` tokens (fewer at the end) and is filled up to `max_len` inputs with the
//! tokens before them (lm-eval's `get_rolling_token_windows` with `context_len = 1`
//! followed by `make_disjoint_window`). A document's log-likelihood is the sum over its
//! windows; metrics are corpus totals: `word_perplexity = exp(-Σ ll / Σ words)`,
//! `byte_perplexity = exp(-Σ ll / Σ bytes)`, `bits_per_byte = -Σ ll / Σ bytes / ln 2`
//! (lm-eval's `weighted_perplexity` and `bits_per_byte`) and
//! `token_perplexity = exp(-Σ ll / Σ tokens)`.
//!
//! Windows are batched longest first and right-padded: under causal attention a padding
//! token comes after every real one, so no mask is needed; the output projection runs
//! only on the scored positions, a bounded number of rows at a time.

use std::path::Path;
use std::sync::Mutex;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rayon::prelude::*;

use super::error::{EvalError, Result};
use super::lm::to_vec_f32;
use super::metrics::{Aggregate, MetricSet};
use crate::data::shard::{IdsReader, list_u32, shard_files};
use crate::model::{AttentionMask, Llama, Tokenizer};

/// Scored positions per output-projection call (bounds the `[rows, vocab]` logits).
const HEAD_ROWS: usize = 1024;
/// Most input tokens in one batch of windows (a longer window runs alone).
const BATCH_TOKENS: usize = 8192;

/// One forward pass's worth of a document: `tokens` go in (all but the last as inputs)
/// and the last `predict` of them are scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The tokens: inputs followed by the last predicted token.
    pub tokens: Vec<u32>,
    /// How many tokens at the end are predicted (the rest is context).
    pub predict: usize,
}

/// lm-eval's disjoint rolling windows of `tokens` for a model of `max_len` positions,
/// with `prefix` as the context of the first token. Empty documents have none.
pub fn rolling_windows(tokens: &[u32], prefix: u32, max_len: usize) -> Vec<Window> {
    let max_len = max_len.max(1);
    let n = tokens.len();
    if n == 0 {
        return Vec::new();
    }
    let first = n.min(max_len);
    let mut head = Vec::with_capacity(first + 1);
    head.push(prefix);
    head.extend_from_slice(&tokens[..first]);
    let mut out = vec![Window {
        tokens: head,
        predict: first,
    }];
    let mut predicted = first;
    while predicted < n {
        let predict = (n - predicted).min(max_len);
        let end = predicted + predict;
        out.push(Window {
            tokens: tokens[end - max_len - 1..end].to_vec(),
            predict,
        });
        predicted = end;
    }
    out
}

/// Words as lm-eval counts them: `len(re.split(r"\s+", text))`.
pub fn word_count(text: &str) -> usize {
    let mut runs = 0;
    let mut in_space = false;
    for c in text.chars() {
        let space = c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
        if space && !in_space {
            runs += 1;
        }
        in_space = space;
    }
    runs + 1
}

/// Log-likelihood (nats) of each window's predicted tokens.
fn score_batch<B: Backend>(model: &Llama<B>, windows: &[&Window]) -> Result<Vec<f64>> {
    let device = model.device();
    let b = windows.len();
    let t = windows
        .iter()
        .map(|w| w.tokens.len() - 1)
        .max()
        .unwrap_or(0);
    let mut ids = Vec::with_capacity(b * t);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut owner = Vec::new();
    for (r, w) in windows.iter().enumerate() {
        let inputs = w.tokens.len() - 1;
        ids.extend(w.tokens[..inputs].iter().map(|&x| i64::from(x)));
        ids.extend(std::iter::repeat_n(0i64, t - inputs));
        for j in inputs - w.predict..inputs {
            rows.push((r * t + j) as i64);
            targets.push(i64::from(w.tokens[j + 1]));
            owner.push(r);
        }
    }
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
    let x = model.forward_final(tokens, &AttentionMask::Causal);
    let hidden = x.dims()[2];
    let x = x.reshape([b * t, hidden]);
    let mut sums = vec![0f64; b];
    for start in (0..rows.len()).step_by(HEAD_ROWS) {
        let end = (start + HEAD_ROWS).min(rows.len());
        let m = end - start;
        let idx = Tensor::<B, 1, Int>::from_data(
            TensorData::new(rows[start..end].to_vec(), [m]),
            &device,
        );
        let lp = log_softmax(
            model.head(x.clone().select(0, idx).reshape([1, m, hidden])),
            2,
        );
        let tgt = Tensor::<B, 3, Int>::from_data(
            TensorData::new(targets[start..end].to_vec(), [1, m, 1]),
            &device,
        );
        let picked = to_vec_f32(lp.gather(2, tgt))?;
        for (k, p) in picked.into_iter().enumerate() {
            sums[owner[start + k]] += f64::from(p);
        }
    }
    Ok(sums)
}

/// Log-likelihood of each window. Batches (longest first, at most `batch_size` windows
/// and about [`BATCH_TOKENS`] tokens) run concurrently; `on_done` hears the indices of
/// the windows of each finished batch.
pub fn score_windows<B: Backend>(
    model: &Llama<B>,
    windows: &[Window],
    batch_size: usize,
    on_done: impl FnMut(&[usize]) + Send,
) -> Result<Vec<f64>> {
    let vocab = model.config().vocab_size;
    if let Some(bad) = windows
        .iter()
        .flat_map(|w| &w.tokens)
        .find(|&&t| t as usize >= vocab)
    {
        return Err(EvalError::Invalid(format!(
            "token id {bad} is outside the model's vocabulary ({vocab}); does the tokenizer belong to this model?"
        )));
    }
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(windows[i].tokens.len()));
    let mut batches: Vec<&[usize]> = Vec::new();
    let mut rest = order.as_slice();
    while let Some(&first) = rest.first() {
        let width = windows[first].tokens.len() - 1;
        let fit = (BATCH_TOKENS / width.max(1)).clamp(1, batch_size.max(1));
        let (batch, tail) = rest.split_at(fit.min(rest.len()));
        batches.push(batch);
        rest = tail;
    }
    let on_done = Mutex::new(on_done);
    let scored: Vec<Vec<f64>> = batches
        .par_iter()
        .map(|batch| {
            let ws: Vec<&Window> = batch.iter().map(|&i| &windows[i]).collect();
            let s = score_batch(model, &ws)?;
            if let Ok(mut tell) = on_done.lock() {
                tell(batch);
            }
            Ok(s)
        })
        .collect::<Result<_>>()?;
    let mut out = vec![0f64; windows.len()];
    for (batch, s) in batches.iter().zip(scored) {
        for (&i, v) in batch.iter().zip(s) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// A document of a perplexity task.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Index in its source (record or shard row, counted over all shards).
    pub index: usize,
    /// Stable id.
    pub id: String,
    /// Its tokens (no special tokens unless `add_bos`).
    pub tokens: Vec<u32>,
    /// The text whose words and bytes are counted.
    pub counted: String,
}

/// A scored document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DocScore {
    /// Sum of the log-probabilities of all its tokens (nats).
    pub loglik: f64,
    /// Tokens predicted.
    pub tokens: usize,
    /// UTF-8 bytes of the counted text.
    pub bytes: usize,
    /// Words of the counted text (lm-eval's count).
    pub words: usize,
}

impl DocScore {
    /// This document's bits per byte (0 for an empty one).
    pub fn bits_per_byte(&self) -> f64 {
        if self.bytes == 0 {
            return 0.0;
        }
        -self.loglik / self.bytes as f64 / std::f64::consts::LN_2
    }

    /// Add this document to the task's metrics (`metrics` empty: all of them).
    pub fn record(&self, metrics: &[String], ms: &mut MetricSet) {
        let all = [
            ("word_perplexity", Aggregate::Perplexity, self.words),
            ("byte_perplexity", Aggregate::Perplexity, self.bytes),
            ("bits_per_byte", Aggregate::BitsPerByte, self.bytes),
            ("token_perplexity", Aggregate::Perplexity, self.tokens),
        ];
        for (name, aggregate, count) in all {
            if metrics.is_empty() || metrics.iter().any(|m| m == name) {
                ms.push_with(name, aggregate, self.loglik, count as f64);
            }
        }
        ms.n += 1;
    }
}

/// Score every document: its rolling windows under `max_len` positions with `prefix`
/// before the first token. `on_doc` is called once per finished document.
pub fn score_documents<B: Backend>(
    model: &Llama<B>,
    docs: &[Document],
    prefix: u32,
    max_len: usize,
    batch_size: usize,
    mut on_doc: impl FnMut() + Send,
) -> Result<Vec<DocScore>> {
    let mut windows = Vec::new();
    let mut owner = Vec::new();
    let mut remaining = vec![0usize; docs.len()];
    for (d, doc) in docs.iter().enumerate() {
        for w in rolling_windows(&doc.tokens, prefix, max_len) {
            windows.push(w);
            owner.push(d);
            remaining[d] += 1;
        }
    }
    for &r in &remaining {
        if r == 0 {
            on_doc();
        }
    }
    let lls = score_windows(model, &windows, batch_size, |batch| {
        for &w in batch {
            remaining[owner[w]] -= 1;
            if remaining[owner[w]] == 0 {
                on_doc();
            }
        }
    })?;
    let mut sums = vec![0f64; docs.len()];
    for (w, ll) in lls.into_iter().enumerate() {
        sums[owner[w]] += ll;
    }
    Ok(docs
        .iter()
        .zip(sums)
        .map(|(doc, loglik)| DocScore {
            loglik,
            tokens: doc.tokens.len(),
            bytes: doc.counted.len(),
            words: word_count(&doc.counted),
        })
        .collect())
}

/// Whether a perplexity task's data is Parquet token shards (a `.parquet` file or a
/// folder) rather than text records.
pub fn is_token_shards(path: &Path) -> bool {
    path.is_dir() || path.extension().is_some_and(|e| e == "parquet")
}

/// The documents of Parquet token shards (rows of `input_ids`, first `limit` rows);
/// words and bytes are counted on the decoded tokens.
pub fn shard_documents(
    path: &Path,
    tok: &Tokenizer,
    limit: Option<usize>,
) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    let want = limit.unwrap_or(usize::MAX);
    for file in shard_files(path)? {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("shard")
            .to_string();
        let mut reader = IdsReader::open(&file, &["input_ids"], 256)?;
        let mut row_in_file = 0usize;
        while docs.len() < want {
            let Some(batch) = reader.next_batch()? else {
                break;
            };
            let col = batch.column(0);
            for row in 0..batch.num_rows() {
                if docs.len() >= want {
                    break;
                }
                let tokens = list_u32(col, row, &file)?;
                let counted = tok.decode(&tokens, false)?;
                docs.push(Document {
                    index: docs.len(),
                    id: format!("{stem}:{row_in_file}"),
                    tokens,
                    counted,
                });
                row_in_file += 1;
            }
        }
        if docs.len() >= want {
            break;
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The windows lm-eval builds (`get_rolling_token_windows` + `make_disjoint_window`,
    /// then `(context + continuation)`), written out by hand for 10 tokens.
    #[test]
    fn windows_are_lm_evals() {
        let toks: Vec<u32> = (10..20).collect();
        let w = rolling_windows(&toks, 0, 4);
        let got: Vec<(Vec<u32>, usize)> = w.into_iter().map(|w| (w.tokens, w.predict)).collect();
        assert_eq!(
            got,
            vec![
                (vec![0, 10, 11, 12, 13], 4),
                (vec![13, 14, 15, 16, 17], 4),
                // The last window predicts 2 tokens with a full 4-token input.
                (vec![15, 16, 17, 18, 19], 2),
            ]
        );
        assert_eq!(
            rolling_windows(&toks[..3], 7, 4),
            vec![Window {
                tokens: vec![7, 10, 11, 12],
                predict: 3
            }]
        );
        assert!(rolling_windows(&[], 0, 4).is_empty());
        // max_len 1: every token on its own after the one before it.
        let ones = rolling_windows(&toks[..3], 0, 1);
        assert_eq!(
            ones.iter().map(|w| w.tokens.clone()).collect::<Vec<_>>(),
            vec![vec![0, 10], vec![10, 11], vec![11, 12]]
        );
    }

    #[test]
    fn words_are_whitespace_runs_plus_one() {
        // len(re.split(r"\s+", s)) in Python.
        assert_eq!(word_count("a b  c"), 3);
        assert_eq!(word_count(" a\n\tb "), 4);
        assert_eq!(word_count(""), 1);
        assert_eq!(word_count("x\u{1f}y\u{a0}z"), 3);
    }
}
