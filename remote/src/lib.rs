//! `slayer-remote`: a remote cache of slayer results on S3 or an S3-compatible server
//! ([`S3Remote`], implementing [`slayer_cache::RemoteCache`]).
//!
//! Key layout under `s3://BUCKET/PREFIX`:
//!
//! ```text
//! PREFIX/objects/<hash>     one file's bytes; <hash> is their blake3 (content-addressed,
//!                           shared by every result that has the file)
//! PREFIX/runs/<fp>.json     a result: its run record and the listing of every output's
//!                           files ([`RemoteRun`]); written last, the commit point
//! ```
//!
//! A push uploads the objects a result references that are not there yet, then the
//! record: a record on the remote always has all its objects, and two machines pushing
//! the same result write the same keys. A pull checks the record's listings against its
//! outputs' hashes, downloads what the local store lacks while hashing it, refuses any
//! object whose bytes do not match its key, and commits the result locally as a publish
//! would. A metrics-only pull stores just the record, apart from real results (see
//! [`slayer_cache::Store::install_record_only`]).
//!
//! Modules: `s3` ([`S3Remote`], [`S3Options`], keys), `push`, `pull`, `transfer` (bounded concurrency), `wire`
//! ([`RemoteRun`], the record document), `error` ([`S3Error`]).

mod error;
mod pull;
mod push;
mod s3;
mod transfer;
mod wire;

pub use error::S3Error;
pub use s3::{S3Options, S3Remote};
pub use wire::{FORMAT, RemoteRun};
