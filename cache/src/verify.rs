//! [`Store::verify`]: re-reads every object and every published output, ignoring the
//! stat cache, and reports what no longer matches. Objects are hashed once; an output
//! file that is a hard link to an object reuses that hash (same inode, same bytes), so
//! verify reads each stored byte once. The stat cache is refreshed with what was found,
//! so a corruption that kept its mtime (bit rot) is also seen by later checks.
//!
//! Found: objects whose content is not their name; run records that cannot be read
//! (truncated, not JSON, another fingerprint's); records whose outputs are missing,
//! modified (edited, or replaced by another file) or *dangling* (intact, but an object
//! they were published as is gone from `cache/objects/`). [`Store::repair`] removes all
//! of these, so the affected stages simply rerun.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::CacheError;
use crate::fsutil::{file_id, list_dir, remove_counting};
use crate::hash::{ContentHash, Mode};
use crate::lock::{FileLock, LockKind};
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
    /// (record file, what is wrong with it) for records that cannot be read.
    pub corrupt_records: Vec<(PathBuf, String)>,
    /// (fingerprint, output file) for intact outputs whose object has been deleted.
    pub dangling_outputs: Vec<(String, PathBuf)>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.corrupted.is_empty()
            && self.records_with_missing_outputs.is_empty()
            && self.records_with_modified_outputs.is_empty()
            && self.corrupt_records.is_empty()
            && self.dangling_outputs.is_empty()
    }

    /// Fingerprints whose record is unusable as a result (missing, modified or dangling
    /// outputs), each once.
    fn damaged_results(&self) -> BTreeSet<&str> {
        self.records_with_missing_outputs
            .iter()
            .chain(&self.records_with_modified_outputs)
            .chain(self.dangling_outputs.iter().map(|(fp, _)| fp))
            .map(String::as_str)
            .collect()
    }
}

/// What a [`Store::repair`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Corrupt record files deleted.
    pub corrupt_records_removed: usize,
    /// Results (record and out dir) with missing, modified or dangling outputs removed.
    pub results_removed: usize,
    /// Objects whose content did not match their name, deleted.
    pub objects_removed: usize,
    /// Damaged results left alone because a run is using them right now.
    pub skipped_in_use: Vec<String>,
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
        let (records, corrupt) = self.scan_records()?;
        for e in corrupt {
            if let CacheError::CorruptRecord { path, problem } = e {
                report.corrupt_records.push((path, problem));
            }
        }
        for record in records {
            let dir = self.output_dir(&record.fingerprint);
            let mut state = OutputState::Intact;
            for (name, out) in &record.outputs {
                let path = dir.join(&out.path);
                let tree = match hasher.tree(&path, false) {
                    Ok(tree) => tree,
                    Err(CacheError::NotFound { .. }) => {
                        state = OutputState::Missing {
                            output: name.clone(),
                            path,
                        };
                        break;
                    }
                    Err(e) => return Err(e),
                };
                if tree.hash != out.hash {
                    state = OutputState::Modified {
                        output: name.clone(),
                        path,
                        old: out.hash.clone(),
                        new: tree.hash,
                    };
                    // Keep going: a later output may be missing, which matters more.
                    continue;
                }
                let dangling = tree
                    .files
                    .iter()
                    .find(|(node, hash)| !self.object_path(hash, node.executable).is_file());
                if let Some((node, _)) = dangling {
                    report
                        .dangling_outputs
                        .push((record.fingerprint.clone(), node.path.clone()));
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

    /// Removes what `report` (from [`Store::verify`]) found damaged: corrupt record
    /// files, the records and out dirs of results with missing, modified or dangling
    /// outputs, and corrupted objects. Results a live run is using (stage lock held, or
    /// leased) are left alone and listed. Takes the store lock exclusively, like gc.
    pub fn repair(&self, report: &VerifyReport) -> Result<RepairReport, CacheError> {
        let (_store_lock, _) = FileLock::acquire(&self.store_lock_path(), LockKind::Exclusive)?;
        let leased = self.leased_fingerprints()?;
        let mut repaired = RepairReport::default();
        for (path, _) in &report.corrupt_records {
            remove_counting(path)?;
            repaired.corrupt_records_removed += 1;
        }
        for fp in report.damaged_results() {
            match self.try_lock_stage(fp)? {
                Some(lock) if !leased.contains(fp) => {
                    self.remove_result(fp)?;
                    lock.unlink()?;
                    repaired.results_removed += 1;
                }
                _ => repaired.skipped_in_use.push(fp.to_string()),
            }
        }
        for (path, _, _) in &report.corrupted {
            remove_counting(path)?;
            repaired.objects_removed += 1;
        }
        Ok(repaired)
    }
}
