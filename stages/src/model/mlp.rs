//! [`Mlp`]: the SwiGLU feed-forward of Llama, `down(silu(gate(x)) * up(x))`.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::token_linear::token_linear;

/// SwiGLU MLP. Linear weights are burn's `[in, out]` (HF stores `[out, in]`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `gate_proj`, hidden -> intermediate.
    pub gate_proj: Linear<B>,
    /// `up_proj`, hidden -> intermediate.
    pub up_proj: Linear<B>,
    /// `down_proj`, intermediate -> hidden.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Apply to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(token_linear(&self.gate_proj, x.clone()));
        let up = token_linear(&self.up_proj, x);
        token_linear(&self.down_proj, gate * up)
    }
}
