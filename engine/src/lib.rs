//! slayer's engine: the manifest language, its validation, the pipeline of stage
//! instances (grids fanned out), fingerprints with early cutoff, the pure planner
//! (`status`, `why`), the parallel executor, provenance, and the [`Stage`] trait that
//! every stage kind implements.
//!
//! Flow: [`Manifest::load`] -> [`pipeline::resolve`] (all checks, nothing runs) ->
//! [`plan::plan`] (what is cached, and why not) or [`executor::execute`].

pub mod builtin;
pub mod child;
pub mod commands;
pub mod dag;
pub mod diff;
pub mod error;
pub mod executor;
pub mod failure;
pub mod fingerprint;
pub mod gpus;
pub mod interpolate;
pub mod interrupt;
pub mod job;
pub mod lineage;
pub mod manifest;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod schema;
pub mod slurm;
pub mod stage;
pub mod suggest;
pub mod workspace_config;
pub mod yaml;

pub use error::{Diagnostic, EngineError, ManifestErrors};
pub use executor::{Outcome, RunOptions, StageResult, execute};
pub use failure::Failure;
pub use manifest::Manifest;
pub use pipeline::{Instance, Pipeline};
pub use plan::{StageStatus, StaleReason, State};
pub use stage::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, Registry, Stage, StageContext,
    StageError, StageInput, TypedStage,
};
