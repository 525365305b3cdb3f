//! [`Store::publish`]: turns a finished attempt's staging dir into a cached result.
//!
//! Order of operations, and why a kill at any point is safe:
//! 1. hash every declared output in the staging dir (no locks held: may take long);
//! 2. take the store lock (shared: gc waits) and this fingerprint's publish lock;
//! 3. move each file into `cache/objects/` (rename; an identical object already there
//!    is reused, so content is stored once; objects are made read-only). Files reached
//!    through a symlink or with other hard links belong to someone else and are copied;
//! 4. delete the fingerprint's old record, if any (from here on there is no valid result);
//! 5. build `out/.tmp-<fp>-…/` of hard links to the objects (copy where linking fails)
//!    and rename it to `out/<fp>/`, moving any old dir aside first;
//! 6. write `runs/<fp>.json` (temp + fsync + rename): **the commit point**;
//! 7. clean up: old out dir, staging dir, scratch dir.
//!
//! Killed before 6, there is no record, and an `out/<fp>` without a record is garbage
//! that the next publish replaces and gc removes.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::CacheError;
use crate::fsutil::{create_dir_all, fsync_dir, link_count, make_read_only, unique_suffix};
use crate::hash::{ContentHash, FileNode, Mode, Tree};
use crate::lock::{FileLock, LockKind};
use crate::record::{OutputRecord, RunRecord, write_record};
use crate::stat_cache::{StatKey, now_ns};
use crate::store::{Store, check_fingerprint};

/// Normalises a declared output path to `a/b/c`; rejects absolute, empty and `..` paths.
pub(crate) fn clean_rel(output: &str, rel: &str) -> Result<String, CacheError> {
    let invalid = || CacheError::InvalidOutputPath {
        output: output.to_string(),
        path: rel.to_string(),
    };
    let mut parts = Vec::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(invalid)?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(invalid());
            }
        }
    }
    if parts.is_empty() {
        return Err(invalid());
    }
    Ok(parts.join("/"))
}

/// Whether any component of `rel` below `base` is a symlink.
fn through_symlink(base: &Path, rel: &str) -> bool {
    let mut path = base.to_path_buf();
    rel.split('/').any(|part| {
        path.push(part);
        fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// Hard-links `object` at `dst`, copying where linking fails (cross-device, link limit).
fn link_or_copy(object: &Path, dst: &Path) -> Result<(), CacheError> {
    match fs::hard_link(object, dst) {
        Ok(()) => Ok(()),
        // Two overlapping outputs (`a` and `a/b`) materialise the same file twice.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => fs::copy(object, dst)
            .map(|_| ())
            .map_err(|e| CacheError::io("copy", dst, e)),
    }
}

impl Store {
    /// Atomically publishes a finished attempt. `outputs` maps each declared output name
    /// to its path relative to `staging`. Fills in `record.outputs` (hash, bytes, file
    /// count), commits the record and returns it. See the module docs for the protocol.
    pub fn publish(
        &self,
        staging: &Path,
        outputs: &BTreeMap<String, String>,
        record: RunRecord,
    ) -> Result<RunRecord, CacheError> {
        check_fingerprint(&record.fingerprint)?;
        let staging =
            std::path::absolute(staging).map_err(|e| CacheError::io("resolve", staging, e))?;

        // 1. Hash. The staged files are about to move, so the stat cache is bypassed.
        // The stage has finished writing, so its files' mtimes are first moved safely
        // into the past: the stat entries recorded below are then trusted at once, and
        // the first no-op check after a run reads nothing (instead of re-reading every
        // output that was written within the racy window of its hashing).
        settle_mtimes(&staging);
        let hashed_at = now_ns();
        let hasher = self.hasher(Mode::Bypass);
        let mut trees: Vec<(String, String, Tree)> = Vec::new();
        for (name, rel) in outputs {
            let rel = clean_rel(name, rel)?;
            let src = staging.join(&rel);
            match fs::metadata(&src) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(CacheError::OutputMissing {
                        output: name.clone(),
                        path: src,
                    });
                }
                Err(e) => return Err(CacheError::io("stat", &src, e)),
            }
            let tree = hasher.tree(&src, through_symlink(&staging, &rel))?;
            trees.push((name.clone(), rel, tree));
        }
        self.commit(&staging, record, &trees, hashed_at)
    }

    /// Steps 2–7 of the protocol: stores the hashed `trees` (output name, clean relative
    /// path, tree) as objects, materialises `out/<fp>/`, commits `record` with its
    /// outputs filled in from the trees, and cleans up `staging`. Shared by
    /// [`Store::publish`] and [`Store::install_remote`](crate::Store::install_remote).
    pub(crate) fn commit(
        &self,
        staging: &Path,
        mut record: RunRecord,
        trees: &[(String, String, Tree)],
        hashed_at: i64,
    ) -> Result<RunRecord, CacheError> {
        let fingerprint = record.fingerprint.clone();

        // 2. Locks: gc must not run while objects are unreferenced, and two publishes of
        // one fingerprint must not interleave.
        let (_store_lock, _) = FileLock::acquire(&self.store_lock_path(), LockKind::Shared)?;
        let (_publish_lock, _) =
            FileLock::acquire(&self.publish_lock_path(&fingerprint), LockKind::Exclusive)?;

        // 3. Objects.
        let mut objects: Vec<Vec<PathBuf>> = Vec::with_capacity(trees.len());
        for (_, _, tree) in trees {
            let paths = tree
                .files
                .iter()
                .map(|(node, hash)| self.ensure_object(node, hash, hashed_at))
                .collect::<Result<Vec<_>, _>>()?;
            objects.push(paths);
        }

        // 4. Invalidate the previous result before touching its out dir.
        let record_path = self.record_path(&fingerprint);
        match fs::remove_file(&record_path) {
            Ok(()) => fsync_dir(&self.runs_dir())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("remove", &record_path, e)),
        }

        // 5. Materialise the out dir under a temp name, then rename it into place.
        let out_root = self.out_root();
        let out_tmp = out_root.join(format!(".tmp-{fingerprint}-{}", unique_suffix()));
        if let Err(e) = self.build_out_dir(&out_tmp, trees, &objects) {
            let _ = fs::remove_dir_all(&out_tmp);
            return Err(e);
        }
        let out_dir = self.output_dir(&fingerprint);
        let trash = out_root.join(format!(".trash-{fingerprint}-{}", unique_suffix()));
        let had_old = match fs::rename(&out_dir, &trash) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(CacheError::io("move aside", &out_dir, e)),
        };
        fs::rename(&out_tmp, &out_dir)
            .map_err(|e| CacheError::io("rename into place", &out_dir, e))?;
        fsync_dir(&out_root)?;

        // 6. Commit.
        record.outputs = trees
            .iter()
            .map(|(name, rel, tree)| {
                let out = OutputRecord {
                    path: rel.clone(),
                    hash: tree.hash.clone(),
                    bytes: tree.bytes,
                    files: tree.files.len() as u64,
                };
                (name.clone(), out)
            })
            .collect();
        write_record(&record_path, &record)?;

        // 7. Remember the published files' hashes so the next check reads nothing, then
        // clean up. Failures here are harmless (gc collects leftovers) and must not turn a
        // committed result into a reported failure.
        for (_, rel, tree) in trees {
            let root = out_dir.join(rel);
            for (node, hash) in &tree.files {
                let path = if node.rel.is_empty() {
                    root.clone()
                } else {
                    root.join(&node.rel)
                };
                if let Some(key) = fs::metadata(&path).ok().as_ref().and_then(StatKey::of) {
                    self.stat.insert(&path, key, hash.clone(), hashed_at);
                }
            }
        }
        if had_old {
            let _ = fs::remove_dir_all(&trash);
        }
        let _ = fs::remove_dir_all(staging);
        let _ = fs::remove_dir_all(self.scratch_root().join(&fingerprint));
        Ok(record)
    }

    /// Makes sure the object for `node`'s content exists, moving (or copying) the staged
    /// file there when it does not. Returns the object's path.
    fn ensure_object(
        &self,
        node: &FileNode,
        hash: &ContentHash,
        hashed_at: i64,
    ) -> Result<PathBuf, CacheError> {
        let object = self.object_path(hash, node.executable);
        if let Ok(meta) = fs::metadata(&object)
            && meta.is_file()
            && self
                .hasher(Mode::Cached)
                .file(&object, &meta)
                .is_ok_and(|h| h == *hash)
        {
            return Ok(object);
        }
        // Absent, or corrupted (edited in place through a hard link): (re)create it.
        if let Some(shard) = object.parent() {
            create_dir_all(shard)?;
        }
        if !node.via_symlink && link_count(&node.meta) <= 1 {
            make_read_only(&node.path, node.executable)?;
            if fs::rename(&node.path, &object).is_ok() {
                if let Some(key) = StatKey::of(&node.meta) {
                    self.stat.insert(&object, key, hash.clone(), hashed_at);
                }
                return Ok(object);
            }
            // Cross-device staging dir: fall through to a copy.
        }
        let shard = object.parent().unwrap_or(Path::new("."));
        let tmp = shard.join(format!(".tmp-{}", unique_suffix()));
        let result = fs::copy(&node.path, &tmp)
            .map_err(|e| CacheError::io("copy", &node.path, e))
            .and_then(|_| make_read_only(&tmp, node.executable))
            .and_then(|()| {
                fs::rename(&tmp, &object)
                    .map_err(|e| CacheError::io("rename into place", &object, e))
            });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| object)
    }

    /// Creates `dir` holding every output as links to its objects.
    fn build_out_dir(
        &self,
        dir: &Path,
        trees: &[(String, String, Tree)],
        objects: &[Vec<PathBuf>],
    ) -> Result<(), CacheError> {
        create_dir_all(dir)?;
        for ((_, rel, tree), objects) in trees.iter().zip(objects) {
            let root = dir.join(rel);
            if tree.is_dir {
                create_dir_all(&root)?;
                for sub in &tree.dirs {
                    create_dir_all(&root.join(sub))?;
                }
            } else if let Some(parent) = root.parent() {
                create_dir_all(parent)?;
            }
            for ((node, _), object) in tree.files.iter().zip(objects) {
                let dst = if node.rel.is_empty() {
                    root.clone()
                } else {
                    root.join(&node.rel)
                };
                link_or_copy(object, &dst)?;
            }
        }
        Ok(())
    }
}

/// Sets the mtime of every regular, singly-linked file below a finished stage's private
/// staging dir to a few seconds ago (best effort). Files reached through symlinks or with
/// other hard links may belong to the user and are left alone.
pub(crate) fn settle_mtimes(dir: &Path) {
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            settle_mtimes(&entry.path());
        } else if meta.is_file()
            && link_count(&meta) <= 1
            && let Ok(f) = fs::OpenOptions::new().write(true).open(entry.path())
        {
            let _ = f.set_modified(past);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_are_normalised_or_rejected() {
        assert_eq!(
            clean_rel("m", "./model/./w.bin").ok(),
            Some("model/w.bin".into())
        );
        for bad in ["", ".", "../x", "/abs", "a/../../b"] {
            assert!(
                matches!(
                    clean_rel("m", bad),
                    Err(CacheError::InvalidOutputPath { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
