//! [`S3Error`]: every way a push or pull against S3 can fail. Each variant names the
//! remote URL or object key (as `s3://bucket/prefix/…`) or the local path involved.

use std::io;
use std::path::PathBuf;

use slayer_cache::{CacheError, ContentHash};

/// An error from [`S3Remote`](crate::S3Remote).
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The remote URL is not `s3://BUCKET[/PREFIX]`.
    #[error("invalid remote URL `{url}`: {problem}")]
    InvalidUrl { url: String, problem: String },
    /// The S3 client could not be configured (credentials, region, endpoint).
    #[error("cannot configure S3 client for {url}: {source}")]
    Config {
        url: String,
        source: object_store::Error,
    },
    /// The async runtime could not be started.
    #[error("cannot start the transfer runtime: {0}")]
    Runtime(io::Error),
    /// A request failed; `op` is what was being done ("upload", "download", "check").
    #[error("cannot {op} {key}: {source}")]
    Request {
        op: &'static str,
        key: String,
        source: object_store::Error,
    },
    /// A downloaded object does not have the content its key names: damaged or truncated
    /// in the bucket. The result is not installed (the stage reruns instead).
    #[error(
        "object {key} is damaged: {found_bytes} bytes hashing to {found}, expected {expected_bytes} \
         bytes hashing to {expected}"
    )]
    Corrupt {
        key: String,
        expected: ContentHash,
        found: ContentHash,
        expected_bytes: u64,
        found_bytes: u64,
    },
    /// A local file changed while it was being uploaded: what was read does not hash as
    /// the store says. Nothing was committed under its key.
    #[error(
        "{} changed while it was uploaded to {key}: read {found}, its record says {expected}",
        .path.display()
    )]
    ChangedWhileUploading {
        path: PathBuf,
        key: String,
        expected: ContentHash,
        found: ContentHash,
    },
    /// A remote run record that cannot be used.
    #[error("remote record {key} is unusable: {problem}")]
    BadRecord { key: String, problem: String },
    /// A local file could not be read or written.
    #[error("cannot {op} {}: {source}", .path.display())]
    Local {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The local store refused the operation.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A transfer task died (a bug).
    #[error("a transfer task failed: {0}")]
    Task(String),
}

impl S3Error {
    pub(crate) fn local(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> S3Error {
        S3Error::Local {
            op,
            path: path.into(),
            source,
        }
    }
}
