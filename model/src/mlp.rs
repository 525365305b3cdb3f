//! [`Mlp`]: the gated feed-forward of every family, `down(act(gate(x)) * up(x))`, with
//! `act` SiLU (SwiGLU: Llama, Mistral, Qwen) or GELU's tanh approximation (GeGLU: Gemma,
//! transformers' `gelu_pytorch_tanh`).

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::config::Activation;
use super::token_linear::token_linear;

/// Gated MLP. Linear weights are burn's `[in, out]` (HF stores `[out, in]`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `gate_proj`, hidden -> intermediate.
    pub gate_proj: Linear<B>,
    /// `up_proj`, hidden -> intermediate.
    pub up_proj: Linear<B>,
    /// `down_proj`, intermediate -> hidden.
    pub down_proj: Linear<B>,
    /// The gate's activation.
    #[module(skip)]
    pub activation: Activation,
}

/// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`, as torch's `gelu(approximate="tanh")`.
fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let inner =
        (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715)).mul_scalar(SQRT_2_OVER_PI);
    x.clone().mul_scalar(0.5) * (inner.tanh().add_scalar(1.0))
}

impl<B: Backend> Mlp<B> {
    /// Apply to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = token_linear(&self.gate_proj, x.clone());
        let gate = match self.activation {
            Activation::Silu => silu(gate),
            Activation::GeluTanh => gelu_tanh(gate),
        };
        let up = token_linear(&self.up_proj, x);
        token_linear(&self.down_proj, gate * up)
    }
}
