//! [`Store`]: the `.slayer/` directory of a workspace and the read-side operations on it
//! (hashing, records, locks, temp and scratch dirs, output checks). Publishing, gc and
//! verify live in their own modules as further `impl Store` blocks.
//!
//! ```text
//! .slayer/
//!   cache/objects/ab/cdef…      content-addressed files (read-only; `.x` suffix = executable)
//!   cache/stat-<host>.json      stat cache of one host (see stat_cache)
//!   runs/<fp>.json              run records — the commit point of a publish
//!   out/<fp>/…                  published outputs, hard links to objects
//!   tmp/<fp>-<pid>-<n>/         private dirs of one attempt (staging, job files)
//!   scratch/<fp>/               survives failed attempts (checkpoints); gone on publish
//!   logs/<fp>.log               stage logs
//!   locks/store.lock            shared by publish, exclusive for gc
//!   locks/stage/<fp>.lock       one running attempt per fingerprint
//!   locks/publish/<fp>.lock     serialises publishes of one fingerprint (internal)
//!   locks/lease/<host>-<pid>-<n>.lease  fingerprints a live run uses; gc keeps them
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::error::CacheError;
use crate::fsutil::{create_dir_all, list_dir, unique_suffix};
use crate::hash::{ContentHash, Mode, TreeHasher, set_hash};
use crate::lock::{LockHolder, StageLock};
use crate::record::{RunRecord, read_record};
use crate::stat_cache::StatCache;

/// Whether a record's outputs are still on disk as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputState {
    Intact,
    Missing {
        output: String,
        path: PathBuf,
    },
    Modified {
        output: String,
        path: PathBuf,
        old: ContentHash,
        new: ContentHash,
    },
}

/// The `.slayer/` store of one workspace. Cheap to share between threads (`&Store` is
/// `Sync`); the stat cache is saved on drop, best effort.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) stat: StatCache,
    pub(crate) files_hashed: AtomicU64,
}

/// Checks that a fingerprint is usable as a file name.
pub(crate) fn check_fingerprint(fingerprint: &str) -> Result<(), CacheError> {
    let ok = !fingerprint.is_empty()
        && fingerprint.len() <= 200
        && !fingerprint.starts_with('.')
        && fingerprint
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CacheError::InvalidFingerprint {
            fingerprint: fingerprint.to_string(),
        })
    }
}

/// Splits a temp dir name `<fp>-<pid>-<n>` into its fingerprint and pid.
pub(crate) fn parse_tmp_name(name: &str) -> Option<(&str, u32)> {
    let mut parts = name.rsplitn(3, '-');
    let _counter: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let fingerprint = parts.next()?;
    Some((fingerprint, pid))
}

impl Store {
    /// Opens (creating if needed) the store at `<workspace>/.slayer`.
    pub fn open(workspace: &Path) -> Result<Store, CacheError> {
        let root = std::path::absolute(workspace.join(".slayer"))
            .map_err(|e| CacheError::io("resolve", workspace, e))?;
        for dir in [
            "cache/objects",
            "runs",
            "out",
            "tmp",
            "scratch",
            "logs",
            "locks/stage",
            "locks/publish",
        ] {
            create_dir_all(&root.join(dir))?;
        }
        let ignore = root.join(".gitignore");
        if !ignore.exists() {
            fs::write(
                &ignore,
                "# Created by slayer: the store is not meant for version control.\n*\n",
            )
            .map_err(|e| CacheError::io("write", &ignore, e))?;
        }
        // One stat cache per host: inode numbers and the clocks that the racy-entry rule
        // compares differ between the machines sharing a store (NFS, Lustre).
        let stat = StatCache::open(
            root.join("cache")
                .join(format!("stat-{}.json", crate::record::host_tag())),
            root.join("locks").join("stat.lock"),
        );
        Ok(Store {
            root,
            stat,
            files_hashed: AtomicU64::new(0),
        })
    }

    /// The store directory (`<workspace>/.slayer`, absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many files this `Store` has read to hash them (stat-cache hits read nothing).
    /// For tests and `--timings`.
    pub fn files_hashed(&self) -> u64 {
        self.files_hashed.load(Ordering::Relaxed)
    }

    /// Stops trusting the stat cache for this `Store`: every input file and every output
    /// a cached result offers is read and hashed again (`run --verify-inputs`). The stat
    /// cache trusts a file whose size, mtime and inode are unchanged; bit rot, or an edit
    /// that restores the mtime, goes unseen until this or `verify`.
    pub fn distrust_stat_cache(&self) {
        self.stat.distrust();
    }

    /// False after [`Store::distrust_stat_cache`].
    pub fn trusts_stat_cache(&self) -> bool {
        self.stat.is_trusted()
    }

    /// Number of entries in the in-memory stat cache.
    pub fn stat_cache_len(&self) -> usize {
        self.stat.len()
    }

    pub(crate) fn hasher<'a>(&'a self, mode: Mode<'a>) -> TreeHasher<'a> {
        TreeHasher {
            stat: &self.stat,
            files_read: &self.files_hashed,
            mode,
        }
    }

    pub(crate) fn objects_dir(&self) -> PathBuf {
        self.root.join("cache").join("objects")
    }
    pub(crate) fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub(crate) fn out_root(&self) -> PathBuf {
        self.root.join("out")
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(crate) fn scratch_root(&self) -> PathBuf {
        self.root.join("scratch")
    }
    pub(crate) fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub(crate) fn record_path(&self, fingerprint: &str) -> PathBuf {
        self.runs_dir().join(format!("{fingerprint}.json"))
    }
    pub(crate) fn store_lock_path(&self) -> PathBuf {
        self.root.join("locks").join("store.lock")
    }
    pub(crate) fn stage_lock_path(&self, fingerprint: &str) -> PathBuf {
        self.root
            .join("locks")
            .join("stage")
            .join(format!("{fingerprint}.lock"))
    }
    pub(crate) fn publish_lock_path(&self, fingerprint: &str) -> PathBuf {
        self.root
            .join("locks")
            .join("publish")
            .join(format!("{fingerprint}.lock"))
    }
    /// Where the object with this content (and executable bit) lives.
    pub(crate) fn object_path(&self, hash: &ContentHash, executable: bool) -> PathBuf {
        let hex = hash.as_str();
        let (shard, rest) = hex.split_at(2.min(hex.len()));
        let name = if executable {
            format!("{rest}.x")
        } else {
            rest.to_string()
        };
        self.objects_dir().join(shard).join(name)
    }

    /// Content hash of a file, or of a directory (see [`crate::hash`] for the format).
    /// Unchanged files (same path, size, mtime, inode as when last hashed) are not read;
    /// large files are hashed on all cores; a directory's files are hashed in parallel.
    /// Symlinks are followed.
    pub fn hash_path(&self, path: &Path) -> Result<ContentHash, CacheError> {
        let abs = std::path::absolute(path).map_err(|e| CacheError::io("resolve", path, e))?;
        Ok(self.hasher(Mode::Cached).tree(&abs, false)?.hash)
    }

    /// Hash of a list of (label, path) pairs, e.g. a glob's matches: the hash of the
    /// sorted `label\thash` lines.
    pub fn hash_set(&self, items: &[(String, PathBuf)]) -> Result<ContentHash, CacheError> {
        let hashed: Vec<(String, ContentHash)> = items
            .par_iter()
            .map(|(label, path)| Ok((label.clone(), self.hash_path(path)?)))
            .collect::<Result<_, CacheError>>()?;
        Ok(set_hash(&hashed))
    }

    /// Persists the stat cache, merged with whatever another process saved meanwhile.
    /// Call at the end of a command; `Drop` also tries.
    pub fn save_stat_cache(&self) -> Result<(), CacheError> {
        self.stat.save(false)
    }

    /// The run record for a fingerprint, if one was committed;
    /// [`CacheError::CorruptRecord`] (naming the file and the damage) if its file is
    /// unusable.
    pub fn record(&self, fingerprint: &str) -> Result<Option<RunRecord>, CacheError> {
        check_fingerprint(fingerprint)?;
        read_record(&self.record_path(fingerprint), fingerprint)
    }

    /// Every committed record that can be read, sorted by fingerprint; corrupt ones are
    /// skipped (one damaged file must not hide all the others; `verify` names them).
    pub fn records(&self) -> Result<Vec<RunRecord>, CacheError> {
        Ok(self.scan_records()?.0)
    }

    /// Every committed record, and the errors of those that are corrupt
    /// ([`CacheError::CorruptRecord`]).
    pub(crate) fn scan_records(&self) -> Result<(Vec<RunRecord>, Vec<CacheError>), CacheError> {
        let mut records = Vec::new();
        let mut corrupt = Vec::new();
        for fingerprint in self.recorded_fingerprints()? {
            match self.record(&fingerprint) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {} // removed meanwhile
                Err(e @ CacheError::CorruptRecord { .. }) => corrupt.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok((records, corrupt))
    }

    /// Fingerprints that have a committed record.
    pub(crate) fn recorded_fingerprints(&self) -> Result<Vec<String>, CacheError> {
        Ok(list_dir(&self.runs_dir())?
            .into_iter()
            .filter_map(|(name, _)| name.strip_suffix(".json").map(str::to_string))
            .filter(|fp| check_fingerprint(fp).is_ok())
            .collect())
    }

    /// Exclusive lock for one fingerprint, blocking until free. Returns the guard and
    /// whether it had to wait for another holder.
    pub fn lock_stage(&self, fingerprint: &str) -> Result<(StageLock, bool), CacheError> {
        self.lock_stage_reporting(fingerprint, &mut |_| {})
    }

    /// [`Store::lock_stage`], telling `on_wait` who holds the lock (pid, host, since
    /// when) before it starts waiting; `None` when the lock file does not say.
    pub fn lock_stage_reporting(
        &self,
        fingerprint: &str,
        on_wait: &mut dyn FnMut(Option<LockHolder>),
    ) -> Result<(StageLock, bool), CacheError> {
        check_fingerprint(fingerprint)?;
        StageLock::acquire(&self.stage_lock_path(fingerprint), on_wait)
    }

    /// Like [`Store::lock_stage`] but never waits: `None` if someone holds it.
    pub fn try_lock_stage(&self, fingerprint: &str) -> Result<Option<StageLock>, CacheError> {
        check_fingerprint(fingerprint)?;
        StageLock::try_acquire(&self.stage_lock_path(fingerprint))
    }

    /// A fresh, empty, private temp dir for one attempt at a stage:
    /// `.slayer/tmp/<fingerprint>-<pid>-<counter>/`. Call it holding the fingerprint's
    /// stage lock: then every other temp dir of that fingerprint is a leftover of an
    /// earlier attempt (of any process, on any host sharing the store), removed first.
    pub fn staging_dir(&self, fingerprint: &str) -> Result<PathBuf, CacheError> {
        check_fingerprint(fingerprint)?;
        let tmp = self.tmp_dir();
        for (name, path) in list_dir(&tmp)? {
            if let Some((fp, pid)) = parse_tmp_name(&name)
                && fp == fingerprint
                && pid != std::process::id()
            {
                // Best effort: gc removes whatever survives.
                let _ = fs::remove_dir_all(&path);
            }
        }
        create_dir_all(&tmp)?;
        let dir = tmp.join(format!("{fingerprint}-{}", unique_suffix()));
        fs::create_dir(&dir).map_err(|e| CacheError::io("create directory", &dir, e))?;
        Ok(dir)
    }

    /// A persistent scratch dir for a fingerprint that survives failed attempts (for
    /// checkpoints): `.slayer/scratch/<fingerprint>/`. Removed by a successful publish.
    pub fn scratch_dir(&self, fingerprint: &str) -> Result<PathBuf, CacheError> {
        check_fingerprint(fingerprint)?;
        let dir = self.scratch_root().join(fingerprint);
        create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Where a fingerprint's outputs live once published.
    pub fn output_dir(&self, fingerprint: &str) -> PathBuf {
        self.out_root().join(fingerprint)
    }

    /// Absolute path of one named output of a record.
    pub fn output_path(&self, record: &RunRecord, output: &str) -> Option<PathBuf> {
        let out = record.outputs.get(output)?;
        Some(self.output_dir(&record.fingerprint).join(&out.path))
    }

    /// Path for a stage's log file: `.slayer/logs/<fingerprint>.log`.
    pub fn log_path(&self, fingerprint: &str) -> PathBuf {
        self.logs_dir().join(format!("{fingerprint}.log"))
    }

    /// Are a record's outputs still on disk and unmodified? Reports the first output (in
    /// name order) that is missing or differs. Unchanged files are checked by stat only.
    pub fn check_outputs(&self, record: &RunRecord) -> Result<OutputState, CacheError> {
        check_fingerprint(&record.fingerprint)?;
        let dir = self.output_dir(&record.fingerprint);
        for (name, out) in &record.outputs {
            let path = dir.join(&out.path);
            match fs::metadata(&path) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(OutputState::Missing {
                        output: name.clone(),
                        path,
                    });
                }
                Err(e) => return Err(CacheError::io("stat", &path, e)),
            }
            let new = match self.hash_path(&path) {
                Ok(h) => h,
                // Deleted (part of it) between the stat and the read.
                Err(CacheError::NotFound { .. }) => {
                    return Ok(OutputState::Missing {
                        output: name.clone(),
                        path,
                    });
                }
                Err(e) => return Err(e),
            };
            if new != out.hash {
                return Ok(OutputState::Modified {
                    output: name.clone(),
                    path,
                    old: out.hash.clone(),
                    new,
                });
            }
        }
        Ok(OutputState::Intact)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Best effort: losing the stat cache only costs re-hashing next time.
        let _ = self.stat.save(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_parse_with_dashes_in_fingerprint() {
        assert_eq!(parse_tmp_name("ab-cd-123-7"), Some(("ab-cd", 123)));
        assert_eq!(parse_tmp_name("abc-123"), None);
        assert_eq!(parse_tmp_name("abc-x-1"), None);
    }

    #[test]
    fn fingerprints_must_be_plain_names() {
        assert!(check_fingerprint("a1b2c3").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b"] {
            assert!(check_fingerprint(bad).is_err(), "{bad:?}");
        }
    }
}
