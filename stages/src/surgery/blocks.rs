//! Block arithmetic on the model core's [`BlockWeights`]: element-wise means of blocks
//! ([`mean_block`], every tensor the config gives a block — q/k and sandwich norms,
//! biases — through [`BlockWeights::build`]), zeroing a block's output projections
//! ([`zero_outputs`], the table's [`BlockLinear::is_output_projection`]) and applying a
//! whole [`LayerPlan`] to a model ([`apply_plan`]).
//!
//! New blocks are rebuilt from their tensors with [`Block::from_weights`], so they get
//! fresh parameter ids and never alias the block they were copied from.

use burn::prelude::*;

use super::error::{Result, SurgeryError};
use super::plan::{BlockSource, LayerPlan};
use crate::model::tensor_names::{BlockLinear, BlockNorm};
use crate::model::{Block, BlockWeights, LinearWeights, Llama, LlamaConfig};

/// `sum(ts) / n`, summed in the order given.
fn mean_of<B: Backend, const D: usize>(ts: Vec<Tensor<B, D>>) -> Tensor<B, D> {
    let n = ts.len();
    // Half-precision (resident bf16) blocks are averaged in f32; f32 ones unchanged.
    let mut it = ts.into_iter().map(crate::model::precision::widened);
    // Callers pass at least one block.
    let first = it.next().expect("mean of at least one tensor");
    let sum = it.fold(first, |acc, t| acc + t);
    if n == 1 {
        sum
    } else {
        sum.div_scalar(n as f32)
    }
}

/// The element-wise mean of `blocks` (summed in order, then divided by their number),
/// every tensor included. One block gives a copy with fresh parameter ids.
pub fn mean_block<B: Backend>(config: &LlamaConfig, blocks: &[&Block<B>]) -> Result<Block<B>> {
    if blocks.is_empty() {
        return Err(SurgeryError::Invalid(
            "a block mean needs at least one block".into(),
        ));
    }
    let ws: Vec<BlockWeights<B>> = blocks.iter().map(|b| b.weights()).collect();
    let norm = |n: BlockNorm, _len| {
        let parts: Option<Vec<Tensor<B, 1>>> = ws.iter().map(|w| w.norm(n).cloned()).collect();
        parts.map(mean_of).ok_or_else(|| {
            SurgeryError::Invalid(format!(
                "a block to average has no `{}` (the config says every block has one)",
                n.names().weight
            ))
        })
    };
    let linear = |l: BlockLinear| {
        let (weights, biases): (Vec<_>, Vec<_>) = ws
            .iter()
            .map(|w| (w.linear(l).weight.clone(), w.linear(l).bias.clone()))
            .unzip();
        let biases: Option<Vec<_>> = biases.into_iter().collect();
        Ok(LinearWeights {
            weight: mean_of(weights),
            bias: biases.map(mean_of),
        })
    };
    // The mean block attends like the first of its sources (its window, its rotary
    // table).
    let mean = BlockWeights::build(config, ws[0].layer, norm, linear)?;
    Ok(Block::from_weights(config, mean))
}

/// `block` with its output projections (`o_proj` and `down_proj`, weights and biases)
/// set to zero: it then adds nothing to the residual stream.
pub fn zero_outputs<B: Backend>(config: &LlamaConfig, block: Block<B>) -> Block<B> {
    let mut w = block.weights();
    for l in BlockLinear::ALL
        .into_iter()
        .filter(|l| l.is_output_projection())
    {
        let lin = w.linear_mut(l);
        lin.weight = lin.weight.zeros_like();
        lin.bias = lin.bias.as_ref().map(Tensor::zeros_like);
    }
    Block::from_weights(config, w)
}

/// The block `source` describes, built from the source model's `blocks`.
pub fn build_block<B: Backend>(
    config: &LlamaConfig,
    blocks: &[Block<B>],
    source: &BlockSource,
) -> Result<Block<B>> {
    let inputs = source.inputs();
    if let Some(bad) = inputs.iter().find(|&&i| i >= blocks.len()) {
        return Err(SurgeryError::Invalid(format!(
            "the plan reads block {bad}, the model has {} blocks",
            blocks.len()
        )));
    }
    match source {
        BlockSource::Original { index } => Ok(blocks[*index].clone()),
        _ => {
            let refs: Vec<&Block<B>> = inputs.iter().map(|&i| &blocks[i]).collect();
            mean_block(config, &refs)
        }
    }
}

/// Replace `model`'s blocks by the ones `plan` describes.
pub fn apply_plan<B: Backend>(mut model: Llama<B>, plan: &LayerPlan) -> Result<Llama<B>> {
    if model.blocks.len() != plan.source_blocks {
        return Err(SurgeryError::Invalid(format!(
            "the plan is for a model of {} blocks, this one has {}",
            plan.source_blocks,
            model.blocks.len()
        )));
    }
    let config = model.config();
    let source = std::mem::take(&mut model.blocks);
    let mut out = Vec::with_capacity(plan.len());
    for planned in &plan.blocks {
        let block = build_block(&config, &source, &planned.source)?;
        out.push(if planned.zeroed {
            zero_outputs(&config, block)
        } else {
            block
        });
    }
    model.blocks = out;
    Ok(model)
}
