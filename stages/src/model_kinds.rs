//! Stage kinds that bring models in and out: `model.import` (an HF directory or a GGUF
//! file -> an HF-layout model artifact), `model.init` (a seeded random Llama from a
//! config, for the quickstart's tiny models) and `model.export` (an artifact -> an HF
//! directory at a given dtype, e.g. to hand to transformers or lm-eval).
//!
//! The model artifact everywhere is an HF-layout directory: `config.json`,
//! `model.safetensors`, tokenizer files, (after surgery) `trainable.json`, and (after
//! surgery, training or export) a model card `README.md` (`crate::model_card`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, Registry, StageContext, StageError,
    TypedStage,
};

use crate::model::{self, Cpu, LlamaConfig, SaveDtype};
use crate::model_card::{self, Provenance, Step};

pub fn register(r: &mut Registry) {
    r.add_typed(ModelImport);
    r.add_typed(ModelInit);
    r.add_typed(ModelExport);
}

fn model_err(e: model::ModelError) -> StageError {
    StageError::other(e)
}

/// Parameter count and block count of a saved model, as metrics.
fn model_metrics(dir: &Path) -> Result<Metrics, StageError> {
    let config = LlamaConfig::from_file(&dir.join("config.json")).map_err(model_err)?;
    let mut m = Metrics::new();
    m.insert("blocks".into(), config.num_hidden_layers.into());
    m.insert("hidden_size".into(), config.hidden_size.into());
    m.insert("parameters".into(), parameter_count(&config).into());
    Ok(m)
}

/// Number of parameters implied by a config.
pub fn parameter_count(c: &LlamaConfig) -> u64 {
    // From the tensor-name tables, so family differences (Qwen2's q/k/v biases) count.
    fn numel(shapes: Vec<(&'static str, Vec<usize>)>) -> u64 {
        shapes
            .iter()
            .map(|(_, s)| s.iter().map(|&d| d as u64).product::<u64>())
            .sum()
    }
    let block = numel(crate::model::tensor_names::expected_block_tensors(c));
    numel(crate::model::tensor_names::expected_top_tensors(c)) + c.num_hidden_layers as u64 * block
}

/// `model.import`.
pub struct ModelImport;

/// Parameters of `model.import`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// An HF model directory (config.json + model.safetensors or a sharded index +
    /// tokenizer files) or a `.gguf` file; relative to the manifest's directory.
    pub path: PathBuf,
}

impl TypedStage for ModelImport {
    type Params = ImportParams;
    const KIND: &'static str = "model.import";
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "Import an HF directory or GGUF file as an HF-layout model artifact `model`";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::optional(
            "path",
            "the model as an input (hashed, so a changed checkpoint reruns); overrides `with.path`",
        )])
    }

    fn outputs(_: &ImportParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("model", "model")]
    }

    fn run(&self, p: ImportParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let src = match ctx.inputs.get("path") {
            Some(input) => input.single("path")?.to_path_buf(),
            None => ctx.work_dir.join(&p.path),
        };
        if !src.exists() {
            return Err(StageError::msg(format!(
                "model path {} does not exist",
                src.display()
            )));
        }
        let out = ctx.out("model");
        ctx.progress
            .set_message(format!("importing {}", src.display()));
        let report = model::import::import_to_dir_reporting(&src, &out, &|n, total| {
            ctx.progress.advance(n, total)
        })
        .map_err(model_err)?;
        let format = if model::import::is_gguf(&src) {
            "gguf"
        } else {
            "hf"
        };
        let step = Step::import(&Provenance::of(ctx), &src, format);
        model_card::write_card(&src, step, &out, &ctx.log).map_err(StageError::other)?;
        let mut m = model_metrics(&out)?;
        m.insert("files".into(), report.files.len().into());
        m.insert("source_format".into(), format.into());
        Ok(m)
    }
}

/// `model.init`.
pub struct ModelInit;

/// Parameters of `model.init`: an HF-named Llama config plus a seed.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitParams {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA); default: `num_attention_heads`.
    pub num_key_value_heads: Option<usize>,
    /// Vocabulary size; default: the size of the `tokenizer` input.
    pub vocab_size: Option<usize>,
    /// Longest context.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Rotary base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Share the embedding and output matrices.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Standard deviation of the normal initialisation.
    #[serde(default = "default_std")]
    pub initializer_range: f64,
    /// Seed of the initialisation.
    #[serde(default)]
    pub seed: u64,
}

fn default_max_pos() -> usize {
    2048
}
fn default_theta() -> f64 {
    10000.0
}
fn default_eps() -> f64 {
    1e-5
}
fn default_std() -> f64 {
    0.02
}

impl TypedStage for ModelInit {
    type Params = InitParams;
    const KIND: &'static str = "model.init";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "A seeded random Llama from an HF-style config (tiny models for the quickstart and tests)";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::optional(
            "tokenizer",
            "tokenizer.json (or a dir holding it): copied into the model, sets vocab_size",
        )])
    }

    fn outputs(_: &InitParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("model", "model")]
    }

    fn validate(p: &InitParams) -> Result<(), ParamError> {
        if p.num_attention_heads == 0 || !p.hidden_size.is_multiple_of(p.num_attention_heads) {
            return Err(ParamError::new(
                "num_attention_heads",
                format!(
                    "hidden_size {} must be a multiple of num_attention_heads {}",
                    p.hidden_size, p.num_attention_heads
                ),
            ));
        }
        if let Some(kv) = p.num_key_value_heads
            && (kv == 0 || !p.num_attention_heads.is_multiple_of(kv))
        {
            return Err(ParamError::new(
                "num_key_value_heads",
                format!(
                    "num_attention_heads {} must be a multiple of num_key_value_heads {kv}",
                    p.num_attention_heads
                ),
            ));
        }
        Ok(())
    }

    fn uses_device() -> bool {
        true
    }

    fn run(&self, p: InitParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let out = ctx.out("model");
        std::fs::create_dir_all(&out).map_err(|e| StageError::io(&out, e))?;
        let tokenizer = match ctx.inputs.get("tokenizer") {
            Some(input) => {
                let path = input.single("tokenizer")?;
                let file = if path.is_dir() {
                    path.join("tokenizer.json")
                } else {
                    path.to_path_buf()
                };
                let tok = model::Tokenizer::from_file(&file).map_err(model_err)?;
                let dest = out.join("tokenizer.json");
                std::fs::copy(&file, &dest).map_err(|e| StageError::io(&file, e))?;
                let config = file.with_file_name("tokenizer_config.json");
                if config.is_file() {
                    let dest = out.join("tokenizer_config.json");
                    std::fs::copy(&config, &dest).map_err(|e| StageError::io(&config, e))?;
                }
                Some(tok)
            }
            None => None,
        };
        let vocab_size = match (p.vocab_size, &tokenizer) {
            (Some(v), _) => v,
            (None, Some(t)) => t.vocab_size(),
            (None, None) => {
                return Err(StageError::msg(
                    "model.init needs `vocab_size` or a `tokenizer` input",
                ));
            }
        };
        let eos = tokenizer
            .as_ref()
            .and_then(|t| t.stop_ids().first().copied());
        let mut config: LlamaConfig = serde_json::from_value(serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": p.hidden_size,
            "intermediate_size": p.intermediate_size,
            "num_hidden_layers": p.num_hidden_layers,
            "num_attention_heads": p.num_attention_heads,
            "num_key_value_heads": p.num_key_value_heads.unwrap_or(p.num_attention_heads),
            "max_position_embeddings": p.max_position_embeddings,
            "rope_theta": p.rope_theta,
            "rms_norm_eps": p.rms_norm_eps,
            "tie_word_embeddings": p.tie_word_embeddings,
            "initializer_range": p.initializer_range,
            "hidden_act": "silu",
        }))
        .map_err(|e| StageError::msg(format!("internal: bad config: {e}")))?;
        if let Some(eos) = eos {
            config.eos_token_id = Some(model::TokenIds::One(eos));
        }
        let model = model::Llama::<Cpu>::init_random(&config, p.seed, &Default::default())
            .map_err(model_err)?;
        model::save_pretrained(&model, &out, SaveDtype::F32).map_err(model_err)?;
        model_metrics(&out)
    }
}

/// `model.export`.
pub struct ModelExport;

/// Parameters of `model.export`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Storage dtype of the exported weights: f32, f16 or bf16.
    #[serde(default = "default_dtype")]
    pub dtype: String,
}

fn default_dtype() -> String {
    "f32".into()
}

impl TypedStage for ModelExport {
    type Params = ExportParams;
    const KIND: &'static str = "model.export";
    // 2: the model carries a model card (README.md) with the input's lineage.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "Write a model artifact as an HF directory (transformers-loadable) at a chosen dtype, with a model card (README.md)";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::required(
            "model",
            "the model artifact to export",
        )])
    }

    fn outputs(_: &ExportParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("model", "model")]
    }

    fn validate(p: &ExportParams) -> Result<(), ParamError> {
        match SaveDtype::parse(&p.dtype) {
            Some(_) => Ok(()),
            None => Err(ParamError::new(
                "dtype",
                format!("unknown dtype `{}`: expected f32, f16 or bf16", p.dtype),
            )),
        }
    }

    fn run(&self, p: ExportParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let src = ctx.input("model")?.single("model")?;
        let out = ctx.out("model");
        let dtype = SaveDtype::parse(&p.dtype).ok_or_else(|| StageError::msg("bad dtype"))?;
        let model = model::load_pretrained::<Cpu>(src, &Default::default()).map_err(model_err)?;
        model::save_pretrained(&model, &out, dtype).map_err(model_err)?;
        model::safetensors_io::copy_tokenizer_files(src, &out).map_err(model_err)?;
        let step = Step::export(&Provenance::of(ctx), &p.dtype);
        model_card::write_card(src, step, &out, &ctx.log).map_err(StageError::other)?;
        model_metrics(&out)
    }
}
