//! [`Llama`]: the decoder (embedding, `blocks`, final norm, `lm_head`) generic over
//! burn's `B: Backend`, plus its [`KvCache`] and seeded random initialisation.
//!
//! The residual stream is exposed for surgery and importance measurement:
//! `blocks` is a plain `Vec<Block<B>>` that can be indexed, spliced and averaged;
//! [`Llama::embed`], [`Block::forward`](super::block::Block::forward) and [`Llama::head`]
//! run the pieces separately and [`Llama::forward_hidden_states`] returns `x_0..x_L`.
//! After changing `blocks`, [`Llama::config`] reports `num_hidden_layers` from the list.

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use burn::tensor::DType;

use super::attention::{AttentionMask, LayerCache};
use super::block::Block;
use super::block_weights::{BlockWeights, LinearWeights};
use super::config::{Family, LlamaConfig};
use super::error::{ModelError, Result};
use super::rms_norm::RmsNorm;
use super::rope::{Rope, RopeTables};
use super::token_linear::token_linear;
use crate::rng::SplitMix64;

/// A Llama-family causal language model.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embedding `[vocab, hidden]` (HF `model.embed_tokens`).
    pub embed_tokens: Embedding<B>,
    /// Decoder blocks in order (HF `model.layers`).
    pub blocks: Vec<Block<B>>,
    /// Final norm (HF `model.norm`).
    pub norm: RmsNorm<B>,
    /// Output projection `[hidden, vocab]`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<Linear<B>>,
    /// The HF config (its `num_hidden_layers` is refreshed by [`Llama::config`]).
    #[module(skip)]
    config: LlamaConfig,
    /// Rotary frequencies derived from the config.
    #[module(skip)]
    rope: Rope,
    /// The local blocks' own rotary frequencies (Gemma 3), if any.
    #[module(skip)]
    local_rope: Option<Rope>,
}

/// Per-block key/value caches for incremental decoding.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// One cache per block.
    pub layers: Vec<LayerCache<B>>,
}

impl<B: Backend> KvCache<B> {
    /// Number of positions already processed.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Whether nothing has been processed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The weight of a norm of width `n` that scales by one: ones, or zeros where norms
/// scale by `1 + w` (Gemma).
fn unit_norm_weight<B: Backend>(
    config: &LlamaConfig,
    n: usize,
    device: &B::Device,
) -> Tensor<B, 1> {
    if config.norm_unit_offset() {
        Tensor::zeros([n], device)
    } else {
        Tensor::ones([n], device)
    }
}

impl<B: Backend> Block<B> {
    /// Block `index` of `config` with HF's default initialisation (normal(0, `std`)
    /// weights, zero biases, norms that scale by one), drawn from `rng`.
    pub fn init_random(
        config: &LlamaConfig,
        index: usize,
        std: f32,
        rng: &mut SplitMix64,
        device: &B::Device,
    ) -> Self {
        let weights = BlockWeights::build(
            config,
            config.layer_attention(index),
            |_, len| Ok::<_, std::convert::Infallible>(unit_norm_weight(config, len, device)),
            |l| {
                let (din, dout) = l.dims(config);
                Ok(LinearWeights {
                    weight: rng.normal_tensor::<B>([din, dout], std, device),
                    bias: l.has_bias(config).then(|| Tensor::zeros([dout], device)),
                })
            },
        );
        match weights {
            Ok(w) => Block::from_weights(config, w),
            Err(never) => match never {},
        }
    }
}

impl<B: Backend> Llama<B> {
    /// Assemble a model from loaded parts. `lm_head` is `[hidden, vocab]`, or `None` to
    /// tie it to the embedding. Validates the config.
    pub fn from_parts(
        config: LlamaConfig,
        embed_tokens: Tensor<B, 2>,
        blocks: Vec<Block<B>>,
        norm: Tensor<B, 1>,
        lm_head: Option<Tensor<B, 2>>,
    ) -> Result<Self> {
        let (rope, local_rope) = Self::ropes_for(&config)?;
        Ok(Llama {
            embed_tokens: Embedding {
                weight: Param::from_tensor(embed_tokens),
            },
            blocks,
            norm: RmsNorm::from_weight(norm, config.rms_norm_eps, config.norm_unit_offset()),
            lm_head: lm_head.map(|weight| LinearWeights { weight, bias: None }.into_linear()),
            config,
            rope,
            local_rope,
        })
    }

    /// A randomly initialised model, deterministic in `seed` on every backend:
    /// weights normal(0, `initializer_range`, default 0.02) as transformers does.
    pub fn init_random(config: &LlamaConfig, seed: u64, device: &B::Device) -> Result<Self> {
        config
            .validate()
            .map_err(|m| ModelError::Unsupported(m.to_string()))?;
        let std = config
            .extra
            .get("initializer_range")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.02) as f32;
        let mut rng = SplitMix64::new(seed);
        let embed = rng.normal_tensor::<B>([config.vocab_size, config.hidden_size], std, device);
        let blocks = (0..config.num_hidden_layers)
            .map(|i| Block::init_random(config, i, std, &mut rng, device))
            .collect();
        let lm_head = (!config.tie_word_embeddings)
            .then(|| rng.normal_tensor::<B>([config.hidden_size, config.vocab_size], std, device));
        let norm = unit_norm_weight(config, config.hidden_size, device);
        Self::from_parts(config.clone(), embed, blocks, norm, lm_head)
    }

    fn ropes_for(config: &LlamaConfig) -> Result<(Rope, Option<Rope>)> {
        let settings = config.rope().map_err(ModelError::Unsupported)?;
        let local = config.local_rope().map_err(ModelError::Unsupported)?;
        let d = config.head_dim();
        Ok((Rope::new(d, settings), local.map(|l| Rope::new(d, l))))
    }

    /// The config, with `num_hidden_layers` equal to the current number of blocks (and,
    /// for Gemma 3 and for blocks that differ in their window, e.g. Qwen2's
    /// `max_window_layers`, `layer_types` read from the blocks, which carry their own
    /// kind).
    pub fn config(&self) -> LlamaConfig {
        let mut c = self.config.clone();
        c.set_num_hidden_layers(self.blocks.len());
        let sliding: Vec<bool> = self
            .blocks
            .iter()
            .map(|b| b.self_attn.sliding_window.is_some())
            .collect();
        let mixed = sliding.iter().any(|&s| s) && sliding.iter().any(|&s| !s);
        if c.family() == Ok(Family::Gemma3) || mixed {
            c.set_layer_types(&sliding);
        }
        c
    }

    /// Replace the config's metadata (ids, dtype, extra keys). Shapes must stay
    /// compatible; rotary settings and each block's window and score scale are
    /// re-derived.
    pub fn set_config(&mut self, config: LlamaConfig) -> Result<()> {
        (self.rope, self.local_rope) = Self::ropes_for(&config)?;
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let layer = config.layer_attention(i);
            let attn = &mut block.self_attn;
            attn.sliding_window = layer.sliding_window;
            attn.local_rope = layer.local_rope;
            attn.scale = config.attention_scale();
        }
        self.config = config;
        Ok(())
    }

    /// The sliding attention window of the blocks that slide, if any (see
    /// [`LlamaConfig::sliding_window`]); explicit masks should include it, built with
    /// [`Llama::mask_for`].
    pub fn sliding_window(&self) -> Option<usize> {
        self.blocks.iter().find_map(|b| b.self_attn.sliding_window)
    }

    /// The explicit mask for this model from a rule built for a given window
    /// (`build(window)`, e.g. [`AttentionMask::padded_window`]): the rule for the
    /// blocks' window when they all share one, else (Gemma 3's local and global blocks)
    /// one rule per kind of block ([`AttentionMask::PerWindow`]).
    pub fn mask_for(
        &self,
        build: impl Fn(Option<usize>) -> Result<AttentionMask<B>>,
    ) -> Result<AttentionMask<B>> {
        let mut windows: Vec<Option<usize>> = self
            .blocks
            .iter()
            .map(|b| b.self_attn.sliding_window)
            .collect();
        windows.sort_unstable();
        windows.dedup();
        match windows[..] {
            [] => build(None),
            [w] => build(w),
            [None, Some(w)] => match (build(None)?, build(Some(w))?) {
                (AttentionMask::Explicit(full), AttentionMask::Explicit(sliding)) => {
                    Ok(AttentionMask::PerWindow { full, sliding })
                }
                _ => Err(ModelError::Input(
                    "a mask for blocks of two kinds needs an explicit rule for each".into(),
                )),
            },
            _ => Err(ModelError::Unsupported(format!(
                "blocks with {} different sliding windows ({windows:?}); one window besides full attention is supported",
                windows.len()
            ))),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> B::Device {
        self.embed_tokens.weight.device()
    }

    /// A new, empty cache for incremental decoding.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache {
            layers: vec![LayerCache::default(); self.blocks.len()],
        }
    }

    /// Rotary tables for positions `start..start + len`.
    pub fn rope_tables(&self, start: usize, len: usize) -> RopeTables<B> {
        let positions: Vec<usize> = (start..start + len).collect();
        self.rope_tables_at(&[positions])
    }

    /// Rotary tables for explicit positions, one row per batch row (or one shared row).
    pub fn rope_tables_at(&self, rows: &[Vec<usize>]) -> RopeTables<B> {
        let heads = [
            self.config.num_attention_heads,
            self.config.num_key_value_heads(),
        ];
        let device = self.device();
        let tables = self.rope.tables_at(rows, &heads, false, &device);
        match &self.local_rope {
            Some(local) => tables.merge(local.tables_at(rows, &heads, true, &device)),
            None => tables,
        }
    }

    /// Token embeddings `[batch, seq, hidden]` (`x_0` of the residual stream), scaled by
    /// the family's factor (Gemma 3: `sqrt(hidden_size)`, rounded to the embedding's
    /// dtype and applied in it, as transformers does).
    pub fn embed(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let x = self.embed_tokens.forward(tokens);
        let x = match self.config.embedding_scale() {
            Some(scale) => {
                let scale = match x.dtype() {
                    DType::BF16 => half::bf16::from_f64(scale).to_f64(),
                    DType::F16 => half::f16::from_f64(scale).to_f64(),
                    _ => scale as f32 as f64,
                };
                x.mul_scalar(scale)
            }
            None => x,
        };
        super::precision::to_compute(x)
    }

    /// Final norm then output projection: residual stream -> logits `[batch, seq, vocab]`,
    /// soft-capped where the config says (`final_logit_softcapping`).
    pub fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let logits = self.project(self.norm.forward(x));
        match self.config.final_logit_softcapping() {
            Some(cap) => logits.div_scalar(cap).tanh().mul_scalar(cap),
            None => logits,
        }
    }

    /// The output projection of normed states.
    fn project(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(lm_head) => {
                let w = lm_head.weight.val();
                if w.dtype() == x.dtype() {
                    token_linear(lm_head, x)
                } else {
                    let [b, t, h] = x.dims();
                    let vocab = w.dims()[1];
                    let x = x.reshape([b * t, h]);
                    super::precision::head_widened(x, w, super::precision::HEAD_CHUNK)
                        .reshape([b, t, vocab])
                }
            }
            None => {
                // A 2-D matmul against the transposed view: the backend reads the
                // embedding with strides, where a 3-D broadcast would first copy it.
                let [b, t, h] = x.dims();
                let w = self.embed_tokens.weight.val();
                let vocab = w.dims()[0];
                let x = x.reshape([b * t, h]);
                let y = if w.dtype() == x.dtype() {
                    x.matmul(w.transpose())
                } else {
                    super::precision::tied_head_widened(x, w, super::precision::HEAD_CHUNK)
                };
                y.reshape([b, t, vocab])
            }
        }
    }

    /// Logits `[batch, seq, vocab]` for a full causal sequence.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_masked(tokens, &AttentionMask::Causal)
    }

    /// Logits with an explicit mask (e.g. [`AttentionMask::padded`] for batches of
    /// right-padded sequences). Positions are `0..seq` for every row.
    pub fn forward_masked(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: &AttentionMask<B>,
    ) -> Tensor<B, 3> {
        self.head(self.forward_final(tokens, mask))
    }

    /// The residual stream after the last block, before the final norm
    /// `[batch, seq, hidden]` (apply [`Llama::head`] to the positions that need logits).
    pub fn forward_final(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: &AttentionMask<B>,
    ) -> Tensor<B, 3> {
        let t = tokens.dims()[1];
        self.forward_final_at(tokens, &self.rope_tables(0, t), mask)
    }

    /// [`Llama::forward_final`] at explicit rotary positions (`rope` from
    /// [`Llama::rope_tables_at`]), e.g. continuations packed after a shared context.
    pub fn forward_final_at(
        &self,
        tokens: Tensor<B, 2, Int>,
        rope: &RopeTables<B>,
        mask: &AttentionMask<B>,
    ) -> Tensor<B, 3> {
        self.forward_blocks(self.embed(tokens), rope, mask, None, |_| {})
    }

    /// Logits for `tokens` continuing the sequence held in `cache` (empty cache: a
    /// prefill), appending their keys and values to it.
    pub fn forward_with_cache(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let t = tokens.dims()[1];
        let rope = self.rope_tables(cache.len(), t);
        let x = self.embed(tokens);
        self.head(self.forward_blocks(x, &rope, &AttentionMask::Causal, Some(cache), |_| {}))
    }

    /// The residual stream before the final norm: `x_0` (embeddings) and the output of
    /// each block, `blocks.len() + 1` tensors `[batch, seq, hidden]`.
    pub fn forward_hidden_states(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: &AttentionMask<B>,
    ) -> Vec<Tensor<B, 3>> {
        let t = tokens.dims()[1];
        let x = self.embed(tokens);
        let mut states = Vec::with_capacity(self.blocks.len() + 1);
        states.push(x.clone());
        self.forward_blocks(x, &self.rope_tables(0, t), mask, None, |out| {
            states.push(out.clone())
        });
        states
    }

    /// The one loop over the blocks, every forward above is built on: the residual
    /// stream `x` through each block in order at `rope` under `mask`, appending keys and
    /// values to `cache` where given, each block's output shown to `observe`.
    pub fn forward_blocks(
        &self,
        mut x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: &AttentionMask<B>,
        cache: Option<&mut KvCache<B>>,
        mut observe: impl FnMut(&Tensor<B, 3>),
    ) -> Tensor<B, 3> {
        let mut layers = cache.map(|cache| {
            cache
                .layers
                .resize(self.blocks.len(), LayerCache::default());
            cache.layers.iter_mut()
        });
        for block in &self.blocks {
            let layer_cache = layers.as_mut().and_then(Iterator::next);
            x = block.forward(x, rope, mask, layer_cache);
            observe(&x);
        }
        x
    }
}
