//! [`RemoteCache`]: the seam between a workspace store and a shared remote cache (the
//! S3 implementation lives in the `slayer-remote` crate). The executor asks it for a
//! result before running an instance that is missing locally, and hands it every result
//! it publishes.

use crate::record::RunRecord;
use crate::store::Store;

/// An error from a remote cache, as text the user can act on (it names the remote
/// location and the object or record involved).
pub type RemoteError = Box<dyn std::error::Error + Send + Sync>;

/// What one push or pull moved over the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Objects uploaded or downloaded.
    pub objects: u64,
    /// Objects not moved: already on the remote (push) or in the local store (pull).
    pub skipped: u64,
    /// Bytes of object content uploaded or downloaded (records not counted).
    pub bytes: u64,
}

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
    /// [`RemoteCache::push`], saying what it uploaded. The default counts nothing.
    fn push_counted(&self, store: &Store, record: &RunRecord) -> Result<Transfer, RemoteError> {
        self.push(store, record).map(|()| Transfer::default())
    }
    /// [`RemoteCache::pull`], saying what it downloaded. The default counts nothing.
    fn pull_counted(
        &self,
        store: &Store,
        fingerprint: &str,
    ) -> Result<Option<(RunRecord, Transfer)>, RemoteError> {
        Ok(self
            .pull(store, fingerprint)?
            .map(|r| (r, Transfer::default())))
    }
    /// Downloads only the record of `fingerprint` (no output bytes) and stores it as a
    /// metrics-only record ([`Store::install_record_only`]): reports can read its
    /// metrics, and it never counts as a cached result. `Ok(None)` when the remote does
    /// not have it.
    fn pull_record_only(
        &self,
        store: &Store,
        fingerprint: &str,
    ) -> Result<Option<RunRecord>, RemoteError> {
        let _ = (store, fingerprint);
        Err(format!(
            "{} cannot pull records without their outputs",
            self.location()
        )
        .into())
    }
}
