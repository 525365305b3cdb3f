//! `trainable.json`: which blocks of a surgery result train and how each was initialised,
//! plus the history of plans that produced the model.
//!
//! ```json
//! {
//!   "num_blocks": 38,
//!   "trainable": [2, 5, 8, 11, 14, 17, 20, 23, 37],
//!   "blocks": [{"index": 2, "operation": "expand", "init": "average of blocks 1 and 2, o_proj/down_proj zeroed",
//!               "source": {"kind": "average", "of": [1, 2]}, "zeroed": true}, ...],
//!   "history": [{"plan_hash": "…", "plan": {"operation": "expand", "layout": "(2+1)x8|13|1◇", ...}}]
//! }
//! ```
//! Indices in `trainable` and `blocks[].index` are blocks of *this* model; `source`
//! indices refer to the source model of the operation that created the block. A later
//! surgery ([`TrainableFile::compose`]) keeps the trainable marks of the blocks it keeps,
//! renumbered, and adds its own.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{Result, SurgeryError};
use super::plan::{BlockSource, LayerPlan};

/// File name inside a model directory.
pub const TRAINABLE_FILE: &str = "trainable.json";

/// One trainable block and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainableBlock {
    /// Index in this model.
    pub index: usize,
    /// The surgery that created it (`expand`, `prune`).
    pub operation: String,
    /// Human-readable initialisation.
    pub init: String,
    /// Where its weights came from (source-model indices of that surgery).
    pub source: BlockSource,
    /// Whether `o_proj`/`down_proj` started at zero.
    pub zeroed: bool,
}

/// One surgery applied to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// [`LayerPlan::hash`] of `plan`.
    pub plan_hash: String,
    /// The plan itself.
    pub plan: LayerPlan,
}

/// The contents of `trainable.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainableFile {
    /// Blocks of the model.
    pub num_blocks: usize,
    /// Trainable block indices, ascending.
    pub trainable: Vec<usize>,
    /// Details of each trainable block, by index.
    pub blocks: Vec<TrainableBlock>,
    /// Surgeries, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl TrainableFile {
    /// `dir/trainable.json` if it exists.
    pub fn read(dir: &Path) -> Result<Option<TrainableFile>> {
        let path = dir.join(TRAINABLE_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SurgeryError::io(&path, e))?;
        let file: TrainableFile =
            serde_json::from_str(&text).map_err(|e| SurgeryError::Trainable {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(Some(file))
    }

    /// Write `dir/trainable.json` (pretty, trailing newline).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(TRAINABLE_FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| SurgeryError::Trainable {
            path: path.clone(),
            message: e.to_string(),
        })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| SurgeryError::io(&path, e))
    }

    /// The file after `plan` is applied to a model described by `prev` (or by nothing:
    /// a model fresh from import). `prev_path` names `prev` in errors.
    pub fn compose(
        prev: Option<(&TrainableFile, &Path)>,
        plan: &LayerPlan,
    ) -> Result<TrainableFile> {
        let mut blocks = Vec::new();
        for (index, planned) in plan.blocks.iter().enumerate() {
            if planned.trainable {
                blocks.push(TrainableBlock {
                    index,
                    operation: plan.operation.clone(),
                    init: planned.describe(),
                    source: planned.source.clone(),
                    zeroed: planned.zeroed,
                });
            } else if let (Some((prev, _)), BlockSource::Original { index: from }) =
                (prev, &planned.source)
                && let Some(old) = prev.blocks.iter().find(|b| b.index == *from)
            {
                blocks.push(TrainableBlock {
                    index,
                    ..old.clone()
                });
            }
        }
        let mut history = Vec::new();
        if let Some((prev, path)) = prev {
            if prev.num_blocks != plan.source_blocks {
                return Err(SurgeryError::Trainable {
                    path: path.join(TRAINABLE_FILE),
                    message: format!(
                        "describes {} blocks but the model has {}",
                        prev.num_blocks, plan.source_blocks
                    ),
                });
            }
            history.extend(prev.history.iter().cloned());
        }
        history.push(HistoryEntry {
            plan_hash: plan.hash(),
            plan: plan.clone(),
        });
        Ok(TrainableFile {
            num_blocks: plan.len(),
            trainable: blocks.iter().map(|b| b.index).collect(),
            blocks,
            history,
        })
    }
}
