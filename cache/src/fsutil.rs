//! Small file-system helpers shared by the store: atomic writes (temp + fsync + rename),
//! unique temp names, read-only permissions, tree removal that counts the bytes it frees,
//! and a liveness check for the process that owns a temp dir.

use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CacheError;

/// Process-wide counter: two `Store`s in one process never pick the same temp name.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// `<pid>-<counter>`: unique among all temp names this process creates.
pub(crate) fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `bytes` to `path` atomically: a sibling temp file is written, fsynced and
/// renamed over `path`, then the directory is fsynced so the rename itself is durable.
/// A reader sees the old content or the new, never a prefix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{name}-{}", unique_suffix()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| CacheError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| CacheError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| CacheError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| CacheError::io("rename into place", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fsync_dir(dir)
}

/// Makes renames and unlinks inside `dir` durable. A no-op where directories cannot be
/// opened (non-unix).
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), CacheError> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| CacheError::io("open directory", dir, e))?;
        d.sync_all()
            .map_err(|e| CacheError::io("fsync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir_all(dir: &Path) -> Result<(), CacheError> {
    fs::create_dir_all(dir).map_err(|e| CacheError::io("create directory", dir, e))
}

/// Whether the file's owner-executable bit is set (always false off unix).
pub(crate) fn is_executable(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// Number of hard links to the file (1 off unix, where it cannot be asked).
pub(crate) fn link_count(meta: &Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

/// (device, inode): identifies the file behind a path; (0, 0) off unix.
pub(crate) fn file_id(meta: &Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// Makes a stored object read-only (r-x for executables, r-- otherwise), so an editor
/// refuses to overwrite a hard-linked output in place.
pub(crate) fn make_read_only(path: &Path, executable: bool) -> Result<(), CacheError> {
    #[cfg(unix)]
    let perms = {
        use std::os::unix::fs::PermissionsExt;
        fs::Permissions::from_mode(if executable { 0o555 } else { 0o444 })
    };
    #[cfg(not(unix))]
    let perms = {
        let _ = executable;
        let mut p = fs::metadata(path)
            .map_err(|e| CacheError::io("stat", path, e))?
            .permissions();
        p.set_readonly(true);
        p
    };
    fs::set_permissions(path, perms).map_err(|e| CacheError::io("set permissions of", path, e))
}

/// Removes a file or directory tree (not following symlinks) and returns the bytes
/// actually freed: files that still have other hard links free nothing. A missing path
/// frees 0.
pub(crate) fn remove_counting(path: &Path) -> Result<u64, CacheError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CacheError::io("stat", path, e)),
    };
    if !meta.is_dir() {
        let freed = if meta.is_file() && link_count(&meta) <= 1 {
            meta.len()
        } else {
            0
        };
        return match fs::remove_file(path) {
            Ok(()) => Ok(freed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(CacheError::io("remove", path, e)),
        };
    }
    let mut freed = 0;
    let entries = fs::read_dir(path).map_err(|e| CacheError::io("list", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::io("list", path, e))?;
        freed += remove_counting(&entry.path())?;
    }
    match fs::remove_dir(path) {
        Ok(()) => Ok(freed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(freed),
        Err(e) => Err(CacheError::io("remove directory", path, e)),
    }
}

/// Entries of a directory as (file name, path); a missing directory has none.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::io("list", dir, e))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}
