//! Per-block activation recomputation (`recompute: blocks`): one micro-batch's forward
//! and backward that keeps only each block's input, not the activations inside the
//! blocks, and recomputes each block under autodiff when the backward reaches it.
//!
//! [`backward_by_block`] runs in segments, last first:
//! 1. a forward without autodiff (the model's inner backend) through the embedding and
//!    the blocks, keeping the residual stream `x_i` entering each block (`blocks + 1`
//!    tensors `[batch, seq, hidden]`);
//! 2. the head segment under autodiff: `x_L` as a leaf that requires a gradient, final
//!    norm, output projection, loss, backward; this gives the head's gradients and
//!    `dL/dx_L`;
//! 3. block `i` from the last down to the lowest that needs a gradient: `x_i` as a leaf,
//!    the block's forward under autodiff, and the backward of `sum(out * dL/dx_{i+1})`,
//!    whose gradient at `out` is exactly `dL/dx_{i+1}`; this gives the block's parameter
//!    gradients and `dL/dx_i`; the segment's graph is freed before the next one starts;
//! 4. when the embedding trains, `sum(embed(tokens) * dL/dx_0)` the same way.
//!
//! The segments' parameter gradients are merged into the head segment's gradient
//! container (a parameter used in two segments, the tied embedding, sums head first, as
//! the whole-model backward does), so the caller collects them as from `loss.backward()`.
//! The values are those of the whole-model backward: the same kernels on the same inputs
//! in the same order, bit for bit (`stages/tests/train_recompute.rs`). Below the lowest
//! block that trains no segment runs, as the whole-model backward computes nothing there.
//!
//! The cost is one more forward of the blocks from the lowest trainable one up; the
//! memory held for the backward is the block inputs plus one block's activations
//! instead of all blocks' ([`MemoryPlan`](super::memory_plan::MemoryPlan)).

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::loss::FusedLoss;
use crate::model::{AttentionMask, Llama};

/// What the backward has to reach below the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackwardReach {
    /// The lowest block whose parameters train (`None`: no block trains).
    pub lowest_block: Option<usize>,
    /// The token embedding trains (then every block's segment runs).
    pub embedding: bool,
}

/// Forward and backward of one micro-batch with per-block recomputation (module doc):
/// the loss (detached) and the gradients of the trainable parameters, as
/// `loss.backward()` of the whole model gives them.
pub fn backward_by_block<AB: AutodiffBackend + FusedLoss>(
    model: &Llama<AB>,
    inputs: Tensor<AB, 2, Int>,
    targets: Tensor<AB, 2, Int>,
    weights: Tensor<AB, 2>,
    reach: BackwardReach,
) -> (Tensor<AB::InnerBackend, 1>, AB::Gradients) {
    let len = inputs.dims()[1];

    let lowest = if reach.embedding {
        Some(0)
    } else {
        reach.lowest_block
    };
    let depth = model.blocks.len();
    let kept_from = lowest.unwrap_or(depth);

    // 1. The residual stream entering each block from `kept_from` on, without a graph.
    let plain = model.valid();
    let plain_rope = plain.rope_tables(0, len);
    let mut stream = Vec::with_capacity((kept_from..depth).len());
    let mut x = plain.embed(inputs.clone().inner());
    for (index, block) in plain.blocks.iter().enumerate() {
        let next = block.forward(x.clone(), &plain_rope, &AttentionMask::Causal, None);
        if index >= kept_from {
            stream.push(x);
        }
        x = next;
    }
    drop(plain);

    // 2. The head.
    let top = Tensor::<AB, 3>::from_inner(x).require_grad();
    let loss = AB::fused_cross_entropy(model.head(top.clone()), targets, weights);
    let detached = loss.clone().inner();
    let mut grads = loss.backward();
    let mut upstream = top.grad_remove(&mut grads);

    // 3. The blocks, last first, down to the lowest one the gradient must reach.
    let rope = model.rope_tables(0, len);
    for index in (kept_from..depth).rev() {
        let (Some(g), Some(input)) = (upstream.take(), stream.pop()) else {
            break;
        };
        let block = &model.blocks[index];
        let x = Tensor::<AB, 3>::from_inner(input).require_grad();
        let out = block.forward(x.clone(), &rope, &AttentionMask::Causal, None);
        let mut segment = (out * Tensor::from_inner(g)).sum().backward();
        upstream = x.grad_remove(&mut segment);
        block.visit(&mut MergeGrads::<AB> {
            from: &mut segment,
            into: &mut grads,
        });
    }

    // 4. The embedding.
    if reach.embedding
        && let Some(g) = upstream
    {
        let x0 = model.embed(inputs);
        let mut segment = (x0 * Tensor::from_inner(g)).sum().backward();
        model.embed_tokens.visit(&mut MergeGrads::<AB> {
            from: &mut segment,
            into: &mut grads,
        });
    }
    (detached, grads)
}

/// Moves the gradients of a module's parameters from one container into another,
/// adding to what is there (`into`'s value first).
struct MergeGrads<'a, AB: AutodiffBackend> {
    from: &'a mut AB::Gradients,
    into: &'a mut AB::Gradients,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for MergeGrads<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = param.grad_remove(self.from) {
            let sum = match param.grad_remove(self.into) {
                Some(prev) => prev + g,
                None => g,
            };
            param.grad_replace(self.into, sum);
        }
    }
}
