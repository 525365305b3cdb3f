//! Content hashing: [`ContentHash`] (blake3 hex), the hash of a file, of a directory tree
//! and of a labelled set of paths, and the walk that lists a tree.
//!
//! | artifact  | hash                                                                 |
//! |-----------|----------------------------------------------------------------------|
//! | file      | blake3 of its bytes (same as `b3sum`)                                |
//! | directory | blake3 of a manifest: `slayer-tree-v1`, then one line per entry,     |
//! |           | sorted by relative path: `d <path>` for a directory (so empty ones   |
//! |           | count), `f <hash> <path>` for a file, `x <hash> <path>` for an       |
//! |           | executable file                                                      |
//! | set       | blake3 of `slayer-set-v1`, then sorted `<label>\t<hash>` lines        |
//!
//! Paths in a manifest are relative with `/` separators; `\`, tab, CR and newline are
//! escaped so a line can never be forged by a file name. Absolute paths, mtimes, owners
//! and permissions other than the executable bit never enter a hash, so the same content
//! in two places hashes the same. Symlinks are followed.
//!
//! `TreeHasher` ties this to the stat cache: a file whose (path, size, mtime, inode)
//! matches a trusted entry is not read at all. Large files are hashed with blake3's
//! mmap + rayon tree hashing; the files of a directory are hashed in parallel.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::fsutil::{file_id, is_executable};
use crate::stat_cache::{StatCache, StatKey, now_ns};

/// blake3 hex digest (64 chars) of an artifact's content.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentHash(pub String);

impl ContentHash {
    /// The hash of a byte string.
    pub fn of_bytes(bytes: &[u8]) -> ContentHash {
        ContentHash(blake3::hash(bytes).to_hex().to_string())
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }

    /// The full hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this looks like a blake3 hex digest (64 lowercase hex digits).
    pub fn is_valid(&self) -> bool {
        self.0.len() == 64
            && self
                .0
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    fn from_blake3(h: blake3::Hash) -> ContentHash {
        ContentHash(h.to_hex().to_string())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Below this size a file is read into memory; mmap setup costs more than it saves.
const MMAP_MIN_BYTES: u64 = 64 * 1024;
/// From this size on, one file's hash is split over all cores (blake3 tree hashing).
const RAYON_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// From this size on, a file is read in [`READ_CHUNK_BYTES`] pieces instead of mapped:
/// every page of a map that the hash touches counts as the process's resident memory
/// until the map goes, so hashing a 5 GB model shard through one map showed as 5 GB of
/// RSS. Hashing the pieces in order gives the same blake3 as hashing the whole.
const STREAM_MIN_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes read (and tree-hashed over all cores) at a time above [`STREAM_MIN_BYTES`].
const READ_CHUNK_BYTES: usize = 64 * 1024 * 1024;

/// blake3 of a file's bytes, choosing read / mmap / mmap+rayon / chunked reads by size.
pub(crate) fn hash_file_content(path: &Path, size: u64) -> io::Result<ContentHash> {
    if size < MMAP_MIN_BYTES {
        let bytes = fs::read(path)?;
        return Ok(ContentHash::of_bytes(&bytes));
    }
    if size >= STREAM_MIN_BYTES {
        return hash_in_chunks(fs::File::open(path)?, READ_CHUNK_BYTES);
    }
    let mut hasher = blake3::Hasher::new();
    if size >= RAYON_MIN_BYTES {
        hasher.update_mmap_rayon(path)?;
    } else {
        hasher.update_mmap(path)?;
    }
    Ok(ContentHash::from_blake3(hasher.finalize()))
}

/// blake3 of everything `reader` yields, read `chunk` bytes at a time, each chunk
/// tree-hashed over all cores.
fn hash_in_chunks(mut reader: impl io::Read, chunk: usize) -> io::Result<ContentHash> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        hasher.update_rayon(&buf[..filled]);
        if filled < buf.len() {
            return Ok(ContentHash::from_blake3(hasher.finalize()));
        }
    }
}

/// Escapes the characters that would let a name break the line format.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Hash of a labelled set: sorted `label\thash` lines.
pub(crate) fn set_hash(items: &[(String, ContentHash)]) -> ContentHash {
    let mut lines: Vec<String> = items
        .iter()
        .map(|(label, hash)| format!("{}\t{hash}\n", escape(label)))
        .collect();
    lines.sort();
    let mut text = String::from("slayer-set-v1\n");
    for line in lines {
        text.push_str(&line);
    }
    ContentHash::of_bytes(text.as_bytes())
}

/// One file found under a tree root.
#[derive(Debug, Clone)]
pub(crate) struct FileNode {
    /// Relative path with `/` separators; empty when the root itself is the file.
    pub rel: String,
    /// Path on disk (the root joined with `rel`).
    pub path: PathBuf,
    /// Metadata with symlinks followed.
    pub meta: Metadata,
    pub executable: bool,
    /// The path itself or one of its ancestors below the root is a symlink: its bytes
    /// belong to someone else and must be copied, never moved.
    pub via_symlink: bool,
}

/// A hashed file or directory with everything `publish` needs to store it.
#[derive(Debug)]
pub(crate) struct Tree {
    pub hash: ContentHash,
    pub is_dir: bool,
    /// Directories below the root (relative paths), empty for a file.
    pub dirs: Vec<String>,
    /// Files with their hashes; one entry with `rel == ""` when the root is a file.
    pub files: Vec<(FileNode, ContentHash)>,
    pub bytes: u64,
}

/// Lists everything below directory `root` (following symlinks, detecting loops).
fn walk(
    root: &Path,
    root_meta: &Metadata,
    root_via_symlink: bool,
) -> Result<(Vec<String>, Vec<FileNode>), CacheError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    let mut ancestors = vec![file_id(root_meta)];
    walk_dir(
        root,
        "",
        root_via_symlink,
        &mut ancestors,
        &mut dirs,
        &mut files,
    )?;
    Ok((dirs, files))
}

fn walk_dir(
    dir: &Path,
    prefix: &str,
    via_symlink: bool,
    ancestors: &mut Vec<(u64, u64)>,
    dirs: &mut Vec<String>,
    files: &mut Vec<FileNode>,
) -> Result<(), CacheError> {
    let entries = fs::read_dir(dir).map_err(|e| CacheError::io_or_missing("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::io("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let file_type = entry
            .file_type()
            .map_err(|e| CacheError::io("stat", &path, e))?;
        let is_link = file_type.is_symlink();
        // `DirEntry::metadata` stats relative to the open directory (cheaper than a full
        // path lookup) but does not follow symlinks; those need `fs::metadata`.
        let meta = if is_link {
            fs::metadata(&path)
        } else {
            entry.metadata()
        }
        .map_err(|e| CacheError::io_or_missing("stat", &path, e))?;
        if meta.is_dir() {
            let id = file_id(&meta);
            if id != (0, 0) && ancestors.contains(&id) {
                return Err(CacheError::SymlinkLoop { path });
            }
            ancestors.push(id);
            dirs.push(rel.clone());
            walk_dir(&path, &rel, via_symlink || is_link, ancestors, dirs, files)?;
            ancestors.pop();
        } else if meta.is_file() {
            files.push(FileNode {
                rel,
                path,
                executable: is_executable(&meta),
                meta,
                via_symlink: via_symlink || is_link,
            });
        } else {
            return Err(CacheError::UnsupportedFileType { path });
        }
    }
    Ok(())
}

/// The manifest text a directory's hash is taken over.
fn tree_manifest(dirs: &[String], files: &[(FileNode, ContentHash)]) -> String {
    manifest_text(
        dirs,
        files.iter().map(|(f, h)| (f.rel.as_str(), f.executable, h)),
    )
}

/// The manifest text of a directory with subdirectories `dirs` and files given as
/// (relative path, executable, hash).
fn manifest_text<'a>(
    dirs: &'a [String],
    files: impl Iterator<Item = (&'a str, bool, &'a ContentHash)>,
) -> String {
    let mut lines: Vec<(&str, String)> = Vec::with_capacity(dirs.len());
    for d in dirs {
        lines.push((d, format!("d {}\n", escape(d))));
    }
    for (rel, executable, h) in files {
        let kind = if executable { 'x' } else { 'f' };
        lines.push((rel, format!("{kind} {h} {}\n", escape(rel))));
    }
    lines.sort();
    let mut text = String::from("slayer-tree-v1\n");
    for (_, line) in lines {
        text.push_str(&line);
    }
    text
}

/// The hash of a directory listed as `dirs` and (relative path, executable, hash) files:
/// what hashing the directory on disk would give.
pub(crate) fn dir_hash<'a>(
    dirs: &'a [String],
    files: impl Iterator<Item = (&'a str, bool, &'a ContentHash)>,
) -> ContentHash {
    ContentHash::of_bytes(manifest_text(dirs, files).as_bytes())
}

/// How a [`TreeHasher`] uses the stat cache.
#[derive(Clone, Copy)]
pub(crate) enum Mode<'a> {
    /// Trust matching stat-cache entries; record new hashes.
    Cached,
    /// Read every file; leave the stat cache alone (files about to move).
    Bypass,
    /// Read every file (or take its hash from `known`, keyed by (device, inode), filled
    /// in this very pass); overwrite the stat-cache entries with what was found.
    Refresh(Option<&'a HashMap<(u64, u64), ContentHash>>),
}

/// Hashes files and trees against a stat cache, counting the files it actually reads.
pub(crate) struct TreeHasher<'a> {
    pub stat: &'a StatCache,
    pub files_read: &'a AtomicU64,
    pub mode: Mode<'a>,
}

impl TreeHasher<'_> {
    /// The stat cache's hash for an unchanged file, in [`Mode::Cached`] only.
    fn cached(&self, path: &Path, meta: &Metadata) -> Option<ContentHash> {
        match self.mode {
            Mode::Cached => self.stat.lookup(path, &StatKey::of(meta)?),
            Mode::Bypass | Mode::Refresh(_) => None,
        }
    }

    /// Hash of one file whose (followed) metadata is `meta`.
    pub fn file(&self, path: &Path, meta: &Metadata) -> Result<ContentHash, CacheError> {
        if let Some(hash) = self.cached(path, meta) {
            return Ok(hash);
        }
        let key = StatKey::of(meta);
        if let (Mode::Refresh(Some(known)), Some(key)) = (self.mode, key)
            && let Some(hash) = known.get(&file_id(meta))
        {
            self.stat.insert(path, key, hash.clone(), now_ns());
            return Ok(hash.clone());
        }
        let started = now_ns();
        self.files_read.fetch_add(1, Ordering::Relaxed);
        let hash = hash_file_content(path, meta.len())
            .map_err(|e| CacheError::io_or_missing("read", path, e))?;
        if let (Mode::Cached | Mode::Refresh(_), Some(key)) = (self.mode, key) {
            self.stat.insert(path, key, hash.clone(), started);
        }
        Ok(hash)
    }

    /// Hash of a file or directory at `path` (symlinks followed), with its listing.
    /// `via_symlink` says whether `path` was reached through a symlink.
    pub fn tree(&self, path: &Path, via_symlink: bool) -> Result<Tree, CacheError> {
        let meta = fs::metadata(path).map_err(|e| CacheError::io_or_missing("stat", path, e))?;
        if meta.is_file() {
            let hash = self.file(path, &meta)?;
            let is_link = fs::symlink_metadata(path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            let node = FileNode {
                rel: String::new(),
                path: path.to_path_buf(),
                executable: is_executable(&meta),
                meta,
                via_symlink: via_symlink || is_link,
            };
            let bytes = node.meta.len();
            return Ok(Tree {
                hash: hash.clone(),
                is_dir: false,
                dirs: Vec::new(),
                files: vec![(node, hash)],
                bytes,
            });
        }
        if !meta.is_dir() {
            return Err(CacheError::UnsupportedFileType {
                path: path.to_path_buf(),
            });
        }
        let is_link = fs::symlink_metadata(path)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        let (dirs, nodes) = walk(path, &meta, via_symlink || is_link)?;
        // Stat-cache hits first, on this thread: a no-op check then wakes no workers.
        let mut files = Vec::with_capacity(nodes.len());
        let mut misses = Vec::new();
        for node in nodes {
            match self.cached(&node.path, &node.meta) {
                Some(hash) => files.push((node, hash)),
                None => misses.push(node),
            }
        }
        let read: Vec<(FileNode, ContentHash)> = misses
            .into_par_iter()
            .map(|node| {
                let hash = self.file(&node.path, &node.meta)?;
                Ok((node, hash))
            })
            .collect::<Result<_, CacheError>>()?;
        files.extend(read);
        let bytes = files.iter().map(|(f, _)| f.meta.len()).sum();
        let hash = ContentHash::of_bytes(tree_manifest(&dirs, &files).as_bytes());
        Ok(Tree {
            hash,
            is_dir: true,
            dirs,
            files,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_hash_equals_the_whole_buffer_hash() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = ContentHash::of_bytes(&data);
        // Chunks that divide the data, that do not, one larger than it, and empty data.
        for chunk in [1024, 4096, 70_001, 1 << 20] {
            let got = hash_in_chunks(&data[..], chunk).unwrap();
            assert_eq!(got, whole, "chunk {chunk}");
        }
        assert_eq!(
            hash_in_chunks(&[][..], 1024).unwrap(),
            ContentHash::of_bytes(&[])
        );
    }
}
