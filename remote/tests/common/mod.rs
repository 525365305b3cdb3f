//! Test helpers: a moto S3 server started through the repository's
//! `tests/infra/s3-up.sh` (stopped on drop), and results published into fresh stores.
//! Without moto the tests fail, naming what to install; they never skip.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use slayer_cache::{RunRecord, Store};
use slayer_remote::{S3Options, S3Remote};

pub const BUCKET: &str = "slayer-test";

/// A running moto server.
pub struct Moto {
    pub vars: Vec<(String, String)>,
    run_dir: PathBuf,
    log: PathBuf,
    script: PathBuf,
}

impl Moto {
    /// Starts a server on a free port with the test bucket created.
    pub fn start() -> Moto {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/infra/s3-up.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", "--bucket", BUCKET])
            .env("MOTO_OWNER_PID", std::process::id().to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "the S3 tests need moto's S3 server and it did not start ({}). Install it with \
             `pip install 'moto[s3]' flask flask-cors` (.ci/run does), or point MOTO_VENV at a \
             venv that has it.\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut vars = Vec::new();
        let (mut run_dir, mut log) = (None, None);
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "MOTO_RUN_DIR" => run_dir = Some(PathBuf::from(v)),
                "MOTO_LOG" => log = Some(PathBuf::from(v)),
                k if k.starts_with("AWS_") => vars.push((k.to_string(), v.to_string())),
                _ => {}
            }
        }
        Moto {
            vars,
            run_dir: run_dir.expect("s3-up.sh printed no MOTO_RUN_DIR"),
            log: log.expect("s3-up.sh printed no MOTO_LOG"),
            script,
        }
    }

    /// A remote on the test bucket under `prefix`.
    pub fn remote(&self, prefix: &str, options: S3Options) -> S3Remote {
        S3Remote::from_url_with(&format!("s3://{BUCKET}/{prefix}"), &self.vars, options)
            .expect("remote on moto")
    }

    /// The server's request log so far (one line per HTTP request).
    pub fn requests(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("down")
            .arg(&self.run_dir)
            .output();
        let _ = fs::remove_dir_all(&self.run_dir);
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
