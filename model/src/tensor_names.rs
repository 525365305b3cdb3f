//! HF tensor names of a decoder checkpoint, in one place: the block prefix
//! (`model.layers.{i}.`), the per-block tensors a Llama-family config implies with their
//! HF shapes ([`expected_block_tensors`]), the non-block tensors ([`expected_top_tensors`]),
//! which block tensors a function-preserving expansion zeroes ([`is_output_projection`]),
//! and the order transformers' `save_pretrained` writes them in ([`hf_order_key`]).
//!
//! Streamed surgery and import check a checkpoint's header against these tables before a
//! single tensor is read, so a layout or config that cannot fit the file fails in
//! milliseconds, whatever the model's size.

use super::config::LlamaConfig;

/// Prefix of every block tensor: `model.layers.{i}.{suffix}`.
pub const LAYER_PREFIX: &str = "model.layers.";

/// Suffixes (after `model.layers.{i}.`) of the tensors that write into the residual
/// stream: zeroing them makes a block add nothing (LLaMA Pro's identity init).
const OUTPUT_PROJECTIONS: [&str; 4] = [
    "self_attn.o_proj.weight",
    "self_attn.o_proj.bias",
    "mlp.down_proj.weight",
    "mlp.down_proj.bias",
];

/// Block tensor suffixes in the order transformers registers the modules.
const BLOCK_ORDER: [&str; 20] = [
    "self_attn.q_proj.weight",
    "self_attn.q_proj.bias",
    "self_attn.k_proj.weight",
    "self_attn.k_proj.bias",
    "self_attn.v_proj.weight",
    "self_attn.v_proj.bias",
    "self_attn.o_proj.weight",
    "self_attn.o_proj.bias",
    "self_attn.q_norm.weight",
    "self_attn.k_norm.weight",
    "mlp.gate_proj.weight",
    "mlp.gate_proj.bias",
    "mlp.up_proj.weight",
    "mlp.up_proj.bias",
    "mlp.down_proj.weight",
    "mlp.down_proj.bias",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    "pre_feedforward_layernorm.weight",
    "post_feedforward_layernorm.weight",
];

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

/// Whether a block tensor suffix is one of the output projections (`o_proj`, `down_proj`).
pub fn is_output_projection(suffix: &str) -> bool {
    OUTPUT_PROJECTIONS.contains(&suffix)
}

/// The block tensors (suffix, HF shape) `config` implies, biases and norms included
/// where the config (and its family: Qwen2's q/k/v biases, Qwen3's and Gemma 3's q/k
/// norms, Gemma 3's sandwich norms) enables them.
pub fn expected_block_tensors(config: &LlamaConfig) -> Vec<(&'static str, Vec<usize>)> {
    let h = config.hidden_size;
    let inter = config.intermediate_size;
    let qd = config.num_attention_heads * config.head_dim();
    let kvd = config.num_key_value_heads() * config.head_dim();
    let [qb, kb, vb, ob] = config.attention_biases();
    let mut out = Vec::with_capacity(16);
    let linears: [(&str, &str, usize, usize, bool); 7] = [
        (
            "self_attn.q_proj.weight",
            "self_attn.q_proj.bias",
            qd,
            h,
            qb,
        ),
        (
            "self_attn.k_proj.weight",
            "self_attn.k_proj.bias",
            kvd,
            h,
            kb,
        ),
        (
            "self_attn.v_proj.weight",
            "self_attn.v_proj.bias",
            kvd,
            h,
            vb,
        ),
        (
            "self_attn.o_proj.weight",
            "self_attn.o_proj.bias",
            h,
            qd,
            ob,
        ),
        (
            "mlp.gate_proj.weight",
            "mlp.gate_proj.bias",
            inter,
            h,
            config.mlp_bias,
        ),
        (
            "mlp.up_proj.weight",
            "mlp.up_proj.bias",
            inter,
            h,
            config.mlp_bias,
        ),
        (
            "mlp.down_proj.weight",
            "mlp.down_proj.bias",
            h,
            inter,
            config.mlp_bias,
        ),
    ];
    for (weight, bias, rows, cols, has_bias) in linears {
        out.push((weight, vec![rows, cols]));
        if has_bias {
            out.push((bias, vec![rows]));
        }
    }
    if config.qk_norm() {
        let d = config.head_dim();
        out.push(("self_attn.q_norm.weight", vec![d]));
        out.push(("self_attn.k_norm.weight", vec![d]));
    }
    out.push(("input_layernorm.weight", vec![h]));
    out.push(("post_attention_layernorm.weight", vec![h]));
    if config.sandwich_norms() {
        out.push(("pre_feedforward_layernorm.weight", vec![h]));
        out.push(("post_feedforward_layernorm.weight", vec![h]));
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
        let pos = BLOCK_ORDER
            .iter()
            .position(|s| *s == suffix)
            .unwrap_or(BLOCK_ORDER.len());
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
