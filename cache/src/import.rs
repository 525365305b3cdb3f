//! Moving results between a store and a remote cache, the store's side of it: the
//! [`OutputListing`] of every file of a published output (what a push uploads and a pull
//! must rebuild), [`Store::install_remote`] (a downloaded result, committed through the
//! same protocol as a publish) and metrics-only records (`runs-remote/<fp>.json`).
//!
//! A record alone does not say how to rebuild its outputs: a directory output's hash is
//! that of its manifest (see [`crate::hash`]), and a single-file output's executable
//! bit is in no hash. A listing carries exactly what the manifest holds, so
//! [`verify_listings`] can recompute every output's hash from it and refuse a listing
//! that does not match its record before anything is downloaded.
//!
//! Metrics-only records ("builds without the bytes") live apart from the real ones, in
//! `.slayer/runs-remote/<fp>.json`: `runs/` stays the commit point of results whose
//! outputs are on disk, so nothing that looks for a cached result (run, status, gc,
//! verify) ever takes one for a result; [`Store::record_only`] and
//! [`Store::records_only`] read them for reports. Installing the full result of a
//! fingerprint removes its metrics-only record.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::fsutil::{create_dir_all, list_dir};
use crate::hash::{ContentHash, FileNode, Mode, Tree, dir_hash};
use crate::publish::{clean_rel, settle_mtimes};
use crate::record::{RunRecord, read_record, write_record};
use crate::stat_cache::now_ns;
use crate::store::{Store, check_fingerprint};

/// One file of an output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFile {
    /// Relative to the output with `/` separators; empty when the output is this file.
    pub path: String,
    /// blake3 of its bytes.
    pub hash: ContentHash,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// Every file (and directory) of one published output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputListing {
    /// Whether the output is a directory (a directory holding one file is not a file).
    pub dir: bool,
    /// Directories below the output (relative paths), so that empty ones are rebuilt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    pub files: Vec<ListedFile>,
}

/// Checks that `listings` describe exactly the outputs of `record`: one listing per
/// output, plain relative paths, valid hashes, and per output the hash, byte and file
/// counts the record has. A listing that passes rebuilds outputs that hash as recorded
/// (given files whose blake3 was checked). [`CacheError::InvalidListing`] otherwise.
pub fn verify_listings(
    record: &RunRecord,
    listings: &BTreeMap<String, OutputListing>,
) -> Result<(), CacheError> {
    check_fingerprint(&record.fingerprint)?;
    let fail = |output: &str, problem: String| CacheError::InvalidListing {
        fingerprint: record.fingerprint.clone(),
        output: output.to_string(),
        problem,
    };
    if let Some(extra) = listings.keys().find(|k| !record.outputs.contains_key(*k)) {
        return Err(fail(extra, "the record has no such output".into()));
    }
    for (name, out) in &record.outputs {
        let listing = listings
            .get(name)
            .ok_or_else(|| fail(name, "no listing of its files".into()))?;
        if clean_rel(name, &out.path)? != out.path {
            return Err(fail(name, format!("path `{}` is not normalised", out.path)));
        }
        for file in &listing.files {
            if !file.hash.is_valid() {
                return Err(fail(
                    name,
                    format!("file `{}` has hash `{}`", file.path, file.hash),
                ));
            }
        }
        let hash = if listing.dir {
            let mut seen = BTreeSet::new();
            for rel in listing
                .dirs
                .iter()
                .chain(listing.files.iter().map(|f| &f.path))
            {
                if clean_rel(name, rel).ok().as_deref() != Some(rel.as_str()) {
                    return Err(fail(
                        name,
                        format!("entry `{rel}` is not a plain relative path"),
                    ));
                }
                if !seen.insert(rel.as_str()) {
                    return Err(fail(name, format!("entry `{rel}` is listed twice")));
                }
            }
            dir_hash(
                &listing.dirs,
                listing
                    .files
                    .iter()
                    .map(|f| (f.path.as_str(), f.executable, &f.hash)),
            )
        } else {
            match listing.files.as_slice() {
                [file] if file.path.is_empty() && listing.dirs.is_empty() => file.hash.clone(),
                _ => {
                    return Err(fail(
                        name,
                        "a file output must list one file, with an empty path".into(),
                    ));
                }
            }
        };
        if hash != out.hash {
            return Err(fail(
                name,
                format!("its files hash to {hash}, the record says {}", out.hash),
            ));
        }
        let bytes: u64 = listing.files.iter().map(|f| f.bytes).sum();
        if bytes != out.bytes || listing.files.len() as u64 != out.files {
            return Err(fail(
                name,
                format!(
                    "{} files of {bytes} bytes listed, the record says {} files of {} bytes",
                    listing.files.len(),
                    out.files,
                    out.bytes
                ),
            ));
        }
    }
    Ok(())
}

/// Where a pull puts the downloaded bytes of `file` inside its staging dir (one file per
/// distinct content and executable bit): `<hash>` or `<hash>.x`.
pub fn download_path(staging: &Path, file: &ListedFile) -> PathBuf {
    let name = if file.executable {
        format!("{}.x", file.hash)
    } else {
        file.hash.to_string()
    };
    staging.join(name)
}

impl Store {
    /// The files of every output of a committed record, as they are on disk now (stat
    /// cached, so an unchanged result reads nothing). [`CacheError::OutputChanged`] if an
    /// output no longer hashes as recorded, [`CacheError::NotFound`] if it is gone.
    pub fn listings(
        &self,
        record: &RunRecord,
    ) -> Result<BTreeMap<String, OutputListing>, CacheError> {
        check_fingerprint(&record.fingerprint)?;
        let dir = self.output_dir(&record.fingerprint);
        let mut listings = BTreeMap::new();
        for (name, out) in &record.outputs {
            let path = dir.join(&out.path);
            let tree = self.hasher(Mode::Cached).tree(&path, false)?;
            if tree.hash != out.hash {
                return Err(CacheError::OutputChanged {
                    output: name.clone(),
                    path,
                    recorded: out.hash.clone(),
                    found: tree.hash,
                });
            }
            let mut files: Vec<ListedFile> = tree
                .files
                .iter()
                .map(|(node, hash)| ListedFile {
                    path: node.rel.clone(),
                    hash: hash.clone(),
                    bytes: node.meta.len(),
                    executable: node.executable,
                })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let mut dirs = tree.dirs;
            dirs.sort();
            listings.insert(
                name.clone(),
                OutputListing {
                    dir: tree.is_dir,
                    dirs,
                    files,
                },
            );
        }
        Ok(listings)
    }

    /// Absolute path of a listed file of a committed record's output.
    pub fn listed_file_path(
        &self,
        record: &RunRecord,
        output: &str,
        file: &ListedFile,
    ) -> Option<PathBuf> {
        let root = self.output_path(record, output)?;
        Some(if file.path.is_empty() {
            root
        } else {
            root.join(&file.path)
        })
    }

    /// Whether the store already holds the object for `file` (content and executable
    /// bit), checked through the stat cache: a pull need not download it.
    pub fn has_object(&self, file: &ListedFile) -> bool {
        if !file.hash.is_valid() {
            return false;
        }
        let object = self.object_path(&file.hash, file.executable);
        fs::metadata(&object).is_ok_and(|meta| {
            meta.is_file()
                && meta.len() == file.bytes
                && self
                    .hasher(Mode::Cached)
                    .file(&object, &meta)
                    .is_ok_and(|h| h == file.hash)
        })
    }

    /// A private directory for one pull of `fingerprint` (a staging dir: gc removes it
    /// once the pulling process is gone).
    pub fn download_dir(&self, fingerprint: &str) -> Result<PathBuf, CacheError> {
        self.staging_dir(fingerprint)
    }

    /// Commits a result downloaded from a remote cache as if it had been published here:
    /// every listed file must be in `staging` at its [`download_path`] with its listed
    /// size, **its blake3 already checked by the caller** while downloading. The files
    /// become objects, `out/<fp>/` is built of links to them and the record is written
    /// last, under the same locks as [`Store::publish`]; `staging` is removed. Returns
    /// the committed record (equal to `record`).
    pub fn install_remote(
        &self,
        staging: &Path,
        record: RunRecord,
        listings: &BTreeMap<String, OutputListing>,
    ) -> Result<RunRecord, CacheError> {
        verify_listings(&record, listings)?;
        settle_mtimes(staging);
        let hashed_at = now_ns();
        let mut trees = Vec::with_capacity(record.outputs.len());
        for (name, out) in &record.outputs {
            let listing = listings
                .get(name)
                .ok_or_else(|| CacheError::InvalidListing {
                    fingerprint: record.fingerprint.clone(),
                    output: name.clone(),
                    problem: "no listing of its files".into(),
                })?;
            let mut files = Vec::with_capacity(listing.files.len());
            for file in &listing.files {
                let mut path = download_path(staging, file);
                if !path.exists() && self.has_object(file) {
                    // Not downloaded because the store already holds it.
                    path = self.object_path(&file.hash, file.executable);
                }
                let meta =
                    fs::metadata(&path).map_err(|e| CacheError::io_or_missing("stat", &path, e))?;
                if meta.len() != file.bytes {
                    return Err(CacheError::InvalidListing {
                        fingerprint: record.fingerprint.clone(),
                        output: name.clone(),
                        problem: format!(
                            "downloaded {} has {} bytes, the listing says {}",
                            path.display(),
                            meta.len(),
                            file.bytes
                        ),
                    });
                }
                let node = FileNode {
                    rel: file.path.clone(),
                    path,
                    meta,
                    executable: file.executable,
                    via_symlink: false,
                };
                files.push((node, file.hash.clone()));
            }
            let tree = Tree {
                hash: out.hash.clone(),
                is_dir: listing.dir,
                dirs: listing.dirs.clone(),
                files,
                bytes: out.bytes,
            };
            trees.push((name.clone(), out.path.clone(), tree));
        }
        let committed = self.commit(staging, record, &trees, hashed_at)?;
        let only = self.record_only_path(&committed.fingerprint);
        match fs::remove_file(&only) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("remove", &only, e)),
        }
        Ok(committed)
    }

    fn records_only_dir(&self) -> PathBuf {
        self.root.join("runs-remote")
    }

    fn record_only_path(&self, fingerprint: &str) -> PathBuf {
        self.records_only_dir().join(format!("{fingerprint}.json"))
    }

    /// Stores a metrics-only record (a remote result whose outputs were not downloaded)
    /// in `runs-remote/<fp>.json`. It never counts as a cached result.
    pub fn install_record_only(&self, record: &RunRecord) -> Result<(), CacheError> {
        check_fingerprint(&record.fingerprint)?;
        create_dir_all(&self.records_only_dir())?;
        write_record(&self.record_only_path(&record.fingerprint), record)
    }

    /// The metrics-only record of a fingerprint, if one was pulled.
    pub fn record_only(&self, fingerprint: &str) -> Result<Option<RunRecord>, CacheError> {
        check_fingerprint(fingerprint)?;
        read_record(&self.record_only_path(fingerprint), fingerprint)
    }

    /// Every readable metrics-only record, sorted by fingerprint.
    pub fn records_only(&self) -> Result<Vec<RunRecord>, CacheError> {
        let mut records = Vec::new();
        for (name, _) in list_dir(&self.records_only_dir())? {
            if let Some(fp) = name.strip_suffix(".json")
                && check_fingerprint(fp).is_ok()
                && let Ok(Some(record)) = self.record_only(fp)
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// The record of a fingerprint for reading its metrics: the local result's, else a
    /// metrics-only one. The flag says whether it is metrics-only (outputs not here).
    pub fn record_for_metrics(
        &self,
        fingerprint: &str,
    ) -> Result<Option<(RunRecord, bool)>, CacheError> {
        if let Some(record) = self.record(fingerprint)? {
            return Ok(Some((record, false)));
        }
        Ok(self.record_only(fingerprint)?.map(|r| (r, true)))
    }
}
