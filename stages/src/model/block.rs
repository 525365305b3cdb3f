//! [`Block`]: one pre-norm Llama decoder layer,
//! `h = x + attn(norm1(x)); out = h + mlp(norm2(h))`.

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
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
    /// SwiGLU MLP.
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
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}
