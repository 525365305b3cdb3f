//! [`Store::gc`]: deletes everything not reachable from the fingerprints to keep.
//!
//! | what                      | removed when                                           |
//! |---------------------------|--------------------------------------------------------|
//! | `runs/<fp>.json`, `out/<fp>`, `logs/<fp>.log`, `scratch/<fp>` | `fp` not kept and not leased |
//! | `out/<fp>` without record | always (an uncommitted publish)                        |
//! | `out/.tmp-*`, `.trash-*`  | always (publish holds the store lock, gc waits for it) |
//! | `tmp/<fp>-<pid>-<n>`      | no attempt at `fp` is running                          |
//! | objects                   | no out dir links to them any more (link count 1)      |
//! | `locks/lease/*.lease`     | the run holding it has ended or died (file unlocked)   |
//! | stat-cache entries        | their path is gone                                     |
//!
//! Never removed, kept or not:
//! - anything of a fingerprint whose stage lock is held (a run in progress);
//! - anything of a fingerprint *leased* by a live run (see [`crate::Lease`]): every
//!   `slayer run` leases the fingerprints it reads or publishes before it looks at their
//!   records, so a gc of another manifest cannot delete an upstream result while a
//!   downstream stage of that run is still reading it;
//! - anything published after gc started: gc holds the store lock exclusively
//!   throughout, and publishing (and leasing) needs it shared, so they wait for gc.

use std::collections::BTreeSet;
use std::fs;

use serde::Serialize;

use crate::error::CacheError;
use crate::fsutil::{link_count, list_dir, remove_counting};
use crate::lock::{FileLock, LockKind, StageLock};
use crate::store::{Store, check_fingerprint, parse_tmp_name};

/// What a gc removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub records_removed: usize,
    pub objects_removed: usize,
    /// Bytes whose last link was removed (hard links to a kept object free nothing).
    pub bytes_freed: u64,
}

impl Store {
    /// Deletes records, out dirs, objects, scratch, logs and temp dirs not reachable from
    /// the `keep` fingerprints or leased by a live run; reports counts and freed bytes.
    /// Takes the store lock.
    pub fn gc(&self, keep: &BTreeSet<String>) -> Result<GcReport, CacheError> {
        let (_store_lock, _) = FileLock::acquire(&self.store_lock_path(), LockKind::Exclusive)?;
        let mut report = GcReport::default();
        let mut keep = keep.clone();
        keep.extend(self.leased_fingerprints()?);

        // Records not kept, with their out dir, scratch dir and log.
        let recorded: BTreeSet<String> = self.recorded_fingerprints()?.into_iter().collect();
        for fp in recorded.iter().filter(|fp| !keep.contains(*fp)) {
            let Some(lock) = self.try_lock_stage(fp)? else {
                continue; // running right now
            };
            report.bytes_freed += self.remove_result(fp)?;
            report.records_removed += 1;
            lock.unlink()?;
        }

        // Out dirs without a record, and publish leftovers.
        for (name, path) in list_dir(&self.out_root())? {
            let leftover = name.starts_with('.');
            if leftover || (!recorded.contains(&name) && self.idle(&name)?.is_some()) {
                report.bytes_freed += remove_counting(&path)?;
            }
        }

        // Scratch dirs and logs of fingerprints not kept.
        for (name, path) in list_dir(&self.scratch_root())? {
            if !keep.contains(&name) && self.idle(&name)?.is_some() {
                report.bytes_freed += remove_counting(&path)?;
            }
        }
        for (name, path) in list_dir(&self.logs_dir())? {
            let fp = name.strip_suffix(".log").unwrap_or(&name);
            if !keep.contains(fp) && self.idle(fp)?.is_some() {
                report.bytes_freed += remove_counting(&path)?;
            }
        }

        // Temp dirs of attempts that are not running.
        for (name, path) in list_dir(&self.tmp_dir())? {
            let running = match parse_tmp_name(&name) {
                Some((fp, _)) => self.idle(fp)?.is_none(),
                None => false,
            };
            if !running {
                report.bytes_freed += remove_counting(&path)?;
            }
        }

        // Objects no out dir links to any more.
        for (_, shard) in list_dir(&self.objects_dir())? {
            for (name, path) in list_dir(&shard)? {
                let meta = match fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                if name.starts_with('.') || !meta.is_file() {
                    report.bytes_freed += remove_counting(&path)?;
                } else if link_count(&meta) <= 1 {
                    report.bytes_freed += remove_counting(&path)?;
                    report.objects_removed += 1;
                }
            }
            // Only succeeds when the shard is now empty.
            let _ = fs::remove_dir(&shard);
        }

        // Lock files of fingerprints that no longer have anything.
        let stage_locks = self.root.join("locks").join("stage");
        for (name, _) in list_dir(&stage_locks)? {
            let Some(fp) = name.strip_suffix(".lock") else {
                continue;
            };
            if !keep.contains(fp)
                && let Some(lock) = self.idle(fp)?
            {
                lock.unlink()?;
            }
        }
        for (_, path) in list_dir(&self.root.join("locks").join("publish"))? {
            // No publish runs while gc holds the store lock.
            if let Some(lock) = FileLock::try_acquire(&path, LockKind::Exclusive)? {
                lock.unlink()?;
            }
        }

        self.stat.save(true)?;
        Ok(report)
    }

    /// Removes a fingerprint's record (first: it is the commit point), out dir, scratch
    /// dir and log; returns the bytes freed. The caller holds its stage lock.
    pub(crate) fn remove_result(&self, fp: &str) -> Result<u64, CacheError> {
        Ok(remove_counting(&self.record_path(fp))?
            + remove_counting(&self.output_dir(fp))?
            + remove_counting(&self.scratch_root().join(fp))?
            + remove_counting(&self.log_path(fp))?)
    }

    /// The stage lock of `name` if it is a fingerprint nobody is running; `None` if it is
    /// running (or not a fingerprint, which is then left alone).
    fn idle(&self, name: &str) -> Result<Option<StageLock>, CacheError> {
        if check_fingerprint(name).is_err() {
            return Ok(None);
        }
        self.try_lock_stage(name)
    }
}
