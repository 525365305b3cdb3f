//! [`LayerPlan`]: the block list of a surgery result as data — for every output block
//! where it comes from ([`BlockSource`]), whether its output projections are zeroed and
//! whether it trains. Plans are built from a [`Layout`] ([`LayerPlan::expand`]) or from a
//! deletion list ([`LayerPlan::prune`]), hashed ([`LayerPlan::hash`]) and recorded in
//! `trainable.json`, so the model code stays a straight reading of the equations and
//! every surgery can be audited.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{Result, SurgeryError};
use super::layout::{Layout, Segment};

/// How a new block is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// A copy of the block before it (LLaMA Pro).
    Copy,
    /// The element-wise mean of the blocks before and after it, every tensor incl.
    /// norms (the paper's ◇).
    Average,
}

/// How the final kept block is re-initialised when blocks after it are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Element-wise mean of the deleted blocks.
    Discarded,
    /// Element-wise mean of the final kept block and the deleted blocks.
    WithFinal,
    /// Keep the final block's weights (it is still marked trainable by `expand`).
    None,
}

/// Where an output block's weights come from; indices are source-model blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BlockSource {
    /// The source block, unchanged.
    Original {
        /// Source block index.
        index: usize,
    },
    /// A new block, copy of a source block.
    Copy {
        /// Source block index.
        of: usize,
    },
    /// A new block, element-wise mean of two source blocks.
    Average {
        /// The two source block indices.
        of: [usize; 2],
    },
    /// A re-initialised block: element-wise mean of these source blocks.
    Merge {
        /// Source block indices (in order of summation).
        of: Vec<usize>,
    },
}

impl BlockSource {
    /// Source blocks whose tensors are averaged (one for originals and copies).
    pub fn inputs(&self) -> Vec<usize> {
        match self {
            BlockSource::Original { index } => vec![*index],
            BlockSource::Copy { of } => vec![*of],
            BlockSource::Average { of } => of.to_vec(),
            BlockSource::Merge { of } => of.clone(),
        }
    }
}

impl fmt::Display for BlockSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockSource::Original { index } => write!(f, "original block {index}"),
            BlockSource::Copy { of } => write!(f, "copy of block {of}"),
            BlockSource::Average { of: [a, b] } => write!(f, "average of blocks {a} and {b}"),
            BlockSource::Merge { of } => {
                let list: Vec<String> = of.iter().map(usize::to_string).collect();
                write!(f, "mean of blocks {}", list.join(", "))
            }
        }
    }
}

/// One output block of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBlock {
    /// Where its weights come from.
    pub source: BlockSource,
    /// Whether `o_proj` and `down_proj` (weights and biases) are set to zero, so the
    /// block adds nothing to the residual stream until trained.
    #[serde(default)]
    pub zeroed: bool,
    /// Whether the block trains.
    #[serde(default)]
    pub trainable: bool,
    /// Why the plan deviates from what was asked (e.g. average at the last block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PlannedBlock {
    fn original(index: usize) -> PlannedBlock {
        PlannedBlock {
            source: BlockSource::Original { index },
            zeroed: false,
            trainable: false,
            note: None,
        }
    }

    /// One line such as `average of blocks 1 and 2, o_proj/down_proj zeroed`.
    pub fn describe(&self) -> String {
        let mut s = self.source.to_string();
        if self.zeroed {
            s.push_str(", o_proj/down_proj zeroed");
        }
        if let Some(n) = &self.note {
            s.push_str(&format!(" ({n})"));
        }
        s
    }
}

/// Options of [`LayerPlan::expand`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandOptions {
    /// Initialisation of new blocks; `None` = from the layout (◇ -> average, else copy).
    pub init: Option<Init>,
    /// Zero `o_proj`/`down_proj` of new blocks (function preserving).
    pub zero_out: bool,
    /// Re-initialisation of the final block when the layout ends with `|1`.
    pub merge: Merge,
}

impl Default for ExpandOptions {
    fn default() -> Self {
        ExpandOptions {
            init: None,
            zero_out: true,
            merge: Merge::Discarded,
        }
    }
}

/// The output block list of a surgery, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// `expand` or `prune`.
    pub operation: String,
    /// The canonical layout, when built from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Blocks of the source model.
    pub source_blocks: usize,
    /// Output blocks in order.
    pub blocks: Vec<PlannedBlock>,
    /// Source blocks that do not appear as themselves in the output.
    pub deleted: Vec<usize>,
}

impl LayerPlan {
    /// The plan of `layout` applied to a model of `source_blocks` blocks.
    pub fn expand(layout: &Layout, source_blocks: usize, opts: ExpandOptions) -> Result<LayerPlan> {
        let deleted = layout.deleted_blocks(source_blocks)?;
        let init = match (opts.init, layout.average()) {
            (Some(Init::Copy), true) => {
                return Err(SurgeryError::Invalid(format!(
                    "layout `{layout}` carries the average mark ◇ but `init: copy` was given; \
                     drop the mark or use `init: average`"
                )));
            }
            (Some(i), _) => i,
            (None, true) => Init::Average,
            (None, false) => Init::Copy,
        };
        let mut blocks = Vec::with_capacity(layout.output_blocks());
        let mut next = 0usize; // next source block to place
        for seg in layout.segments() {
            match *seg {
                Segment::Keep(k) => {
                    blocks.extend((next..next + k).map(PlannedBlock::original));
                    next += k;
                }
                Segment::Group { keep, repeat } => {
                    for _ in 0..repeat {
                        blocks.extend((next..next + keep).map(PlannedBlock::original));
                        next += keep;
                        blocks.push(new_block(next - 1, source_blocks, init, opts.zero_out));
                    }
                }
                Segment::Final => {
                    let last = next;
                    next += 1;
                    let discarded: Vec<usize> = (next..source_blocks).collect();
                    let source = match opts.merge {
                        Merge::Discarded => BlockSource::Merge { of: discarded },
                        Merge::WithFinal => BlockSource::Merge {
                            of: std::iter::once(last).chain(discarded).collect(),
                        },
                        Merge::None => BlockSource::Original { index: last },
                    };
                    blocks.push(PlannedBlock {
                        source,
                        zeroed: false,
                        trainable: true,
                        note: None,
                    });
                }
            }
        }
        Ok(LayerPlan {
            operation: "expand".into(),
            layout: Some(layout.to_string()),
            source_blocks,
            blocks,
            deleted: (source_blocks - deleted..source_blocks).collect(),
        })
    }

    /// The plan that deletes `removed` from a model of `source_blocks` blocks and, unless
    /// `merge` is [`Merge::None`], re-initialises the last kept block from the deleted
    /// blocks after it (and marks it trainable).
    pub fn prune(source_blocks: usize, removed: &[usize], merge: Merge) -> Result<LayerPlan> {
        let set: BTreeSet<usize> = removed.iter().copied().collect();
        if let Some(bad) = set.iter().find(|&&i| i >= source_blocks) {
            return Err(SurgeryError::Invalid(format!(
                "cannot remove block {bad}: the model has {source_blocks} blocks (0..={})",
                source_blocks.saturating_sub(1)
            )));
        }
        if set.len() >= source_blocks {
            return Err(SurgeryError::Invalid(format!(
                "removing {} of {source_blocks} blocks leaves none",
                set.len()
            )));
        }
        if set.len() != removed.len() {
            return Err(SurgeryError::Invalid(format!(
                "block indices to remove are listed more than once: {removed:?}"
            )));
        }
        let kept: Vec<usize> = (0..source_blocks).filter(|i| !set.contains(i)).collect();
        let mut blocks: Vec<PlannedBlock> =
            kept.iter().copied().map(PlannedBlock::original).collect();
        if merge != Merge::None {
            // `kept` is non-empty: fewer blocks are removed than exist.
            let last = kept[kept.len() - 1];
            let after: Vec<usize> = set.iter().copied().filter(|&i| i > last).collect();
            if after.is_empty() {
                return Err(SurgeryError::Invalid(format!(
                    "merge: {} re-initialises the final kept block (block {last}) from the \
                     deleted blocks after it, but none of the removed blocks {:?} comes after \
                     it; delete the last blocks or use `merge: none`",
                    merge_name(merge),
                    set
                )));
            }
            let of = match merge {
                Merge::WithFinal => std::iter::once(last).chain(after).collect(),
                _ => after,
            };
            if let Some(b) = blocks.last_mut() {
                *b = PlannedBlock {
                    source: BlockSource::Merge { of },
                    zeroed: false,
                    trainable: true,
                    note: None,
                };
            }
        }
        Ok(LayerPlan {
            operation: "prune".into(),
            layout: None,
            source_blocks,
            blocks,
            deleted: set.into_iter().collect(),
        })
    }

    /// Output indices of trainable blocks, ascending.
    pub fn trainable(&self) -> Vec<usize> {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.trainable)
            .map(|(i, _)| i)
            .collect()
    }

    /// Number of output blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the plan has no blocks.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// blake3 of the plan's canonical JSON (hex), recorded with the result.
    pub fn hash(&self) -> String {
        // Serialising plain data with derived impls cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        blake3::hash(&json).to_hex().to_string()
    }
}

fn merge_name(m: Merge) -> &'static str {
    match m {
        Merge::Discarded => "discarded",
        Merge::WithFinal => "with_final",
        Merge::None => "none",
    }
}

/// A new block inserted after source block `after`.
fn new_block(after: usize, source_blocks: usize, init: Init, zero_out: bool) -> PlannedBlock {
    let (source, note) = match init {
        Init::Copy => (BlockSource::Copy { of: after }, None),
        Init::Average if after + 1 < source_blocks => (
            BlockSource::Average {
                of: [after, after + 1],
            },
            None,
        ),
        Init::Average => (
            BlockSource::Copy { of: after },
            Some(format!(
                "average asked, but block {after} is the model's last: nothing follows it, so copied"
            )),
        ),
    };
    PlannedBlock {
        source,
        zeroed: zero_out,
        trainable: true,
        note,
    }
}
