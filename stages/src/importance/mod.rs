//! Layer importance (method.md §1, paper Fig. 2): angular distance per block from the
//! raw residual stream, and removal / insertion sweeps scored by perplexity (or by
//! benchmark accuracy, `score: eval`), with the
//! base model's prefix activations reused so a sweep costs about half of `L` forward
//! passes.
//!
//! - [`tokens`]: the token set (text file or Parquet shards) cut into windows.
//! - [`sweep`]: [`measure`], the computation, and [`Importance`], its result.
//! - [`eval_sweep`]: the same variants scored by benchmark accuracy (`score: eval`).
//! - [`output`]: `importance.json`, `.csv`, `.parquet`.
//! - [`svg`]: the three-panel `importance.svg`.
//! - [`stage`]: the `importance` stage kind.
//! - [`error`]: the error type, [`ImportanceError`].

pub mod error;
pub mod eval_sweep;
pub mod output;
pub mod stage;
pub mod svg;
pub mod sweep;
pub mod tokens;

pub use error::ImportanceError;
pub use stage::{ImportanceParams, ImportanceStage, Metric, Reduce, Score};
pub use sweep::{Importance, SweepOptions, measure};
pub use tokens::{TokenSource, WindowOptions, load_windows};

use slayer_engine::Registry;

/// Add `importance` to `r`.
pub fn register(r: &mut Registry) {
    r.add_typed(ImportanceStage);
}
