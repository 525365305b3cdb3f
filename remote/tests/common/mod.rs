//! Test helpers: remotes on the moto S3 server of `tests/infra/moto.rs` (started through
//! the repository's `tests/infra/s3-up.sh`, stopped on drop), damaging objects in its
//! bucket, and results published into fresh stores.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use slayer_cache::{RunRecord, Store};
use slayer_remote::{S3Options, S3Remote};

#[path = "../../../tests/infra/moto.rs"]
mod moto;
pub use moto::{BUCKET, Moto};

/// A remote on the test bucket of a moto server.
pub trait MotoRemote {
    fn remote(&self, prefix: &str, options: S3Options) -> S3Remote;
}

impl MotoRemote for Moto {
    /// A remote on the test bucket under `prefix`.
    fn remote(&self, prefix: &str, options: S3Options) -> S3Remote {
        S3Remote::from_url_with(&format!("s3://{BUCKET}/{prefix}"), &self.vars, options)
            .expect("remote on moto")
    }
}

/// Writes `data` at `key` in the remote's bucket directly (to damage it).
pub fn put_raw(remote: &S3Remote, key: &object_store::path::Path, data: Vec<u8>) {
    use object_store::ObjectStoreExt;
    let client = remote.client();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(client.put(key, object_store::PutPayload::from(data)))
        .unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn record(fingerprint: &str) -> RunRecord {
    RunRecord {
        fingerprint: fingerprint.to_string(),
        stage: "prune[keep=0.5]".into(),
        manifest: Some("test".into()),
        kind: "model.prune".into(),
        stage_version: 1,
        params: serde_json::json!({"keep": 0.5}),
        inputs: BTreeMap::new(),
        env: BTreeMap::new(),
        outputs: BTreeMap::new(),
        metrics: serde_json::json!({"perplexity": 12.5, "params": 1_000_000}),
        started_at: "2026-11-23T10:00:00Z".into(),
        finished_at: "2026-11-23T10:01:00Z".into(),
        duration_s: 60.0,
        host: "test".into(),
        slayer_version: "0.1.0".into(),
        git_revision: None,
        log: None,
        job: Default::default(),
        usage: Default::default(),
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Publishes a result with a directory output (nested files, an executable, a
/// duplicate, an empty dir) and a single-file output; `big` adds a file of that size.
pub fn publish(store: &Store, fingerprint: &str, big: usize) -> RunRecord {
    let staging = store.staging_dir(fingerprint).unwrap();
    let model = staging.join("model");
    fs::create_dir_all(model.join("sub")).unwrap();
    fs::create_dir_all(model.join("empty")).unwrap();
    fs::write(model.join("weights.bin"), bytes(1, 300_000)).unwrap();
    fs::write(model.join("sub/config.json"), b"{\"layers\": 4}\n").unwrap();
    fs::write(model.join("sub/copy.json"), b"{\"layers\": 4}\n").unwrap();
    fs::write(model.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    make_executable(&model.join("run.sh"));
    if big > 0 {
        fs::write(model.join("big.bin"), bytes(2, big)).unwrap();
    }
    fs::write(staging.join("metrics.json"), b"{\"perplexity\": 12.5}\n").unwrap();
    let outputs = BTreeMap::from([
        ("model".to_string(), "model".to_string()),
        ("metrics".to_string(), "metrics.json".to_string()),
    ]);
    store
        .publish(&staging, &outputs, record(fingerprint))
        .unwrap()
}

/// Every file below `dir` as (relative path, bytes, executable), and every directory.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, bool)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>, bool)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                out.push((format!("{rel}/"), Vec::new(), false));
                walk(root, &path, out);
            } else {
                #[cfg(unix)]
                let exec = {
                    use std::os::unix::fs::PermissionsExt;
                    meta.permissions().mode() & 0o111 != 0
                };
                #[cfg(not(unix))]
                let exec = false;
                out.push((rel, fs::read(&path).unwrap(), exec));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}
