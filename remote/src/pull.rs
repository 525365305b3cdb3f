//! [`S3Remote::pull_result`] and [`S3Remote::pull_metrics_only`]: downloads a result.
//! The record (`PREFIX/runs/<fp>.json`) is read and checked first (its listings must
//! hash to its outputs); then every object the store does not already hold is streamed
//! into a private staging dir inside the store, hashed with blake3 as it is written, and
//! refused if its size or hash differ from its key (naming the key and both hashes);
//! only then is the result installed ([`Store::install_remote`]: objects, out dir,
//! record last). A metrics-only pull reads the record alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use slayer_cache::{ContentHash, OutputState, RunRecord, Store, Transfer, download_path};
use tokio::io::AsyncWriteExt;

use crate::error::S3Error;
use crate::s3::S3Remote;
use crate::transfer::{request, run_all};
use crate::wire::RemoteRun;

/// A record document larger than this is refused unread (a listing of a million files
/// takes about 150 MB).
const MAX_RECORD_BYTES: u64 = 256 * 1024 * 1024;

/// One object to download.
struct Download {
    key: Key,
    shown: String,
    dest: PathBuf,
    hash: ContentHash,
    bytes: u64,
}

impl S3Remote {
    /// The remote's record of `fingerprint`, checked; `None` if it has none.
    pub fn fetch_record(&self, fingerprint: &str) -> Result<Option<RemoteRun>, S3Error> {
        let key = self.record_key(fingerprint);
        let shown = self.show(&key);
        let bytes = self.runtime.block_on(async {
            match self.client.get(&key).await {
                Ok(got) if got.meta.size > MAX_RECORD_BYTES => Ok(Err(got.meta.size)),
                Ok(got) => got.bytes().await.map(|b| Ok(Some(b))),
                Err(object_store::Error::NotFound { .. }) => Ok(Ok(None)),
                Err(e) => Err(e),
            }
        });
        let bytes = bytes
            .map_err(request("download", &shown))?
            .map_err(|size| S3Error::BadRecord {
                key: shown.clone(),
                problem: format!("{size} bytes, more than a record can be ({MAX_RECORD_BYTES})"),
            })?;
        bytes
            .map(|b| RemoteRun::parse(&b, &shown, fingerprint))
            .transpose()
    }

    /// Pulls the result of `fingerprint` into `store` (see the module docs) and returns
    /// its local record with what was downloaded; `None` if the remote does not have it.
    /// A result already intact in `store` is left as it is (nothing is downloaded).
    pub fn pull_result(
        &self,
        store: &Store,
        fingerprint: &str,
    ) -> Result<Option<(RunRecord, Transfer)>, S3Error> {
        let Some(run) = self.fetch_record(fingerprint)? else {
            return Ok(None);
        };
        if let Some(local) = store.record(fingerprint)?
            && store.check_outputs(&local)? == OutputState::Intact
        {
            return Ok(Some((local, Transfer::default())));
        }
        let staging = store.download_dir(fingerprint)?;
        let mut transfer = Transfer::default();
        let mut downloads: BTreeMap<PathBuf, Download> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for file in run.listings.values().flat_map(|l| &l.files) {
            let dest = download_path(&staging, file);
            if !seen.insert(dest.clone()) {
                continue;
            }
            if store.has_object(file) {
                transfer.skipped += 1;
                continue;
            }
            let key = self.object_key(&file.hash);
            let download = Download {
                shown: self.show(&key),
                key,
                dest: dest.clone(),
                hash: file.hash.clone(),
                bytes: file.bytes,
            };
            downloads.insert(dest, download);
        }
        let fetched = self.runtime.block_on(run_all(
            downloads.into_values(),
            self.options.concurrency,
            |d| download_object(self.client.clone(), d),
        ));
        let installed = fetched.and_then(|sizes| {
            transfer.objects = sizes.len() as u64;
            transfer.bytes = sizes.iter().sum();
            Ok(store.install_remote(&staging, run.record, &run.listings)?)
        });
        match installed {
            Ok(record) => Ok(Some((record, transfer))),
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    /// Pulls only the record of `fingerprint` into `store`'s metrics-only records
    /// ([`Store::install_record_only`]): no object is read. `None` if the remote does not
    /// have it.
    pub fn pull_metrics_only(
        &self,
        store: &Store,
        fingerprint: &str,
    ) -> Result<Option<RunRecord>, S3Error> {
        let Some(run) = self.fetch_record(fingerprint)? else {
            return Ok(None);
        };
        store.install_record_only(&run.record)?;
        Ok(Some(run.record))
    }
}

/// Streams one object to `<dest>.part`, hashing what it writes, and renames it to `dest`
/// once size and hash match. Returns the bytes downloaded.
async fn download_object(client: Arc<dyn ObjectStore>, d: Download) -> Result<u64, S3Error> {
    let mut part = d.dest.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let result: Result<(), S3Error> = async {
        let mut stream = client
            .get(&d.key)
            .await
            .map_err(request("download", &d.shown))?
            .into_stream();
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| S3Error::local("create", &part, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(request("download", &d.shown))?;
            written += chunk.len() as u64;
            hasher.update(&chunk);
            if written > d.bytes {
                break; // longer than its key says: damaged; stop reading it
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| S3Error::local("write", &part, e))?;
        }
        let found = ContentHash(hasher.finalize().to_hex().to_string());
        if written != d.bytes || found != d.hash {
            return Err(S3Error::Corrupt {
                key: d.shown.clone(),
                expected: d.hash.clone(),
                found,
                expected_bytes: d.bytes,
                found_bytes: written,
            });
        }
        file.sync_all()
            .await
            .map_err(|e| S3Error::local("fsync", &part, e))?;
        drop(file);
        tokio::fs::rename(&part, &d.dest)
            .await
            .map_err(|e| S3Error::local("rename into place", &d.dest, e))
    }
    .await;
    match result {
        Ok(()) => Ok(d.bytes),
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            if matches!(e, S3Error::Corrupt { .. }) {
                // Its key names other content, so no valid result needs these bytes:
                // removing them lets the next push of this result upload it again
                // (a push skips an object that is there with the right size).
                let _ = client.delete(&d.key).await;
            }
            Err(e)
        }
    }
}
