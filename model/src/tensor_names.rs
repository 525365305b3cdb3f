//! The one table of a decoder block's tensors ([`BLOCK_MODULES`]): each module's HF name
//! (`model.layers.{i}.self_attn.q_proj`), its GGUF name (`blk.{i}.attn_q`, Gemma 3's where
//! they differ), whether it is a linear projection or a norm, and from it everything
//! else that spells a block tensor: the block prefix, the per-block tensors a config
//! implies with their HF shapes ([`expected_block_tensors`]), the non-block tensors
//! ([`expected_top_tensors`]), which block tensors a function-preserving expansion
//! zeroes ([`is_output_projection`]), the GGUF name of an HF name ([`gguf_block_name`])
//! and the order transformers' `save_pretrained` writes them in ([`hf_order_key`]).
//! Loading, saving, GGUF import, surgery and the model's [`BlockWeights`] all read it.
//!
//! Streamed surgery and import check a checkpoint's header against these tables before a
//! single tensor is read, so a layout or config that cannot fit the file fails in
//! milliseconds, whatever the model's size.
//!
//! [`BlockWeights`]: super::block_weights::BlockWeights

use super::config::{Family, LlamaConfig};

/// Prefix of every block tensor: `model.layers.{i}.{suffix}`.
pub const LAYER_PREFIX: &str = "model.layers.";

/// A linear projection of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLinear {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`: writes into the residual stream.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`: writes into the residual stream.
    Down,
}

/// A norm of a block (one weight vector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockNorm {
    /// `input_layernorm`, before attention.
    Input,
    /// `post_attention_layernorm`: before the MLP, or (sandwich norms) on the
    /// attention output.
    PostAttention,
    /// `self_attn.q_norm` (Qwen3, Gemma 3).
    Q,
    /// `self_attn.k_norm` (Qwen3, Gemma 3).
    K,
    /// `pre_feedforward_layernorm` (Gemma 3's sandwich norms).
    PreFeedforward,
    /// `post_feedforward_layernorm` (Gemma 3's sandwich norms).
    PostFeedforward,
}

/// A tensor-bearing module of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockModule {
    /// A projection: `{name}.weight` and, where the config has one, `{name}.bias`.
    Linear(BlockLinear),
    /// A norm: `{name}.weight`.
    Norm(BlockNorm),
}

/// One row of the table: a module and its names.
#[derive(Debug, Clone, Copy)]
pub struct ModuleNames {
    /// The module.
    pub module: BlockModule,
    /// HF module path after `model.layers.{i}.`.
    pub hf: &'static str,
    /// `{hf}.weight`.
    pub weight: &'static str,
    /// `{hf}.bias` (linear projections only).
    pub bias: &'static str,
    /// GGUF name after `blk.{i}.` in llama, qwen2 and qwen3 files (`None`: they have
    /// no such tensor).
    pub gguf: Option<&'static str>,
    /// GGUF name in gemma3 files (llama.cpp's: the norm before the MLP is `ffn_norm`,
    /// the norms on the sub-layer outputs `post_attention_norm` and `post_ffw_norm`).
    pub gguf_gemma3: &'static str,
}

macro_rules! module_names {
    ($module:expr, $hf:literal, $gguf:expr, $gemma:literal) => {
        ModuleNames {
            module: $module,
            hf: $hf,
            weight: concat!($hf, ".weight"),
            bias: concat!($hf, ".bias"),
            gguf: $gguf,
            gguf_gemma3: $gemma,
        }
    };
}

/// Every module a block can have, in the order transformers registers them (so
/// `save_pretrained`'s order); llama.cpp's `tensor_mapping.py` for the GGUF names.
pub const BLOCK_MODULES: [ModuleNames; 13] = {
    use BlockModule::{Linear, Norm};
    [
        module_names!(
            Linear(BlockLinear::Q),
            "self_attn.q_proj",
            Some("attn_q"),
            "attn_q"
        ),
        module_names!(
            Linear(BlockLinear::K),
            "self_attn.k_proj",
            Some("attn_k"),
            "attn_k"
        ),
        module_names!(
            Linear(BlockLinear::V),
            "self_attn.v_proj",
            Some("attn_v"),
            "attn_v"
        ),
        module_names!(
            Linear(BlockLinear::O),
            "self_attn.o_proj",
            Some("attn_output"),
            "attn_output"
        ),
        module_names!(
            Norm(BlockNorm::Q),
            "self_attn.q_norm",
            Some("attn_q_norm"),
            "attn_q_norm"
        ),
        module_names!(
            Norm(BlockNorm::K),
            "self_attn.k_norm",
            Some("attn_k_norm"),
            "attn_k_norm"
        ),
        module_names!(
            Linear(BlockLinear::Gate),
            "mlp.gate_proj",
            Some("ffn_gate"),
            "ffn_gate"
        ),
        module_names!(
            Linear(BlockLinear::Up),
            "mlp.up_proj",
            Some("ffn_up"),
            "ffn_up"
        ),
        module_names!(
            Linear(BlockLinear::Down),
            "mlp.down_proj",
            Some("ffn_down"),
            "ffn_down"
        ),
        module_names!(
            Norm(BlockNorm::Input),
            "input_layernorm",
            Some("attn_norm"),
            "attn_norm"
        ),
        module_names!(
            Norm(BlockNorm::PostAttention),
            "post_attention_layernorm",
            Some("ffn_norm"),
            "post_attention_norm"
        ),
        module_names!(
            Norm(BlockNorm::PreFeedforward),
            "pre_feedforward_layernorm",
            None,
            "ffn_norm"
        ),
        module_names!(
            Norm(BlockNorm::PostFeedforward),
            "post_feedforward_layernorm",
            None,
            "post_ffw_norm"
        ),
    ]
};

/// The table row of `module`.
pub fn names_of(module: BlockModule) -> &'static ModuleNames {
    BLOCK_MODULES
        .iter()
        .find(|n| n.module == module)
        .expect("every block module has a row in BLOCK_MODULES")
}

impl BlockLinear {
    /// The seven projections, in the order [`BlockWeights`] builds them.
    ///
    /// [`BlockWeights`]: super::block_weights::BlockWeights
    pub const ALL: [BlockLinear; 7] = [
        BlockLinear::Q,
        BlockLinear::K,
        BlockLinear::V,
        BlockLinear::O,
        BlockLinear::Gate,
        BlockLinear::Up,
        BlockLinear::Down,
    ];

    /// Its row of the table.
    pub fn names(self) -> &'static ModuleNames {
        names_of(BlockModule::Linear(self))
    }

    /// `(in, out)` widths under `config` (burn's `[in, out]` weight; HF stores `[out, in]`).
    pub fn dims(self, config: &LlamaConfig) -> (usize, usize) {
        let h = config.hidden_size;
        let inter = config.intermediate_size;
        let qd = config.num_attention_heads * config.head_dim();
        let kvd = config.num_key_value_heads() * config.head_dim();
        match self {
            BlockLinear::Q => (h, qd),
            BlockLinear::K | BlockLinear::V => (h, kvd),
            BlockLinear::O => (qd, h),
            BlockLinear::Gate | BlockLinear::Up => (h, inter),
            BlockLinear::Down => (inter, h),
        }
    }

    /// Whether `config` gives it a bias (Qwen2's q/k/v, `attention_bias`, `mlp_bias`).
    pub fn has_bias(self, config: &LlamaConfig) -> bool {
        let [qb, kb, vb, ob] = config.attention_biases();
        match self {
            BlockLinear::Q => qb,
            BlockLinear::K => kb,
            BlockLinear::V => vb,
            BlockLinear::O => ob,
            BlockLinear::Gate | BlockLinear::Up | BlockLinear::Down => config.mlp_bias,
        }
    }

    /// Whether it writes into the residual stream (`o_proj`, `down_proj`): zeroing the
    /// two makes a block add nothing (LLaMA Pro's identity init).
    pub fn is_output_projection(self) -> bool {
        matches!(self, BlockLinear::O | BlockLinear::Down)
    }
}

impl BlockNorm {
    /// The six norms, in the order [`BlockWeights`] builds them.
    ///
    /// [`BlockWeights`]: super::block_weights::BlockWeights
    pub const ALL: [BlockNorm; 6] = [
        BlockNorm::Input,
        BlockNorm::PostAttention,
        BlockNorm::Q,
        BlockNorm::K,
        BlockNorm::PreFeedforward,
        BlockNorm::PostFeedforward,
    ];

    /// Its row of the table.
    pub fn names(self) -> &'static ModuleNames {
        names_of(BlockModule::Norm(self))
    }

    /// Its width under `config`, `None` where the config has no such norm (q/k norms
    /// are Qwen3's and Gemma 3's, the feed-forward ones Gemma 3's sandwich).
    pub fn len(self, config: &LlamaConfig) -> Option<usize> {
        let h = config.hidden_size;
        match self {
            BlockNorm::Input | BlockNorm::PostAttention => Some(h),
            BlockNorm::Q | BlockNorm::K => config.qk_norm().then(|| config.head_dim()),
            BlockNorm::PreFeedforward | BlockNorm::PostFeedforward => {
                config.sandwich_norms().then_some(h)
            }
        }
    }
}

/// The full name of block `index`'s tensor `suffix`.
pub fn layer_tensor(index: usize, suffix: &str) -> String {
    format!("{LAYER_PREFIX}{index}.{suffix}")
}

/// `(block index, suffix)` of a block tensor name, `None` for other tensors.
pub fn parse_layer_tensor(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix(LAYER_PREFIX)?;
    let (index, suffix) = rest.split_once('.')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) || suffix.is_empty() {
        return None;
    }
    Some((index.parse().ok()?, suffix))
}

/// The table position, row and parameter (`weight`/`bias`) of a block tensor suffix.
fn module_of(suffix: &str) -> Option<(usize, &'static ModuleNames, &str)> {
    let (module, param) = suffix.rsplit_once('.')?;
    let (pos, row) = BLOCK_MODULES
        .iter()
        .enumerate()
        .find(|(_, n)| n.hf == module)?;
    match (row.module, param) {
        (_, "weight") | (BlockModule::Linear(_), "bias") => Some((pos, row, param)),
        _ => None,
    }
}

/// Whether a block tensor suffix is one of the output projections (`o_proj`, `down_proj`).
pub fn is_output_projection(suffix: &str) -> bool {
    matches!(
        module_of(suffix),
        Some((_, ModuleNames { module: BlockModule::Linear(l), .. }, _)) if l.is_output_projection()
    )
}

/// The GGUF name of HF block tensor `suffix` of block `index` in a `family` file
/// (`blk.{index}.attn_q.weight`), `None` for a suffix the table does not name or a
/// tensor the family's GGUF files do not have.
pub fn gguf_block_name(index: usize, suffix: &str, family: Family) -> Option<String> {
    let (_, row, param) = module_of(suffix)?;
    let g = match family {
        Family::Gemma3 => row.gguf_gemma3,
        _ => row.gguf?,
    };
    Some(format!("blk.{index}.{g}.{param}"))
}

/// The block tensors (suffix, HF shape) `config` implies, in module order, biases and
/// norms included where the config (and its family: Qwen2's q/k/v biases, Qwen3's and
/// Gemma 3's q/k norms, Gemma 3's sandwich norms) enables them.
pub fn expected_block_tensors(config: &LlamaConfig) -> Vec<(&'static str, Vec<usize>)> {
    let mut out = Vec::with_capacity(2 * BLOCK_MODULES.len());
    for row in &BLOCK_MODULES {
        match row.module {
            BlockModule::Linear(l) => {
                let (din, dout) = l.dims(config);
                out.push((row.weight, vec![dout, din]));
                if l.has_bias(config) {
                    out.push((row.bias, vec![dout]));
                }
            }
            BlockModule::Norm(n) => {
                if let Some(len) = n.len(config) {
                    out.push((row.weight, vec![len]));
                }
            }
        }
    }
    out
}
/// The non-block tensors (name, HF shape) `config` implies; a tied head has none.
pub fn expected_top_tensors(config: &LlamaConfig) -> Vec<(&'static str, Vec<usize>)> {
    let (h, vocab) = (config.hidden_size, config.vocab_size);
    let mut out = vec![
        ("model.embed_tokens.weight", vec![vocab, h]),
        ("model.norm.weight", vec![h]),
    ];
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight", vec![vocab, h]));
    }
    out
}

/// A sort key putting tensor names in `save_pretrained`'s order: the embedding, the
/// blocks in index order (each in module order, unknown suffixes after by name), the
/// other `model.` tensors, then everything else (`lm_head`).
pub fn hf_order_key(name: &str) -> (u8, usize, usize, String) {
    if let Some((index, suffix)) = parse_layer_tensor(name) {
        let pos = match module_of(suffix) {
            Some((module, _, param)) => 2 * module + usize::from(param == "bias"),
            None => 2 * BLOCK_MODULES.len(),
        };
        return (1, index, pos, suffix.to_string());
    }
    let rank = if name.starts_with("model.embed_tokens.") {
        0
    } else if name.starts_with("model.") {
        2
    } else {
        3
    };
    (rank, 0, 0, name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_round_trip_and_reject_lookalikes() {
        assert_eq!(
            parse_layer_tensor(&layer_tensor(12, "mlp.up_proj.weight")),
            Some((12, "mlp.up_proj.weight"))
        );
        for bad in [
            "model.layers.x.mlp",
            "model.layers.3",
            "model.layers..a",
            "lm_head.weight",
        ] {
            assert_eq!(parse_layer_tensor(bad), None, "{bad}");
        }
    }

    #[test]
    fn hf_order_puts_embedding_blocks_norm_head() {
        let mut names = vec![
            "lm_head.weight",
            "model.norm.weight",
            "model.layers.10.input_layernorm.weight",
            "model.layers.2.mlp.down_proj.weight",
            "model.layers.2.self_attn.q_proj.weight",
            "model.embed_tokens.weight",
        ];
        names.sort_by_key(|n| hf_order_key(n));
        assert_eq!(
            names,
            [
                "model.embed_tokens.weight",
                "model.layers.2.self_attn.q_proj.weight",
                "model.layers.2.mlp.down_proj.weight",
                "model.layers.10.input_layernorm.weight",
                "model.norm.weight",
                "lm_head.weight",
            ]
        );
    }
}
