//! Streamed checkpoint writing: a list of output tensors ([`OutTensor`]), each a byte
//! copy of a source tensor, the element-wise mean of source tensors, or zeros
//! ([`Recipe`]), written as transformers' `save_pretrained` lays a model out — one
//! `model.safetensors`, or shards `model-0000i-of-0000n.safetensors` of at most
//! `max_shard_size` bytes plus `model.safetensors.index.json` — without ever holding a
//! model in memory ([`write_checkpoint`]).
//!
//! | recipe  | work                                                        | memory            |
//! |---------|-------------------------------------------------------------|-------------------|
//! | `Copy`  | `copy_file_range` in the kernel (no user-space pass, byte-identical; reflinked where the filesystem can) | none |
//! | `Mean`  | f32 sum in the order given, divided by the count, rounded once to the stored dtype, [`MEAN_CHUNK`] elements at a time | a few MiB per worker |
//! | `Zeros` | nothing: the shard is pre-sized with `set_len`, whose new bytes read as zeros (+0.0 in f32/f16/bf16) | none |
//! | `Computed` | the caller's function returns the tensor's bytes ([`write_computed_checkpoint`]) | one tensor per worker |
//!
//! Every tensor's offset is known from the headers before any data is written, so the
//! tensors are written in parallel at their offsets. Shards are written under hidden
//! `.partial` names and renamed into place only when all of them are complete, so a
//! failed write never leaves a checkpoint that looks valid.
//!
//! The mean is the same arithmetic as the in-memory surgery (`surgery::blocks`): f32
//! `((a + b) + c) / n`, so f32 sources give bit-identical results either way.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use safetensors::tensor::Dtype;
use serde_json::{Map, Value, json};

use super::error::{ModelError, Result};
use super::safetensors_io::{SafetensorsCheckpoint, TensorLocation};

/// transformers' default `max_shard_size` ("5GB", decimal).
pub const DEFAULT_MAX_SHARD_SIZE: u64 = 5_000_000_000;

/// Elements of one tensor averaged at a time (1 MiB of f32 per buffer).
pub const MEAN_CHUNK: usize = 1 << 18;

/// How an output tensor's bytes are produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipe {
    /// The source tensor's bytes, unchanged.
    Copy(TensorLocation),
    /// The element-wise mean of the sources (at least two), computed in f32 and
    /// rounded once to the output dtype.
    Mean(Vec<TensorLocation>),
    /// All zeros.
    Zeros,
    /// Bytes the caller computes per tensor ([`write_computed_checkpoint`], e.g. a GGUF
    /// tensor dequantised on import).
    Computed,
}

/// One tensor of the checkpoint being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutTensor {
    /// HF name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// HF shape.
    pub shape: Vec<usize>,
    /// Where its bytes come from.
    pub recipe: Recipe,
}

impl OutTensor {
    fn byte_len(&self) -> u64 {
        (self.shape.iter().product::<usize>() as u64 * self.dtype.bitsize() as u64).div_ceil(8)
    }
}

/// What [`write_checkpoint`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// Files written into the directory (shards, then the index if any).
    pub files: Vec<String>,
    /// Tensor bytes in all shards.
    pub total_bytes: u64,
    /// Bytes copied from the source unchanged.
    pub copied_bytes: u64,
    /// Bytes computed as means.
    pub computed_bytes: u64,
    /// Bytes of zeroed tensors.
    pub zero_bytes: u64,
}

/// Parse a shard size as transformers spells it: `5GB` (10^9), `500MB`, `2GiB` (2^30),
/// `100KB`, or a plain number of bytes.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}`; expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a size such as 5GB, 500MB or 1000000"))?;
    let bytes = value * factor as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}`: a shard size must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// Group tensor indices into shards as `huggingface_hub`'s
/// `split_state_dict_into_shards_factory` does: in order, a new shard when the next
/// tensor would overflow the current one, and a tensor larger than the limit alone in
/// its own shard (placed when it is met).
fn assign_shards(sizes: &[u64], max: u64) -> Vec<Vec<usize>> {
    let mut shards = Vec::new();
    let mut current = Vec::new();
    let mut current_size = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        if size > max {
            shards.push(vec![i]);
            continue;
        }
        if current_size + size > max {
            shards.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(i);
        current_size += size;
    }
    if !current.is_empty() {
        shards.push(current);
    }
    shards
}

/// The safetensors header of `tensors` (in this order), padded with spaces to a
/// multiple of 8 bytes as the reference implementation does.
fn header(tensors: &[&OutTensor]) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.byte_len();
        map.insert(
            t.name.clone(),
            json!({"dtype": dtype_name(t.dtype), "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut bytes = Value::Object(map).to_string().into_bytes();
    while !bytes.len().is_multiple_of(8) {
        bytes.push(b' ');
    }
    bytes
}

fn dtype_name(dtype: Dtype) -> Value {
    // safetensors' own (serde) spelling: "F32", "BF16", ...
    serde_json::to_value(dtype).unwrap_or_else(|_| Value::String(format!("{dtype:?}")))
}

fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

/// Check that every recipe can produce its tensor: sizes and dtypes agree, means are
/// over floats.
fn check(src: &SafetensorsCheckpoint, t: &OutTensor) -> Result<()> {
    let fail = |message: String| ModelError::format(src.origin_path(), message);
    let agrees = |l: &TensorLocation| l.dtype == t.dtype && l.len == t.byte_len();
    match &t.recipe {
        Recipe::Copy(l) if !agrees(l) => Err(fail(format!(
            "tensor `{}`: the source is {:?} {:?} ({} bytes), the output {:?} {:?}",
            t.name, l.dtype, l.shape, l.len, t.dtype, t.shape
        ))),
        Recipe::Mean(ls) if ls.len() < 2 => Err(fail(format!(
            "tensor `{}`: a mean needs at least two sources",
            t.name
        ))),
        Recipe::Mean(_) if !is_float(t.dtype) => Err(fail(format!(
            "tensor `{}` is stored as {:?}: only F32, F16 and BF16 tensors can be averaged",
            t.name, t.dtype
        ))),
        Recipe::Mean(ls) => match ls.iter().find(|l| !agrees(l)) {
            Some(l) => Err(fail(format!(
                "tensor `{}`: the blocks averaged into it differ ({:?} {:?} vs {:?} {:?})",
                t.name, l.dtype, l.shape, t.dtype, t.shape
            ))),
            None => Ok(()),
        },
        Recipe::Computed => Err(fail(format!(
            "tensor `{}`: a computed tensor needs write_computed_checkpoint",
            t.name
        ))),
        _ => Ok(()),
    }
}

/// Told how far a write has got, for a progress bar: `(0, total)` once before the
/// first tensor, then `(bytes, total)` after each tensor is written (from any worker
/// thread; `total` is every tensor's bytes).
pub type OnWritten<'a> = dyn Fn(u64, u64) + Sync + 'a;

/// Write `tensors` (in this order) to `dir` as an HF checkpoint, sharded at
/// `max_shard_size` bytes; the sources are tensors of `src`. Existing checkpoint files
/// in `dir` (`model.safetensors`, its index, `model-*-of-*.safetensors`) are replaced.
pub fn write_checkpoint(
    src: &SafetensorsCheckpoint,
    tensors: &[OutTensor],
    dir: &Path,
    max_shard_size: u64,
    on_written: &OnWritten<'_>,
) -> Result<StreamReport> {
    for t in tensors {
        check(src, t)?;
    }
    write_shards(
        tensors,
        dir,
        max_shard_size,
        on_written,
        &|t, file, offset, path| {
            produce(src, t, file, offset).map_err(|e| match e {
                Failure::Read(p, e) => ModelError::io(p, e),
                Failure::Write(e) => ModelError::io(path, e),
            })
        },
    )
}

/// Appends the next bytes of the tensor being computed.
pub type ByteSink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// Write `tensors` (all [`Recipe::Computed`], in this order) to `dir` as an HF
/// checkpoint like [`write_checkpoint`]. `compute` produces one tensor's bytes, in
/// order, into the sink it is given (pieces of any size, exactly the tensor's dtype and
/// shape's length in all); it runs for several tensors at once on the rayon pool, so
/// memory holds what `compute` needs for a few tensors, never the model.
pub fn write_computed_checkpoint(
    tensors: &[OutTensor],
    dir: &Path,
    max_shard_size: u64,
    on_written: &OnWritten<'_>,
    compute: &(dyn Fn(&OutTensor, &mut ByteSink<'_>) -> Result<()> + Sync),
) -> Result<StreamReport> {
    if let Some(t) = tensors.iter().find(|t| t.recipe != Recipe::Computed) {
        return Err(ModelError::format(
            dir,
            format!("tensor `{}` is not a computed tensor", t.name),
        ));
    }
    write_shards(
        tensors,
        dir,
        max_shard_size,
        on_written,
        &|t, file, offset, path| {
            let want = t.byte_len();
            let mut written = 0u64;
            let too_long = |written: u64| {
                ModelError::format(
                    path,
                    format!(
                        "tensor `{}`: {written} bytes computed for {:?} {:?} ({want} bytes)",
                        t.name, t.dtype, t.shape
                    ),
                )
            };
            compute(t, &mut |bytes: &[u8]| {
                let end = written + bytes.len() as u64;
                if end > want {
                    return Err(too_long(end));
                }
                file.write_all_at(bytes, offset + written)
                    .map_err(|e| ModelError::io(path, e))?;
                written = end;
                Ok(())
            })?;
            if written != want {
                return Err(too_long(written));
            }
            Ok(())
        },
    )
}

/// Writes one tensor's bytes at an offset of a shard file (named by the path).
type TensorJob<'a> = dyn Fn(&OutTensor, &File, u64, &Path) -> Result<()> + Sync + 'a;

/// The shard layout, headers, parallel data writes, atomic rename and index shared by
/// [`write_checkpoint`] and [`write_computed_checkpoint`].
fn write_shards(
    tensors: &[OutTensor],
    dir: &Path,
    max_shard_size: u64,
    on_written: &OnWritten<'_>,
    job: &TensorJob<'_>,
) -> Result<StreamReport> {
    let mut seen = std::collections::HashSet::new();
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(ModelError::format(
                dir,
                format!("tensor `{}` would be written twice", t.name),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let sizes: Vec<u64> = tensors.iter().map(OutTensor::byte_len).collect();
    let groups = assign_shards(&sizes, max_shard_size.max(1));
    let n = groups.len();
    let names: Vec<String> = if n == 1 {
        vec!["model.safetensors".into()]
    } else {
        (1..=n)
            .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
            .collect()
    };

    // Create every shard at its final size, headers written; collect the data jobs.
    let mut files: Vec<(PathBuf, File)> = Vec::with_capacity(n);
    let mut jobs: Vec<(usize, u64, &OutTensor)> = Vec::with_capacity(tensors.len());
    for (s, group) in groups.iter().enumerate() {
        let members: Vec<&OutTensor> = group.iter().map(|&i| &tensors[i]).collect();
        let head = header(&members);
        let data_start = 8 + head.len() as u64;
        let total = data_start + group.iter().map(|&i| sizes[i]).sum::<u64>();
        let partial = dir.join(format!(".{}.partial", names[s]));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| ModelError::io(&partial, e))?;
        let mut prefix = (head.len() as u64).to_le_bytes().to_vec();
        prefix.extend_from_slice(&head);
        file.write_all_at(&prefix, 0)
            .and_then(|_| file.set_len(total))
            .map_err(|e| ModelError::io(&partial, e))?;
        let mut offset = data_start;
        for t in members {
            jobs.push((s, offset, t));
            offset += t.byte_len();
        }
        files.push((partial, file));
    }

    // Largest first, so the last worker is not left with the embedding.
    jobs.sort_by_key(|(_, _, t)| std::cmp::Reverse(t.byte_len()));
    let total: u64 = sizes.iter().sum();
    on_written(0, total);
    let outcome = jobs.par_iter().try_for_each(|(s, offset, t)| {
        let (path, file) = &files[*s];
        job(t, file, *offset, path)?;
        on_written(t.byte_len(), total);
        Ok(())
    });
    if let Err(e) = outcome {
        for (path, _) in &files {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }

    remove_checkpoint_files(dir)?;
    let mut report = StreamReport::default();
    for ((partial, _), name) in files.iter().zip(&names) {
        let dst = dir.join(name);
        std::fs::rename(partial, &dst).map_err(|e| ModelError::io(&dst, e))?;
        report.files.push(name.clone());
    }
    for t in tensors {
        let len = t.byte_len();
        report.total_bytes += len;
        match t.recipe {
            Recipe::Copy(_) => report.copied_bytes += len,
            Recipe::Mean(_) | Recipe::Computed => report.computed_bytes += len,
            Recipe::Zeros => report.zero_bytes += len,
        }
    }
    if n > 1 {
        let mut weight_map = Map::new();
        for (group, name) in groups.iter().zip(&names) {
            for &i in group {
                weight_map.insert(tensors[i].name.clone(), Value::String(name.clone()));
            }
        }
        let index =
            json!({"metadata": {"total_size": report.total_bytes}, "weight_map": weight_map});
        let path = dir.join("model.safetensors.index.json");
        let mut text = serde_json::to_string_pretty(&index)
            .map_err(|e| ModelError::format(&path, e.to_string()))?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
        report.files.push("model.safetensors.index.json".into());
    }
    Ok(report)
}

/// Remove `model.safetensors`, its index and `model-*-of-*.safetensors` from `dir`.
fn remove_checkpoint_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ModelError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let shard = name.starts_with("model-") && name.ends_with(".safetensors");
        if shard || name == "model.safetensors" || name == "model.safetensors.index.json" {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| ModelError::io(&path, e))?;
        }
    }
    Ok(())
}

/// An I/O failure while producing a tensor: reading a source (its path) or writing.
enum Failure<'a> {
    Read(&'a Path, io::Error),
    Write(io::Error),
}

fn produce<'a>(
    src: &'a SafetensorsCheckpoint,
    t: &OutTensor,
    dst: &File,
    offset: u64,
) -> std::result::Result<(), Failure<'a>> {
    match &t.recipe {
        Recipe::Zeros => Ok(()),
        Recipe::Copy(l) => {
            let (file, path) = src.shard_file(l.shard);
            copy_range(file, l.offset, dst, offset, l.len).map_err(|e| match e {
                Side::Read(e) => Failure::Read(path, e),
                Side::Write(e) => Failure::Write(e),
            })
        }
        Recipe::Mean(ls) => mean_into(src, ls, t.dtype, dst, offset),
        // Refused by `check` before anything is written.
        Recipe::Computed => Ok(()),
    }
}

enum Side {
    Read(io::Error),
    Write(io::Error),
}

/// Copy `len` bytes from `src` at `from` to `dst` at `to`: `copy_file_range` (the
/// kernel moves the bytes, or shares extents on filesystems that can), falling back to
/// reading and writing 8 MiB at a time where the kernel cannot (e.g. across
/// filesystems on old kernels).
fn copy_range(src: &File, from: u64, dst: &File, to: u64, len: u64) -> Result<(), Side> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = (from + done) as libc::off64_t;
        let mut off_out = (to + done) as libc::off64_t;
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: both descriptors are open files owned by the caller for the duration
        // of the call, and the offsets are passed by pointer to locals, so neither
        // file's own position is used or changed.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n > 0 {
            done += n as u64;
            continue;
        }
        if n == 0 {
            return Err(Side::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ends {} bytes before the tensor does", len - done),
            )));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => {
                return copy_by_reading(src, from + done, dst, to + done, len - done);
            }
            Some(libc::EINTR) => continue,
            _ => return Err(Side::Write(err)),
        }
    }
    Ok(())
}

fn copy_by_reading(src: &File, from: u64, dst: &File, to: u64, len: u64) -> Result<(), Side> {
    const BUF: u64 = 8 << 20;
    let mut buf = vec![0u8; BUF.min(len) as usize];
    let mut done = 0u64;
    while done < len {
        let n = BUF.min(len - done) as usize;
        src.read_exact_at(&mut buf[..n], from + done)
            .map_err(Side::Read)?;
        dst.write_all_at(&buf[..n], to + done)
            .map_err(Side::Write)?;
        done += n as u64;
    }
    Ok(())
}

/// Write the element-wise mean of `sources` (all of `dtype`) at `offset` of `dst`.
fn mean_into<'a>(
    src: &'a SafetensorsCheckpoint,
    sources: &[TensorLocation],
    dtype: Dtype,
    dst: &File,
    offset: u64,
) -> std::result::Result<(), Failure<'a>> {
    let size = dtype.bitsize() / 8;
    let total = (sources[0].len / size as u64) as usize;
    let count = sources.len() as f32;
    let mut raw = vec![0u8; MEAN_CHUNK.min(total) * size];
    let mut acc = vec![0f32; MEAN_CHUNK.min(total)];
    let mut term = acc.clone();
    let mut start = 0usize;
    while start < total {
        let m = MEAN_CHUNK.min(total - start);
        let bytes = &mut raw[..m * size];
        for (k, l) in sources.iter().enumerate() {
            let (file, path) = src.shard_file(l.shard);
            file.read_exact_at(bytes, l.offset + (start * size) as u64)
                .map_err(|e| Failure::Read(path, e))?;
            if k == 0 {
                decode(bytes, dtype, &mut acc[..m]);
            } else {
                decode(bytes, dtype, &mut term[..m]);
                for (a, t) in acc[..m].iter_mut().zip(&term[..m]) {
                    *a += *t;
                }
            }
        }
        for a in &mut acc[..m] {
            *a /= count;
        }
        encode(&acc[..m], dtype, bytes);
        dst.write_all_at(bytes, offset + (start * size) as u64)
            .map_err(Failure::Write)?;
        start += m;
    }
    Ok(())
}

/// Little-endian `dtype` bytes to f32 (`dtype` is F32, F16 or BF16: checked by `check`).
fn decode(bytes: &[u8], dtype: Dtype, out: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
    }
}

/// f32 to little-endian `dtype` bytes, rounding to nearest even.
fn encode(values: &[f32], dtype: Dtype, out: &mut [u8]) {
    match dtype {
        Dtype::F32 => {
            for (c, v) in out.chunks_exact_mut(4).zip(values) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::BF16 => {
            for (c, v) in out.chunks_exact_mut(2).zip(values) {
                c.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
            }
        }
        _ => {
            for (c, v) in out.chunks_exact_mut(2).zip(values) {
                c.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_transformers() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1.5kb"), Ok(1500));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("GB").is_err());
    }

    #[test]
    fn shards_split_like_huggingface_hub() {
        // 4 + 4 fit in 10, the next 4 does not; 12 is alone, placed when met (before
        // the shard still being filled).
        assert_eq!(
            assign_shards(&[4, 4, 4, 12, 1, 9], 10),
            vec![vec![0, 1], vec![3], vec![2, 4], vec![5]]
        );
        assert_eq!(assign_shards(&[1, 1], 10), vec![vec![0, 1]]);
    }

    #[test]
    fn header_is_padded_and_contiguous() {
        let t = |name: &str, n: usize| OutTensor {
            name: name.into(),
            dtype: Dtype::BF16,
            shape: vec![n],
            recipe: Recipe::Zeros,
        };
        let (a, b) = (t("a", 3), t("b", 5));
        let head = header(&[&a, &b]);
        assert_eq!(head.len() % 8, 0);
        let v: Value = serde_json::from_slice(&head).unwrap();
        assert_eq!(v["a"]["data_offsets"], json!([0, 6]));
        assert_eq!(v["b"]["data_offsets"], json!([6, 16]));
        assert_eq!(v["b"]["dtype"], json!("BF16"));
    }
}
