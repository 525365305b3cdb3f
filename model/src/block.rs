//! [`Block`]: one decoder layer. Pre-norm (Llama, Mistral, Qwen):
//! `h = x + attn(norm1(x)); out = h + mlp(norm2(h))`, where `norm2` is HF's
//! `post_attention_layernorm`. With Gemma's sandwich norms
//! ([`LlamaConfig::sandwich_norms`](super::config::LlamaConfig::sandwich_norms)) the
//! sub-layer outputs are normed too:
//! `h = x + post_attention_layernorm(attn(input_layernorm(x)));
//! out = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)))`.
//! Either way a block whose `o_proj` and `down_proj` are zero adds nothing to `x` (the
//! RMSNorm of zeros is zero).

use burn::prelude::*;

use super::attention::{Attention, AttentionMask, LayerCache};
use super::mlp::Mlp;
use super::rms_norm::RmsNorm;
use super::rope::RopeTables;

/// A decoder block, field names as HF's `model.layers.{i}.*`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// Norm before the MLP, or (sandwich norms) on the attention output.
    pub post_attention_layernorm: RmsNorm<B>,
    /// Sandwich norms only: the norm before the MLP.
    pub pre_feedforward_layernorm: Option<RmsNorm<B>>,
    /// Sandwich norms only: the norm on the MLP output.
    pub post_feedforward_layernorm: Option<RmsNorm<B>>,
    /// Gated MLP.
    pub mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    /// Map the residual stream `x` `[batch, seq, hidden]` to the next one.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: &AttentionMask<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let attn =
            self.self_attn
                .forward(self.input_layernorm.forward(x.clone()), rope, mask, cache);
        match (
            &self.pre_feedforward_layernorm,
            &self.post_feedforward_layernorm,
        ) {
            (Some(pre), Some(post)) => {
                let h = x + self.post_attention_layernorm.forward(attn);
                h.clone() + post.forward(self.mlp.forward(pre.forward(h)))
            }
            _ => {
                let h = x + attn;
                h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
            }
        }
    }
}
