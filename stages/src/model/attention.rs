//! [`Attention`]: grouped-query self-attention with rotary positions and a KV cache,
//! plus [`AttentionMask`] (causal, or causal with per-token padding) and [`LayerCache`].
//!
//! Shapes: activations `[batch, seq, hidden]`; per-head tensors `[batch, heads, seq,
//! head_dim]`. `num_attention_heads` query heads share `num_key_value_heads` key/value
//! heads (each kv head serves `heads / kv_heads` consecutive query heads, as in HF's
//! `repeat_kv`). The cache stores keys after rotation, like HF's `DynamicCache`.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::error::{ModelError, Result};
use super::rope::RopeTables;

/// Which key positions each query may attend to.
#[derive(Debug, Clone)]
pub enum AttentionMask<B: Backend> {
    /// Plain causal attention, aligned so the last query sees every key (the cached
    /// past included).
    Causal,
    /// Causal attention that also hides padding keys: a bool tensor `[batch, 1, seq_q,
    /// seq_kv]` where `true` means "masked out". Build it with [`AttentionMask::padded`].
    Explicit(Tensor<B, 4, Bool>),
}

impl<B: Backend> AttentionMask<B> {
    /// Causal mask that also hides padding. `valid[b][k]` says whether key position `k`
    /// (over past and current tokens, `seq_kv = past_len + seq_q` entries) of row `b`
    /// holds a real token. A query row that would see no key at all (a pad before any
    /// real token, as with left padding) falls back to plain causal attention so that
    /// softmax stays finite; its output is meaningless and should be ignored.
    pub fn padded(valid: &[Vec<bool>], seq_q: usize, device: &B::Device) -> Result<Self> {
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
        let mut data = Vec::with_capacity(batch * seq_q * seq_kv);
        let mut row_mask = vec![false; seq_kv];
        for row in valid {
            for q in 0..seq_q {
                let last = q + offset;
                let mut any = false;
                for (k, m) in row_mask.iter_mut().enumerate() {
                    *m = k > last || !row[k];
                    any |= !*m;
                }
                if !any {
                    for (k, m) in row_mask.iter_mut().enumerate() {
                        *m = k > last;
                    }
                }
                data.extend_from_slice(&row_mask);
            }
        }
        let mask = Tensor::<B, 4, Bool>::from_data(
            TensorData::new(data, [batch, 1, seq_q, seq_kv]),
            device,
        );
        Ok(AttentionMask::Explicit(mask))
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
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, t, h, d])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, t, kvh, d])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, t, kvh, d])
            .swap_dims(1, 2);
        let q = rope.apply(q);
        let k = rope.apply(k);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let s = k.dims()[2];
        let rep = h / kvh;

        let out = match mask {
            // One new token sees every key: fold the query heads sharing a kv head into
            // the query axis instead of repeating keys and values `rep` times.
            AttentionMask::Causal if t == 1 && rep > 1 => {
                let q = q.reshape([b, kvh, rep, d]);
                let o = attention(q, k, v, None, None, AttentionModuleOptions::default());
                o.reshape([b, h, 1, d])
            }
            AttentionMask::Causal => {
                let options = AttentionModuleOptions {
                    is_causal: true,
                    ..Default::default()
                };
                attention(q, repeat_kv(k, rep), repeat_kv(v, rep), None, None, options)
            }
            AttentionMask::Explicit(m) => {
                let m = m.clone().expand([b, h, t, s]);
                attention(
                    q,
                    repeat_kv(k, rep),
                    repeat_kv(v, rep),
                    Some(m),
                    None,
                    AttentionModuleOptions::default(),
                )
            }
        };
        let out = out.swap_dims(1, 2).reshape([b, t, h * d]);
        self.o_proj.forward(out)
    }
}

/// `[b, kvh, s, d]` -> `[b, kvh * rep, s, d]`, each kv head repeated for `rep`
/// consecutive query heads (HF `repeat_kv`).
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, rep: usize) -> Tensor<B, 4> {
    if rep == 1 {
        return x;
    }
    let [b, kvh, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kvh, rep, s, d])
        .reshape([b, kvh * rep, s, d])
}
