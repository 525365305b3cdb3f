//! [`Store::verify`]: re-reads every object and every published output, ignoring the
//! stat cache, and reports what no longer matches. Objects are hashed once; an output
//! file that is a hard link to an object reuses that hash (same inode, same bytes), so
//! verify reads each stored byte once. The stat cache is refreshed with what was found,
//! so a corruption that kept its mtime (bit rot) is also seen by later checks.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::CacheError;
use crate::fsutil::{file_id, list_dir};
use crate::hash::{ContentHash, Mode};
use crate::store::{OutputState, Store};

/// What a verify found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub objects_checked: usize,
    /// (object path, expected hash (its name), actual hash of its content).
    pub corrupted: Vec<(PathBuf, ContentHash, ContentHash)>,
    /// Fingerprints of records with an output missing from their out dir.
    pub records_with_missing_outputs: Vec<String>,
    /// Fingerprints of records with an output whose content differs from the record.
    pub records_with_modified_outputs: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.corrupted.is_empty()
            && self.records_with_missing_outputs.is_empty()
            && self.records_with_modified_outputs.is_empty()
    }
}

impl Store {
    /// Re-hashes every object (ignoring the stat cache) and every record's outputs;
    /// reports objects whose content no longer matches their name, and records whose
    /// outputs are missing or modified.
    pub fn verify(&self) -> Result<VerifyReport, CacheError> {
        let mut report = VerifyReport::default();

        // Objects: `<shard>/<rest>[.x]` must hash to `<shard><rest>`.
        let mut objects = Vec::new();
        for (shard, shard_path) in list_dir(&self.objects_dir())? {
            for (name, path) in list_dir(&shard_path)? {
                if name.starts_with('.') {
                    continue; // an interrupted copy; gc removes it
                }
                let expected = ContentHash(format!("{shard}{}", name.trim_end_matches(".x")));
                if expected.is_valid() {
                    objects.push((path, expected));
                }
            }
        }
        let hasher = self.hasher(Mode::Refresh(None));
        let hashed: Vec<(PathBuf, ContentHash, ContentHash, (u64, u64))> = objects
            .into_par_iter()
            .map(|(path, expected)| {
                let meta =
                    fs::metadata(&path).map_err(|e| CacheError::io_or_missing("stat", &path, e))?;
                let actual = hasher.file(&path, &meta)?;
                Ok((path, expected, actual, file_id(&meta)))
            })
            .collect::<Result<_, CacheError>>()?;
        report.objects_checked = hashed.len();
        let mut known: HashMap<(u64, u64), ContentHash> = HashMap::new();
        for (path, expected, actual, id) in hashed {
            if id != (0, 0) {
                known.insert(id, actual.clone());
            }
            if actual != expected {
                report.corrupted.push((path, expected, actual));
            }
        }

        // Records: re-hash their outputs, reusing object hashes for hard links.
        let hasher = self.hasher(Mode::Refresh(Some(&known)));
        for record in self.records()? {
            let dir = self.output_dir(&record.fingerprint);
            let mut state = OutputState::Intact;
            for (name, out) in &record.outputs {
                let path = dir.join(&out.path);
                let actual = match hasher.tree(&path, false) {
                    Ok(tree) => tree.hash,
                    Err(CacheError::NotFound { .. }) => {
                        state = OutputState::Missing {
                            output: name.clone(),
                            path,
                        };
                        break;
                    }
                    Err(e) => return Err(e),
                };
                if actual != out.hash {
                    state = OutputState::Modified {
                        output: name.clone(),
                        path,
                        old: out.hash.clone(),
                        new: actual,
                    };
                    // Keep going: a later output may be missing, which matters more.
                }
            }
            match state {
                OutputState::Intact => {}
                OutputState::Missing { .. } => {
                    report.records_with_missing_outputs.push(record.fingerprint);
                }
                OutputState::Modified { .. } => {
                    report
                        .records_with_modified_outputs
                        .push(record.fingerprint);
                }
            }
        }
        Ok(report)
    }
}
