//! Surgery on a model directory without building the model: `config.json` is read and
//! the layout planned against it before a tensor is touched ([`SurgerySource::open`]),
//! the safetensors headers are checked against the config, and the result is streamed
//! tensor by tensor into an HF-layout directory ([`write_result`]): copied tensors are
//! the source's bytes (same dtype), averaged ones are computed in f32 and rounded once to
//! the source dtype, zeroed ones are exact zeros (`model::safetensors_stream`). Memory
//! stays at a few MiB whatever the model's size. `trainable.json` and the tokenizer
//! files are written as before.
//!
//! Block tensors are taken from the checkpoint, not from a fixed list: every tensor
//! under `model.layers.{i}.` travels with its block, so per-block extras (q/k norms,
//! biases) follow the plan too. Every block must carry the same tensors with the same
//! shapes, and the tensors the config implies must be there.

use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use serde_json::Value;

use super::error::{Result, SurgeryError};
use super::plan::{BlockSource, LayerPlan, PlannedBlock};
use super::trainable::TrainableFile;
use crate::model::LlamaConfig;
use crate::model::checkpoint_layout::{BlockTensors, check_layout};
use crate::model::safetensors_io::{SafetensorsCheckpoint, TensorLocation, copy_tokenizer_files};
use crate::model::safetensors_stream::{
    OnWritten, OutTensor, Recipe, StreamReport, write_checkpoint,
};
use crate::model::tensor_names::{
    hf_order_key, is_output_projection, layer_tensor, parse_layer_tensor,
};
use crate::model::{ModelError, SaveDtype};

/// A model directory opened for surgery: its config and `trainable.json`, no tensors.
pub struct SurgerySource {
    /// The directory.
    pub dir: PathBuf,
    /// Its `config.json`, validated.
    pub config: LlamaConfig,
    /// Its `trainable.json`.
    pub trainable: Option<TrainableFile>,
}

impl SurgerySource {
    /// Read `dir/config.json` and `dir/trainable.json`; no weights are opened.
    pub fn open(dir: &Path) -> Result<SurgerySource> {
        if !dir.is_dir() {
            return Err(SurgeryError::Invalid(format!(
                "{}: expected a model directory (config.json + model.safetensors); import GGUF \
                 files with `model.import` first",
                dir.display()
            )));
        }
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let trainable = TrainableFile::read(dir)?;
        Ok(SurgerySource {
            dir: dir.to_path_buf(),
            config,
            trainable,
        })
    }

    /// Number of blocks, from the config.
    pub fn blocks(&self) -> usize {
        self.config.num_hidden_layers
    }
}

/// What [`write_result`] produced.
pub struct Written {
    /// The new `trainable.json`.
    pub trainable: TrainableFile,
    /// The checkpoint files and byte counts.
    pub stream: StreamReport,
}

fn locate(ckpt: &SafetensorsCheckpoint, name: &str) -> Result<TensorLocation> {
    ckpt.locate(name).ok_or_else(|| {
        ModelError::MissingTensor {
            file: ckpt.origin_path().to_path_buf(),
            name: name.to_string(),
        }
        .into()
    })
}

/// The output tensors of `plan` over `ckpt`: non-block tensors copied, each planned
/// block's tensors copied, averaged or zeroed; in `save_pretrained` order.
pub fn plan_tensors(
    ckpt: &SafetensorsCheckpoint,
    block: &BlockTensors,
    plan: &LayerPlan,
) -> Result<Vec<OutTensor>> {
    let mut out = Vec::new();
    for name in ckpt.names() {
        if parse_layer_tensor(&name).is_none() {
            let loc = locate(ckpt, &name)?;
            out.push(OutTensor {
                name,
                dtype: loc.dtype,
                shape: loc.shape.clone(),
                recipe: Recipe::Copy(loc),
            });
        }
    }
    for (o, planned) in plan.blocks.iter().enumerate() {
        for (suffix, (dtype, shape)) in block {
            out.push(OutTensor {
                name: layer_tensor(o, suffix),
                dtype: *dtype,
                shape: shape.clone(),
                recipe: recipe(ckpt, planned, suffix)?,
            });
        }
    }
    out.sort_by_cached_key(|t| hf_order_key(&t.name));
    Ok(out)
}

fn recipe(ckpt: &SafetensorsCheckpoint, planned: &PlannedBlock, suffix: &str) -> Result<Recipe> {
    if planned.zeroed && is_output_projection(suffix) {
        return Ok(Recipe::Zeros);
    }
    let sources = match &planned.source {
        BlockSource::Original { index } => vec![*index],
        BlockSource::Copy { of } => vec![*of],
        BlockSource::Average { of } => of.to_vec(),
        BlockSource::Merge { of } => of.clone(),
    };
    let mut locs = sources
        .iter()
        .map(|&i| locate(ckpt, &layer_tensor(i, suffix)))
        .collect::<Result<Vec<_>>>()?;
    Ok(match locs.len() {
        0 => {
            return Err(SurgeryError::Invalid(
                "a block mean needs at least one block".into(),
            ));
        }
        1 => Recipe::Copy(locs.remove(0)),
        _ => Recipe::Mean(locs),
    })
}

/// The output `config.json`: the source's with the new block count, per-layer lists
/// (`layer_types`) following the plan, and the storage dtype recorded when it was not.
fn output_config(source: &LlamaConfig, plan: &LayerPlan, stored: Option<Dtype>) -> LlamaConfig {
    let mut config = source.clone();
    // Gemma 3's interleaving may be spelled as `sliding_window_pattern`; written out
    // per block it follows the plan like any `layer_types`.
    if source.mixed_layers() {
        config.set_layer_types(&source.sliding_layers());
    }
    config.set_num_hidden_layers(plan.len());
    if let Some(Value::Array(per_layer)) = config.extra.get("layer_types").cloned()
        && per_layer.len() == plan.source_blocks
    {
        let remapped = plan
            .blocks
            .iter()
            .map(|b| per_layer[b.source.inputs()[0]].clone())
            .collect();
        config
            .extra
            .insert("layer_types".into(), Value::Array(remapped));
    }
    if config.stored_dtype().is_none() {
        config.set_stored_dtype(SaveDtype::of_stored(stored).torch_name());
    }
    config
}

/// Apply `plan` to `source` and stream the result to `out_dir`, in shards of at most
/// `max_shard_size` bytes.
pub fn write_result(
    source: &SurgerySource,
    plan: &LayerPlan,
    out_dir: &Path,
    max_shard_size: u64,
    on_written: &OnWritten<'_>,
) -> Result<Written> {
    let trainable =
        TrainableFile::compose(source.trainable.as_ref().map(|t| (t, &*source.dir)), plan)?;
    if plan.source_blocks != source.blocks() {
        return Err(SurgeryError::Invalid(format!(
            "the plan is for a model of {} blocks, this one has {}",
            plan.source_blocks,
            source.blocks()
        )));
    }
    let ckpt = SafetensorsCheckpoint::open(&source.dir)?;
    let block = check_layout(&ckpt, &source.config)?;
    let tensors = plan_tensors(&ckpt, &block, plan)?;
    let stream = write_checkpoint(&ckpt, &tensors, out_dir, max_shard_size, on_written)?;
    output_config(&source.config, plan, ckpt.dominant_dtype())
        .save(&out_dir.join("config.json"))?;
    copy_tokenizer_files(&source.dir, out_dir)?;
    trainable.write(out_dir)?;
    Ok(Written { trainable, stream })
}
