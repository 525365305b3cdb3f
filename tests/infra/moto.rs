//! A moto S3 server for tests, started and stopped through `tests/infra/s3-up.sh`
//! (shared by the root crate's tests and `remote/tests` through `#[path]`; std only).
//! Without moto the tests that use it fail, naming what to install; they never skip.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bucket every test server is started with.
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
        // Included by the root crate's tests and by remote/tests.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = [
            root.join("tests/infra/s3-up.sh"),
            root.join("../tests/infra/s3-up.sh"),
        ]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| root.join("tests/infra/s3-up.sh"));
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

impl Moto {
    /// The value of one of the `AWS_*` variables it printed.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
