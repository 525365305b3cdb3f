//! [`Attention`]: grouped-query self-attention with rotary positions and a KV cache,
//! plus [`AttentionMask`] (causal, or causal with per-token padding) and [`LayerCache`].
//!
//! Shapes: activations `[batch, seq, hidden]`; per-head tensors `[batch, heads, seq,
//! head_dim]`. `num_attention_heads` query heads share `num_key_value_heads` key/value
//! heads (each kv head serves `heads / kv_heads` consecutive query heads, as in HF's
//! `repeat_kv`). The cache stores keys after rotation, like HF's `DynamicCache`.
//!
//! The attention product itself is written as two batched matmuls around a softmax,
//! with the query heads that share a kv head folded into the query axis: keys and
//! values are never repeated, every step is a multi-threaded kernel on the CPU backend,
//! and masks are additive biases laid out so that adding them is a row broadcast.
//!
//! A sliding window (Mistral, Gemma 3's local blocks) is data of [`Attention`]: with
//! [`AttentionMask::Causal`] a query at position `i` sees keys `j` with
//! `i - window < j <= i`, in full-sequence and KV-cached forwards alike (the cache keeps
//! every key; the mask hides the old ones). An [`AttentionMask::Explicit`] mask is the
//! caller's whole visibility rule: build it with [`AttentionMask::padded_window`] or put
//! the window in [`AttentionMask::from_fn`]'s rule, since only the caller knows the
//! positions; a model whose blocks differ takes one rule per kind of block
//! ([`AttentionMask::PerWindow`], built by
//! [`Llama::mask_for`](super::llama::Llama::mask_for)).
//!
//! The other per-family differences are data too: per-head q/k RMSNorms before rotary
//! (Qwen3, Gemma 3), the score scale (Gemma 3's `query_pre_attn_scalar`) and which
//! rotary table a block uses.

use burn::nn::Linear;
use burn::prelude::*;

use super::error::{ModelError, Result};
use super::rms_norm::RmsNorm;
use super::rope::RopeTables;
use super::token_linear::token_linear;

/// Which key positions each query may attend to.
#[derive(Debug, Clone)]
pub enum AttentionMask<B: Backend> {
    /// Plain causal attention, aligned so the last query sees every key (the cached
    /// past included).
    Causal,
    /// Causal attention that also hides padding keys: an additive bias `[batch, heads,
    /// seq_q * seq_kv]` (the same pattern for every query head, laid out once so that
    /// no block has to expand it), `0` where a key is visible and `f32::MIN` where it is
    /// masked out. Build it with [`AttentionMask::padded`] or [`AttentionMask::from_fn`].
    Explicit(Tensor<B, 3>),
    /// Explicit masks for a model whose blocks differ in their window (Gemma 3): `full`
    /// for blocks without one, `sliding` for the others (built with their window).
    PerWindow {
        /// Bias of the blocks that see every earlier key.
        full: Tensor<B, 3>,
        /// Bias of the sliding blocks.
        sliding: Tensor<B, 3>,
    },
}

impl<B: Backend> AttentionMask<B> {
    /// Causal mask that also hides padding. `valid[b][k]` says whether key position `k`
    /// (over past and current tokens, `seq_kv = past_len + seq_q` entries) of row `b`
    /// holds a real token. A query row that would see no key at all (a pad before any
    /// real token, as with left padding) falls back to plain causal attention so that
    /// softmax stays finite; its output is meaningless and should be ignored. `heads`
    /// is the model's number of query heads.
    pub fn padded(
        valid: &[Vec<bool>],
        seq_q: usize,
        heads: usize,
        device: &B::Device,
    ) -> Result<Self> {
        Self::padded_window(valid, seq_q, heads, None, device)
    }

    /// [`AttentionMask::padded`] for a model with a sliding `window` (see
    /// [`Llama::sliding_window`](super::llama::Llama::sliding_window)): a query also
    /// hides keys `window` or more positions behind it.
    pub fn padded_window(
        valid: &[Vec<bool>],
        seq_q: usize,
        heads: usize,
        window: Option<usize>,
        device: &B::Device,
    ) -> Result<Self> {
        let batch = valid.len();
        let seq_kv = valid.first().map_or(0, Vec::len);
        if batch == 0 || seq_kv < seq_q {
            return Err(ModelError::Input(format!(
                "padding mask has {batch} rows of {seq_kv} keys for {seq_q} queries"
            )));
        }
        if let Some((i, row)) = valid.iter().enumerate().find(|(_, r)| r.len() != seq_kv) {
            return Err(ModelError::Input(format!(
                "padding mask row {i} has {} entries, row 0 has {seq_kv}",
                row.len()
            )));
        }
        let offset = seq_kv - seq_q;
        // A query that would see no real key (all real keys lie after it) sees the
        // causal prefix instead.
        let first_real: Vec<usize> = valid
            .iter()
            .map(|row| row.iter().position(|&v| v).unwrap_or(seq_kv))
            .collect();
        Ok(Self::from_fn(
            batch,
            heads,
            seq_q,
            seq_kv,
            device,
            |b, q, k| {
                let last = q + offset;
                k <= last
                    && window.is_none_or(|w| k + w > last)
                    && (valid[b][k] || first_real[b] > last)
            },
        ))
    }

    /// A mask from a visibility rule: `visible(row, query, key)` says whether query
    /// position `query` of batch row `row` attends to key position `key` (over past and
    /// current tokens), the same for each of the model's `heads` query heads. Every
    /// query should see at least one key; one that sees none attends uniformly and its
    /// output is meaningless.
    pub fn from_fn(
        batch: usize,
        heads: usize,
        seq_q: usize,
        seq_kv: usize,
        device: &B::Device,
        visible: impl Fn(usize, usize, usize) -> bool,
    ) -> Self {
        let tile = seq_q * seq_kv;
        let mut data: Vec<f32> = Vec::with_capacity(batch * heads * tile);
        for b in 0..batch {
            let start = data.len();
            for q in 0..seq_q {
                data.extend((0..seq_kv).map(|k| if visible(b, q, k) { 0.0 } else { f32::MIN }));
            }
            for _ in 1..heads {
                data.extend_from_within(start..start + tile);
            }
        }
        let bias = Tensor::<B, 3>::from_data(TensorData::new(data, [batch, heads, tile]), device);
        AttentionMask::Explicit(bias)
    }
}

/// Cached keys and values of one block, `[batch, kv_heads, past, head_dim]`.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// Rotated keys.
    pub k: Option<Tensor<B, 4>>,
    /// Values.
    pub v: Option<Tensor<B, 4>>,
}

impl<B: Backend> Default for LayerCache<B> {
    fn default() -> Self {
        LayerCache { k: None, v: None }
    }
}

impl<B: Backend> LayerCache<B> {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append new keys/values and return the full cached sequences.
    fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let k = match self.k.take() {
            Some(past) => Tensor::cat(vec![past, k], 2),
            None => k,
        };
        let v = match self.v.take() {
            Some(past) => Tensor::cat(vec![past, v], 2),
            None => v,
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        (k, v)
    }
}

/// Grouped-query self-attention (HF `self_attn`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// hidden -> heads * head_dim.
    pub q_proj: Linear<B>,
    /// hidden -> kv_heads * head_dim.
    pub k_proj: Linear<B>,
    /// hidden -> kv_heads * head_dim.
    pub v_proj: Linear<B>,
    /// heads * head_dim -> hidden.
    pub o_proj: Linear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm over each query head before rotary (Qwen3, Gemma 3).
    pub q_norm: Option<RmsNorm<B>>,
    /// RMSNorm over each key head before rotary (Qwen3, Gemma 3).
    pub k_norm: Option<RmsNorm<B>>,
    /// Factor of the scores: `head_dim^-1/2`, Gemma 3's `query_pre_attn_scalar^-1/2`.
    #[module(skip)]
    pub scale: f64,
    /// Sliding attention window (keys seen per query, itself included); `None`: all.
    #[module(skip)]
    pub sliding_window: Option<usize>,
    /// Whether this block rotates with the model's local rotary table (Gemma 3's
    /// sliding blocks).
    #[module(skip)]
    pub local_rope: bool,
}

impl<B: Backend> Attention<B> {
    /// Attend over `x` `[batch, seq, hidden]`. With a cache, `x` continues the cached
    /// sequence (the rope tables must then start at the cached length).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: &AttentionMask<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // Head norms and rotary positions are applied in the projections' own `[b, t,
        // heads, d]` layout, before heads move in front of the sequence axis.
        let head_norm = |norm: &Option<RmsNorm<B>>, y: Tensor<B, 4>| match norm {
            Some(n) => n.forward(y),
            None => y,
        };
        let q = head_norm(
            &self.q_norm,
            token_linear(&self.q_proj, x.clone()).reshape([b, t, h, d]),
        );
        let q = rope.apply(q, self.local_rope).swap_dims(1, 2);
        let k = head_norm(
            &self.k_norm,
            token_linear(&self.k_proj, x.clone()).reshape([b, t, kvh, d]),
        );
        let k = rope.apply(k, self.local_rope).swap_dims(1, 2);
        let v = token_linear(&self.v_proj, x)
            .reshape([b, t, kvh, d])
            .swap_dims(1, 2);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let s = k.dims()[2];
        // Scaling q before the product equals HF's scaling of the scores (exactly so
        // for power-of-two scales) and touches t*d, not t*s, values.
        let q = q.mul_scalar(self.scale);
        // A window no shorter than the keys hides nothing.
        let window = self.sliding_window.filter(|&w| w < s);
        let out = match mask {
            // A single new token sees every key.
            AttentionMask::Causal if t == 1 && window.is_none() => attend(q, k, v, None),
            AttentionMask::Causal if t <= CAUSAL_BLOCK => {
                let bias = causal_bias::<B>(t, s, window, &q.device());
                attend(q, k, v, Some(Bias::Shared(bias)))
            }
            // Long causal runs go by blocks of queries, each against the keys it can
            // see: the score tensors shrink by up to half and stay cache-sized.
            AttentionMask::Causal => {
                let blocks: Vec<Tensor<B, 4>> = (0..t)
                    .step_by(CAUSAL_BLOCK)
                    .map(|q0| {
                        let q1 = (q0 + CAUSAL_BLOCK).min(t);
                        let keys = s - t + q1;
                        let bias = causal_bias::<B>(q1 - q0, keys, window, &q.device());
                        attend(
                            q.clone().slice([0..b, 0..h, q0..q1, 0..d]),
                            k.clone().slice([0..b, 0..kvh, 0..keys, 0..d]),
                            v.clone().slice([0..b, 0..kvh, 0..keys, 0..d]),
                            Some(Bias::Shared(bias)),
                        )
                    })
                    .collect();
                Tensor::cat(blocks, 2)
            }
            AttentionMask::Explicit(bias) => attend(q, k, v, Some(Bias::PerRow(bias.clone()))),
            AttentionMask::PerWindow { full, sliding } => {
                let bias = if self.sliding_window.is_some() {
                    sliding
                } else {
                    full
                };
                attend(q, k, v, Some(Bias::PerRow(bias.clone())))
            }
        };
        let out = out.swap_dims(1, 2).reshape([b, t, h * d]);
        token_linear(&self.o_proj, out)
    }
}

/// Query positions per block of causal attention.
const CAUSAL_BLOCK: usize = 256;

/// An additive attention bias over `[t, s]` scores.
enum Bias<B: Backend> {
    /// `[1, t * s]`, the same for every batch row and head.
    Shared(Tensor<B, 2>),
    /// `[b, h, t * s]`.
    PerRow(Tensor<B, 3>),
}

/// `softmax(q k^T + bias) v` for (pre-scaled) `q` `[b, h, t, d]` and `k`, `v` `[b, kvh,
/// s, d]`, with the `h / kvh` query heads of each kv head folded into the query axis so
/// that keys and values are never repeated. Returns `[b, h, t, d]`.
fn attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<Bias<B>>,
) -> Tensor<B, 4> {
    let [b, h, t, d] = q.dims();
    let [_, kvh, s, _] = k.dims();
    let rep = h / kvh;
    let scores = q.reshape([b, kvh, rep * t, d]).matmul(k.swap_dims(2, 3));
    let scores = match bias {
        None => scores,
        Some(Bias::Shared(bias)) => {
            (scores.reshape([b * h, t * s]) + bias).reshape([b, kvh, rep * t, s])
        }
        Some(Bias::PerRow(bias)) => {
            (scores.reshape([b, h, t * s]) + bias).reshape([b, kvh, rep * t, s])
        }
    };
    super::fused_softmax::softmax(scores, 3)
        .matmul(v)
        .reshape([b, h, t, d])
}

/// Additive causal bias `[1, t * s]` for `t` queries that end a sequence of `s` keys
/// (query `i` sees keys `0..=s - t + i`; with a `window`, only the last `window` of them).
fn causal_bias<B: Backend>(
    t: usize,
    s: usize,
    window: Option<usize>,
    device: &B::Device,
) -> Tensor<B, 2> {
    let offset = s - t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| {
            let last = i + offset;
            (0..s).map(move |j| {
                let visible = j <= last && window.is_none_or(|w| j + w > last);
                if visible { 0.0 } else { f32::MIN }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [1, t * s]), device)
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;

    use super::*;
    use crate::Cpu;
    use crate::config::{RopeScaling, RopeSettings};
    use crate::rope::Rope;

    /// Causal attention over more than one block of queries (blocked, each block against
    /// the keys it can see) equals the same attention through an explicit all-visible
    /// padding mask (one unblocked product), with and without a sliding window (the
    /// window then comes from the block for `Causal`, from the mask for `Explicit`).
    #[test]
    fn blocked_causal_attention_equals_unblocked() {
        let device = Default::default();
        let (hidden, h, kvh, d) = (32, 4, 2, 8);
        let linear = |i, o| {
            LinearConfig::new(i, o)
                .with_bias(false)
                .init::<Cpu>(&device)
        };
        let mut attn = Attention {
            q_proj: linear(hidden, h * d),
            k_proj: linear(hidden, kvh * d),
            v_proj: linear(hidden, kvh * d),
            o_proj: linear(h * d, hidden),
            num_heads: h,
            num_kv_heads: kvh,
            head_dim: d,
            q_norm: None,
            k_norm: None,
            scale: 1.0 / (d as f64).sqrt(),
            sliding_window: None,
            local_rope: false,
        };
        let t = CAUSAL_BLOCK * 2 + 37;
        let x = Tensor::<Cpu, 3>::random(
            [2, t, hidden],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let rope = Rope::new(
            d,
            RopeSettings {
                theta: 10000.0,
                scaling: RopeScaling::None,
            },
        )
        .tables_at::<Cpu>(&[(0..t).collect()], &[h, kvh], false, &device);
        let mut outputs = Vec::new();
        for window in [None, Some(100)] {
            attn.sliding_window = window;
            let blocked = attn.forward(x.clone(), &rope, &AttentionMask::Causal, None);
            let all = AttentionMask::padded_window(&vec![vec![true; t]; 2], t, h, window, &device)
                .unwrap();
            attn.sliding_window = None;
            let whole = attn.forward(x.clone(), &rope, &all, None);
            let diff: f32 = (blocked.clone() - whole).abs().max().into_scalar();
            assert!(
                diff < 1e-5,
                "{window:?}: blocked vs unblocked: max difference {diff}"
            );
            outputs.push(blocked);
        }
        // The window changes the outputs of queries more than 100 keys in.
        let changed: f32 = (outputs[0].clone() - outputs[1].clone())
            .abs()
            .max()
            .into_scalar();
        assert!(changed > 1e-3, "window had no effect ({changed})");
    }
}
