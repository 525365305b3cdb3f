//! Text generation with the KV cache ([`generate`]: greedy or temperature sampling,
//! streaming through a callback) and scoring ([`perplexity`], [`token_logprobs`]).

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::attention::AttentionMask;
use super::error::{ModelError, Result};
use super::llama::Llama;
use crate::rng::SplitMix64;

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Stop after this many new tokens.
    pub max_new_tokens: usize,
    /// 0 for greedy decoding; otherwise softmax temperature.
    pub temperature: f32,
    /// Nucleus sampling threshold (1.0 = off); only with temperature > 0.
    pub top_p: f32,
    /// Seed of the sampler.
    pub seed: u64,
    /// Token ids that end generation (not included in the output).
    pub stop_ids: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_ids: Vec::new(),
        }
    }
}

/// Result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens (without the prompt and without the stop token).
    pub tokens: Vec<u32>,
    /// Whether a stop id ended generation.
    pub stopped: bool,
    /// Seconds spent on the prompt (prefill).
    pub prefill_secs: f64,
    /// Seconds spent producing the new tokens after the first.
    pub decode_secs: f64,
}

fn check_ids(ids: &[u32], vocab: usize) -> Result<()> {
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the vocabulary (size {vocab})"
        )));
    }
    Ok(())
}

fn id_tensor<B: Backend>(rows: &[&[u32]], device: &B::Device) -> Tensor<B, 2, Int> {
    let t = rows.first().map_or(0, |r| r.len());
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&x| x as i64))
        .collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), t]), device)
}

fn last_row<B: Backend>(logits: Tensor<B, 3>) -> Result<Vec<f32>> {
    let [_, t, v] = logits.dims();
    logits
        .slice([0..1, t - 1..t, 0..v])
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("reading logits: {e:?}")))
}

fn sample(logits: &[f32], opts: &GenerateOptions, rng: &mut SplitMix64) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 { (i, x) } else { best }
            })
            .0 as u32
    };
    if opts.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| (i, (((x - max) / opts.temperature) as f64).exp()))
        .collect();
    if opts.top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = probs.iter().map(|p| p.1).sum();
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (k, p) in probs.iter().enumerate() {
            acc += p.1 / total;
            if acc >= opts.top_p as f64 {
                keep = k + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.next_f64() * total;
    for (i, p) in &probs {
        r -= p;
        if r <= 0.0 {
            return *i as u32;
        }
    }
    probs.last().map_or_else(argmax, |p| p.0 as u32)
}

/// Continue `prompt`, calling `on_token` with each new token as soon as it exists;
/// `on_token` returns `false` to stop early.
pub fn generate<B: Backend>(
    model: &Llama<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(ModelError::Input("empty prompt".into()));
    }
    let vocab = model.config().vocab_size;
    check_ids(prompt, vocab)?;
    let device = model.device();
    let mut rng = SplitMix64::new(opts.seed);
    let mut cache = model.new_cache();
    let mut out = Vec::new();
    let mut stopped = false;

    let t0 = Instant::now();
    let logits =
        last_row(model.forward_with_cache(id_tensor::<B>(&[prompt], &device), &mut cache))?;
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut next = sample(&logits, opts, &mut rng);
    while out.len() < opts.max_new_tokens {
        if opts.stop_ids.contains(&next) {
            stopped = true;
            break;
        }
        out.push(next);
        if !on_token(next) || out.len() == opts.max_new_tokens {
            break;
        }
        let logits =
            last_row(model.forward_with_cache(id_tensor::<B>(&[&[next]], &device), &mut cache))?;
        next = sample(&logits, opts, &mut rng);
    }
    Ok(Generation {
        tokens: out,
        stopped,
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
    })
}

/// Perplexity of a token sequence scored in one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    /// Tokens in the window.
    pub tokens: usize,
    /// Tokens predicted (`tokens - 1`: the first has no context).
    pub predicted: usize,
    /// Mean negative log-likelihood (nats) over the predicted tokens.
    pub nll: f64,
    /// `exp(nll)`.
    pub ppl: f64,
}

/// Per-token log-probabilities of `rows` (right-padded to a common length inside);
/// entry `j` of row `r` is `log p(rows[r][j + 1] | rows[r][..=j])`.
pub fn token_logprobs<B: Backend>(model: &Llama<B>, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let vocab = model.config().vocab_size;
    let t = rows.iter().map(Vec::len).max().unwrap_or(0);
    if t < 2 {
        return Err(ModelError::Input("need at least 2 tokens to score".into()));
    }
    for row in rows {
        check_ids(row, vocab)?;
    }
    let device = model.device();
    let padded: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| {
            let mut p = r.clone();
            p.resize(t, 0);
            p
        })
        .collect();
    let refs: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
    let mask = if rows.iter().all(|r| r.len() == t) {
        AttentionMask::Causal
    } else {
        let valid: Vec<Vec<bool>> = rows
            .iter()
            .map(|r| (0..t).map(|i| i < r.len()).collect())
            .collect();
        let heads = model.config().num_attention_heads;
        model.mask_for(|window| AttentionMask::padded_window(&valid, t, heads, window, &device))?
    };
    let b = rows.len();
    let logits = model.forward_masked(id_tensor::<B>(&refs, &device), &mask);
    let logp = log_softmax(logits.slice([0..b, 0..t - 1, 0..vocab]), 2);
    let targets: Vec<i64> = padded
        .iter()
        .flat_map(|r| r[1..].iter().map(|&x| x as i64))
        .collect();
    let targets = Tensor::<B, 3, Int>::from_data(TensorData::new(targets, [b, t - 1, 1]), &device);
    let picked = logp
        .gather(2, targets)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("reading log-probabilities: {e:?}")))?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(r, row)| picked[r * (t - 1)..r * (t - 1) + row.len().saturating_sub(1)].to_vec())
        .collect())
}

/// Mean NLL and perplexity of `ids` scored in one causal window.
pub fn perplexity<B: Backend>(model: &Llama<B>, ids: &[u32]) -> Result<Perplexity> {
    let lp = token_logprobs(model, &[ids.to_vec()])?;
    let row = &lp[0];
    let nll = -row.iter().map(|&x| x as f64).sum::<f64>() / row.len() as f64;
    Ok(Perplexity {
        tokens: ids.len(),
        predicted: row.len(),
        nll,
        ppl: nll.exp(),
    })
}
