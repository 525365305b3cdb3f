//! The three measurements of method.md §1 on one model and a set of token windows:
//! angular distance per block, the removal sweep and the insertion sweep (`copy` and
//! `average`, not zeroed), both scored by perplexity.
//!
//! ## Prefix reuse
//! Removing block `i` or inserting a block after it leaves `x_0..x_i` (removal) or
//! `x_0..x_{i+1}` (insertion) exactly as in the base model, so no sweep item recomputes
//! them. One pass walks the blocks in order carrying every *active* variant's residual
//! stream: at block `j` the base stream and all variants that have diverged so far go
//! through block `j` together, in batches of `batch_size` (one block's weights, many
//! streams: the same FLOPs as running them one by one, better matmul shapes). After
//! block `j`, three variants join: "remove `j`" (stream `x_j`, which skips block `j`),
//! "insert copy after `j`" (`block_j(x_{j+1})`) and "insert average after `j`"
//! (`avg(block_j, block_{j+1})(x_{j+1})`). At the end every stream goes through the
//! head. Angular distances come from the base stream of the same pass.
//!
//! A removal sweep then costs `L(L-1)/2` block forwards instead of the `L(L-1)` of `L`
//! separate forward passes, an insertion sweep about `L²/2` instead of `L²`; heads are
//! the same. [`Importance::block_forwards`] and [`Importance::naive_block_forwards`]
//! count both; `reuse_prefix: false` runs the naive way for benchmarks.

use std::time::Instant;

use burn::prelude::*;
use burn_flex::fast_exp::exp_f32;
use rayon::prelude::*;

use super::error::{ImportanceError, Result};
use crate::model::rope::RopeTables;
use crate::model::{AttentionMask, Block, Llama};
use crate::surgery::mean_block;

/// What to measure and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepOptions {
    /// Angular distance per block.
    pub angular: bool,
    /// Removal sweep.
    pub remove: bool,
    /// Insertion sweep with copy init.
    pub insert_copy: bool,
    /// Insertion sweep with average init.
    pub insert_average: bool,
    /// Streams per batched block forward.
    pub batch_size: usize,
    /// Reuse base-model prefixes (false: one full forward pass per sweep item).
    pub reuse_prefix: bool,
}

/// The measurements, indexed by block.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    /// Blocks of the model (`L`).
    pub blocks: usize,
    /// Windows scored.
    pub windows: usize,
    /// Tokens in all windows.
    pub tokens: usize,
    /// Tokens predicted (each window's first token has no context).
    pub predicted: usize,
    /// Mean NLL of the base model (nats per predicted token).
    pub base_nll: f64,
    /// `exp(base_nll)`.
    pub base_ppl: f64,
    /// Angular distance of each block, mean over all tokens (`L` entries).
    pub angular_mean: Vec<f64>,
    /// Angular distance of each block at the last token of each window, averaged.
    pub angular_last: Vec<f64>,
    /// Perplexity without block `i` (`L` entries).
    pub remove_ppl: Vec<f64>,
    /// Perplexity with a copy of block `i` inserted after it (`L` entries).
    pub insert_copy_ppl: Vec<f64>,
    /// Perplexity with the average of blocks `i` and `i+1` inserted between them
    /// (`L-1` entries).
    pub insert_average_ppl: Vec<f64>,
    /// Block forwards run (one block on one window's stream).
    pub block_forwards: u64,
    /// Block forwards the same measurements take with one full pass per sweep item.
    pub naive_block_forwards: u64,
    /// Head evaluations (final norm + lm_head + log-softmax on one stream).
    pub head_passes: u64,
    /// Wall time of the measurement, seconds.
    pub seconds: f64,
}

impl Importance {
    /// The result for a model of `blocks` blocks when nothing token-based was measured
    /// (an eval-scored run without angular distance): no windows, empty series, NaN
    /// perplexity.
    pub fn unmeasured(blocks: usize) -> Importance {
        Importance {
            blocks,
            windows: 0,
            tokens: 0,
            predicted: 0,
            base_nll: f64::NAN,
            base_ppl: f64::NAN,
            angular_mean: Vec::new(),
            angular_last: Vec::new(),
            remove_ppl: Vec::new(),
            insert_copy_ppl: Vec::new(),
            insert_average_ppl: Vec::new(),
            block_forwards: 0,
            naive_block_forwards: 0,
            head_passes: 0,
            seconds: 0.0,
        }
    }
}

/// A residual stream being carried through the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Base,
    Remove(usize),
    InsertCopy(usize),
    InsertAverage(usize),
}

/// Running sums over windows.
struct Accum {
    nll_base: f64,
    nll_remove: Vec<f64>,
    nll_copy: Vec<f64>,
    nll_average: Vec<f64>,
    predicted: usize,
    ad_sum: Vec<f64>,
    ad_tokens: usize,
    ad_last: Vec<f64>,
    block_forwards: u64,
    head_passes: u64,
}

impl Accum {
    fn new(l: usize) -> Accum {
        Accum {
            nll_base: 0.0,
            nll_remove: vec![0.0; l],
            nll_copy: vec![0.0; l],
            nll_average: vec![0.0; l.saturating_sub(1)],
            predicted: 0,
            ad_sum: vec![0.0; l],
            ad_tokens: 0,
            ad_last: vec![0.0; l],
            block_forwards: 0,
            head_passes: 0,
        }
    }

    fn add_nll(&mut self, v: Variant, nll: f64) {
        match v {
            Variant::Base => self.nll_base += nll,
            Variant::Remove(i) => self.nll_remove[i] += nll,
            Variant::InsertCopy(i) => self.nll_copy[i] += nll,
            Variant::InsertAverage(i) => self.nll_average[i] += nll,
        }
    }
}

fn read_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ImportanceError::Invalid(format!("reading a tensor back: {e:?}")))
}

/// Per-token angular distance between `a` and `b` (`[1, T, H]`), as
/// `2 atan2(|u - v|, |u + v|) / pi` of the unit vectors: exact near 0 and 1, where
/// `arccos` of a rounded cosine is not.
fn angular<B: Backend>(a: &Tensor<B, 3>, b: &Tensor<B, 3>) -> Result<Vec<f64>> {
    let unit = |x: &Tensor<B, 3>| {
        let norm = x.clone().powi_scalar(2).sum_dim(2).sqrt().clamp_min(1e-30);
        x.clone() / norm
    };
    let (u, v) = (unit(a), unit(b));
    let diff = read_f32((u.clone() - v.clone()).powi_scalar(2).sum_dim(2))?;
    let sum = read_f32((u + v).powi_scalar(2).sum_dim(2))?;
    Ok(diff
        .iter()
        .zip(&sum)
        .map(|(&d, &s)| {
            2.0 * f64::from(d.max(0.0))
                .sqrt()
                .atan2(f64::from(s.max(0.0)).sqrt())
                / std::f64::consts::PI
        })
        .collect())
}

/// Summed NLL of `targets` under each stream of `x` (`[k, T, H]`).
///
/// The logits are read back once and reduced on the host, one row per rayon task:
/// `-log p(target) = logsumexp(row) - row[target]` in one pass over the vocabulary, where
/// the same reduction as tensor ops would be five full passes over `[k, T, vocab]`, each
/// allocating its result.
fn nll_rows<B: Backend>(model: &Llama<B>, x: Tensor<B, 3>, targets: &[i64]) -> Result<Vec<f64>> {
    let t = x.dims()[1];
    let logits = model.head(x);
    let vocab = logits.dims()[2];
    let logits = read_f32(logits)?;
    let per_token: Vec<f64> = logits
        .par_chunks(vocab)
        .enumerate()
        .filter(|(r, _)| r % t != t - 1)
        .map(|(r, row)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum = sum_exp(row, max);
            let target = row[targets[r % t] as usize];
            f64::from(max) + sum.ln() - f64::from(target)
        })
        .collect();
    Ok(per_token
        .chunks(t - 1)
        .map(|row| row.iter().sum::<f64>())
        .collect())
}

/// `sum(e^(v - max))` over `row`: the exponentials by the vectorisable
/// [`exp_f32`] in 8 f32 lanes per 256-element chunk, the chunk sums added in f64.
fn sum_exp(row: &[f32], max: f32) -> f64 {
    row.chunks(256)
        .map(|chunk| {
            let mut lanes = [0f32; 8];
            let mut eights = chunk.chunks_exact(8);
            for c in eights.by_ref() {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l += exp_f32(v - max);
                }
            }
            let tail: f64 = eights
                .remainder()
                .iter()
                .map(|&v| f64::from(exp_f32(v - max)))
                .sum();
            lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + tail
        })
        .sum()
}

/// Run `block` on every stream, `batch` streams per forward. With `concurrent` the
/// forwards run at once on the rayon pool, so cores are not idle between products; a
/// model held in half precision (memory-bound by design) runs them one after the other,
/// which keeps one set of transients instead of one per thread (1.1B shape: 2.83 ->
/// 2.77 GB peak).
fn forward_all<B: Backend>(
    block: &Block<B>,
    streams: Vec<Tensor<B, 3>>,
    rope: &RopeTables<B>,
    mask: &AttentionMask<B>,
    batch: usize,
    concurrent: bool,
) -> Vec<Tensor<B, 3>> {
    let mut chunks: Vec<Vec<Tensor<B, 3>>> = Vec::new();
    let mut it = streams.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(batch.max(1)).collect());
    }
    let run = |chunk: Vec<Tensor<B, 3>>| -> Vec<Tensor<B, 3>> {
        let n = chunk.len();
        if n == 1 {
            chunk
                .into_iter()
                .map(|x| block.forward(x, rope, mask, None))
                .collect()
        } else {
            block
                .forward(Tensor::cat(chunk, 0), rope, mask, None)
                .chunk(n, 0)
        }
    };
    let outs: Vec<Vec<Tensor<B, 3>>> = if concurrent {
        chunks.into_par_iter().map(run).collect()
    } else {
        chunks.into_iter().map(run).collect()
    };
    outs.into_iter().flatten().collect()
}

/// Streams per head evaluation so that logits stay near 8 Mi floats (32 MiB): small
/// beside the model, whose memory is what a large-model sweep is bounded by.
fn head_rows(t: usize, vocab: usize) -> usize {
    ((8usize << 20) / (t * vocab).max(1)).max(1)
}

/// The heads of all `streams`, added to `acc`.
fn score<B: Backend>(
    model: &Llama<B>,
    streams: Vec<(Variant, Tensor<B, 3>)>,
    targets: &[i64],
    acc: &mut Accum,
) -> Result<()> {
    let rows = head_rows(targets.len() + 1, model.config().vocab_size);
    let mut it = streams.into_iter().peekable();
    while it.peek().is_some() {
        let (variants, xs): (Vec<Variant>, Vec<Tensor<B, 3>>) = it.by_ref().take(rows).unzip();
        let nll = nll_rows(model, Tensor::cat(xs, 0), targets)?;
        acc.head_passes += variants.len() as u64;
        for (v, n) in variants.into_iter().zip(nll) {
            acc.add_nll(v, n);
        }
    }
    Ok(())
}

fn add_angular<B: Backend>(
    acc: &mut Accum,
    j: usize,
    before: &Tensor<B, 3>,
    after: &Tensor<B, 3>,
) -> Result<()> {
    let ad = angular(before, after)?;
    acc.ad_sum[j] += ad.iter().sum::<f64>();
    acc.ad_last[j] += ad.last().copied().unwrap_or(0.0);
    Ok(())
}

/// One window with prefix reuse (see the module docs).
fn window_reuse<B: Backend>(
    model: &Llama<B>,
    tokens: Tensor<B, 2, Int>,
    targets: &[i64],
    opts: &SweepOptions,
    acc: &mut Accum,
    tick: &dyn Fn(),
) -> Result<()> {
    let t = targets.len() + 1;
    let rope = model.rope_tables(0, t);
    let mask = AttentionMask::Causal;
    let blocks = &model.blocks;
    let l = blocks.len();
    let mut base = model.embed(tokens);
    let mut active: Vec<(Variant, Tensor<B, 3>)> = Vec::new();
    for (j, stored) in blocks.iter().enumerate() {
        // Every stream of this step runs the same block: widen a bf16-resident block once
        // here (an f32 one is shared as is) rather than once per stream and thread.
        let block = &widened_block(model, stored)?;
        let resident_half = stored.mlp.up_proj.weight.val().dtype() != base.dtype();
        let (variants, states): (Vec<Variant>, Vec<Tensor<B, 3>>) =
            std::mem::take(&mut active).into_iter().unzip();
        let mut streams = Vec::with_capacity(states.len() + 1);
        streams.push(base.clone());
        streams.extend(states);
        acc.block_forwards += streams.len() as u64;
        let mut outs = forward_all(
            block,
            streams,
            &rope,
            &mask,
            opts.batch_size,
            !resident_half,
        )
        .into_iter();
        let next = outs
            .next()
            .ok_or_else(|| ImportanceError::Invalid("a block returned no stream".into()))?;
        active = variants.into_iter().zip(outs).collect();
        if opts.angular {
            add_angular(acc, j, &base, &next)?;
        }
        if opts.insert_copy {
            acc.block_forwards += 1;
            let s = block.forward(next.clone(), &rope, &mask, None);
            active.push((Variant::InsertCopy(j), s));
        }
        if opts.insert_average && j + 1 < l {
            acc.block_forwards += 1;
            let s = average_after(model, j)?.forward(next.clone(), &rope, &mask, None);
            active.push((Variant::InsertAverage(j), s));
        }
        if opts.remove {
            active.push((Variant::Remove(j), base));
        }
        base = next;
        tick();
    }
    let mut streams = vec![(Variant::Base, base)];
    streams.extend(active);
    score(model, streams, targets, acc)
}

/// One window the naive way: a full forward pass per sweep item.
fn window_naive<B: Backend>(
    model: &Llama<B>,
    tokens: Tensor<B, 2, Int>,
    targets: &[i64],
    opts: &SweepOptions,
    acc: &mut Accum,
    tick: &dyn Fn(),
) -> Result<()> {
    let t = targets.len() + 1;
    let rope = model.rope_tables(0, t);
    let mask = AttentionMask::Causal;
    let blocks = &model.blocks;
    let l = blocks.len();
    let x0 = model.embed(tokens);
    let run = |seq: Vec<&Block<B>>, v: Variant, acc: &mut Accum| -> Result<()> {
        let mut x = x0.clone();
        acc.block_forwards += seq.len() as u64;
        for b in seq {
            x = b.forward(x, &rope, &mask, None);
        }
        score(model, vec![(v, x)], targets, acc)
    };
    // Base pass, with angular distances from its stream.
    let mut x = x0.clone();
    for (j, b) in blocks.iter().enumerate() {
        let next = b.forward(x.clone(), &rope, &mask, None);
        if opts.angular {
            add_angular(acc, j, &x, &next)?;
        }
        x = next;
    }
    acc.block_forwards += l as u64;
    score(model, vec![(Variant::Base, x)], targets, acc)?;
    for j in 0..l {
        if opts.remove {
            let seq = blocks.iter().enumerate().filter(|(i, _)| *i != j);
            run(seq.map(|(_, b)| b).collect(), Variant::Remove(j), acc)?;
        }
        if opts.insert_copy {
            run(inserted(blocks, j, &blocks[j]), Variant::InsertCopy(j), acc)?;
        }
        if opts.insert_average && j + 1 < l {
            run(
                inserted(blocks, j, &average_after(model, j)?),
                Variant::InsertAverage(j),
                acc,
            )?;
        }
        tick();
    }
    Ok(())
}

/// `block` with its weights in f32: the same tensors when they already are (no copy),
/// a widened copy of a half-precision (resident bf16) block.
fn widened_block<B: Backend>(model: &Llama<B>, block: &Block<B>) -> Result<Block<B>> {
    Ok(mean_block(&model.config(), &[block])?)
}

/// The mean of blocks `j` and `j + 1` (in f32), built when a sweep step needs it and
/// dropped after: holding all `L - 1` of them would cost a model's worth of f32 memory
/// (twice the model for a bf16-resident one). Building one is elementwise work, small
/// beside the block forwards it serves.
fn average_after<B: Backend>(model: &Llama<B>, j: usize) -> Result<Block<B>> {
    let blocks = &model.blocks;
    Ok(mean_block(&model.config(), &[&blocks[j], &blocks[j + 1]])?)
}

/// `blocks` with `extra` inserted after block `j`.
fn inserted<'a, B: Backend>(
    blocks: &'a [Block<B>],
    j: usize,
    extra: &'a Block<B>,
) -> Vec<&'a Block<B>> {
    let mut seq: Vec<&Block<B>> = blocks[..=j].iter().collect();
    seq.push(extra);
    seq.extend(blocks[j + 1..].iter());
    seq
}

/// Block forwards of one window done naively.
fn naive_forwards(l: u64, opts: &SweepOptions) -> u64 {
    let mut n = l; // base
    if opts.remove {
        n += l * (l - 1);
    }
    if opts.insert_copy {
        n += l * (l + 1);
    }
    if opts.insert_average {
        n += (l - 1) * (l + 1);
    }
    n
}

/// Measure `model` on `windows`. `tick` is called once per block step of each window
/// (`windows.len() * blocks` calls in all).
pub fn measure<B: Backend>(
    model: &Llama<B>,
    windows: &[Vec<u32>],
    opts: &SweepOptions,
    tick: &dyn Fn(),
) -> Result<Importance> {
    let start = Instant::now();
    let config = model.config();
    let l = model.blocks.len();
    if l == 0 {
        return Err(ImportanceError::Invalid("the model has no blocks".into()));
    }
    if windows.is_empty() {
        return Err(ImportanceError::Invalid(
            "no token windows to score (need at least 2 tokens)".into(),
        ));
    }
    if let Some(bad) = windows
        .iter()
        .flatten()
        .find(|&&id| id as usize >= config.vocab_size)
    {
        return Err(ImportanceError::Invalid(format!(
            "token id {bad} is outside the model's vocabulary ({}); were the tokens made \
             with another tokenizer?",
            config.vocab_size
        )));
    }
    let device = model.device();
    let mut acc = Accum::new(l);
    let mut tokens_total = 0;
    for ids in windows {
        let t = ids.len();
        let flat: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
        let targets = flat[1..].to_vec();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [1, t]), &device);
        if opts.reuse_prefix {
            window_reuse(model, tokens, &targets, opts, &mut acc, tick)?;
        } else {
            window_naive(model, tokens, &targets, opts, &mut acc, tick)?;
        }
        acc.predicted += t - 1;
        acc.ad_tokens += t;
        tokens_total += t;
    }
    let p = acc.predicted as f64;
    let ppl = |nll: &[f64]| nll.iter().map(|n| (n / p).exp()).collect::<Vec<f64>>();
    let w = windows.len() as f64;
    let (ad_mean, ad_last) = if opts.angular {
        (
            acc.ad_sum
                .iter()
                .map(|s| s / acc.ad_tokens as f64)
                .collect(),
            acc.ad_last.iter().map(|s| s / w).collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let pick = |on: bool, v: Vec<f64>| if on { v } else { Vec::new() };
    Ok(Importance {
        blocks: l,
        windows: windows.len(),
        tokens: tokens_total,
        predicted: acc.predicted,
        base_nll: acc.nll_base / p,
        base_ppl: (acc.nll_base / p).exp(),
        angular_mean: ad_mean,
        angular_last: ad_last,
        remove_ppl: pick(opts.remove, ppl(&acc.nll_remove)),
        insert_copy_ppl: pick(opts.insert_copy, ppl(&acc.nll_copy)),
        insert_average_ppl: pick(opts.insert_average, ppl(&acc.nll_average)),
        block_forwards: acc.block_forwards,
        naive_block_forwards: naive_forwards(l as u64, opts) * windows.len() as u64,
        head_passes: acc.head_passes,
        seconds: start.elapsed().as_secs_f64(),
    })
}
