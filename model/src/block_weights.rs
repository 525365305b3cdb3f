//! A block's tensors by name: [`BlockWeights`] (one named field per module of the
//! [`tensor_names`](super::tensor_names) table), the one constructor every producer of
//! block weights goes through ([`BlockWeights::build`]: loading, random initialisation,
//! block means), lookup by [`BlockLinear`] / [`BlockNorm`], and the two directions
//! between weights and a runnable [`Block`] ([`Block::from_weights`],
//! [`Block::weights`]).

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use super::attention::Attention;
use super::block::Block;
use super::config::{Activation, LayerAttention, LlamaConfig};
use super::mlp::Mlp;
use super::rms_norm::RmsNorm;
use super::tensor_names::{BlockLinear, BlockNorm};

/// A projection's tensors: weight `[in, out]` (burn's layout) and its bias, if any.
#[derive(Debug, Clone)]
pub struct LinearWeights<B: Backend> {
    /// `[in, out]`.
    pub weight: Tensor<B, 2>,
    /// `[out]`.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> LinearWeights<B> {
    /// The tensors of a linear layer (shared, not copied).
    pub fn of(layer: &Linear<B>) -> Self {
        LinearWeights {
            weight: layer.weight.val(),
            bias: layer.bias.as_ref().map(Param::val),
        }
    }

    /// A linear layer with fresh parameter ids.
    pub fn into_linear(self) -> Linear<B> {
        Linear {
            weight: Param::from_tensor(self.weight),
            bias: self.bias.map(Param::from_tensor),
        }
    }
}

/// The weights of one block, named as HF's `model.layers.{i}.*` modules.
#[derive(Debug, Clone)]
pub struct BlockWeights<B: Backend> {
    /// `self_attn.q_proj`.
    pub q_proj: LinearWeights<B>,
    /// `self_attn.k_proj`.
    pub k_proj: LinearWeights<B>,
    /// `self_attn.v_proj`.
    pub v_proj: LinearWeights<B>,
    /// `self_attn.o_proj`.
    pub o_proj: LinearWeights<B>,
    /// `mlp.gate_proj`.
    pub gate_proj: LinearWeights<B>,
    /// `mlp.up_proj`.
    pub up_proj: LinearWeights<B>,
    /// `mlp.down_proj`.
    pub down_proj: LinearWeights<B>,
    /// `input_layernorm.weight`.
    pub input_layernorm: Tensor<B, 1>,
    /// `post_attention_layernorm.weight`.
    pub post_attention_layernorm: Tensor<B, 1>,
    /// `self_attn.q_norm.weight` (Qwen3, Gemma 3).
    pub q_norm: Option<Tensor<B, 1>>,
    /// `self_attn.k_norm.weight` (Qwen3, Gemma 3).
    pub k_norm: Option<Tensor<B, 1>>,
    /// `pre_feedforward_layernorm.weight` (Gemma 3).
    pub pre_feedforward_layernorm: Option<Tensor<B, 1>>,
    /// `post_feedforward_layernorm.weight` (Gemma 3).
    pub post_feedforward_layernorm: Option<Tensor<B, 1>>,
    /// The block's window and rotary table.
    pub layer: LayerAttention,
}

impl<B: Backend> BlockWeights<B> {
    /// The weights of a block of `config`, each tensor asked of `norm` (for the norms
    /// `config` has, [`BlockNorm::ALL`]'s order) and then of `linear`
    /// ([`BlockLinear::ALL`]'s order); the first error stops the build.
    pub fn build<E>(
        config: &LlamaConfig,
        layer: LayerAttention,
        mut norm: impl FnMut(BlockNorm, usize) -> Result<Tensor<B, 1>, E>,
        mut linear: impl FnMut(BlockLinear) -> Result<LinearWeights<B>, E>,
    ) -> Result<Self, E> {
        let h = config.hidden_size;
        let input_layernorm = norm(BlockNorm::Input, h)?;
        let post_attention_layernorm = norm(BlockNorm::PostAttention, h)?;
        let mut norm_if = |n: BlockNorm| n.len(config).map(|len| norm(n, len)).transpose();
        let q_norm = norm_if(BlockNorm::Q)?;
        let k_norm = norm_if(BlockNorm::K)?;
        let pre_feedforward_layernorm = norm_if(BlockNorm::PreFeedforward)?;
        let post_feedforward_layernorm = norm_if(BlockNorm::PostFeedforward)?;
        Ok(BlockWeights {
            q_proj: linear(BlockLinear::Q)?,
            k_proj: linear(BlockLinear::K)?,
            v_proj: linear(BlockLinear::V)?,
            o_proj: linear(BlockLinear::O)?,
            gate_proj: linear(BlockLinear::Gate)?,
            up_proj: linear(BlockLinear::Up)?,
            down_proj: linear(BlockLinear::Down)?,
            input_layernorm,
            post_attention_layernorm,
            q_norm,
            k_norm,
            pre_feedforward_layernorm,
            post_feedforward_layernorm,
            layer,
        })
    }

    /// The projection `l`.
    pub fn linear(&self, l: BlockLinear) -> &LinearWeights<B> {
        match l {
            BlockLinear::Q => &self.q_proj,
            BlockLinear::K => &self.k_proj,
            BlockLinear::V => &self.v_proj,
            BlockLinear::O => &self.o_proj,
            BlockLinear::Gate => &self.gate_proj,
            BlockLinear::Up => &self.up_proj,
            BlockLinear::Down => &self.down_proj,
        }
    }

    /// The projection `l`, to change.
    pub fn linear_mut(&mut self, l: BlockLinear) -> &mut LinearWeights<B> {
        match l {
            BlockLinear::Q => &mut self.q_proj,
            BlockLinear::K => &mut self.k_proj,
            BlockLinear::V => &mut self.v_proj,
            BlockLinear::O => &mut self.o_proj,
            BlockLinear::Gate => &mut self.gate_proj,
            BlockLinear::Up => &mut self.up_proj,
            BlockLinear::Down => &mut self.down_proj,
        }
    }

    /// The norm `n`, `None` where the block has none.
    pub fn norm(&self, n: BlockNorm) -> Option<&Tensor<B, 1>> {
        match n {
            BlockNorm::Input => Some(&self.input_layernorm),
            BlockNorm::PostAttention => Some(&self.post_attention_layernorm),
            BlockNorm::Q => self.q_norm.as_ref(),
            BlockNorm::K => self.k_norm.as_ref(),
            BlockNorm::PreFeedforward => self.pre_feedforward_layernorm.as_ref(),
            BlockNorm::PostFeedforward => self.post_feedforward_layernorm.as_ref(),
        }
    }
}

impl<B: Backend> Block<B> {
    /// Assemble a block from its weights (fresh parameter ids).
    pub fn from_weights(config: &LlamaConfig, w: BlockWeights<B>) -> Self {
        let eps = config.rms_norm_eps;
        let offset = config.norm_unit_offset();
        let norm = |t: Tensor<B, 1>| RmsNorm::from_weight(t, eps, offset);
        Block {
            input_layernorm: norm(w.input_layernorm),
            self_attn: Attention {
                q_proj: w.q_proj.into_linear(),
                k_proj: w.k_proj.into_linear(),
                v_proj: w.v_proj.into_linear(),
                o_proj: w.o_proj.into_linear(),
                num_heads: config.num_attention_heads,
                num_kv_heads: config.num_key_value_heads(),
                head_dim: config.head_dim(),
                q_norm: w.q_norm.map(norm),
                k_norm: w.k_norm.map(norm),
                scale: config.attention_scale(),
                sliding_window: w.layer.sliding_window,
                local_rope: w.layer.local_rope,
            },
            post_attention_layernorm: norm(w.post_attention_layernorm),
            pre_feedforward_layernorm: w.pre_feedforward_layernorm.map(norm),
            post_feedforward_layernorm: w.post_feedforward_layernorm.map(norm),
            mlp: Mlp {
                gate_proj: w.gate_proj.into_linear(),
                up_proj: w.up_proj.into_linear(),
                down_proj: w.down_proj.into_linear(),
                // validate() accepted the config, so its activation is known.
                activation: config.activation().unwrap_or(Activation::Silu),
            },
        }
    }

    /// The block's tensors (shared, not copied) and how it attends.
    pub fn weights(&self) -> BlockWeights<B> {
        let a = &self.self_attn;
        let m = &self.mlp;
        let norm = |n: &RmsNorm<B>| n.weight.val();
        BlockWeights {
            q_proj: LinearWeights::of(&a.q_proj),
            k_proj: LinearWeights::of(&a.k_proj),
            v_proj: LinearWeights::of(&a.v_proj),
            o_proj: LinearWeights::of(&a.o_proj),
            gate_proj: LinearWeights::of(&m.gate_proj),
            up_proj: LinearWeights::of(&m.up_proj),
            down_proj: LinearWeights::of(&m.down_proj),
            input_layernorm: norm(&self.input_layernorm),
            post_attention_layernorm: norm(&self.post_attention_layernorm),
            q_norm: a.q_norm.as_ref().map(norm),
            k_norm: a.k_norm.as_ref().map(norm),
            pre_feedforward_layernorm: self.pre_feedforward_layernorm.as_ref().map(norm),
            post_feedforward_layernorm: self.post_feedforward_layernorm.as_ref().map(norm),
            layer: LayerAttention {
                sliding_window: a.sliding_window,
                local_rope: a.local_rope,
            },
        }
    }
}
