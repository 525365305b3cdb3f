//! [`RemoteRun`]: the JSON document stored at `PREFIX/runs/<fp>.json`, the commit point
//! of a result on the remote. It is the local run record plus the listing of every
//! output's files, which is what a pull needs to rebuild `out/<fp>/` and what lets it
//! check every hash before downloading a byte.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slayer_cache::{OutputListing, RunRecord, verify_listings};

use crate::error::S3Error;

/// The `format` of documents this version writes and reads.
pub const FORMAT: &str = "slayer-remote-run-v1";

/// A result as stored on the remote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteRun {
    /// Always [`FORMAT`].
    pub format: String,
    /// The run record, exactly as in the pushing store's `runs/<fp>.json`.
    pub record: RunRecord,
    /// For each output of the record, its files (each stored at `PREFIX/objects/<hash>`).
    pub listings: BTreeMap<String, OutputListing>,
}

impl RemoteRun {
    /// Parses and checks the document read from `key` for `fingerprint`: its format, its
    /// fingerprint, and that its listings hash to the record's outputs.
    pub fn parse(bytes: &[u8], key: &str, fingerprint: &str) -> Result<RemoteRun, S3Error> {
        let bad = |problem: String| S3Error::BadRecord {
            key: key.to_string(),
            problem,
        };
        let run: RemoteRun = serde_json::from_slice(bytes).map_err(|e| {
            bad(format!(
                "not a slayer remote record ({} bytes): {e}",
                bytes.len()
            ))
        })?;
        if run.format != FORMAT {
            return Err(bad(format!(
                "format `{}`, this slayer reads `{FORMAT}`",
                run.format
            )));
        }
        if run.record.fingerprint != fingerprint {
            return Err(bad(format!(
                "it is the record of fingerprint `{}`",
                run.record.fingerprint
            )));
        }
        verify_listings(&run.record, &run.listings).map_err(|e| bad(e.to_string()))?;
        Ok(run)
    }
}
