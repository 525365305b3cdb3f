//! [`Lease`]: the fingerprints one live run reads or publishes, so that a concurrent gc
//! (of another manifest, with another keep-set) never deletes them under the run.
//!
//! Each run owns one lease file `locks/lease/<host>-<pid>-<n>.lease`, locked by the run for
//! its whole duration and listing one fingerprint per line. A fingerprint is appended
//! under the store lock (shared), *before* the run looks at that fingerprint's record;
//! gc holds the store lock exclusively while it reads the leases and deletes. So either
//! the fingerprint was leased before gc began (gc skips it) or the run looks at the
//! record only after gc has finished (and sees what gc left, possibly nothing, in which
//! case it reruns the stage). A lease file that gc can lock belongs to a run that has
//! ended or died: gc deletes it.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::CacheError;
use crate::fsutil::{create_dir_all, list_dir, unique_suffix};
use crate::lock::{FileLock, LockKind};
use crate::store::{Store, check_fingerprint};

/// A live run's claim on the fingerprints it uses; released (and its file removed) on
/// drop. Obtained from [`Store::lease`].
#[derive(Debug)]
pub struct Lease {
    lock: Mutex<FileLock>,
    store_lock: PathBuf,
}

impl Store {
    pub(crate) fn lease_dir(&self) -> PathBuf {
        self.root.join("locks").join("lease")
    }

    /// Starts a lease for one run. Created on demand, so that opening a store never
    /// writes (read-only stores stay usable for `status`).
    pub fn lease(&self) -> Result<Lease, CacheError> {
        let dir = self.lease_dir();
        create_dir_all(&dir)?;
        // The host keeps two machines' runs with the same pid apart on a shared store.
        let path = dir.join(format!(
            "{}-{}.lease",
            crate::record::host_tag(),
            unique_suffix()
        ));
        let (lock, _) = FileLock::acquire(&path, LockKind::Exclusive)?;
        Ok(Lease {
            lock: Mutex::new(lock),
            store_lock: self.store_lock_path(),
        })
    }

    /// Every fingerprint leased by a live run; lease files of ended runs are removed.
    /// Call with the store lock held exclusively (nobody can add to a lease meanwhile).
    pub(crate) fn leased_fingerprints(&self) -> Result<BTreeSet<String>, CacheError> {
        let mut leased = BTreeSet::new();
        for (name, path) in list_dir(&self.lease_dir())? {
            if !name.ends_with(".lease") {
                continue;
            }
            if let Some(stale) = FileLock::try_acquire(&path, LockKind::Exclusive)? {
                stale.unlink()?;
                continue;
            }
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CacheError::io("read lease", &path, e)),
            };
            leased.extend(text.lines().map(str::to_string));
        }
        Ok(leased)
    }
}

impl Lease {
    /// Claims `fingerprint` for the rest of the run. Waits while a gc is running.
    pub fn add(&self, fingerprint: &str) -> Result<(), CacheError> {
        check_fingerprint(fingerprint)?;
        let (_store_lock, _) = FileLock::acquire(&self.store_lock, LockKind::Shared)?;
        let lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = lock.file();
        file.seek(SeekFrom::End(0))
            .and_then(|_| writeln!(file, "{fingerprint}"))
            .map_err(|e| CacheError::io("write lease", lock.path(), e))
    }

    /// The lease file.
    pub fn path(&self) -> PathBuf {
        let lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        lock.path().to_path_buf()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // Best effort: a leftover file is unlocked once we exit, and gc removes it.
        let _ = lock.unlink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_list_live_runs_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let live = store.lease().expect("lease");
        live.add("fp-a").expect("add");
        live.add("fp-b").expect("add");
        assert!(live.add("../x").is_err());
        let ended = store.lease().expect("lease");
        ended.add("fp-c").expect("add");
        let ended_path = ended.path();
        drop(ended);
        assert!(!ended_path.exists(), "a dropped lease removes its file");

        // A lease file nobody holds (its run died) is ignored and removed.
        let dead = store.lease_dir().join("999-0.lease");
        fs::write(&dead, "fp-d\n").expect("write");
        let leased = store.leased_fingerprints().expect("leases");
        assert_eq!(leased, BTreeSet::from(["fp-a".into(), "fp-b".into()]));
        assert!(!dead.exists());
        assert!(live.path().exists());
    }
}
