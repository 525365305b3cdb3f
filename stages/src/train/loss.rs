//! Next-token cross-entropy with a weight per target token.
//!
//! A micro-batch of sequences `ids[0..L]` becomes inputs `ids[0..L-1]` and targets
//! `ids[1..L]` ([`HostBatch`]). Target `t` counts when the mode says so (CPT: always;
//! SFT: `loss_mask[t]`) and weighs `1 / N`, where `N` is the number of counted targets
//! in the whole optimizer-step batch, so that summing the micro-batch losses of an
//! accumulated step gives exactly the token-mean loss of one big batch.
//! A target with weight 0 contributes exactly zero gradient.
//!
//! Training uses [`FusedLoss::fused_cross_entropy`]: one autodiff op whose forward
//! computes each row's log-sum-exp and target logit and whose backward writes
//! `w * (softmax - onehot)` straight into the logits' gradient, instead of recording
//! log-softmax, gather, product and sum separately (a `[tokens, vocab]` log-softmax kept
//! for the backward, a zeros tensor of that size to scatter the gather's gradient into,
//! and several passes over it). [`weighted_cross_entropy`] is the same loss composed of
//! tensor ops, for any backend; tests hold the two equal.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorPrimitive};

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

    /// Counted targets of sequences `indices` of `data`: what [`HostBatch::count`] gives
    /// for them, without building the batch (the loss normaliser of a global batch that
    /// this rank reads only part of).
    pub fn count_targets(data: &PackedData, indices: &[usize], mode: Mode) -> usize {
        let len = data.seq_len - 1;
        indices
            .iter()
            .map(|&i| match (mode, data.mask(i)) {
                (Mode::Sft, Some(mask)) => mask[1..].iter().filter(|&&c| c).count(),
                _ => len,
            })
            .sum()
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
    let logp = log_softmax(as_f32(logits), 2);
    let picked: Tensor<B, 2> = logp.gather(2, targets.unsqueeze_dim(2)).squeeze_dim(2);
    (picked * as_f32(weights)).sum().neg()
}

/// `t` in f32 (a cast only when it is in another float type).
fn as_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

/// Autodiff backends with the fused training loss.
pub trait FusedLoss: AutodiffBackend {
    /// [`weighted_cross_entropy`] as one autodiff op (see the module doc).
    fn fused_cross_entropy(
        logits: Tensor<Self, 3>,
        targets: Tensor<Self, 2, Int>,
        weights: Tensor<Self, 2>,
    ) -> Tensor<Self, 1>;
}

/// The backward of [`FusedLoss::fused_cross_entropy`]; its state is the logits
/// `[n, vocab]`, their row log-sum-exp `[n, 1]`, the targets `[n, 1]` and the weights
/// `[n, 1]`.
#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: Backend> Backward<B, 1> for CrossEntropyBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, lse, targets, weights) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            // d/dx_rj of w_r (lse_r - x_r,t_r) = w_r (softmax_rj - [j = t_r]).
            let coef = B::float_mul(weights, B::float_reshape(grad, Shape::new([1, 1])));
            let probs = B::float_exp(B::float_sub(logits, lse));
            let scaled = B::float_mul(probs, coef.clone());
            B::float_scatter_add(1, scaled, targets, B::float_neg(coef))
        });
    }
}

impl<B: Backend, C: CheckpointStrategy> FusedLoss for Autodiff<B, C> {
    fn fused_cross_entropy(
        logits: Tensor<Self, 3>,
        targets: Tensor<Self, 2, Int>,
        weights: Tensor<Self, 2>,
    ) -> Tensor<Self, 1> {
        let [batch, len, vocab] = logits.dims();
        let n = batch * len;
        let logits = as_f32(logits).reshape([n, vocab]).into_primitive().tensor();
        let targets = targets.reshape([n, 1]).into_primitive();
        let weights = as_f32(weights.reshape([n, 1]))
            .into_primitive()
            .tensor()
            .primitive;
        let x = logits.primitive.clone();
        let max = B::float_max_dim(x.clone(), 1);
        let sum_exp = B::float_sum_dim(B::float_exp(B::float_sub(x.clone(), max.clone())), 1);
        let lse = B::float_add(B::float_log(sum_exp), max);
        let picked = B::float_gather(1, x.clone(), targets.clone());
        let per_row = B::float_mul(B::float_sub(lse.clone(), picked), weights.clone());
        let loss = B::float_reshape(B::float_sum(per_row), Shape::new([1]));
        let out = match CrossEntropyBackward
            .prepare::<C>([logits.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, lse, targets, weights), loss),
            OpsKind::UnTracked(prep) => prep.finish(loss),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}
