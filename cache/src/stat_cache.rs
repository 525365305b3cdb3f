//! The stat cache: remembers, per absolute path, the (size, mtime, inode) a file had when
//! it was hashed, so an unchanged file is never read again. Persisted as
//! `.slayer/cache/stat-<host>.json` (a JSON list; ~1000 entries load in about a
//! millisecond): one per host, since inode numbers and clocks are not comparable across
//! the machines that share a store on NFS or Lustre.
//!
//! Racy entries: a file rewritten within the file system's timestamp granularity after
//! it was hashed keeps its mtime. So an entry is trusted only once its mtime is older
//! than the moment hashing began by more than that granularity (100 ms; 2 s for files
//! whose mtime is a whole second, as on coarse file systems); otherwise the file is
//! re-read and the entry refreshed — the same rule git applies to its index.
//!
//! Saving merges with what another process may have saved meanwhile (newest hash per
//! path wins), under `.slayer/locks/stat.lock`, and writes temp + rename.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::fsutil::{atomic_write, file_id};
use crate::hash::ContentHash;
use crate::lock::{FileLock, LockKind};

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn now_ns() -> i64 {
    system_time_ns(SystemTime::now())
}

fn system_time_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// What must be unchanged for a cached hash to stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatKey {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
}

impl StatKey {
    /// `None` where the platform reports no mtime: such files are always re-read.
    pub fn of(meta: &Metadata) -> Option<StatKey> {
        let mtime = meta.modified().ok()?;
        Some(StatKey {
            size: meta.len(),
            mtime_ns: system_time_ns(mtime),
            inode: file_id(meta).1,
        })
    }
}

/// Whether an entry hashed at `hashed_at_ns` can be trusted for a file with this mtime.
fn trusted(mtime_ns: i64, hashed_at_ns: i64) -> bool {
    let window = if mtime_ns % 1_000_000_000 == 0 {
        2_000_000_000
    } else {
        100_000_000
    };
    mtime_ns.saturating_add(window) <= hashed_at_ns
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DiskEntry {
    path: PathBuf,
    size: u64,
    mtime_ns: i64,
    inode: u64,
    hash: ContentHash,
    hashed_at_ns: i64,
}

#[derive(Serialize, Deserialize)]
struct DiskFile {
    version: u32,
    entries: Vec<DiskEntry>,
}

const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug)]
struct Entry {
    key: StatKey,
    hash: ContentHash,
    hashed_at_ns: i64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<PathBuf, Entry>,
    dirty: bool,
}

/// In-memory stat cache, shared by all threads of a [`Store`](crate::Store).
pub(crate) struct StatCache {
    file: PathBuf,
    lock_file: PathBuf,
    inner: Mutex<Inner>,
    /// False after [`StatCache::distrust`]: every lookup misses, so every file is read.
    trusted: AtomicBool,
}

/// Reads the on-disk cache; a missing or unreadable one is empty (it is only a cache).
fn load(file: &Path) -> HashMap<PathBuf, Entry> {
    let Ok(bytes) = fs::read(file) else {
        return HashMap::new();
    };
    let Ok(disk) = serde_json::from_slice::<DiskFile>(&bytes) else {
        return HashMap::new();
    };
    if disk.version != FORMAT_VERSION {
        return HashMap::new();
    }
    disk.entries
        .into_iter()
        .map(|e| {
            let entry = Entry {
                key: StatKey {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    inode: e.inode,
                },
                hash: e.hash,
                hashed_at_ns: e.hashed_at_ns,
            };
            (e.path, entry)
        })
        .collect()
}

impl StatCache {
    pub fn open(file: PathBuf, lock_file: PathBuf) -> StatCache {
        let entries = load(&file);
        StatCache {
            file,
            lock_file,
            inner: Mutex::new(Inner {
                entries,
                dirty: false,
            }),
            trusted: AtomicBool::new(true),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst a stale entry, which the stat
        // check rejects anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on no entry is trusted: every file is read and hashed again (and its
    /// entry refreshed), catching content changed behind an unchanged size and mtime.
    pub fn distrust(&self) {
        self.trusted.store(false, Ordering::Relaxed);
    }

    /// Whether [`StatCache::distrust`] has not been called.
    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Relaxed)
    }

    /// The cached hash, if the file is unchanged and the entry is not racy.
    pub fn lookup(&self, path: &Path, key: &StatKey) -> Option<ContentHash> {
        if !self.is_trusted() {
            return None;
        }
        let inner = self.inner();
        let entry = inner.entries.get(path)?;
        (entry.key == *key && trusted(key.mtime_ns, entry.hashed_at_ns)).then(|| entry.hash.clone())
    }

    /// Records that `path`, with stat `key`, had content `hash` when read from
    /// `hashed_at_ns` on.
    pub fn insert(&self, path: &Path, key: StatKey, hash: ContentHash, hashed_at_ns: i64) {
        let mut inner = self.inner();
        inner.entries.insert(
            path.to_path_buf(),
            Entry {
                key,
                hash,
                hashed_at_ns,
            },
        );
        inner.dirty = true;
    }

    pub fn len(&self) -> usize {
        self.inner().entries.len()
    }

    /// Merges with the on-disk cache and writes it back. With `prune`, entries for paths
    /// that no longer exist are dropped (gc). Does nothing if nothing changed, or if the
    /// store is not writable (a read-only checkout or mount: `status` must still work,
    /// and the cache only saves re-reading).
    pub fn save(&self, prune: bool) -> Result<(), CacheError> {
        match self.write_back(prune) {
            Err(CacheError::Io { source, .. }) if not_writable(&source) => Ok(()),
            other => other,
        }
    }

    fn write_back(&self, prune: bool) -> Result<(), CacheError> {
        let mut inner = self.inner();
        if !inner.dirty && !prune {
            return Ok(());
        }
        let (_lock, _) = FileLock::acquire(&self.lock_file, LockKind::Exclusive)?;
        let mut merged = load(&self.file);
        for (path, ours) in inner.entries.drain() {
            match merged.get(&path) {
                Some(theirs) if theirs.hashed_at_ns > ours.hashed_at_ns => {}
                _ => {
                    merged.insert(path, ours);
                }
            }
        }
        if prune {
            merged.retain(|path, _| fs::metadata(path).is_ok());
        }
        let disk = DiskFile {
            version: FORMAT_VERSION,
            entries: merged
                .iter()
                // JSON needs UTF-8 paths; the rare others are simply re-hashed next time.
                .filter(|(path, _)| path.to_str().is_some())
                .map(|(path, e)| DiskEntry {
                    path: path.clone(),
                    size: e.key.size,
                    mtime_ns: e.key.mtime_ns,
                    inode: e.key.inode,
                    hash: e.hash.clone(),
                    hashed_at_ns: e.hashed_at_ns,
                })
                .collect(),
        };
        inner.entries = merged;
        let bytes = serde_json::to_vec(&disk).map_err(|e| CacheError::Json {
            path: self.file.clone(),
            source: e,
        })?;
        atomic_write(&self.file, &bytes)?;
        inner.dirty = false;
        Ok(())
    }
}

/// Whether an I/O error says the store cannot be written (rather than that it broke).
fn not_writable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permission_and_read_only_errors_mean_not_writable() {
        use std::io::{Error, ErrorKind};
        assert!(not_writable(&Error::from(ErrorKind::PermissionDenied)));
        assert!(not_writable(&Error::from(ErrorKind::ReadOnlyFilesystem)));
        assert!(!not_writable(&Error::from(ErrorKind::StorageFull)));
        assert!(!not_writable(&Error::from(ErrorKind::NotFound)));
    }

    #[test]
    fn racy_entries_are_not_trusted() {
        let mtime = 1_700_000_000_123_456_789;
        assert!(!trusted(mtime, mtime + 50_000_000));
        assert!(trusted(mtime, mtime + 100_000_000));
        // Whole-second mtimes suggest a coarse file system: wait 2 s.
        let coarse = 1_700_000_000_000_000_000;
        assert!(!trusted(coarse, coarse + 1_500_000_000));
        assert!(trusted(coarse, coarse + 2_000_000_000));
    }
}
