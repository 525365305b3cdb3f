//! Reading a model artifact for surgery and writing the result: an HF-layout directory
//! (`config.json` with the new `num_hidden_layers`, `model.safetensors` in the source's
//! dtype, tokenizer files copied) plus `trainable.json`.

use std::path::Path;

use super::blocks::apply_plan;
use super::error::{Result, SurgeryError};
use super::plan::LayerPlan;
use super::trainable::TrainableFile;
use crate::model::safetensors_io::copy_tokenizer_files;
use crate::model::{Cpu, Llama, SaveDtype, load_pretrained, save_pretrained};

/// A model loaded for surgery, with its `trainable.json` if it has one.
pub struct SourceModel {
    /// The model, on the CPU (surgery only copies and averages tensors).
    pub model: Llama<Cpu>,
    /// Its `trainable.json`.
    pub trainable: Option<TrainableFile>,
}

/// Load the HF-layout model directory `dir`.
pub fn load_source(dir: &Path) -> Result<SourceModel> {
    if !dir.is_dir() {
        return Err(SurgeryError::Invalid(format!(
            "{}: expected a model directory (config.json + model.safetensors); import GGUF \
             files with `model.import` first",
            dir.display()
        )));
    }
    let model = load_pretrained::<Cpu>(dir, &Default::default())?;
    let trainable = TrainableFile::read(dir)?;
    Ok(SourceModel { model, trainable })
}

/// What [`write_result`] produced.
pub struct Written {
    /// The new `trainable.json`.
    pub trainable: TrainableFile,
}

/// Apply `plan` to `source` (loaded from `src_dir`) and write the result to `out_dir`.
pub fn write_result(
    source: SourceModel,
    src_dir: &Path,
    plan: &LayerPlan,
    out_dir: &Path,
) -> Result<Written> {
    let trainable = TrainableFile::compose(source.trainable.as_ref().map(|t| (t, src_dir)), plan)?;
    let model = apply_plan(source.model, plan)?;
    let dtype = SaveDtype::from_config(&model.config());
    save_pretrained(&model, out_dir, dtype)?;
    copy_tokenizer_files(src_dir, out_dir)?;
    trainable.write(out_dir)?;
    Ok(Written { trainable })
}
