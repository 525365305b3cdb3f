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
    /// The model core failed (loading, saving, device).
    #[error(transparent)]
    Model(#[from] ModelError),
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
