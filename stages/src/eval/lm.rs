//! Log-likelihood scoring as lm-evaluation-harness computes it, done faster.
//!
//! Tokenisation follows lm-eval's `_encode_pair`: trailing whitespace of the context
//! moves to the continuation, `context_enc = encode(context)`, the continuation's tokens
//! are `encode(context + continuation)[len(context_enc)..]`, and the model sees
//! `context_enc + continuation_enc` (an empty context becomes the prefix token). No
//! special tokens are added unless `add_bos` (lm-eval's `add_bos_token`).
//!
//! Speed comes from sharing: requests with the same context form a [`Group`]; a batch
//! of groups is one forward pass with one row per group, its context (left-padded;
//! rotary attention depends only on relative positions, so padding does not change the
//! result) followed by all its continuations, masked so that each continuation sees
//! only the context and itself (a prefix tree). The output projection is applied only
//! where a log-probability is needed. Groups are sorted by length so batches carry
//! little padding, and batches run concurrently.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rayon::prelude::*;

use super::error::{EvalError, Result};
use crate::model::{AttentionMask, Llama, Tokenizer};

/// Score of one continuation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContScore {
    /// Sum of the continuation tokens' log-probabilities (nats).
    pub loglik: f64,
    /// Whether every continuation token was the model's top-1 choice.
    pub is_greedy: bool,
    /// Number of continuation tokens.
    pub n_tokens: usize,
}

/// A context and the continuations scored after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Context tokens.
    pub context: Vec<u32>,
    /// Continuation tokens (each non-empty).
    pub continuations: Vec<Vec<u32>>,
}

/// Tokenisation settings shared by all requests.
pub struct Encoder<'a> {
    /// The tokenizer.
    pub tok: &'a Tokenizer,
    /// Add the tokenizer's special tokens (BOS) to contexts.
    pub add_special: bool,
    /// Token used as context when the context is empty.
    pub prefix_id: u32,
    /// Longest sequence the model takes.
    pub max_len: usize,
}

impl Encoder<'_> {
    /// Tokenise `(context, [continuations])` the way lm-eval does.
    pub fn encode_group(&self, context: &str, continuations: &[String]) -> Result<Group> {
        let trimmed = context.trim_end();
        let moved = &context[trimmed.len()..];
        let ctx_enc = if trimmed.is_empty() {
            Vec::new()
        } else {
            self.tok.encode(trimmed, self.add_special)?
        };
        let mut conts = Vec::with_capacity(continuations.len());
        for cont in continuations {
            let cont_full = format!("{moved}{cont}");
            let ids = if ctx_enc.is_empty() {
                self.tok.encode(&cont_full, false)?
            } else {
                let whole = self
                    .tok
                    .encode(&format!("{trimmed}{cont_full}"), self.add_special)?;
                whole.get(ctx_enc.len()..).unwrap_or_default().to_vec()
            };
            if ids.is_empty() {
                return Err(EvalError::Invalid(format!(
                    "continuation {cont:?} has no tokens after context …{:?}",
                    tail(context, 40)
                )));
            }
            conts.push(ids);
        }
        let mut ctx = if ctx_enc.is_empty() {
            vec![self.prefix_id]
        } else {
            ctx_enc
        };
        // Left-truncate as lm-eval does: at most max_len tokens go in.
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        let keep = (self.max_len + 1).saturating_sub(longest);
        if keep == 0 {
            return Err(EvalError::Invalid(format!(
                "a continuation of {longest} tokens does not fit the model's {} positions",
                self.max_len
            )));
        }
        if ctx.len() > keep {
            ctx.drain(..ctx.len() - keep);
        }
        Ok(Group {
            context: ctx,
            continuations: conts,
        })
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.char_indices().rev().nth(n).map_or(0, |(i, _)| i);
    &s[start..]
}

/// Tokenise many `(context, continuations)` requests in parallel, sharing equal
/// contexts' work.
pub fn encode_all(enc: &Encoder, requests: &[(String, Vec<String>)]) -> Result<Vec<Group>> {
    requests
        .par_iter()
        .map(|(c, conts)| enc.encode_group(c, conts))
        .collect()
}

/// A float tensor's values on the host.
pub(super) fn to_vec_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| EvalError::Invalid(format!("reading log-probabilities: {e:?}")))
}

fn to_vec_i64<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .map_err(|e| EvalError::Invalid(format!("reading argmax: {e:?}")))
}

/// Where a token of a batch row comes from: continuation `cont` (index into the
/// batch's continuations), offset `at` within it.
#[derive(Clone, Copy)]
struct Slot {
    cont: usize,
    at: usize,
}

/// Score one batch of groups in one forward pass; returns one score per continuation,
/// group by group.
///
/// Each group is one row: its context, left-padded to the batch's longest, then its
/// continuations packed one after another (all tokens but each one's last), every
/// continuation restarting at the position that follows the context. The mask lets a
/// context token see the context up to itself, and a continuation token see the whole
/// context and the earlier tokens of its own continuation only: a prefix tree in one
/// row, so the context is computed once, no continuation is padded to the longest
/// one, and the weights are streamed once per batch. The output projection runs only
/// where a log-probability is needed: at the context's last position (every
/// continuation's first token) and at the continuation tokens.
fn score_batch<B: Backend>(model: &Llama<B>, groups: &[&Group]) -> Result<Vec<Vec<ContScore>>> {
    let device = model.device();
    let b = groups.len();
    let lc = groups.iter().map(|g| g.context.len()).max().unwrap_or(0);
    let mut conts: Vec<&Vec<u32>> = Vec::new();
    let mut owner = Vec::new();
    let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(b);
    for (gi, g) in groups.iter().enumerate() {
        let mut row = Vec::new();
        for c in &g.continuations {
            row.extend((0..c.len() - 1).map(|at| Slot {
                cont: conts.len(),
                at,
            }));
            conts.push(c);
            owner.push(gi);
        }
        slots.push(row);
    }
    let w = slots.iter().map(Vec::len).max().unwrap_or(0);
    let width = lc + w;
    let pad = |g: usize| lc - groups[g].context.len();
    let mut ids = Vec::with_capacity(b * width);
    let mut positions = Vec::with_capacity(b);
    for (gi, g) in groups.iter().enumerate() {
        ids.extend(std::iter::repeat_n(0i64, pad(gi)));
        ids.extend(g.context.iter().map(|&t| i64::from(t)));
        ids.extend(slots[gi].iter().map(|s| i64::from(conts[s.cont][s.at])));
        ids.extend(std::iter::repeat_n(0i64, w - slots[gi].len()));
        positions.push(
            (0..width)
                .map(|j| {
                    if j < lc {
                        j
                    } else {
                        lc + slots[gi].get(j - lc).map_or(0, |s| s.at)
                    }
                })
                .collect::<Vec<_>>(),
        );
    }
    let heads = model.config().num_attention_heads;
    // One rule per window: Gemma 3's local and global blocks each get theirs.
    let mask = model.mask_for(|window| {
        Ok(AttentionMask::from_fn(
            b,
            heads,
            width,
            width,
            &device,
            |g, q, k| {
                // A sliding window counts rotary positions, not packed slots.
                if window.is_some_and(|w| positions[g][k] + w <= positions[g][q]) {
                    return false;
                }
                if k < lc {
                    // A context key: real (not padding), and before the query if the query
                    // is a context token too.
                    return k >= pad(g) && (q >= lc || k <= q);
                }
                match (
                    q.checked_sub(lc).and_then(|j| slots[g].get(j)),
                    slots[g].get(k - lc),
                ) {
                    (Some(sq), Some(sk)) => sq.cont == sk.cont && sk.at <= sq.at,
                    _ => false,
                }
            },
        ))
    })?;
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, width]), &device);
    let x = model.forward_final_at(tokens, &model.rope_tables_at(&positions), &mask);
    // Rows that need logits: each group's last context position, then its tokens.
    let mut rows = Vec::new();
    for (gi, row) in slots.iter().enumerate() {
        rows.push((gi * width + lc - 1) as i64);
        rows.extend((0..row.len()).map(|j| (gi * width + lc + j) as i64));
    }
    let n = rows.len();
    let hidden = x.dims()[2];
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let x = x.reshape([b * width, hidden]).select(0, idx);
    let lp = log_softmax(model.head(x.reshape([1, n, hidden])), 2); // [1, n, V]
    // Targets in the same order: every continuation's first token is read at its
    // group's context row; the rest at their slots.
    let mut row_of_group = Vec::with_capacity(b);
    let mut next = 0usize;
    for row in &slots {
        row_of_group.push(next);
        next += 1 + row.len();
    }
    let mut picks: Vec<(usize, i64)> = Vec::new(); // (logit row, target)
    for (c, cont) in conts.iter().enumerate() {
        picks.push((row_of_group[owner[c]], i64::from(cont[0])));
    }
    for (gi, row) in slots.iter().enumerate() {
        for (j, s) in row.iter().enumerate() {
            picks.push((row_of_group[gi] + 1 + j, i64::from(conts[s.cont][s.at + 1])));
        }
    }
    let m = picks.len();
    let pick_rows = Tensor::<B, 1, Int>::from_data(
        TensorData::new(picks.iter().map(|p| p.0 as i64).collect::<Vec<_>>(), [m]),
        &device,
    );
    let vocab = lp.dims()[2];
    let lp = lp.reshape([n, vocab]);
    let arg = to_vec_i64(lp.clone().argmax(1))?;
    let tgt = Tensor::<B, 2, Int>::from_data(
        TensorData::new(picks.iter().map(|p| p.1).collect::<Vec<_>>(), [m, 1]),
        &device,
    );
    let picked = to_vec_f32(lp.select(0, pick_rows).gather(1, tgt))?;
    let mut scores: Vec<ContScore> = conts
        .iter()
        .map(|c| ContScore {
            loglik: 0.0,
            is_greedy: true,
            n_tokens: c.len(),
        })
        .collect();
    // Picks come in the order: first tokens (continuation by continuation), then slots.
    let pick_conts = (0..conts.len()).chain(slots.iter().flatten().map(|s| s.cont));
    for (k, c) in pick_conts.enumerate() {
        scores[c].loglik += f64::from(picked[k]);
        scores[c].is_greedy &= arg[picks[k].0] == picks[k].1;
    }
    let mut out = Vec::with_capacity(b);
    let mut it = scores.into_iter();
    for g in groups {
        out.push(it.by_ref().take(g.continuations.len()).collect());
    }
    Ok(out)
}

/// Score every group. `batch_size` bounds the continuations per forward pass (a group
/// is never split). `on_batch` is told how many groups each finished batch held.
pub fn score_groups<B: Backend>(
    model: &Llama<B>,
    groups: &[Group],
    batch_size: usize,
    on_batch: impl FnMut(usize) + Send,
) -> Result<Vec<Vec<ContScore>>> {
    let vocab = model.config().vocab_size;
    for g in groups {
        if let Some(bad) = g
            .context
            .iter()
            .chain(g.continuations.iter().flatten())
            .find(|&&t| t as usize >= vocab)
        {
            return Err(EvalError::Invalid(format!(
                "token id {bad} is outside the model's vocabulary ({vocab}); does the tokenizer belong to this model?"
            )));
        }
    }
    // Longest first (as lm-eval): padding stays small and memory peaks early.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    let key = |g: &Group| g.context.len() + g.continuations.iter().map(Vec::len).max().unwrap_or(0);
    order.sort_by_key(|&i| std::cmp::Reverse(key(&groups[i])));
    let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        let mut rows = 0;
        while end < order.len() {
            let n = groups[order[end]].continuations.len();
            if end > start && rows + n > batch_size.max(1) {
                break;
            }
            rows += n;
            end += 1;
        }
        batches.push(start..end);
        start = end;
    }
    // Batches run concurrently on the rayon pool: a batch's small ops (norms, rotary,
    // softmax rows of short sequences) fall below the vendored backend's parallel
    // threshold, so one batch at a time leaves cores idle between its products (which
    // still split over idle threads when there are any).
    let on_batch = std::sync::Mutex::new(on_batch);
    let scored: Vec<Vec<Vec<ContScore>>> = batches
        .par_iter()
        .map(|range| {
            let batch: Vec<&Group> = order[range.clone()].iter().map(|&i| &groups[i]).collect();
            let scored = score_batch(model, &batch)?;
            if let Ok(mut tick) = on_batch.lock() {
                tick(range.len());
            }
            Ok(scored)
        })
        .collect::<Result<_>>()?;
    let mut results: HashMap<usize, Vec<ContScore>> = HashMap::with_capacity(groups.len());
    for (range, scored) in batches.iter().zip(scored) {
        for (&i, s) in order[range.clone()].iter().zip(scored) {
            results.insert(i, s);
        }
    }
    Ok((0..groups.len())
        .map(|i| results.remove(&i).unwrap_or_default())
        .collect())
}
