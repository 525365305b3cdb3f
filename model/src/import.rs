//! One entry point for "a model path": an HF directory or a `.gguf` file.
//!
//! [`load_model`] and [`load_tokenizer`] read either kind; [`import_to_dir`] turns either
//! into the model artifact layout the pipeline passes around (an HF directory with
//! `config.json`, `model.safetensors` or shards, `tokenizer.json`,
//! `tokenizer_config.json`).
//!
//! A GGUF file is dequantised tensor by tensor into an f32 checkpoint (a few tensors in
//! memory at once). An HF directory is imported without building the model: its headers are checked
//! against its config, every tensor is copied byte for byte (in the kernel, see
//! `safetensors_stream`) into `save_pretrained`'s layout, and the tokenizer is parsed
//! before it is copied, so a broken `tokenizer.json` fails the import, not a later
//! stage.

use std::path::Path;

use burn::prelude::*;

use super::checkpoint_layout::check_layout;
use super::config::LlamaConfig;
use super::error::{ModelError, Result};
use super::gguf::GgufFile;
use super::llama::Llama;
use super::precision::Residency;
use super::safetensors_io::{
    SafetensorsCheckpoint, SaveDtype, copy_tokenizer_files, load_pretrained_as,
};
use super::safetensors_stream::{
    DEFAULT_MAX_SHARD_SIZE, OnWritten, OutTensor, Recipe, write_checkpoint,
    write_computed_checkpoint,
};
use super::tensor_names::{
    expected_block_tensors, expected_top_tensors, hf_order_key, layer_tensor,
};
use super::tokenizer::Tokenizer;
use super::weights::{WeightSource, build_llama};

/// Whether `path` names a GGUF file (by extension or magic bytes).
pub fn is_gguf(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    if !path.is_file() {
        return false;
    }
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

/// Load a GGUF file's weights (dequantised to f32) onto `device`.
pub fn load_gguf<B: Backend>(path: &Path, device: &B::Device) -> Result<Llama<B>> {
    let file = GgufFile::open(path)?;
    let config = file.config()?;
    let weights = file.weights(&config);
    build_llama(config, &weights, device, Residency::F32)
}

/// Load a model from an HF directory or a `.gguf` file, as f32.
pub fn load_model<B: Backend>(path: &Path, device: &B::Device) -> Result<Llama<B>> {
    load_model_as(path, device, Residency::F32)
}

/// Load a model from an HF directory or a `.gguf` file; an HF checkpoint's weights are
/// held as `residency` says (GGUF weights are dequantised to f32 either way).
pub fn load_model_as<B: Backend>(
    path: &Path,
    device: &B::Device,
    residency: Residency,
) -> Result<Llama<B>> {
    if is_gguf(path) {
        load_gguf(path, device)
    } else if path.is_dir() {
        load_pretrained_as(path, device, residency)
    } else {
        Err(ModelError::format(
            path,
            "not a model: expected an HF directory (config.json + model.safetensors) or a .gguf file",
        ))
    }
}

/// The tokenizer of an HF directory (`tokenizer.json` + `tokenizer_config.json`) or of a
/// GGUF file (rebuilt from its metadata).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if is_gguf(path) {
        let file = GgufFile::open(path)?;
        let (json, config) = file.tokenizer_json()?;
        let mut tok = Tokenizer::from_json_str(&json.to_string(), path)?;
        tok.apply_config(&config);
        Ok(tok)
    } else {
        Tokenizer::from_dir(path)
    }
}

/// What [`import_to_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Files written into the output directory.
    pub files: Vec<String>,
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| ModelError::format(path, e.to_string()))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

/// Convert an HF directory or GGUF file into an HF directory at `out` (f32 for GGUF,
/// the original tensors for HF input), tokenizer files included.
pub fn import_to_dir(path: &Path, out: &Path) -> Result<ImportReport> {
    import_to_dir_reporting(path, out, &|_, _| {})
}

/// [`import_to_dir`], telling `on_written` how many of the checkpoint's bytes are
/// written (for a progress bar).
pub fn import_to_dir_reporting(
    path: &Path,
    out: &Path,
    on_written: &OnWritten<'_>,
) -> Result<ImportReport> {
    if is_gguf(path) {
        import_gguf(path, out, on_written)
    } else {
        import_hf_dir(path, out, on_written)
    }
}

/// Dequantise a GGUF file into an f32 HF checkpoint at `out`, tensor by tensor (a few
/// tensors in memory at once, never the model), in `save_pretrained`'s order and
/// sharding, with its tokenizer rebuilt from the metadata (converted before any tensor
/// is written, so a broken one fails fast).
fn import_gguf(path: &Path, out: &Path, on_written: &OnWritten<'_>) -> Result<ImportReport> {
    let file = GgufFile::open(path)?;
    let mut config = file.config()?;
    let tokenizer = match file.tokenizer_json() {
        Ok(t) => Some(t),
        // A model without a convertible tokenizer is still a model.
        Err(ModelError::Unsupported(_)) => None,
        Err(e) => return Err(e),
    };
    let mut tensors: Vec<OutTensor> = expected_top_tensors(&config)
        .into_iter()
        .map(|(name, shape)| (name.to_string(), shape))
        .chain((0..config.num_hidden_layers).flat_map(|i| {
            expected_block_tensors(&config)
                .into_iter()
                .map(move |(suffix, shape)| (layer_tensor(i, suffix), shape))
        }))
        .map(|(name, shape)| OutTensor {
            name,
            dtype: safetensors::Dtype::F32,
            shape,
            recipe: Recipe::Computed,
        })
        .collect();
    tensors.sort_by_cached_key(|t| hf_order_key(&t.name));
    let weights = file.weights(&config);
    let written = write_computed_checkpoint(
        &tensors,
        out,
        DEFAULT_MAX_SHARD_SIZE,
        on_written,
        &|t, sink| {
            let host = weights
                .tensor(&t.name)?
                .ok_or_else(|| ModelError::MissingTensor {
                    file: path.to_path_buf(),
                    name: t.name.clone(),
                })?;
            if host.shape != t.shape {
                return Err(ModelError::ShapeMismatch {
                    file: path.to_path_buf(),
                    name: t.name.clone(),
                    expected: t.shape.clone(),
                    actual: host.shape,
                });
            }
            // Little-endian bytes, 1 MiB at a time: the dequantised tensor is the only copy.
            let mut bytes = Vec::with_capacity(1 << 20);
            for chunk in host.data.into_f32().chunks(1 << 18) {
                bytes.clear();
                bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                sink(&bytes)?;
            }
            Ok(())
        },
    )?;
    config.set_stored_dtype(SaveDtype::F32.torch_name());
    config.save(&out.join("config.json"))?;
    let mut files = vec!["config.json".to_string()];
    files.extend(written.files);
    if let Some((json, tok_config)) = tokenizer {
        write_json(&out.join("tokenizer.json"), &json)?;
        write_json(&out.join("tokenizer_config.json"), &tok_config)?;
        files.push("tokenizer.json".into());
        files.push("tokenizer_config.json".into());
    }
    Ok(ImportReport { files })
}

/// Stream an HF directory's checkpoint into `out` unchanged (see the module doc).
fn import_hf_dir(path: &Path, out: &Path, on_written: &OnWritten<'_>) -> Result<ImportReport> {
    let config = LlamaConfig::from_file(&path.join("config.json"))?;
    let ckpt = SafetensorsCheckpoint::open(path)?;
    check_layout(&ckpt, &config)?;
    if path.join("tokenizer.json").is_file() {
        Tokenizer::from_dir(path)?;
    }
    let mut tensors = Vec::new();
    for name in ckpt.names() {
        if let Some(loc) = ckpt.locate(&name) {
            tensors.push(OutTensor {
                name,
                dtype: loc.dtype,
                shape: loc.shape.clone(),
                recipe: Recipe::Copy(loc),
            });
        }
    }
    tensors.sort_by_cached_key(|t| hf_order_key(&t.name));
    let written = write_checkpoint(&ckpt, &tensors, out, DEFAULT_MAX_SHARD_SIZE, on_written)?;
    let mut config = config;
    if config.stored_dtype().is_none() {
        config.set_stored_dtype(SaveDtype::of_stored(ckpt.dominant_dtype()).torch_name());
    }
    config.save(&out.join("config.json"))?;
    let mut files = vec!["config.json".to_string()];
    files.extend(written.files);
    files.extend(copy_tokenizer_files(path, out)?);
    Ok(ImportReport { files })
}
