//! Log-likelihood scoring as lm-evaluation-harness computes it, done faster.
//!
//! Tokenisation follows lm-eval's `_encode_pair`: trailing whitespace of the context
//! moves to the continuation, `context_enc = encode(context)`, the continuation's tokens
//! are `encode(context + continuation)[len(context_enc)..]`, and the model sees
//! `context_enc + continuation_enc` (an empty context becomes the prefix token). No
//! special tokens are added unless `add_bos` (lm-eval's `add_bos_token`).
//!
//! Speed comes from sharing: requests with the same context form a [`Group`]; the
//! contexts of a batch of groups are run once (left-padded, masked; rotary attention
//! depends only on relative positions, so padding does not change the result), then
//! each group's continuations run together in one row after its cached context, masked
//! so that each sees only the context and itself (a prefix tree). The output projection
//! is applied only where a log-probability is needed. Groups are sorted by length so
//! batches carry little padding.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rayon::prelude::*;

use super::error::{EvalError, Result};
use crate::model::rope::RopeTables;
use crate::model::{AttentionMask, KvCache, Llama, Tokenizer};

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

fn ids_tensor<B: Backend>(
    rows: &[Vec<u32>],
    width: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let mut flat = Vec::with_capacity(rows.len() * width);
    for r in rows {
        flat.extend(r.iter().map(|&x| x as i64));
        flat.extend(std::iter::repeat_n(0i64, width - r.len()));
    }
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

fn to_vec_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
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

/// Run `tokens` `[b, t]` at the positions of `rope` through the blocks with `mask`,
/// continuing `cache`. Returns the final residual stream `[b, t, hidden]`.
fn run_blocks<B: Backend>(
    model: &Llama<B>,
    tokens: Tensor<B, 2, Int>,
    rope: &RopeTables<B>,
    mask: &AttentionMask<B>,
    cache: &mut KvCache<B>,
) -> Tensor<B, 3> {
    let mut x = model.embed(tokens);
    for (block, layer) in model.blocks.iter().zip(cache.layers.iter_mut()) {
        x = block.forward(x, rope, mask, Some(layer));
    }
    x
}

/// Score one batch of groups; returns one score per continuation, group by group.
fn score_batch<B: Backend>(model: &Llama<B>, groups: &[&Group]) -> Result<Vec<Vec<ContScore>>> {
    let device = model.device();
    let b = groups.len();
    let lc = groups.iter().map(|g| g.context.len()).max().unwrap_or(0);
    // Left-pad contexts so that every context ends at position lc - 1.
    let mut rows = Vec::with_capacity(b);
    let mut ctx_valid = Vec::with_capacity(b);
    for g in groups {
        let pad = lc - g.context.len();
        let mut r = vec![0u32; pad];
        r.extend_from_slice(&g.context);
        rows.push(r);
        ctx_valid.push((0..lc).map(|k| k >= pad).collect::<Vec<bool>>());
    }
    let ctx_padded = groups.iter().any(|g| g.context.len() != lc);
    let mask = if ctx_padded {
        let heads = model.config().num_attention_heads;
        AttentionMask::padded(&ctx_valid, lc, heads, &device)?
    } else {
        AttentionMask::Causal
    };
    let mut cache = model.new_cache();
    let x = run_blocks(
        model,
        ids_tensor::<B>(&rows, lc, &device),
        &model.rope_tables(0, lc),
        &mask,
        &mut cache,
    );
    let hidden = x.dims()[2];
    let last = x.slice([0..b, lc - 1..lc, 0..hidden]);
    let first_lp = log_softmax(model.head(last), 2); // [b, 1, V]
    let vocab = first_lp.dims()[2];
    let first_lp = first_lp.reshape([b, vocab]);

    // One score per continuation, started with its first token, which is predicted
    // at the context's last position.
    let mut owner = Vec::new();
    let mut conts: Vec<&Vec<u32>> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for c in &g.continuations {
            owner.push(gi);
            conts.push(c);
        }
    }
    let r = conts.len();
    let owner_t = Tensor::<B, 1, Int>::from_data(
        TensorData::new(owner.iter().map(|&o| o as i64).collect::<Vec<_>>(), [r]),
        &device,
    );
    let first_tok = Tensor::<B, 2, Int>::from_data(
        TensorData::new(
            conts.iter().map(|c| c[0] as i64).collect::<Vec<_>>(),
            [r, 1],
        ),
        &device,
    );
    let first_picked = to_vec_f32(
        first_lp
            .clone()
            .select(0, owner_t.clone())
            .gather(1, first_tok),
    )?;
    let first_arg = to_vec_i64(first_lp.argmax(1))?;
    let mut scores: Vec<ContScore> = (0..r)
        .map(|i| ContScore {
            loglik: first_picked[i] as f64,
            is_greedy: first_arg[owner[i]] == conts[i][0] as i64,
            n_tokens: conts[i].len(),
        })
        .collect();

    score_rest(model, groups, &ctx_valid, cache, &mut scores)?;
    let mut out = Vec::with_capacity(b);
    let mut it = scores.into_iter();
    for g in groups {
        out.push(it.by_ref().take(g.continuations.len()).collect());
    }
    Ok(out)
}

/// Where a token of the continuation pass comes from: continuation `cont` (index into
/// the batch's continuations), offset `at` within it.
#[derive(Clone, Copy)]
struct Slot {
    cont: usize,
    at: usize,
}

/// Add the log-probabilities of every continuation token after the first to `scores`.
///
/// Each group's continuations are packed into one row after its cached context (all
/// tokens but each continuation's last), every one restarting at the position that
/// follows the context, and a mask lets a token see the context and the earlier
/// tokens of its own continuation only — a prefix tree in one row, so no context cache
/// is copied and no continuation is padded to the longest one. The output projection
/// runs only on real tokens.
fn score_rest<B: Backend>(
    model: &Llama<B>,
    groups: &[&Group],
    ctx_valid: &[Vec<bool>],
    mut cache: KvCache<B>,
    scores: &mut [ContScore],
) -> Result<()> {
    let device = model.device();
    let lc = cache.len();
    let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(groups.len());
    let mut conts: Vec<&Vec<u32>> = Vec::new();
    for g in groups {
        let mut row = Vec::new();
        for c in &g.continuations {
            row.extend((0..c.len() - 1).map(|at| Slot {
                cont: conts.len(),
                at,
            }));
            conts.push(c);
        }
        slots.push(row);
    }
    let w = slots.iter().map(Vec::len).max().unwrap_or(0);
    if w == 0 {
        return Ok(());
    }
    let tokens: Vec<Vec<u32>> = slots
        .iter()
        .map(|row| row.iter().map(|s| conts[s.cont][s.at]).collect())
        .collect();
    let positions: Vec<Vec<usize>> = slots
        .iter()
        .map(|row| {
            (0..w)
                .map(|j| lc + row.get(j).map_or(0, |s| s.at))
                .collect()
        })
        .collect();
    let heads = model.config().num_attention_heads;
    let mask = AttentionMask::from_fn(groups.len(), heads, w, lc + w, &device, |g, q, k| {
        if k < lc {
            return ctx_valid[g][k];
        }
        match (slots[g].get(q), slots[g].get(k - lc)) {
            (Some(sq), Some(sk)) => sq.cont == sk.cont && sk.at <= sq.at,
            _ => false,
        }
    });
    let x = run_blocks(
        model,
        ids_tensor::<B>(&tokens, w, &device),
        &model.rope_tables_at(&positions),
        &mask,
        &mut cache,
    );
    let hidden = x.dims()[2];
    let real: Vec<i64> = slots
        .iter()
        .enumerate()
        .flat_map(|(g, row)| (0..row.len()).map(move |j| (g * w + j) as i64))
        .collect();
    let n = real.len();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(real, [n]), &device);
    let x = x.reshape([groups.len() * w, hidden]).select(0, idx);
    let lp = log_softmax(model.head(x.reshape([1, n, hidden])), 2); // [1, n, V]
    let targets: Vec<i64> = slots
        .iter()
        .flatten()
        .map(|s| conts[s.cont][s.at + 1] as i64)
        .collect();
    let tgt = Tensor::<B, 3, Int>::from_data(TensorData::new(targets.clone(), [1, n, 1]), &device);
    let picked = to_vec_f32(lp.clone().gather(2, tgt))?;
    let arg = to_vec_i64(lp.argmax(2))?;
    for (k, s) in slots.iter().flatten().enumerate() {
        scores[s.cont].loglik += picked[k] as f64;
        scores[s.cont].is_greedy &= arg[k] == targets[k];
    }
    Ok(())
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
    // Batches run concurrently on the rayon pool: the backend's elementwise ops are
    // single-threaded, so one batch at a time leaves cores idle between its products
    // (which still split over idle threads when there are any).
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
