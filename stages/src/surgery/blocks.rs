//! Block arithmetic on top of the model core's public fields: element-wise means of
//! blocks ([`mean_block`], every tensor including norms — q/k and sandwich norms too —
//! and biases), zeroing a block's
//! output projections ([`zero_outputs`]) and applying a whole [`LayerPlan`] to a model
//! ([`apply_plan`]).
//!
//! New blocks are rebuilt from their tensors with [`Block::from_weights`], so they get
//! fresh parameter ids and never alias the block they were copied from.

use burn::nn::Linear;
use burn::prelude::*;

use super::error::{Result, SurgeryError};
use super::plan::{BlockSource, LayerPlan};
use crate::model::config::LayerAttention;
use crate::model::llama::BlockWeights;
use crate::model::{Block, Llama, LlamaConfig};

type LinearWeights<B> = (Tensor<B, 2>, Option<Tensor<B, 1>>);

fn linear<B: Backend>(l: &Linear<B>) -> LinearWeights<B> {
    (l.weight.val(), l.bias.as_ref().map(|b| b.val()))
}

/// The tensors of `block` (shared, not copied).
pub fn block_weights<B: Backend>(block: &Block<B>) -> BlockWeights<B> {
    let a = &block.self_attn;
    let m = &block.mlp;
    let norm = |n: &Option<crate::model::rms_norm::RmsNorm<B>>| n.as_ref().map(|n| n.weight.val());
    let pair = |a, b| match (norm(a), norm(b)) {
        (Some(a), Some(b)) => Some([a, b]),
        _ => None,
    };
    BlockWeights {
        input_layernorm: block.input_layernorm.weight.val(),
        post_attention_layernorm: block.post_attention_layernorm.weight.val(),
        qk_norms: pair(&a.q_norm, &a.k_norm),
        ffn_norms: pair(
            &block.pre_feedforward_layernorm,
            &block.post_feedforward_layernorm,
        ),
        layer: LayerAttention {
            sliding_window: a.sliding_window,
            local_rope: a.local_rope,
        },
        attn: [
            linear(&a.q_proj),
            linear(&a.k_proj),
            linear(&a.v_proj),
            linear(&a.o_proj),
        ],
        mlp: [
            linear(&m.gate_proj),
            linear(&m.up_proj),
            linear(&m.down_proj),
        ],
    }
}

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

fn mean_linear<B: Backend>(ls: Vec<LinearWeights<B>>) -> LinearWeights<B> {
    let has_bias = ls.iter().all(|l| l.1.is_some());
    let (ws, bs): (Vec<_>, Vec<_>) = ls.into_iter().unzip();
    let bias = has_bias.then(|| mean_of(bs.into_iter().flatten().collect()));
    (mean_of(ws), bias)
}

/// The element-wise mean of `blocks` (summed in order, then divided by their number),
/// every tensor included. One block gives a copy with fresh parameter ids.
pub fn mean_block<B: Backend>(config: &LlamaConfig, blocks: &[&Block<B>]) -> Result<Block<B>> {
    if blocks.is_empty() {
        return Err(SurgeryError::Invalid(
            "a block mean needs at least one block".into(),
        ));
    }
    let ws: Vec<BlockWeights<B>> = blocks.iter().map(|b| block_weights(b)).collect();
    // The mean block attends like the first of its sources (its window, its rotary
    // table).
    let layer = ws[0].layer;
    let mut in_norm = Vec::new();
    let mut post_norm = Vec::new();
    let mut qk: Vec<[Tensor<B, 1>; 2]> = Vec::new();
    let mut ffn: Vec<[Tensor<B, 1>; 2]> = Vec::new();
    let mut attn: [Vec<LinearWeights<B>>; 4] = Default::default();
    let mut mlp: [Vec<LinearWeights<B>>; 3] = Default::default();
    for w in ws {
        in_norm.push(w.input_layernorm);
        post_norm.push(w.post_attention_layernorm);
        qk.extend(w.qk_norms);
        ffn.extend(w.ffn_norms);
        for (acc, l) in attn.iter_mut().zip(w.attn) {
            acc.push(l);
        }
        for (acc, l) in mlp.iter_mut().zip(w.mlp) {
            acc.push(l);
        }
    }
    Ok(Block::from_weights(
        config,
        BlockWeights {
            input_layernorm: mean_of(in_norm),
            post_attention_layernorm: mean_of(post_norm),
            qk_norms: mean_pairs(qk, blocks.len()),
            ffn_norms: mean_pairs(ffn, blocks.len()),
            attn: attn.map(mean_linear),
            mlp: mlp.map(mean_linear),
            layer,
        },
    ))
}

/// The element-wise means of optional norm pairs, when every block has them.
fn mean_pairs<B: Backend>(
    pairs: Vec<[Tensor<B, 1>; 2]>,
    blocks: usize,
) -> Option<[Tensor<B, 1>; 2]> {
    if pairs.len() != blocks || pairs.is_empty() {
        return None;
    }
    let (a, b): (Vec<_>, Vec<_>) = pairs.into_iter().map(|[a, b]| (a, b)).unzip();
    Some([mean_of(a), mean_of(b)])
}

fn zero_linear<B: Backend>(l: &mut Linear<B>) {
    let w = l.weight.val();
    l.weight = burn::module::Param::from_tensor(w.zeros_like());
    if let Some(b) = &l.bias {
        l.bias = Some(burn::module::Param::from_tensor(b.val().zeros_like()));
    }
}

/// `block` with `o_proj` and `down_proj` (weights and biases) set to zero: it then adds
/// nothing to the residual stream.
pub fn zero_outputs<B: Backend>(mut block: Block<B>) -> Block<B> {
    zero_linear(&mut block.self_attn.o_proj);
    zero_linear(&mut block.mlp.down_proj);
    block
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
            zero_outputs(block)
        } else {
            block
        });
    }
    model.blocks = out;
    Ok(model)
}
