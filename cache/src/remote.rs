//! [`RemoteCache`]: the seam between a workspace store and a shared remote cache (the
//! S3 implementation lives in the `slayer-remote` crate). The executor asks it for a
//! result before running an instance that is missing locally, and hands it every result
//! it publishes.

use crate::record::RunRecord;
use crate::store::Store;

/// An error from a remote cache, as text the user can act on (it names the remote
/// location and the object or record involved).
pub type RemoteError = Box<dyn std::error::Error + Send + Sync>;

/// A cache shared between workspaces and machines.
pub trait RemoteCache: Send + Sync {
    /// Where it is, for messages (e.g. `s3://bucket/prefix`).
    fn location(&self) -> String;
    /// Whether the remote holds a complete result for `fingerprint` (its record).
    fn contains(&self, fingerprint: &str) -> Result<bool, RemoteError>;
    /// Uploads a result published in `store`: objects first, the record last (the
    /// remote's commit point). Idempotent and safe to run from two machines at once.
    fn push(&self, store: &Store, record: &RunRecord) -> Result<(), RemoteError>;
    /// Downloads the result for `fingerprint` into `store` as if it had been published
    /// there, every object verified by its blake3 first, and returns its local record.
    /// `Ok(None)` when the remote does not have it; an error when it has it damaged.
    fn pull(&self, store: &Store, fingerprint: &str) -> Result<Option<RunRecord>, RemoteError>;
}
