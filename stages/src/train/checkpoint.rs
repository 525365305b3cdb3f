//! Resumable checkpoints under the stage's scratch dir (which survives failed attempts
//! of the same fingerprint):
//!
//! ```text
//! <scratch>/checkpoints/step-00000040/
//!     tensors.safetensors   param/<path>, m/<path>, v/<path>, master/<path> (flat f32)
//!     state.json            step, data cursor, tokens, AdamW t, trainable paths, log rows
//! ```
//!
//! Only trainable tensors are stored: frozen ones are bit-identical to the input model,
//! which the resumed attempt loads again. The data order is a function of `(seed,
//! cursor)` and there is no other randomness, so `cursor` is the whole RNG state.
//! A checkpoint is written to `step-N.tmp` and renamed, so a kill while writing leaves
//! the previous one intact; older checkpoints are removed after the rename.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::error::TrainError;
use super::metrics_log::LogRow;
use super::optimizer::{HostState, host_f32};
use super::trainable::PathStack;
use crate::model::Llama;

/// Format version of `state.json`.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Everything but the tensors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    /// [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Sequences consumed (the data order's position).
    pub cursor: u64,
    /// Tokens consumed.
    pub tokens: u64,
    /// AdamW's bias-correction step.
    pub adam_t: u64,
    /// Paths of the trainable parameters (checked on restore).
    pub trainable: Vec<String>,
    /// Wall-clock seconds spent training before this checkpoint.
    pub elapsed_s: f64,
    /// The per-step log so far.
    pub log: Vec<LogRow>,
}

/// A checkpoint read back.
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Scalars and log.
    pub state: CheckpointState,
    /// Trainable parameter values by path (flat).
    pub params: BTreeMap<String, Vec<f32>>,
    /// Optimiser state by path.
    pub optimizer: HostState,
}

fn root(scratch: &Path) -> PathBuf {
    scratch.join("checkpoints")
}

/// The newest complete checkpoint in `scratch`, if any.
pub fn latest(scratch: &Path) -> Result<Option<PathBuf>, TrainError> {
    let dir = root(scratch);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
        let path = e.map_err(|e| TrainError::io(&dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if path.join("state.json").is_file() && best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, path));
        }
    }
    Ok(best.map(|(_, p)| p))
}

struct TrainableValues {
    path: PathStack,
    out: BTreeMap<String, Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for TrainableValues {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if param.is_require_grad() {
            self.out
                .insert(self.path.dotted(), host_f32(param.val().inner()));
        }
    }
}

/// Values of the parameters that require a gradient, by path.
pub fn trainable_values<B: AutodiffBackend>(model: &Llama<B>) -> BTreeMap<String, Vec<f32>> {
    let mut v = TrainableValues {
        path: PathStack::default(),
        out: BTreeMap::new(),
    };
    model.visit(&mut v);
    v.out
}

/// Write a checkpoint for `state` and remove older ones.
pub fn save<B: AutodiffBackend>(
    scratch: &Path,
    state: &CheckpointState,
    model: &Llama<B>,
    optimizer: &HostState,
) -> Result<PathBuf, TrainError> {
    let dir = root(scratch);
    let final_dir = dir.join(format!("step-{:08}", state.step));
    let tmp = dir.join(format!("step-{:08}.tmp", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;

    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    for (path, values) in trainable_values(model) {
        blobs.push((format!("param/{path}"), bytes(&values)));
    }
    for (path, (m, v, master)) in optimizer {
        blobs.push((format!("m/{path}"), bytes(m)));
        blobs.push((format!("v/{path}"), bytes(v)));
        if let Some(master) = master {
            blobs.push((format!("master/{path}"), bytes(master)));
        }
    }
    let tensors_path = tmp.join("tensors.safetensors");
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|(name, b)| {
            TensorView::new(Dtype::F32, vec![b.len() / 4], b)
                .map(|v| (name.clone(), v))
                .map_err(|e| TrainError::checkpoint(&tmp, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize_to_file(views, None, &tensors_path)
        .map_err(|e| TrainError::checkpoint(&tmp, e.to_string()))?;
    let state_path = tmp.join("state.json");
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| TrainError::checkpoint(&tmp, e.to_string()))?;
    std::fs::write(&state_path, json).map_err(|e| TrainError::io(&state_path, e))?;

    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    // Older checkpoints are no longer needed.
    for e in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
        let p = e.map_err(|e| TrainError::io(&dir, e))?.path();
        if p != final_dir && p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(|e| TrainError::io(&p, e))?;
        }
    }
    Ok(final_dir)
}

/// Read the checkpoint in `dir`.
pub fn load(dir: &Path) -> Result<Checkpoint, TrainError> {
    let state_path = dir.join("state.json");
    let text = std::fs::read(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: CheckpointState =
        serde_json::from_slice(&text).map_err(|e| TrainError::checkpoint(dir, e.to_string()))?;
    if state.version != CHECKPOINT_VERSION {
        return Err(TrainError::checkpoint(
            dir,
            format!(
                "format version {} (expected {CHECKPOINT_VERSION})",
                state.version
            ),
        ));
    }
    let tensors_path = dir.join("tensors.safetensors");
    let bytes = std::fs::read(&tensors_path).map_err(|e| TrainError::io(&tensors_path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| TrainError::checkpoint(dir, e.to_string()))?;
    let mut params = BTreeMap::new();
    let mut m = BTreeMap::new();
    let mut v = BTreeMap::new();
    let mut masters = BTreeMap::new();
    for (name, view) in st.tensors() {
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (kind, path) = name
            .split_once('/')
            .ok_or_else(|| TrainError::checkpoint(dir, format!("unexpected tensor `{name}`")))?;
        let target = match kind {
            "param" => &mut params,
            "m" => &mut m,
            "v" => &mut v,
            "master" => &mut masters,
            _ => {
                return Err(TrainError::checkpoint(
                    dir,
                    format!("unexpected tensor `{name}`"),
                ));
            }
        };
        target.insert(path.to_string(), values);
    }
    let mut optimizer = HostState::new();
    for (path, mv) in m {
        let vv = v
            .remove(&path)
            .ok_or_else(|| TrainError::checkpoint(dir, format!("no second moment for `{path}`")))?;
        optimizer.insert(path.clone(), (mv, vv, masters.remove(&path)));
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
        params,
        optimizer,
    })
}

struct Restore<'a> {
    path: PathStack,
    values: &'a mut BTreeMap<String, Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Restore<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let Some(values) = self.values.remove(&self.path.dotted()) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let (shape, dtype, device) = (tensor.shape(), tensor.dtype(), tensor.device());
        let restored = Tensor::<B::InnerBackend, D>::from_data(
            TensorData::new(values, shape),
            (&device, burn::tensor::DType::F32),
        );
        let restored = if dtype == burn::tensor::DType::F32 {
            restored
        } else {
            restored.cast(dtype)
        };
        let tensor = Tensor::<B, D>::from_inner(restored).require_grad();
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Put the checkpoint's trainable values into `model` (already frozen the same way).
/// Errors when the checkpoint's trainable set differs from the model's.
pub fn restore<B: AutodiffBackend>(
    model: Llama<B>,
    ckpt: &mut Checkpoint,
) -> Result<Llama<B>, TrainError> {
    let expected: Vec<String> = trainable_values(&model).into_keys().collect();
    let stored: Vec<String> = ckpt.params.keys().cloned().collect();
    let mut listed = ckpt.state.trainable.clone();
    listed.sort();
    if expected != stored || listed != expected {
        return Err(TrainError::checkpoint(
            &ckpt.dir,
            format!(
                "stores {} trainable tensors that do not match the model's {}",
                stored.len(),
                expected.len()
            ),
        ));
    }
    let mut values = std::mem::take(&mut ckpt.params);
    Ok(model.map(&mut Restore {
        path: PathStack::default(),
        values: &mut values,
    }))
}
