//! [`ImportanceError`]: failures of the importance measurement, naming the input, file or
//! block concerned.

use std::path::PathBuf;

/// An error from reading tokens, running the sweeps or writing the outputs.
#[derive(Debug, thiserror::Error)]
pub enum ImportanceError {
    /// An input is missing, empty or of the wrong kind.
    #[error("input `{name}`: {message}")]
    Input {
        /// The input name (`model`, `text`, `data`).
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A Parquet file cannot be read as token shards.
    #[error("{}: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A parameter is out of range for this model or data.
    #[error("{0}")]
    Invalid(String),
    /// The model core failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// Block surgery (averaging blocks) failed.
    #[error(transparent)]
    Surgery(#[from] crate::surgery::SurgeryError),
}

impl ImportanceError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImportanceError::Io {
            path: path.into(),
            source,
        }
    }

    /// A Parquet error on `path`.
    pub fn parquet(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        ImportanceError::Parquet {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, ImportanceError>;
