//! Shared helpers of the end-to-end tests: a temp workspace and the `slayer` binary.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Instances that ran (summary lines `ran      NAME in …`).
    pub fn ran(&self) -> BTreeSet<String> {
        self.with_prefix("ran ")
    }
    pub fn cached(&self) -> BTreeSet<String> {
        self.with_prefix("cached ")
    }
    fn with_prefix(&self, prefix: &str) -> BTreeSet<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|rest| {
                let rest = rest.trim_start();
                let end = rest
                    .find(" in ")
                    .or_else(|| rest.find(" ("))
                    .unwrap_or(rest.len());
                rest[..end].to_string()
            })
            .collect()
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_slayer"));
        c.current_dir(self.dir.path());
        c
    }
    pub fn slayer(&self, args: &[&str]) -> Run {
        let out = self.cmd().args(args).output().expect("run slayer");
        to_run(out)
    }
}

pub fn to_run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `manifests/quickstart.yaml` shrunk (fewer people and biographies, one epoch, two
/// seeds) so it runs in seconds.
pub fn shrunk_quickstart() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/quickstart.yaml"),
    )
    .unwrap();
    let shrunk = text
        .replace("people_a: 60", "people_a: 6")
        .replace("people_b: 20", "people_b: 3")
        .replace("bios_per_person: 20", "bios_per_person: 3")
        .replace("epochs: 12", "epochs: 1")
        .replace("epochs: 5", "epochs: 1")
        .replace("seed: [0, 1, 2]", "seed: [0, 1]")
        .replace("max_tokens: 2048", "max_tokens: 256");
    assert_ne!(
        shrunk, text,
        "the quickstart's size knobs changed; update this test"
    );
    shrunk
}

/// A 3x5 grid of `command` stages: one shared upstream, 15 cells, one gathering report.
pub const GRID: &str = r#"
grid:
  a: [1, 2, 3]
  b: [x, y, z, u, v]
stages:
  shared:
    kind: command
    with: {run: "echo base > $SLAYER_OUT/s", outputs: {s: s}}
  cell:
    kind: command
    inputs: {s: shared.s}
    with: {run: "echo ${grid.a}-${grid.b} > $SLAYER_OUT/c", outputs: {c: c}}
  report:
    kind: command
    inputs: {cells: "cell[*].c"}
    with: {run: "cat $SLAYER_IN_CELLS > $SLAYER_OUT/r", outputs: {r: r}}
"#;
