//! `slayer-cache`: the `.slayer/` workspace store. Content hashing with a stat cache,
//! a content-addressed object store, run records, per-stage locks, atomic publish of a
//! stage's outputs, gc and verify. It knows nothing about ML or manifests: callers hand
//! it paths, fingerprints and records.
//!
//! Modules: [`hash`] (what a hash covers), `stat_cache` (skipping unchanged files),
//! `store` ([`Store`], the directory layout), `publish` (the commit protocol), `record`
//! ([`RunRecord`]), `lock` ([`StageLock`]), `lease` ([`Lease`]: what live runs use), `remote` ([`RemoteCache`]), `import` ([`OutputListing`], [`Store::install_remote`], metrics-only records), `gc`, `verify`, `error` ([`CacheError`]).

mod error;
mod fsutil;
mod gc;
pub mod hash;
mod import;
mod lease;
mod lock;
mod publish;
mod record;
mod remote;
mod stat_cache;
mod store;
mod verify;

pub use error::CacheError;
pub use fsutil::atomic_write;
pub use gc::GcReport;
pub use hash::ContentHash;
pub use import::{ListedFile, OutputListing, download_path, verify_listings};
pub use lease::Lease;
pub use lock::{LockHolder, StageLock};
pub use record::{
    InputRecord, OutputRecord, RunRecord, format_rfc3339, host_name, now_rfc3339, parse_rfc3339,
};
pub use remote::{RemoteCache, RemoteError, Transfer};
pub use store::{OutputState, Store};
pub use verify::{RepairReport, VerifyReport};
