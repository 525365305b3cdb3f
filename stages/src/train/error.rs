//! [`TrainError`]: everything that can stop a training run, naming the file, parameter
//! or tensor involved.

use std::path::{Path, PathBuf};

use crate::model::ModelError;

/// A training failure.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data file is not what the loader expects.
    #[error("{}: {message}", .path.display())]
    Data {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// `trainable.json` is missing or malformed, or the trainable set is empty/invalid.
    #[error("trainable set: {0}")]
    Trainable(String),
    /// A parameter combination that cannot run (e.g. bf16 on the CPU).
    #[error("parameter `{key}`: {message}")]
    Param {
        /// The key under `with:`.
        key: String,
        /// Why it is rejected.
        message: String,
    },
    /// A checkpoint could not be read back or does not match the model.
    #[error("checkpoint {}: {message}", .path.display())]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// The loss or gradient norm became NaN or infinite.
    #[error("training diverged at step {step}: {what} is {value}")]
    Diverged {
        /// Optimizer step (1-based).
        step: u64,
        /// `loss` or `grad_norm`.
        what: &'static str,
        /// The non-finite value.
        value: f64,
    },
    /// The caller asked to stop (see [`StepControl`](super::StepControl)).
    #[error("training stopped by the caller after step {step}")]
    Stopped {
        /// The last completed step.
        step: u64,
    },
    /// The data-parallel ranks cannot run: launcher variables, world size, MPI.
    #[error("data parallel: {0}")]
    Ranks(String),
    /// The rank processes started by slayer failed (one died, or did not join).
    #[error(
        "data parallel: the rank processes failed ({status}); mpirun's log {}:\n{tail}\n\
         the next run resumes from the last checkpoint, with any number of ranks",
        .log.display()
    )]
    RanksFailed {
        /// mpirun's exit status.
        status: String,
        /// mpirun's output file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The ranks did not read exactly the global batch (a sharding bug, or ranks that
    /// run different jobs).
    #[error(
        "data parallel: at step {step} the ranks read {got} sequences (index sum {got_sum}) \
         of a global batch of {expected} (index sum {expected_sum})"
    )]
    Shards {
        /// Optimizer step (1-based).
        step: u64,
        /// Sequences read over all ranks.
        got: u64,
        /// Sequences in the global batch.
        expected: u64,
        /// Sum of the data indices read over all ranks.
        got_sum: u64,
        /// Sum of the global batch's data indices.
        expected_sum: u64,
    },
    /// The model core failed (loading, saving, device).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model card could not be written.
    #[error(transparent)]
    ModelCard(#[from] crate::model_card::ModelCardError),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A data error on `path`.
    pub fn data(path: &Path, message: impl Into<String>) -> Self {
        TrainError::Data {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// A rejected parameter.
    pub fn param(key: &str, message: impl Into<String>) -> Self {
        TrainError::Param {
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A checkpoint problem.
    pub fn checkpoint(path: &Path, message: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
