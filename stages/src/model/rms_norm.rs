//! [`RmsNorm`]: root-mean-square layer norm as in HF Llama,
//! `weight * x / sqrt(mean(x^2) + eps)` over the last dimension.

use burn::module::Param;
use burn::prelude::*;

/// RMSNorm with a learned per-channel scale.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel scale, `[hidden]` (HF `*.weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm of width `dim` with unit scale.
    pub fn new(dim: usize, eps: f64, device: &B::Device) -> Self {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([dim], device)),
            eps,
        }
    }

    /// A norm with the given scale.
    pub fn from_weight(weight: Tensor<B, 1>, eps: f64) -> Self {
        RmsNorm {
            weight: Param::from_tensor(weight),
            eps,
        }
    }

    /// Normalise `x` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dim = self.weight.dims()[0];
        let rms = x
            .clone()
            .square()
            .mean_dim(D - 1)
            .add_scalar(self.eps)
            .sqrt();
        let mut shape = [1usize; D];
        shape[D - 1] = dim;
        let weight = super::precision::like(self.weight.val(), &x);
        (x / rms) * weight.reshape(shape)
    }
}
