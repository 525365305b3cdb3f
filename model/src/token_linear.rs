//! [`token_linear`]: a `Linear` applied to `[batch, seq, in]` as one `[batch * seq, in]`
//! matrix product.
//!
//! burn's `Linear::forward` on a 3-D input broadcasts the weight to a batched matmul:
//! the CPU backend then runs one small GEMM per batch row (re-packing the weight each
//! time), and the weight gradient becomes `batch` full-size products summed afterwards.
//! Flattening the token axes first gives one large GEMM forward and one backward, with
//! the same result.
//!
//! A weight held in another dtype than the activations (a bf16 checkpoint kept resident,
//! `precision`) is widened for the product; f32 weights take burn's own `Linear` path.

use burn::nn::Linear;
use burn::prelude::*;

use super::precision::matmul_widened;

/// `layer(x)` for `x` `[batch, seq, in]`, computed as a single 2-D product.
pub fn token_linear<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, d_in] = x.dims();
    let x = x.reshape([b * t, d_in]);
    let weight = layer.weight.val();
    let y = if weight.dtype() == x.dtype() {
        layer.forward(x)
    } else {
        matmul_widened(x, weight, layer.bias.as_ref().map(|b| b.val()))
    };
    let d_out = y.dims()[1];
    y.reshape([b, t, d_out])
}
