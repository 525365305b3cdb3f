//! [`S3Remote::push_result`]: uploads a local result. Every distinct object its outputs
//! reference goes to `PREFIX/objects/<hash>` unless one of the right size is already
//! there (HEAD); new objects are written with a conditional create (`If-None-Match: *`)
//! so that two machines pushing the same result race harmlessly; files above the
//! multipart threshold stream from disk in parts. Each file is hashed while it is read
//! and nothing is committed under its key if it does not hash as recorded. The record
//! (`PREFIX/runs/<fp>.json`) is written last, once every object is there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};
use slayer_cache::{ContentHash, RunRecord, Store, Transfer};
use tokio::io::AsyncReadExt;

use crate::error::S3Error;
use crate::s3::{S3Options, S3Remote};
use crate::transfer::{request, run_all};
use crate::wire::{FORMAT, RemoteRun};

/// One object to upload.
struct Upload {
    key: Key,
    shown: String,
    path: PathBuf,
    hash: ContentHash,
    bytes: u64,
}

/// What happened to one object.
enum Sent {
    Skipped,
    Uploaded(u64),
}

impl S3Remote {
    /// Pushes the committed result `record` of `store` (see the module docs). Idempotent.
    pub fn push_result(&self, store: &Store, record: &RunRecord) -> Result<Transfer, S3Error> {
        let listings = store.listings(record)?;
        let mut objects: BTreeMap<ContentHash, Upload> = BTreeMap::new();
        for (output, listing) in &listings {
            for file in &listing.files {
                if objects.contains_key(&file.hash) {
                    continue;
                }
                let path = store
                    .listed_file_path(record, output, file)
                    .ok_or_else(|| {
                        S3Error::Task(format!("output `{output}` vanished from its record"))
                    })?;
                let key = self.object_key(&file.hash);
                let upload = Upload {
                    shown: self.show(&key),
                    key,
                    path,
                    hash: file.hash.clone(),
                    bytes: file.bytes,
                };
                objects.insert(file.hash.clone(), upload);
            }
        }
        let run = RemoteRun {
            format: FORMAT.to_string(),
            record: record.clone(),
            listings,
        };
        let key = self.record_key(&record.fingerprint);
        let shown = self.show(&key);
        let mut body = serde_json::to_vec_pretty(&run).map_err(|e| S3Error::BadRecord {
            key: shown.clone(),
            problem: e.to_string(),
        })?;
        body.push(b'\n');

        self.runtime.block_on(async {
            let sent = run_all(objects.into_values(), self.options.concurrency, |upload| {
                upload_object(self.client.clone(), upload, self.options.clone())
            })
            .await?;
            let mut transfer = Transfer::default();
            for s in sent {
                match s {
                    Sent::Skipped => transfer.skipped += 1,
                    Sent::Uploaded(n) => {
                        transfer.objects += 1;
                        transfer.bytes += n;
                    }
                }
            }
            // Every object is there: commit.
            self.client
                .put_opts(&key, PutPayload::from(body), PutMode::Overwrite.into())
                .await
                .map_err(request("upload", &shown))?;
            Ok(transfer)
        })
    }
}

async fn upload_object(
    client: Arc<dyn ObjectStore>,
    up: Upload,
    options: S3Options,
) -> Result<Sent, S3Error> {
    let replace = match client.head(&up.key).await {
        Ok(meta) if meta.size == up.bytes => return Ok(Sent::Skipped),
        // The wrong size: damaged or truncated; content-addressed, so replacing it is safe.
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => return Err(request("check", &up.shown)(e)),
    };
    if up.bytes <= options.multipart_threshold {
        upload_small(&*client, &up, replace).await
    } else {
        upload_multipart(&*client, &up, &options).await
    }
}

async fn upload_small(
    client: &dyn ObjectStore,
    up: &Upload,
    replace: bool,
) -> Result<Sent, S3Error> {
    let data = tokio::fs::read(&up.path)
        .await
        .map_err(|e| S3Error::local("read", &up.path, e))?;
    let found = ContentHash(blake3::hash(&data).to_hex().to_string());
    if found != up.hash {
        return Err(S3Error::ChangedWhileUploading {
            path: up.path.clone(),
            key: up.shown.clone(),
            expected: up.hash.clone(),
            found,
        });
    }
    let payload = PutPayload::from(Bytes::from(data));
    let mode = if replace {
        PutMode::Overwrite
    } else {
        PutMode::Create
    };
    match client.put_opts(&up.key, payload.clone(), mode.into()).await {
        Ok(_) => Ok(Sent::Uploaded(up.bytes)),
        // Someone else pushed the same content meanwhile.
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(Sent::Skipped),
        // A server without conditional puts: the content is the same whoever writes it.
        Err(
            object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. },
        ) => {
            client
                .put_opts(&up.key, payload, PutMode::Overwrite.into())
                .await
                .map_err(request("upload", &up.shown))?;
            Ok(Sent::Uploaded(up.bytes))
        }
        Err(e) => Err(request("upload", &up.shown)(e)),
    }
}

/// Streams a large file in parts; at most `parts_in_flight` parts wait for the network.
async fn upload_multipart(
    client: &dyn ObjectStore,
    up: &Upload,
    options: &S3Options,
) -> Result<Sent, S3Error> {
    // S3 allows 10,000 parts per upload.
    let part_size = options
        .part_size
        .max(usize::try_from(up.bytes.div_ceil(9_000)).unwrap_or(usize::MAX));
    let mut file = tokio::fs::File::open(&up.path)
        .await
        .map_err(|e| S3Error::local("open", &up.path, e))?;
    let upload = client
        .put_multipart(&up.key)
        .await
        .map_err(request("start uploading", &up.shown))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
    let mut hasher = blake3::Hasher::new();
    let mut read = 0u64;
    let outcome: Result<(), S3Error> = async {
        loop {
            let mut buf = Vec::with_capacity(part_size);
            let n = (&mut file)
                .take(part_size as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| S3Error::local("read", &up.path, e))?;
            if n == 0 {
                return Ok(());
            }
            read += n as u64;
            hasher.update(&buf);
            writer
                .wait_for_capacity(options.parts_in_flight)
                .await
                .map_err(request("upload", &up.shown))?;
            writer.put(Bytes::from(buf));
        }
    }
    .await;
    let found = ContentHash(hasher.finalize().to_hex().to_string());
    let outcome = outcome.and_then(|()| {
        if found == up.hash && read == up.bytes {
            Ok(())
        } else {
            Err(S3Error::ChangedWhileUploading {
                path: up.path.clone(),
                key: up.shown.clone(),
                expected: up.hash.clone(),
                found,
            })
        }
    });
    match outcome {
        Ok(()) => {
            writer
                .finish()
                .await
                .map_err(request("upload", &up.shown))?;
            Ok(Sent::Uploaded(up.bytes))
        }
        Err(e) => {
            // Best effort: an unfinished upload is invisible, and bucket lifecycle rules
            // clean up the parts of one that could not be aborted.
            let _ = writer.abort().await;
            Err(e)
        }
    }
}
