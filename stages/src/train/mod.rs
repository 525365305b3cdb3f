//! Training: the `train` stage kind (continued pre-training and supervised fine-tuning)
//! that optimises only what the surgery marked trainable.
//!
//! The pieces, each small and testable on its own:
//! - [`params`]: [`TrainParams`], the stage's `with:` map (mode, trainable set, AdamW,
//!   schedule, batch and budget, precision, eval and checkpoint cadence).
//! - [`trainable`]: which parameters train ([`TrainableSet`], read from the surgery's
//!   `trainable.json`), freezing the rest so they get no gradient and no optimiser state.
//! - [`schedule`]: the learning-rate schedule (linear warmup, then cosine, linear or
//!   constant down to `min_lr`), a pure function of the step.
//! - [`data_loader`]: packed Parquet sequences, a seeded per-epoch shuffle and a cursor
//!   that a checkpoint can store.
//! - [`loss`]: next-token cross-entropy, weighted per target token (SFT masks).
//! - [`recompute`]: one micro-batch's backward with per-block activation recomputation
//!   (`recompute: blocks`).
//! - [`optimizer`]: AdamW (torch semantics) over the trainable parameters only, global
//!   gradient-norm clipping, no weight decay on norms and biases, f32 master weights
//!   when the model computes in bf16.
//! - [`collective`]: [`Collective`](collective::Collective), the sum over data-parallel
//!   ranks (MPI on the CPU).
//! - [`ranks`]: which rank this process is, its shard of each batch, and the ranks slayer
//!   starts itself under `mpirun` for `ranks: N`.
//! - [`checkpoint`]: resumable state under the stage's scratch dir (trainable tensors,
//!   optimiser moments, step, data cursor, log so far).
//! - [`memory_plan`]: bytes held by category (frozen weights, masters, gradients,
//!   optimizer state, activations estimate), recorded in the metrics.
//! - [`metrics_log`]: the per-step log (`log.csv`) and the loss-curve SVG.
//! - [`trainer`]: the loop tying it together on any burn backend ([`run_training`]).
//! - [`stage`]: [`TrainStage`], the engine's view of all of the above.
//! - [`error`]: [`TrainError`], every way a run can fail.

pub mod checkpoint;
pub mod collective;
pub mod data_loader;
pub mod error;
pub mod loss;
pub mod memory_plan;
pub mod metrics_log;
pub mod optimizer;
pub mod params;
pub mod ranks;
pub mod recompute;
pub mod schedule;
pub mod stage;
pub mod trainable;
pub mod trainer;

pub use error::TrainError;
pub use params::{Mode, Precision, Recompute, Schedule, TrainParams, Trainable};
pub use schedule::LrSchedule;
pub use stage::TrainStage;
pub use trainable::{TrainableSet, read_trainable_json};
pub use trainer::{StepControl, TrainJob, TrainSummary, run_training};

use slayer_engine::Registry;

/// Register the `train` kind.
pub fn register(registry: &mut Registry) {
    registry.add_typed(TrainStage);
}
