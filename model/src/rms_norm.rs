//! [`RmsNorm`]: root-mean-square layer norm over the last dimension, as in HF Llama,
//! `weight * x / sqrt(mean(x^2) + eps)`, or as in Gemma (`unit_offset`):
//! `(1 + weight) * x / sqrt(mean(x^2) + eps)`, computed in f32 and cast back to the
//! activations' dtype as transformers' `Gemma3RMSNorm` does.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

/// RMSNorm with a learned per-channel scale.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel scale, `[dim]` (HF `*.weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square before the square root.
    pub eps: f64,
    /// Whether the scale is `1 + weight` (Gemma) rather than `weight`.
    #[module(skip)]
    pub unit_offset: bool,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm with the given scale.
    pub fn from_weight(weight: Tensor<B, 1>, eps: f64, unit_offset: bool) -> Self {
        RmsNorm {
            weight: Param::from_tensor(weight),
            eps,
            unit_offset,
        }
    }

    /// Normalise `x` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dim = self.weight.dims()[0];
        let mut shape = [1usize; D];
        shape[D - 1] = dim;
        if self.unit_offset {
            let dtype = x.dtype();
            let wide = |t: Tensor<B, D>| match t.dtype() {
                DType::F32 => t,
                _ => t.cast(FloatDType::F32),
            };
            let weight = self.weight.val();
            let weight = match weight.dtype() {
                DType::F32 => weight,
                _ => weight.cast(FloatDType::F32),
            };
            let y = Self::normalise(wide(x), self.eps) * weight.add_scalar(1.0).reshape(shape);
            return match dtype {
                DType::F32 => y,
                other => y.cast(FloatDType::from(other)),
            };
        }
        let weight = super::precision::like(self.weight.val(), &x);
        Self::normalise(x, self.eps) * weight.reshape(shape)
    }

    fn normalise<const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
        let rms = x.clone().square().mean_dim(D - 1).add_scalar(eps).sqrt();
        x / rms
    }
}
