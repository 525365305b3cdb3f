//! Helpers shared by the engine's integration tests: a temp workspace holding one
//! manifest of builtin `command` stages, and running it in-process.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};

use slayer_cache::Store;
use slayer_engine::{Outcome, Pipeline, Registry, RunOptions, StageResult, execute};
use tempfile::TempDir;

/// A temp directory with `name` written to it from `text`.
pub struct Workspace {
    pub dir: TempDir,
    pub manifest: PathBuf,
}

impl Workspace {
    pub fn new(name: &str, text: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = dir.path().join(name);
        std::fs::write(&manifest, text).expect("write manifest");
        Workspace { dir, manifest }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_manifest(&self, text: &str) {
        std::fs::write(&self.manifest, text).expect("write manifest");
    }

    pub fn pipeline(&self) -> Pipeline {
        Pipeline::load(&self.manifest, &Registry::with_builtins()).expect("load manifest")
    }

    pub fn store(&self) -> Store {
        Store::open(self.path()).expect("open store")
    }

    /// Runs the manifest with one job, quietly.
    pub fn run(&self) -> Vec<StageResult> {
        run_with(&self.pipeline(), &self.store())
    }
}

pub fn run_with(pipeline: &Pipeline, store: &Store) -> Vec<StageResult> {
    let opts = RunOptions {
        jobs: 1,
        quiet: true,
        ..RunOptions::default()
    };
    execute(pipeline, store, &opts).expect("execute")
}

/// The result of stage `name`.
pub fn result<'a>(results: &'a [StageResult], name: &str) -> &'a StageResult {
    results
        .iter()
        .find(|r| r.stage == name)
        .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
}

pub fn ran(results: &[StageResult], name: &str) -> bool {
    matches!(result(results, name).outcome, Outcome::Ran { .. })
}

/// Fingerprint of stage `name` in a run's results.
pub fn fingerprint(results: &[StageResult], name: &str) -> String {
    result(results, name)
        .fingerprint
        .clone()
        .unwrap_or_else(|| panic!("{name} has no fingerprint"))
}
