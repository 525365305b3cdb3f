//! `files`: gathers raw inputs (paths or globs) into one directory artifact, so that a
//! corpus of many files is referenced downstream as `stage.files` with one content hash.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stage::{InputSpecs, Metrics, OutputSpec, StageContext, StageError, TypedStage};

/// The `files` stage kind.
pub struct Files;

/// Parameters of `files` (none yet: every input is copied).
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesParams {}

impl TypedStage for Files {
    type Params = FilesParams;
    const KIND: &'static str = "files";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Declare raw files (paths or globs, any input names) as one directory artifact `files`";

    fn inputs() -> InputSpecs {
        InputSpecs::Any
    }

    fn outputs(_: &FilesParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("files", "files")]
    }

    fn run(&self, _: FilesParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let root = ctx.out("files");
        let mut files = 0u64;
        let mut bytes = 0u64;
        for input in ctx.inputs.values() {
            for (label, path) in &input.items {
                let dest = root.join(safe_relative(label));
                let (f, b) = copy_tree(path, &dest)?;
                files += f;
                bytes += b;
            }
        }
        std::fs::create_dir_all(&root).map_err(|e| StageError::io(&root, e))?;
        let mut m = Metrics::new();
        m.insert("files".into(), files.into());
        m.insert("bytes".into(), bytes.into());
        Ok(m)
    }
}

/// A label as a relative path that stays inside the output dir (`..` and roots dropped).
fn safe_relative(label: &str) -> std::path::PathBuf {
    Path::new(label)
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

/// Copies a file or a directory tree; returns (files, bytes).
fn copy_tree(src: &Path, dest: &Path) -> Result<(u64, u64), StageError> {
    if src.is_dir() {
        std::fs::create_dir_all(dest).map_err(|e| StageError::io(dest, e))?;
        let mut total = (0, 0);
        let entries = std::fs::read_dir(src).map_err(|e| StageError::io(src, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StageError::io(src, e))?;
            let (f, b) = copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
            total = (total.0 + f, total.1 + b);
        }
        Ok(total)
    } else {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StageError::io(parent, e))?;
        }
        let bytes = std::fs::copy(src, dest).map_err(|e| StageError::io(src, e))?;
        Ok((1, bytes))
    }
}
