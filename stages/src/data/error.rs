//! [`DataError`]: every failure of the data stages, naming the file (and the line or
//! row, where there is one) so that a user can fix the input without a backtrace.

use std::path::{Path, PathBuf};

use slayer_engine::StageError;

/// An error from reading, tokenizing or writing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record of a line-oriented file is bad (malformed JSON, invalid UTF-8, missing
    /// field).
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A row of a Parquet file is bad.
    #[error("{}: row {row}: {message}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 0-based row index within the file.
        row: u64,
        /// What is wrong.
        message: String,
    },
    /// A whole file is bad (not UTF-8, wrong schema, not a tokenizer).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing Parquet failed.
    #[error("{}: parquet: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building an Arrow batch failed (a bug or an inconsistent input).
    #[error("{}: arrow: {source}", path.display())]
    Arrow {
        /// The file being written or read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A problem that concerns no single file (bad combination of inputs and params).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    /// A bad line `line` (1-based) of `path`.
    pub fn line(path: &Path, line: u64, message: impl Into<String>) -> DataError {
        DataError::Line {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
    /// A problem with the whole file `path`.
    pub fn file(path: &Path, message: impl Into<String>) -> DataError {
        DataError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
    /// A Parquet error on `path`.
    pub fn parquet(path: &Path, source: parquet::errors::ParquetError) -> DataError {
        DataError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
    /// An Arrow error on `path`.
    pub fn arrow(path: &Path, source: arrow_schema::ArrowError) -> DataError {
        DataError::Arrow {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<DataError> for StageError {
    fn from(e: DataError) -> StageError {
        StageError::other(e)
    }
}

/// Result with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
