//! [`CacheError`]: every way a store operation can fail. Each variant names the path
//! (or output, or fingerprint) involved, so a message is actionable without a backtrace.

use std::io;
use std::path::PathBuf;

/// An error from the `.slayer/` store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file-system operation failed; `op` says what was being done ("read", "rename", ..).
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A path that was asked to be hashed does not exist (or is a broken symlink).
    #[error("{} does not exist", .path.display())]
    NotFound { path: PathBuf },
    /// Something that is neither a file nor a directory (socket, fifo, device).
    #[error("{} is neither a regular file nor a directory", .path.display())]
    UnsupportedFileType { path: PathBuf },
    /// Following symlinks led back into a directory being walked.
    #[error("symlink loop at {}", .path.display())]
    SymlinkLoop { path: PathBuf },
    /// A run record (or the stat cache) could not be parsed or written as JSON.
    #[error("invalid JSON in {}: {source}", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A run record that cannot be used: truncated, not JSON, not a record, or a record
    /// of another fingerprint. Callers treat the result as missing (it is recomputed);
    /// `verify --repair` deletes the file.
    #[error("corrupt run record {}: {problem}", .path.display())]
    CorruptRecord { path: PathBuf, problem: String },
    /// A declared output was not produced by the stage.
    #[error("output `{output}` was not produced: {} does not exist", .path.display())]
    OutputMissing { output: String, path: PathBuf },
    /// A declared output path is absolute, empty or climbs out with `..`.
    #[error(
        "output `{output}` has path `{path}`; it must be a relative path inside the stage's \
         directory (no `..`, not empty)"
    )]
    InvalidOutputPath { output: String, path: String },
    /// An output of a committed result no longer hashes as its record says (edited in
    /// place, or damaged), so it cannot be handed on (e.g. pushed to a remote cache).
    #[error(
        "output `{output}` at {} has changed since it was published: it hashes to {found}, \
         its record says {recorded}",
        .path.display()
    )]
    OutputChanged {
        output: String,
        path: PathBuf,
        recorded: crate::hash::ContentHash,
        found: crate::hash::ContentHash,
    },
    /// A listing of a result's files (from a remote cache) that does not match its record
    /// or cannot be used safely.
    #[error("result {fingerprint}, output `{output}`: {problem}")]
    InvalidListing {
        fingerprint: String,
        output: String,
        problem: String,
    },
    /// A fingerprint that cannot be used as a file name.
    #[error(
        "invalid fingerprint `{fingerprint}`: expected a non-empty name of letters, digits, \
         `-`, `_` or `.` that does not start with `.`"
    )]
    InvalidFingerprint { fingerprint: String },
}

impl CacheError {
    /// Wraps an I/O error with the operation and path; `NotFound` becomes [`CacheError::NotFound`]
    /// only where the caller asks for it via [`CacheError::io_or_missing`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> CacheError {
        CacheError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Like [`CacheError::io`], but a missing path becomes [`CacheError::NotFound`].
    pub(crate) fn io_or_missing(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> CacheError {
        if source.kind() == io::ErrorKind::NotFound {
            CacheError::NotFound { path: path.into() }
        } else {
            CacheError::io(op, path, source)
        }
    }
}
