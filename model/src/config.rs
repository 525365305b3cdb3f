//! [`LlamaConfig`]: the HF `config.json` of a Llama-family model, field for field.
//!
//! Field names are HF's, so a `config.json` written by `transformers` reads back unchanged
//! and one written here loads in `transformers`. Keys this struct does not know (for
//! example `architectures`, `initializer_range`, `rope_parameters` of transformers 5) are
//! kept in [`LlamaConfig::extra`] and written back on save. Missing required keys are an
//! error naming the file and the key.
//!
//! Rotary settings come in two spellings: transformers 4 writes `rope_theta` and
//! `rope_scaling` at top level, transformers 5 writes `rope_parameters: {rope_type,
//! rope_theta, factor, ...}`. [`LlamaConfig::rope`] reads either and returns a typed
//! [`RopeSettings`]; supported scalings are `default`, `linear` and `llama3`, others
//! are a clear error.
//!
//! One config type serves every supported decoder family ([`Family`]: Llama, Mistral,
//! Qwen2/Qwen2.5, Qwen3, Gemma 3), recognised by `model_type` or `architectures`; their
//! differences are data read from the config, not separate models: which projections
//! carry a bias ([`LlamaConfig::attention_biases`]), per-head q/k norms
//! ([`LlamaConfig::qk_norm`], Qwen3 and Gemma 3), the sliding attention window and which
//! blocks use it ([`LlamaConfig::layer_attention`]: Mistral's `sliding_window`, Qwen2's
//! `use_sliding_window`, Gemma 3's interleaved `layer_types` with their own rotary base
//! [`LlamaConfig::local_rope`]), and Gemma 3's specifics ([`Family::Gemma3`]: norms
//! around both sub-layers, `(1 + w)` norm scales, GELU-tanh MLP, scaled embeddings,
//! `query_pre_attn_scalar`, final logit soft-capping). An unknown family is an error naming it and
//! the supported list.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ModelError, Result};

/// One token id or a list of them (HF allows both for `eos_token_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids (e.g. Llama 3 lists `<|end_of_text|>` and `<|eot_id|>`).
    Many(Vec<u32>),
}

impl TokenIds {
    /// All ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }

    /// The first id, if any.
    pub fn first(&self) -> Option<u32> {
        self.to_vec().first().copied()
    }
}

/// A decoder family: the architectures one [`LlamaConfig`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `LlamaForCausalLM` (`model_type: llama`): the base decoder.
    Llama,
    /// `MistralForCausalLM` (`model_type: mistral`): Llama plus sliding-window attention.
    Mistral,
    /// `Qwen2ForCausalLM` (`model_type: qwen2`, also Qwen2.5): q/k/v biases (no o bias),
    /// sliding window only when `use_sliding_window` is true.
    Qwen2,
    /// `Qwen3ForCausalLM` (`model_type: qwen3`): RMSNorm over each q and k head before
    /// rotary (`q_norm`, `k_norm`), `head_dim` set apart from `hidden_size`, no biases
    /// unless `attention_bias`; windows as Qwen2.
    Qwen3,
    /// `Gemma3ForCausalLM` (`model_type: gemma3_text`, the text model of Gemma 3):
    /// embeddings scaled by `sqrt(hidden_size)`, RMSNorms scaling by `1 + w`, four norms
    /// per block (`post_attention_layernorm` on the attention output, then
    /// `pre_feedforward_layernorm` / `post_feedforward_layernorm` around the MLP), q/k
    /// norms, a GELU-tanh gated MLP, scores scaled by `query_pre_attn_scalar^-1/2`,
    /// interleaved sliding (local, rotary base `rope_local_base_freq`) and global blocks
    /// (`layer_types`, or every `sliding_window_pattern`-th block global), optional
    /// `final_logit_softcapping`, tied head. `attn_logit_softcapping` (Gemma 2) is
    /// refused: transformers' Gemma 3 ignores it.
    Gemma3,
}

impl Family {
    /// Every supported family.
    pub const ALL: [Family; 5] = [
        Family::Llama,
        Family::Mistral,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gemma3,
    ];

    /// HF's `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma3 => "gemma3_text",
        }
    }

    /// HF's `architectures` entry.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
            Family::Gemma3 => "Gemma3ForCausalLM",
        }
    }

    /// The family of a `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.model_type() == model_type)
    }

    /// The family of an `architectures` entry.
    pub fn from_architecture(architecture: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.architecture() == architecture)
    }

    fn supported() -> String {
        Self::ALL
            .iter()
            .map(|f| format!("{} ({})", f.model_type(), f.architecture()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

/// transformers' default `sliding_window` of Mistral, Qwen2/3 and Gemma 3 configs.
const DEFAULT_SLIDING_WINDOW: u64 = 4096;
/// transformers' default `sliding_window_pattern` of Gemma 3 configs: every 6th block
/// is global.
const DEFAULT_GEMMA3_PATTERN: usize = 6;
/// transformers' default `max_window_layers` of Qwen2 configs.
const DEFAULT_MAX_WINDOW_LAYERS: u64 = 28;

/// A decoder `config.json` of any [`Family`], with HF's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding and of `lm_head`).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (GQA); `None` means `num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; `None` means `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base (transformers 4 spelling; transformers 5 keeps it in
    /// `rope_parameters`, see [`LlamaConfig::rope`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Rotary scaling (transformers 4 spelling), kept verbatim; parsed by
    /// [`LlamaConfig::rope`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    /// Longest context the model was trained for.
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Whether `lm_head` shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether q/k/v/o projections have a bias.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether gate/up/down projections have a bias.
    #[serde(default)]
    pub mlp_bias: bool,
    /// MLP activation (`silu`, the default); Gemma 3 reads `hidden_activation` instead
    /// (see [`LlamaConfig::activation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    /// Beginning-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<TokenIds>,
    /// End-of-sequence token(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    /// Storage dtype (transformers 4 spelling; transformers 5 writes `dtype`, kept in
    /// `extra`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    /// Every other key of `config.json`, preserved on save.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_position_embeddings() -> usize {
    2048
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu` (SwiGLU: Llama, Mistral, Qwen).
    Silu,
    /// `gelu_pytorch_tanh`, GELU's tanh approximation (GeGLU: Gemma).
    GeluTanh,
}

/// One block's attention settings, derived per block from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerAttention {
    /// The sliding window, `None`: the block sees every earlier key.
    pub sliding_window: Option<usize>,
    /// Whether the block rotates with the local rotary table (Gemma 3's sliding blocks).
    pub local_rope: bool,
}

/// How rotary frequencies are scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Division factor.
        factor: f64,
    },
    /// Llama 3.1 frequency-dependent scaling.
    Llama3 {
        /// Scaling of low frequencies.
        factor: f64,
        /// Wavelength threshold (as context / factor) below which frequencies are scaled.
        low_freq_factor: f64,
        /// Wavelength threshold above which frequencies are kept.
        high_freq_factor: f64,
        /// Context length of the original pre-training.
        original_max_position_embeddings: f64,
    },
}

/// Typed rotary settings resolved from either config spelling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSettings {
    /// Rotary base.
    pub theta: f64,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

impl LlamaConfig {
    /// Read and validate `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parse and validate a config from JSON text; `path` names it in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let config: LlamaConfig = serde_json::from_str(text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| ModelError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Serialise as pretty JSON (HF style, trailing newline).
    pub fn to_json_string(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(self).map_err(|e| ModelError::Config {
            path: "<in memory>".into(),
            message: e.to_string(),
        })?;
        s.push('\n');
        Ok(s)
    }

    /// Write `config.json` to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_json_string()?;
        std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
    }

    /// Check the invariants the model relies on; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("`{key}` must be positive"));
            }
        }
        let family = self.family()?;
        if self.head_dim.is_none()
            && family_head_dim(family).is_none()
            && !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "`hidden_size` ({}) is not divisible by `num_attention_heads` ({}) and no `head_dim` is given",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.head_dim() == 0 || !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "`head_dim` ({}) must be even and positive for rotary embeddings",
                self.head_dim()
            ));
        }
        let kv = self.num_key_value_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return Err(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({kv})",
                self.num_attention_heads
            ));
        }
        self.activation()?;
        if let Some(tp) = self.extra.get("pretraining_tp").and_then(Value::as_u64)
            && tp > 1
        {
            return Err(format!("`pretraining_tp` = {tp} is not supported (only 1)"));
        }
        if family == Family::Gemma3 {
            if self.extra.get("use_bidirectional_attention") == Some(&Value::Bool(true)) {
                return Err(
                    "`use_bidirectional_attention: true` (EmbeddingGemma) is not supported; only causal Gemma 3".into(),
                );
            }
            // Gemma 2's score soft-capping: transformers' Gemma 3 does not apply it and
            // llama.cpp's converter refuses it, so a config that sets it is not Gemma 3.
            if let Some(v) = self
                .extra
                .get("attn_logit_softcapping")
                .filter(|v| !v.is_null())
            {
                return Err(format!(
                    "`attn_logit_softcapping` is {v}: Gemma 3 has no attention soft-capping (transformers ignores the key, llama.cpp refuses it); Gemma 2 is not supported"
                ));
            }
            for key in ["query_pre_attn_scalar", "final_logit_softcapping"] {
                match self.extra.get(key) {
                    None | Some(Value::Null) => {}
                    Some(v) if v.as_f64().is_some_and(|x| x > 0.0) => {}
                    Some(v) => return Err(format!("`{key}` must be a positive number, got {v}")),
                }
            }
            self.local_rope()?;
        }
        self.layer_windows()?;
        self.rope().map(|_| ())
    }

    /// The decoder family, from `model_type`, else the first `architectures` entry, else
    /// Llama (configs written before families existed). Unknown ones are an error naming
    /// them and the supported list.
    pub fn family(&self) -> std::result::Result<Family, String> {
        if let Some(mt) = self.extra.get("model_type").and_then(Value::as_str) {
            return Family::from_model_type(mt).ok_or_else(|| {
                format!(
                    "`model_type` is \"{mt}\", which is not supported (supported: {})",
                    Family::supported()
                )
            });
        }
        let arch = self
            .extra
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        match arch {
            None => Ok(Family::Llama),
            Some(a) => Family::from_architecture(a).ok_or_else(|| {
                format!(
                    "`architectures` names \"{a}\", which is not supported (supported: {})",
                    Family::supported()
                )
            }),
        }
    }

    /// The family, Llama when it cannot be read ([`LlamaConfig::validate`] reports that).
    fn family_or_llama(&self) -> Family {
        self.family().unwrap_or(Family::Llama)
    }

    /// Record `family` as this config's `model_type` and `architectures`.
    pub fn set_family(&mut self, family: Family) {
        self.extra.insert(
            "model_type".into(),
            Value::String(family.model_type().into()),
        );
        self.extra.insert(
            "architectures".into(),
            Value::Array(vec![Value::String(family.architecture().into())]),
        );
    }

    /// Whether the q, k, v and o projections carry a bias: Qwen2 has q/k/v biases and
    /// no o bias; the other families follow `attention_bias` for all four.
    pub fn attention_biases(&self) -> [bool; 4] {
        match self.family_or_llama() {
            Family::Qwen2 => [true, true, true, false],
            _ => [self.attention_bias; 4],
        }
    }

    /// Whether each query and key head goes through an RMSNorm over `head_dim` before
    /// rotary (`self_attn.q_norm`, `self_attn.k_norm`): Qwen3 and Gemma 3.
    pub fn qk_norm(&self) -> bool {
        matches!(self.family_or_llama(), Family::Qwen3 | Family::Gemma3)
    }

    /// Whether blocks norm both sub-layers' outputs too (Gemma 3): the attention output
    /// through `post_attention_layernorm`, the MLP between `pre_feedforward_layernorm`
    /// and `post_feedforward_layernorm`. Otherwise `post_attention_layernorm` is the norm
    /// before the MLP (Llama).
    pub fn sandwich_norms(&self) -> bool {
        self.family_or_llama() == Family::Gemma3
    }

    /// Whether RMSNorms scale by `1 + weight` (Gemma 3, whose norm weights start at 0)
    /// rather than by `weight`.
    pub fn norm_unit_offset(&self) -> bool {
        self.family_or_llama() == Family::Gemma3
    }

    /// The MLP's gate activation: `hidden_act` (default `silu`), or Gemma 3's
    /// `hidden_activation` (default `gelu_pytorch_tanh`).
    pub fn activation(&self) -> std::result::Result<Activation, String> {
        let (key, value) = match self.family_or_llama() {
            Family::Gemma3 => (
                "hidden_activation",
                self.extra
                    .get("hidden_activation")
                    .and_then(Value::as_str)
                    .unwrap_or("gelu_pytorch_tanh"),
            ),
            _ => ("hidden_act", self.hidden_act.as_deref().unwrap_or("silu")),
        };
        match value {
            "silu" => Ok(Activation::Silu),
            "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            other => Err(format!(
                "`{key}` is \"{other}\"; supported: \"silu\" (SwiGLU), \"gelu_pytorch_tanh\" (GeGLU)"
            )),
        }
    }

    /// The factor token embeddings are multiplied by: `sqrt(hidden_size)` for Gemma 3.
    pub fn embedding_scale(&self) -> Option<f64> {
        (self.family_or_llama() == Family::Gemma3).then(|| (self.hidden_size as f64).sqrt())
    }

    /// The factor attention scores are multiplied by: `head_dim^-1/2`, or Gemma 3's
    /// `query_pre_attn_scalar^-1/2` (default 256).
    pub fn attention_scale(&self) -> f64 {
        let d = match self.family_or_llama() {
            Family::Gemma3 => self
                .extra
                .get("query_pre_attn_scalar")
                .and_then(Value::as_f64)
                .unwrap_or(256.0),
            _ => self.head_dim() as f64,
        };
        1.0 / d.sqrt()
    }

    /// Gemma's soft-capping `cap * tanh(x / cap)` of the output logits
    /// (`final_logit_softcapping`), when the config sets it.
    pub fn final_logit_softcapping(&self) -> Option<f64> {
        if self.family_or_llama() != Family::Gemma3 {
            return None;
        }
        self.extra
            .get("final_logit_softcapping")
            .and_then(Value::as_f64)
            .filter(|&c| c > 0.0)
    }

    /// The sliding attention window of the blocks that slide, if any: a query at
    /// position `i` sees keys `j` with `i - window < j <= i` (transformers' convention).
    /// Mistral reads `sliding_window` (`null`: none); Qwen2/Qwen3 only when
    /// `use_sliding_window` is true; Gemma 3 for its local blocks. Which blocks slide is
    /// [`LlamaConfig::layer_attention`]. Invalid settings are reported by
    /// [`LlamaConfig::validate`] and read as none here.
    pub fn sliding_window(&self) -> Option<usize> {
        self.layer_windows()
            .ok()
            .and_then(|(w, layers)| w.filter(|_| layers.iter().any(|&s| s)))
    }

    /// Block `index`'s attention: its window and which rotary table it uses.
    pub fn layer_attention(&self, index: usize) -> LayerAttention {
        let (window, sliding) = self.layer_windows().unwrap_or((None, Vec::new()));
        let slides = sliding.get(index).copied().unwrap_or(false);
        LayerAttention {
            sliding_window: window.filter(|_| slides),
            // Gemma 3's local blocks rotate with their own base.
            local_rope: slides && self.family_or_llama() == Family::Gemma3,
        }
    }

    /// Whether blocks differ in their attention (Gemma 3's interleaved local and global
    /// blocks).
    pub fn mixed_layers(&self) -> bool {
        let n = self.num_hidden_layers;
        (1..n).any(|i| self.layer_attention(i) != self.layer_attention(0))
    }

    /// The window of sliding blocks and, per block, whether it slides.
    fn layer_windows(&self) -> std::result::Result<(Option<usize>, Vec<bool>), String> {
        let window = || -> std::result::Result<Option<usize>, String> {
            match self.extra.get("sliding_window") {
                None => Ok(Some(DEFAULT_SLIDING_WINDOW as usize)),
                Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(0) | None => Err(format!(
                        "`sliding_window` must be a positive integer or null, got {v}"
                    )),
                    Some(w) => Ok(Some(w as usize)),
                },
            }
        };
        let n = self.num_hidden_layers;
        let none = Ok((None, vec![false; n]));
        match self.family()? {
            Family::Llama => none,
            Family::Mistral => Ok((window()?, vec![true; n])),
            Family::Gemma3 => {
                let Some(w) = window()? else { return none };
                let sliding = match self.layer_types()? {
                    Some(types) => types,
                    None => {
                        let pattern = match self.extra.get("sliding_window_pattern") {
                            None | Some(Value::Null) => DEFAULT_GEMMA3_PATTERN,
                            Some(v) => v.as_u64().filter(|&p| p > 0).ok_or_else(|| {
                                format!(
                                    "`sliding_window_pattern` must be a positive integer, got {v}"
                                )
                            })? as usize,
                        };
                        (0..n).map(|i| (i + 1) % pattern != 0).collect()
                    }
                };
                Ok((Some(w), sliding))
            }
            Family::Qwen2 | Family::Qwen3 => {
                let used = match self.extra.get("use_sliding_window") {
                    None | Some(Value::Null) => false,
                    Some(v) => v.as_bool().ok_or_else(|| {
                        format!("`use_sliding_window` must be true or false, got {v}")
                    })?,
                };
                if !used {
                    return none;
                }
                let Some(w) = window()? else { return none };
                // Which layers slide: `layer_types` (transformers 5) if given, else
                // those with `i >= max_window_layers`.
                let sliding: Vec<bool> = match self.layer_types()? {
                    Some(types) => types,
                    None => {
                        let from = self
                            .extra
                            .get("max_window_layers")
                            .and_then(Value::as_u64)
                            .unwrap_or(DEFAULT_MAX_WINDOW_LAYERS)
                            as usize;
                        (0..n).map(|i| i >= from).collect()
                    }
                };
                Ok((Some(w), sliding))
            }
        }
    }

    /// transformers 5's `layer_types` as "slides" flags, one per block.
    fn layer_types(&self) -> std::result::Result<Option<Vec<bool>>, String> {
        let Some(Value::Array(types)) = self.extra.get("layer_types") else {
            return Ok(None);
        };
        if types.len() != self.num_hidden_layers {
            return Err(format!(
                "`layer_types` has {} entries for {} layers (`num_hidden_layers`)",
                types.len(),
                self.num_hidden_layers
            ));
        }
        types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(format!(
                    "`layer_types` entry {t} is not \"full_attention\" or \"sliding_attention\""
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Write `layer_types` from per-block "slides" flags (Gemma 3 keeps its interleaving
    /// through surgery this way, whatever the source config spelled).
    pub fn set_layer_types(&mut self, sliding: &[bool]) {
        let types = sliding
            .iter()
            .map(|&s| {
                Value::String(
                    if s {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                    .into(),
                )
            })
            .collect();
        self.extra.insert("layer_types".into(), Value::Array(types));
    }

    /// Per block, whether it slides.
    pub fn sliding_layers(&self) -> Vec<bool> {
        (0..self.num_hidden_layers)
            .map(|i| self.layer_attention(i).sliding_window.is_some())
            .collect()
    }

    /// Set the number of blocks, keeping transformers 5's per-layer `layer_types` (when
    /// every entry is the same) as long as the new list of blocks.
    pub fn set_num_hidden_layers(&mut self, n: usize) {
        self.num_hidden_layers = n;
        if let Some(Value::Array(types)) = self.extra.get_mut("layer_types")
            && let Some(first) = types.first().cloned()
            && types.iter().all(|t| *t == first)
        {
            types.resize(n, first);
        }
    }

    /// Number of key/value heads.
    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width: `head_dim`, else the family's default (Qwen3 128, Gemma 3 256,
    /// as transformers), else `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .or_else(|| family_head_dim(self.family_or_llama()))
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// End-of-sequence ids (empty when the config names none).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// The dtype the checkpoint was stored in, from `torch_dtype` or `dtype`.
    pub fn stored_dtype(&self) -> Option<&str> {
        self.torch_dtype
            .as_deref()
            .or_else(|| self.extra.get("dtype").and_then(Value::as_str))
    }

    /// Record the storage dtype under whichever key the config already uses.
    pub fn set_stored_dtype(&mut self, dtype: &str) {
        if self.extra.contains_key("dtype")
            || self.torch_dtype.is_none() && self.rope_parameters().is_some()
        {
            self.extra
                .insert("dtype".into(), Value::String(dtype.into()));
            self.torch_dtype = None;
        } else {
            self.torch_dtype = Some(dtype.into());
        }
    }

    fn rope_parameters(&self) -> Option<&Map<String, Value>> {
        self.extra.get("rope_parameters").and_then(Value::as_object)
    }

    /// Resolve rotary settings from `rope_theta`/`rope_scaling` (transformers 4) or
    /// `rope_parameters` (transformers 5; Gemma 3's global blocks: its `full_attention`
    /// entry). Unsupported scaling types are an error.
    pub fn rope(&self) -> std::result::Result<RopeSettings, String> {
        let gemma = self.family_or_llama() == Family::Gemma3;
        let (params, key) = match self.rope_parameters() {
            Some(p) if gemma && p.contains_key("full_attention") => (
                p.get("full_attention").and_then(Value::as_object),
                "rope_parameters.full_attention",
            ),
            p => (p, "rope_parameters"),
        };
        let default_theta = if gemma { 1_000_000.0 } else { 10000.0 };
        let theta = self.rope_theta.or_else(|| {
            params
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
        });
        let (scaling, key) = match (&self.rope_scaling, params) {
            (Some(Value::Object(map)), _) => (Some(map), "rope_scaling"),
            (Some(Value::Null) | None, p) => (p, key),
            (Some(other), _) => {
                return Err(format!("`rope_scaling` must be an object, got {other}"));
            }
        };
        rope_settings(theta.unwrap_or(default_theta), scaling, key)
    }

    /// Gemma 3's rotary settings for its local (sliding) blocks: base
    /// `rope_local_base_freq` (transformers 4) or `rope_parameters.sliding_attention`
    /// (transformers 5), default 10000, unscaled. `None` for other families.
    pub fn local_rope(&self) -> std::result::Result<Option<RopeSettings>, String> {
        if self.family_or_llama() != Family::Gemma3 {
            return Ok(None);
        }
        let key = "rope_parameters.sliding_attention";
        let params = self
            .rope_parameters()
            .and_then(|p| p.get("sliding_attention"))
            .and_then(Value::as_object);
        let theta = self
            .extra
            .get("rope_local_base_freq")
            .and_then(Value::as_f64)
            .or_else(|| {
                params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10000.0);
        rope_settings(theta, params, key).map(Some)
    }
}

/// transformers' `head_dim` default where a family's config has one.
fn family_head_dim(family: Family) -> Option<usize> {
    match family {
        Family::Qwen3 => Some(128),
        Family::Gemma3 => Some(256),
        _ => None,
    }
}

fn rope_settings(
    theta: f64,
    scaling: Option<&Map<String, Value>>,
    key: &str,
) -> std::result::Result<RopeSettings, String> {
    let scaling = match scaling {
        None => RopeScaling::None,
        Some(map) => parse_scaling(map, key)?,
    };
    if theta <= 0.0 {
        return Err(format!("`rope_theta` must be positive, got {theta}"));
    }
    Ok(RopeSettings { theta, scaling })
}

fn parse_scaling(map: &Map<String, Value>, key: &str) -> std::result::Result<RopeScaling, String> {
    let kind = map
        .get("rope_type")
        .or_else(|| map.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |name: &str| -> std::result::Result<f64, String> {
        map.get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("`{key}.{name}` is required for rope type \"{kind}\""))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        }),
        other => Err(format!(
            "`{key}` type \"{other}\" is not supported (supported: default, linear, llama3)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "eos_token_id": [2, 3],
        "initializer_range": 0.02, "custom_thing": {"a": 1}
    }"#;

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let c = LlamaConfig::from_json_str(TINY, Path::new("config.json")).unwrap();
        assert_eq!(c.head_dim(), 16);
        assert_eq!(c.eos_token_ids(), vec![2, 3]);
        let back: Value = serde_json::from_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(back["custom_thing"]["a"], 1);
        assert_eq!(back["architectures"][0], "LlamaForCausalLM");
        assert_eq!(back["rope_theta"], 10000.0);
    }

    #[test]
    fn missing_required_key_names_file_and_key() {
        let text = TINY.replace("\"hidden_size\": 64,", "");
        let err = LlamaConfig::from_json_str(&text, Path::new("m/config.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("m/config.json"), "{msg}");
        assert!(msg.contains("hidden_size"), "{msg}");
    }

    #[test]
    fn transformers5_rope_parameters_are_read() {
        let text = TINY.replace(
            "\"rope_theta\": 10000.0,",
            "\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192},",
        );
        let c = LlamaConfig::from_json_str(&text, Path::new("config.json")).unwrap();
        let rope = c.rope().unwrap();
        assert_eq!(rope.theta, 500000.0);
        assert!(matches!(rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn unsupported_rope_scaling_is_a_clear_error() {
        let text = TINY.replace(
            "\"rope_theta\": 10000.0,",
            "\"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0},",
        );
        let err = LlamaConfig::from_json_str(&text, Path::new("config.json")).unwrap_err();
        assert!(
            err.to_string().contains("\"yarn\" is not supported"),
            "{err}"
        );
    }
}
