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
//! Qwen2/Qwen2.5), recognised by `model_type` or `architectures`; their differences are
//! data read from the config, not separate models: which projections carry a bias
//! ([`LlamaConfig::attention_biases`]) and the sliding attention window
//! ([`LlamaConfig::sliding_window`], Mistral's `sliding_window`, Qwen2's
//! `use_sliding_window`). An unknown family is an error naming it and the supported list.

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
}

impl Family {
    /// Every supported family.
    pub const ALL: [Family; 3] = [Family::Llama, Family::Mistral, Family::Qwen2];

    /// HF's `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
        }
    }

    /// HF's `architectures` entry.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
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

/// transformers' default `sliding_window` of Mistral and Qwen2 configs.
const DEFAULT_SLIDING_WINDOW: u64 = 4096;
/// transformers' default `max_window_layers` of Qwen2 configs.
const DEFAULT_MAX_WINDOW_LAYERS: u64 = 28;

/// A decoder `config.json` (Llama, Mistral or Qwen2 family), with HF's field names.
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
    /// MLP activation; only `silu` is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
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
fn default_hidden_act() -> String {
    "silu".to_string()
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
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`hidden_size` ({}) is not divisible by `num_attention_heads` ({}) and no `head_dim` is given",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "`head_dim` ({}) must be even for rotary embeddings",
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
        if self.hidden_act != "silu" {
            return Err(format!(
                "`hidden_act` is \"{}\"; only \"silu\" (SwiGLU) is supported",
                self.hidden_act
            ));
        }
        if let Some(tp) = self.extra.get("pretraining_tp").and_then(Value::as_u64)
            && tp > 1
        {
            return Err(format!("`pretraining_tp` = {tp} is not supported (only 1)"));
        }
        self.family()?;
        self.sliding_window_checked()?;
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
    /// no o bias; Llama and Mistral follow `attention_bias` for all four.
    pub fn attention_biases(&self) -> [bool; 4] {
        match self.family() {
            Ok(Family::Qwen2) => [true, true, true, false],
            _ => [self.attention_bias; 4],
        }
    }

    /// The sliding attention window every block uses, if any: a query at position `i`
    /// sees keys `j` with `i - window < j <= i` (transformers' convention). Mistral reads
    /// `sliding_window` (`null`: none); Qwen2 only when `use_sliding_window` is true.
    /// Invalid settings are reported by [`LlamaConfig::validate`] and read as none here.
    pub fn sliding_window(&self) -> Option<usize> {
        self.sliding_window_checked().ok().flatten()
    }

    fn sliding_window_checked(&self) -> std::result::Result<Option<usize>, String> {
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
        match self.family()? {
            Family::Llama => Ok(None),
            Family::Mistral => window(),
            Family::Qwen2 => {
                let used = match self.extra.get("use_sliding_window") {
                    None | Some(Value::Null) => false,
                    Some(v) => v.as_bool().ok_or_else(|| {
                        format!("`use_sliding_window` must be true or false, got {v}")
                    })?,
                };
                if !used {
                    return Ok(None);
                }
                let Some(w) = window()? else {
                    return Ok(None);
                };
                // Which layers slide: `layer_types` (transformers 5) if given, else
                // those with `i >= max_window_layers`.
                let sliding: Vec<bool> = match self.extra.get("layer_types") {
                    Some(Value::Array(types)) => types
                        .iter()
                        .map(|t| match t.as_str() {
                            Some("sliding_attention") => Ok(true),
                            Some("full_attention") => Ok(false),
                            _ => Err(format!(
                                "`layer_types` entry {t} is not \"full_attention\" or \"sliding_attention\""
                            )),
                        })
                        .collect::<std::result::Result<_, _>>()?,
                    _ => {
                        let from = self
                            .extra
                            .get("max_window_layers")
                            .and_then(Value::as_u64)
                            .unwrap_or(DEFAULT_MAX_WINDOW_LAYERS)
                            as usize;
                        (0..self.num_hidden_layers).map(|i| i >= from).collect()
                    }
                };
                if sliding.iter().all(|&s| !s) {
                    Ok(None)
                } else if sliding.iter().all(|&s| s) {
                    Ok(Some(w))
                } else {
                    Err(format!(
                        "`use_sliding_window` with a window in some layers only (`max_window_layers` = {}, or mixed `layer_types`) is not supported",
                        self.extra
                            .get("max_window_layers")
                            .map_or("unset".to_string(), Value::to_string)
                    ))
                }
            }
        }
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

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
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
    /// `rope_parameters` (transformers 5). Unsupported scaling types are an error.
    pub fn rope(&self) -> std::result::Result<RopeSettings, String> {
        let params = self.rope_parameters();
        let theta = self
            .rope_theta
            .or_else(|| {
                params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10000.0);
        let (scaling, key) = match (&self.rope_scaling, params) {
            (Some(Value::Object(map)), _) => (Some(map), "rope_scaling"),
            (Some(Value::Null) | None, Some(p)) => (Some(p), "rope_parameters"),
            (Some(Value::Null) | None, None) => (None, ""),
            (Some(other), _) => {
                return Err(format!("`rope_scaling` must be an object, got {other}"));
            }
        };
        let scaling = match scaling {
            None => RopeScaling::None,
            Some(map) => parse_scaling(map, key)?,
        };
        if theta <= 0.0 {
            return Err(format!("`rope_theta` must be positive, got {theta}"));
        }
        Ok(RopeSettings { theta, scaling })
    }
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
