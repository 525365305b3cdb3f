//! Layer surgery: the paper's layout notation and the `expand` / `prune` stage kinds.
//!
//! - [`layout`]: [`Layout`], parser and canonical printer of `(2+1)x8|13|1◇` and friends.
//! - [`plan`]: [`LayerPlan`], the output block list as data (source of each block, init
//!   rule, zeroing, trainable), hashed and recorded.
//! - [`blocks`]: block means, zeroing, [`apply_plan`] on a [`Llama`](crate::model::Llama).
//! - [`trainable`]: `trainable.json` ([`TrainableFile`]).
//! - [`artifact`]: load a model directory, write the surgery result.
//! - [`expand`], [`prune`]: the stage kinds.
//! - [`error`]: the error type, [`SurgeryError`].

pub mod artifact;
pub mod blocks;
pub mod error;
pub mod expand;
pub mod layout;
pub mod plan;
pub mod prune;
pub mod trainable;

pub use blocks::{apply_plan, mean_block, zero_outputs};
pub use error::SurgeryError;
pub use layout::{Layout, Segment};
pub use plan::{BlockSource, ExpandOptions, Init, LayerPlan, Merge, PlannedBlock};
pub use trainable::{TRAINABLE_FILE, TrainableFile};

use slayer_engine::Registry;

/// Add `expand` and `prune` to `r`.
pub fn register(r: &mut Registry) {
    r.add_typed(expand::Expand);
    r.add_typed(prune::Prune);
}
