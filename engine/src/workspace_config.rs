//! [`WorkspaceConfig`]: the workspace's own settings, in `slayer.toml` beside `.slayer/`
//! (the manifest's workspace, see [`crate::commands::workspace_for`]). Every key is
//! optional and a missing file means all defaults; an unknown key is an error naming the
//! file, so a misspelt setting is never silently ignored.
//!
//! ```toml
//! remote = "s3://bucket/prefix"   # remote cache for push/pull (`--remote` overrides)
//!
//! [executor]
//! kind = "slurm"                  # default of `slayer run --executor`
//! [executor.slurm]                # see crate::slurm::SlurmConfig and docs/executors.md
//! partition = "gpu"
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::EngineError;

/// The name of the file, in the workspace root.
pub const FILE_NAME: &str = "slayer.toml";

/// The parsed `slayer.toml`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// The remote cache, e.g. `s3://bucket/prefix`.
    #[serde(default)]
    pub remote: Option<String>,
    #[serde(default)]
    pub executor: ExecutorSection,
}

/// The `[executor]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// The default of `slayer run --executor`: `local`, `slurm` or `inline`.
    pub kind: Option<String>,
    pub slurm: Option<crate::slurm::SlurmConfig>,
}

impl WorkspaceConfig {
    /// Where the config of `workspace` lives.
    pub fn path(workspace: &Path) -> PathBuf {
        workspace.join(FILE_NAME)
    }

    /// Reads `workspace/slayer.toml`; defaults when there is none.
    pub fn load(workspace: &Path) -> Result<WorkspaceConfig, EngineError> {
        let path = WorkspaceConfig::path(workspace);
        match fs::read_to_string(&path) {
            Ok(text) => WorkspaceConfig::parse(&text, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(WorkspaceConfig::default()),
            Err(e) => Err(EngineError::Io {
                context: format!("cannot read {}", path.display()),
                source: e,
            }),
        }
    }

    /// Parses the text of a config file; errors name `path` and the line.
    pub fn parse(text: &str, path: &Path) -> Result<WorkspaceConfig, EngineError> {
        toml::from_str(text)
            .map_err(|e| EngineError::Invalid(format!("invalid {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_and_executor_are_read_and_unknown_keys_are_refused() {
        let path = Path::new("ws/slayer.toml");
        let cfg = WorkspaceConfig::parse(
            "remote = \"s3://bkt/team\"\n[executor]\nkind = \"slurm\"\n\
             [executor.slurm]\npartition = \"gpu\"\nextra = [\"--exclusive\"]\n",
            path,
        )
        .unwrap();
        assert_eq!(cfg.remote.as_deref(), Some("s3://bkt/team"));
        assert_eq!(cfg.executor.kind.as_deref(), Some("slurm"));
        let slurm = cfg.executor.slurm.unwrap();
        assert_eq!(slurm.partition.as_deref(), Some("gpu"));
        assert_eq!(slurm.extra, ["--exclusive"]);
        let err = WorkspaceConfig::parse("[executor.slurm]\npartiton = \"x\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("partiton"), "{err}");
        assert_eq!(
            WorkspaceConfig::parse("", path).unwrap(),
            WorkspaceConfig::default()
        );
        let err = WorkspaceConfig::parse("remot = \"s3://x\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ws/slayer.toml") && err.contains("remot"),
            "{err}"
        );
        let err = WorkspaceConfig::parse("remote = 3\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ws/slayer.toml") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            WorkspaceConfig::load(dir.path()).unwrap(),
            WorkspaceConfig::default()
        );
    }
}
