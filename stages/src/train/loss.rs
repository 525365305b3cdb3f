//! Next-token cross-entropy with a weight per target token.
//!
//! A micro-batch of sequences `ids[0..L]` becomes inputs `ids[0..L-1]` and targets
//! `ids[1..L]` ([`HostBatch`]). Target `t` counts when the mode says so (CPT: always;
//! SFT: `loss_mask[t]`) and weighs `1 / N`, where `N` is the number of counted targets
//! in the whole optimizer-step batch, so that summing the micro-batch losses of an
//! accumulated step gives exactly the token-mean loss of one big batch.
//! A target with weight 0 contributes exactly zero gradient.

use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::log_softmax;

use super::data_loader::PackedData;
use super::params::Mode;

/// One micro-batch in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// Sequences.
    pub batch: usize,
    /// Positions per sequence (`seq_len - 1`).
    pub len: usize,
    /// Input ids, row-major `[batch, len]`.
    pub inputs: Vec<i64>,
    /// Target ids, row-major `[batch, len]`.
    pub targets: Vec<i64>,
    /// Whether each target counts in the loss.
    pub counted: Vec<bool>,
}

impl HostBatch {
    /// The sequences `indices` of `data`.
    pub fn new(data: &PackedData, indices: &[usize], mode: Mode) -> Self {
        let len = data.seq_len - 1;
        let mut b = HostBatch {
            batch: indices.len(),
            len,
            inputs: Vec::with_capacity(indices.len() * len),
            targets: Vec::with_capacity(indices.len() * len),
            counted: Vec::with_capacity(indices.len() * len),
        };
        for &i in indices {
            let ids = data.ids(i);
            b.inputs.extend(ids[..len].iter().map(|&x| x as i64));
            b.targets.extend(ids[1..].iter().map(|&x| x as i64));
            match (mode, data.mask(i)) {
                (Mode::Sft, Some(mask)) => b.counted.extend_from_slice(&mask[1..]),
                _ => b.counted.extend(std::iter::repeat_n(true, len)),
            }
        }
        b
    }

    /// Number of counted targets.
    pub fn count(&self) -> usize {
        self.counted.iter().filter(|&&c| c).count()
    }

    /// Tokens this batch consumes (sequences x seq_len).
    pub fn tokens(&self) -> usize {
        self.batch * (self.len + 1)
    }

    /// `(inputs, targets, weights)` on `device`, each counted target weighing `1 / norm`.
    pub fn tensors<B: Backend>(
        &self,
        norm: usize,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2>) {
        let shape = [self.batch, self.len];
        let w = 1.0 / norm.max(1) as f32;
        let weights: Vec<f32> = self
            .counted
            .iter()
            .map(|&c| if c { w } else { 0.0 })
            .collect();
        (
            Tensor::from_data(TensorData::new(self.inputs.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.targets.clone(), shape), device),
            Tensor::from_data(TensorData::new(weights, shape), device),
        )
    }
}

/// `-sum(weights * log p(target))` over `[batch, len]`; logits `[batch, len, vocab]`
/// are promoted to f32 first when the model computes in lower precision.
pub fn weighted_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let logits = if logits.dtype() == DType::F32 {
        logits
    } else {
        logits.cast(DType::F32)
    };
    let weights = if weights.dtype() == DType::F32 {
        weights
    } else {
        weights.cast(DType::F32)
    };
    let logp = log_softmax(logits, 2);
    let picked: Tensor<B, 2> = logp.gather(2, targets.unsqueeze_dim(2)).squeeze_dim(2);
    (picked * weights).sum().neg()
}
