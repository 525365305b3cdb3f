//! [`SurgeryError`]: every failure of layout parsing, planning and block surgery, each
//! naming the layout, block or file concerned.

use std::path::PathBuf;

/// An error from the layout notation, a [`LayerPlan`](super::plan::LayerPlan) or the
/// expand / prune stages.
#[derive(Debug, thiserror::Error)]
pub enum SurgeryError {
    /// The layout string does not follow the notation. `column` is 1-based, in characters.
    #[error("layout `{layout}`: {message} (column {column})")]
    Syntax {
        /// The layout as written.
        layout: String,
        /// Where the problem starts.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// The layout does not fit the model it is applied to; the message shows the
    /// arithmetic.
    #[error("layout `{layout}` {message}")]
    Mismatch {
        /// The layout (canonical form).
        layout: String,
        /// What does not add up.
        message: String,
    },
    /// Parameters contradict each other or the model (e.g. `init: copy` with a ◇ layout,
    /// a block index out of range).
    #[error("{0}")]
    Invalid(String),
    /// `trainable.json` is unreadable or inconsistent with the model.
    #[error("{}: {message}", path.display())]
    Trainable {
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
    /// The model core failed (loading, saving, running).
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

impl SurgeryError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SurgeryError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, SurgeryError>;
