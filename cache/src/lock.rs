//! Advisory file locks: [`StageLock`] (one per fingerprint, `.slayer/locks/<fp>.lock`,
//! holding `<pid> <host> <since>` of its holder, see [`LockHolder`]),
//! the store lock (`store.lock`: shared while publishing, exclusive for gc) and the
//! internal locks guarding the stat cache and each fingerprint's publish.
//!
//! Locks are std's `File::lock` (flock on unix): per open file, so two threads of one
//! process exclude each other just like two processes, and the kernel drops a lock when
//! its holder dies. A lock file may be unlinked by gc while held; every acquirer checks
//! after locking that the path still names the file it locked, and retries otherwise,
//! so nobody ever holds a lock on an orphaned inode.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CacheError;
use crate::fsutil::file_id;

/// Shared (many readers) or exclusive (one writer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

/// A held lock on a file; released on drop.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
    path: PathBuf,
}

fn open_lock_file(path: &Path) -> Result<File, CacheError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| CacheError::io("open lock file", path, e))
}

/// Whether `path` still names the file `file` was opened from (gc may have unlinked it).
fn still_linked(file: &File, path: &Path) -> Result<bool, CacheError> {
    let held = file
        .metadata()
        .map_err(|e| CacheError::io("stat lock file", path, e))?;
    match fs::metadata(path) {
        Ok(current) => Ok(file_id(&current) == file_id(&held)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CacheError::io("stat lock file", path, e)),
    }
}

impl FileLock {
    /// Blocks until the lock is held. Returns the lock and whether it had to wait.
    pub fn acquire(path: &Path, kind: LockKind) -> Result<(FileLock, bool), CacheError> {
        Self::take(path, kind, true)?.ok_or_else(|| {
            CacheError::io(
                "lock",
                path,
                std::io::Error::other("blocking lock not taken"),
            )
        })
    }

    /// Takes the lock if nobody holds it; `None` if someone does.
    pub fn try_acquire(path: &Path, kind: LockKind) -> Result<Option<FileLock>, CacheError> {
        Ok(Self::take(path, kind, false)?.map(|(lock, _)| lock))
    }

    /// Locks the file at `path` (waiting for a holder when `block`, else giving up with
    /// `None`), retrying when gc unlinked the file meanwhile. Returns the lock and
    /// whether it had to wait.
    fn take(
        path: &Path,
        kind: LockKind,
        block: bool,
    ) -> Result<Option<(FileLock, bool)>, CacheError> {
        let mut waited = false;
        loop {
            let file = open_lock_file(path)?;
            let attempt = match kind {
                LockKind::Shared => file.try_lock_shared(),
                LockKind::Exclusive => file.try_lock(),
            };
            match attempt {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) if !block => return Ok(None),
                Err(TryLockError::WouldBlock) => {
                    waited = true;
                    let blocking = match kind {
                        LockKind::Shared => file.lock_shared(),
                        LockKind::Exclusive => file.lock(),
                    };
                    blocking.map_err(|e| CacheError::io("lock", path, e))?;
                }
                Err(TryLockError::Error(e)) => return Err(CacheError::io("lock", path, e)),
            }
            if still_linked(&file, path)? {
                let lock = FileLock {
                    file,
                    path: path.to_path_buf(),
                };
                return Ok(Some((lock, waited)));
            }
        }
    }

    /// The locked file (for holders that keep data in it, like a lease).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the lock file while holding it; later acquirers create a fresh one.
    pub fn unlink(&self) -> Result<(), CacheError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io("remove lock file", &self.path, e)),
        }
    }

    /// Records the holder in the lock file, for whoever has to wait for it.
    fn write_owner(&mut self) {
        let holder = LockHolder {
            pid: std::process::id(),
            host: crate::record::host_name(),
            since: crate::record::now_rfc3339(),
        };
        let _ = self.file.set_len(0);
        let _ = writeln!(self.file, "{} {} {}", holder.pid, holder.host, holder.since);
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first just makes it prompt.
        let _ = self.file.unlock();
    }
}

/// Exclusive lock on one fingerprint; released on drop. Obtained from
/// [`Store::lock_stage`](crate::Store::lock_stage).
#[derive(Debug)]
pub struct StageLock {
    lock: FileLock,
}

/// The holder of a stage lock as it wrote itself into the lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// RFC 3339 UTC time the lock was taken.
    pub since: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

impl LockHolder {
    /// Parses `<pid> <host> <since>`; `None` for an empty or older (pid-only) file.
    fn parse(text: &str) -> Option<LockHolder> {
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        let since = parts.next()?.to_string();
        Some(LockHolder { pid, host, since })
    }
}

impl StageLock {
    /// Takes the lock, blocking while someone holds it; before blocking, `on_wait` is
    /// told who does (when the holder's lock file says). Returns whether it waited.
    pub(crate) fn acquire(
        path: &Path,
        on_wait: &mut dyn FnMut(Option<LockHolder>),
    ) -> Result<(StageLock, bool), CacheError> {
        let (mut lock, waited) = match FileLock::try_acquire(path, LockKind::Exclusive)? {
            Some(lock) => (lock, false),
            None => {
                let holder = fs::read_to_string(path)
                    .ok()
                    .and_then(|t| LockHolder::parse(&t));
                on_wait(holder);
                (FileLock::acquire(path, LockKind::Exclusive)?.0, true)
            }
        };
        lock.write_owner();
        Ok((StageLock { lock }, waited))
    }

    pub(crate) fn try_acquire(path: &Path) -> Result<Option<StageLock>, CacheError> {
        Ok(FileLock::try_acquire(path, LockKind::Exclusive)?.map(|lock| StageLock { lock }))
    }

    pub(crate) fn unlink(&self) -> Result<(), CacheError> {
        self.lock.unlink()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.lock.path
    }
}
