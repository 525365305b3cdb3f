//! [`EvalError`]: every failure of the evaluation stage, naming the task, file and line
//! it concerns so that a bad benchmark file can be fixed without a backtrace.

use std::path::PathBuf;

use crate::model::ModelError;

/// An error while loading tasks, reading their data, scoring or executing programs.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A data file has a bad record: malformed JSON/CSV, a missing field, a wrong type or
    /// a choice count that does not match.
    #[error("{}:{line}: {message}", path.display())]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based line (for JSON arrays: the record's index + 1).
        line: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A data file a task needs does not exist.
    #[error("task `{task}`: data file {} not found{hint}", path.display())]
    MissingFile {
        /// The task.
        task: String,
        /// The path looked for.
        path: PathBuf,
        /// How to fix it (e.g. "set data_dir").
        hint: String,
    },
    /// A task definition is invalid.
    #[error("task definition {source_name}: {message}")]
    TaskDef {
        /// The built-in name or the file it came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A task name is not a built-in and not a task file.
    #[error("unknown task `{name}`{suggestion}; built-in tasks: {known}")]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// ", did you mean `x`?" or empty.
        suggestion: String,
        /// Comma-separated built-in names.
        known: String,
    },
    /// A template refers to a field the record lacks, or uses an unknown filter.
    #[error("template `{template}`: {message}")]
    Template {
        /// The template text.
        template: String,
        /// What is wrong.
        message: String,
    },
    /// The model or tokenizer failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Reading Parquet token shards failed (the message names the file).
    #[error(transparent)]
    Shards(#[from] crate::data::error::DataError),
    /// Executing a generated program failed for a reason other than the program itself.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Writing the per-item Parquet file failed.
    #[error("{}: {message}", path.display())]
    Output {
        /// The output file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A bad parameter combination found at run time.
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }

    /// A data error at `path:line`.
    pub fn data(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        EvalError::Data {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// A task-definition error.
    pub fn task_def(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        EvalError::TaskDef {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, EvalError>;
