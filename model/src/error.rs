//! [`ModelError`]: every failure of the model core, each naming the file, tensor or key
//! it concerns so that a user can act on the message without a backtrace.

use std::path::PathBuf;

/// An error from loading, saving, building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON, misses a required key or has a bad value.
    #[error("{}: {message}", path.display())]
    Config {
        /// The config file (or `<in memory>`).
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The configuration asks for something this implementation does not support.
    #[error("unsupported model configuration: {0}")]
    Unsupported(String),
    /// A tensor the model needs is absent from the checkpoint.
    #[error("{}: tensor `{name}` is missing", file.display())]
    MissingTensor {
        /// The checkpoint (file or directory).
        file: PathBuf,
        /// The HF tensor name.
        name: String,
    },
    /// A tensor has a different shape than the config implies.
    #[error("{}: tensor `{name}` has shape {actual:?}, expected {expected:?}", file.display())]
    ShapeMismatch {
        /// The checkpoint file.
        file: PathBuf,
        /// The HF tensor name.
        name: String,
        /// Shape implied by config.json.
        expected: Vec<usize>,
        /// Shape found in the file.
        actual: Vec<usize>,
    },
    /// A tensor is stored in a dtype the loader cannot convert.
    #[error("{}: tensor `{name}` has unsupported dtype {dtype}", file.display())]
    UnsupportedDtype {
        /// The checkpoint file.
        file: PathBuf,
        /// The tensor name.
        name: String,
        /// The dtype as the format names it.
        dtype: String,
    },
    /// A checkpoint file is malformed.
    #[error("{}: {message}", file.display())]
    Format {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Tokenizer loading, encoding or decoding failed.
    #[error("tokenizer {}: {message}", path.display())]
    Tokenizer {
        /// The tokenizer file (or `<in memory>`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The requested device cannot be used.
    #[error("device: {0}")]
    Device(String),
    /// Invalid input to a model function (empty ids, token out of range...).
    #[error("invalid input: {0}")]
    Input(String),
}

impl ModelError {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error for `file`.
    pub fn format(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::Format {
            file: file.into(),
            message: message.into(),
        }
    }
}

/// Result alias for the model core.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
