//! HF checkpoints in and out: `config.json` + `model.safetensors` (or a sharded
//! `model.safetensors.index.json`), with HF tensor names.
//!
//! Loading memory-maps every shard for its header ([`SafetensorsCheckpoint`]), reads one
//! tensor at a time with `pread` and converts it (F32, F16, BF16 -> f32, or kept as
//! stored with [`Residency::Stored`]), so a checkpoint never needs twice its size in RAM.
//! Saving ([`save_pretrained`]) writes `config.json` and one `model.safetensors`,
//! streaming tensor by tensor, in f32 or the checkpoint's original dtype, so that
//! `transformers.AutoModelForCausalLM.from_pretrained(dir)` loads the result.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use safetensors::{SafeTensors, View};

use super::config::LlamaConfig;
use super::error::{ModelError, Result};
use super::llama::Llama;
use super::precision::Residency;
use super::weights::{
    HostData, HostTensor, NamedTensor, WeightSource, build_llama_except, hf_tensors,
};

/// Files that travel with a model directory besides weights and config.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

struct Shard {
    path: PathBuf,
    file: File,
    header_len: usize,
    metadata: Metadata,
}

/// Where one tensor's bytes lie in a checkpoint: shard, absolute byte offset in that
/// file, length, dtype and shape as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorLocation {
    /// Index of the shard file ([`SafetensorsCheckpoint::shard_file`]).
    pub shard: usize,
    /// Offset of the first byte from the start of the file.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Stored (HF) shape.
    pub shape: Vec<usize>,
}

/// Memory-mapped safetensors file(s) of one checkpoint.
pub struct SafetensorsCheckpoint {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> shard index.
    index: HashMap<String, usize>,
}

impl SafetensorsCheckpoint {
    /// Open `dir/model.safetensors`, or the shards listed in
    /// `dir/model.safetensors.index.json`; `dir` may also be a `.safetensors` file.
    pub fn open(dir: &Path) -> Result<Self> {
        if dir.is_file() {
            return Self::from_files(dir, &[dir.to_path_buf()]);
        }
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        if single.is_file() {
            return Self::from_files(dir, &[single]);
        }
        if index_path.is_file() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let index: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::format(&index_path, e.to_string()))?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::format(&index_path, "no `weight_map` object"))?;
            let mut files: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            files.sort();
            files.dedup();
            let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
            return Self::from_files(dir, &paths);
        }
        Err(ModelError::format(
            dir,
            "no model.safetensors or model.safetensors.index.json in this directory",
        ))
    }

    fn from_files(origin: &Path, paths: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
            // SAFETY: the file is opened read-only and only read through this map; a
            // concurrent writer truncating it would be a user error, as with any mmap
            // loader (transformers and candle do the same).
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
            let (header_len, metadata) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| ModelError::format(path, e.to_string()))?;
            for name in metadata.tensors().keys() {
                index.insert(name.clone(), i);
            }
            shards.push(Shard {
                path: path.clone(),
                file,
                header_len,
                metadata,
            });
        }
        Ok(SafetensorsCheckpoint {
            origin: origin.to_path_buf(),
            shards,
            index,
        })
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.index.keys().cloned().collect();
        names.sort();
        names
    }

    fn info(&self, name: &str) -> Option<(&Shard, &TensorInfo)> {
        let shard = &self.shards[*self.index.get(name)?];
        Some((shard, shard.metadata.info(name)?))
    }

    /// Dtype and shape of `name` without reading it.
    pub fn describe(&self, name: &str) -> Option<(Dtype, Vec<usize>)> {
        self.info(name).map(|(_, i)| (i.dtype, i.shape.clone()))
    }

    /// Where `name`'s bytes lie, without reading them.
    pub fn locate(&self, name: &str) -> Option<TensorLocation> {
        let shard_index = *self.index.get(name)?;
        let (shard, info) = self.info(name)?;
        let base = 8 + shard.header_len as u64;
        Some(TensorLocation {
            shard: shard_index,
            offset: base + info.data_offsets.0 as u64,
            len: (info.data_offsets.1 - info.data_offsets.0) as u64,
            dtype: info.dtype,
            shape: info.shape.clone(),
        })
    }

    /// The open file and path of shard `index` (as in [`TensorLocation::shard`]).
    pub fn shard_file(&self, index: usize) -> (&File, &Path) {
        let shard = &self.shards[index];
        (&shard.file, &shard.path)
    }

    /// The checkpoint's directory (or file) as given to [`SafetensorsCheckpoint::open`].
    pub fn origin_path(&self) -> &Path {
        &self.origin
    }

    /// The dtype most of the floating-point tensors are stored in.
    pub fn dominant_dtype(&self) -> Option<Dtype> {
        let mut counts: BTreeMap<Dtype, usize> = BTreeMap::new();
        for shard in &self.shards {
            for info in shard.metadata.tensors().values() {
                let n: usize = info.shape.iter().product();
                *counts.entry(info.dtype).or_default() += n;
            }
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(d, _)| d)
    }
}

impl WeightSource for SafetensorsCheckpoint {
    /// Read with `pread`, not through the map: a model-sized load then never holds the
    /// file's pages in this process besides the copy it builds (mapped pages a load has
    /// touched count as resident memory until the map goes).
    fn tensor(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(loc) = self.locate(name) else {
            return Ok(None);
        };
        let (file, path) = self.shard_file(loc.shard);
        let unsupported = || ModelError::UnsupportedDtype {
            file: path.to_path_buf(),
            name: name.to_string(),
            dtype: format!("{:?}", loc.dtype),
        };
        if !matches!(loc.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(unsupported());
        }
        let n = loc.shape.iter().product::<usize>();
        let read = |buf: &mut [u8]| {
            std::os::unix::fs::FileExt::read_exact_at(file, buf, loc.offset).map_err(|e| {
                ModelError::format(path, format!("tensor `{name}` lies outside the file: {e}"))
            })
        };
        if loc.len != (n * loc.dtype.bitsize() / 8) as u64 {
            return Err(ModelError::format(
                path,
                format!(
                    "tensor `{name}`: {} bytes for shape {:?}",
                    loc.len, loc.shape
                ),
            ));
        }
        // Read straight into the typed buffer: no second copy of a large tensor.
        let data = match loc.dtype {
            Dtype::BF16 => {
                let mut v = vec![half::bf16::ZERO; n];
                read(as_bytes_mut(&mut v))?;
                HostData::BF16(v)
            }
            Dtype::F16 => {
                let mut v = vec![half::f16::ZERO; n];
                read(as_bytes_mut(&mut v))?;
                HostData::F16(v)
            }
            _ => {
                let mut v = vec![0f32; n];
                read(as_bytes_mut(&mut v))?;
                HostData::F32(v)
            }
        };
        Ok(Some(HostTensor {
            shape: loc.shape,
            data,
        }))
    }

    /// Read in bands of rows (about 8 MiB each) and scattered into the transposed
    /// buffer, converted on the way (f32 residency) or kept: the stored matrix is never
    /// in memory as a whole beside its transpose.
    fn tensor_transposed(&self, name: &str, residency: Residency) -> Result<Option<HostTensor>> {
        let Some(loc) = self.locate(name) else {
            return Ok(None);
        };
        let [rows, cols] = loc.shape[..] else {
            return self.tensor(name);
        };
        let (file, path) = self.shard_file(loc.shard);
        let read = |buf: &mut [u8], at: u64| {
            std::os::unix::fs::FileExt::read_exact_at(file, buf, loc.offset + at).map_err(|e| {
                ModelError::format(path, format!("tensor `{name}` lies outside the file: {e}"))
            })
        };
        let widen = residency == Residency::F32;
        let data = match loc.dtype {
            Dtype::BF16 if widen => {
                HostData::F32(transpose_read(rows, cols, read, half::bf16::to_f32)?)
            }
            Dtype::F16 if widen => {
                HostData::F32(transpose_read(rows, cols, read, half::f16::to_f32)?)
            }
            Dtype::BF16 => HostData::BF16(transpose_read(rows, cols, read, |v: half::bf16| v)?),
            Dtype::F16 => HostData::F16(transpose_read(rows, cols, read, |v: half::f16| v)?),
            Dtype::F32 => HostData::F32(transpose_read(rows, cols, read, |v: f32| v)?),
            _ => {
                return Err(ModelError::UnsupportedDtype {
                    file: path.to_path_buf(),
                    name: name.to_string(),
                    dtype: format!("{:?}", loc.dtype),
                });
            }
        };
        Ok(Some(HostTensor {
            shape: vec![cols, rows],
            data,
        }))
    }

    fn origin(&self) -> &Path {
        &self.origin
    }
}

/// A stored row-major `[rows, cols]` matrix of `I`, read by `read(buf, byte_offset)` in
/// bands of rows, as its `[cols, rows]` transpose of `O` (`conv` per element).
fn transpose_read<I, O>(
    rows: usize,
    cols: usize,
    read: impl Fn(&mut [u8], u64) -> Result<()>,
    conv: impl Fn(I) -> O + Sync,
) -> Result<Vec<O>>
where
    I: Plain + Default + Sync,
    O: Copy + Default + Send,
{
    const BAND_BYTES: usize = 8 << 20;
    const TILE: usize = 64;
    let item = std::mem::size_of::<I>();
    let band = (BAND_BYTES / (cols * item).max(1)).clamp(1, rows.max(1));
    let mut out = vec![O::default(); rows * cols];
    let mut buf = vec![I::default(); band * cols];
    for r0 in (0..rows).step_by(band) {
        let r1 = (r0 + band).min(rows);
        let chunk = &mut buf[..(r1 - r0) * cols];
        read(as_bytes_mut(chunk), (r0 * cols * item) as u64)?;
        let chunk = &*chunk;
        // Output rows are input columns: each worker fills rows r0..r1 of its columns.
        out.par_chunks_mut(TILE * rows)
            .enumerate()
            .for_each(|(tile, dst)| {
                let c0 = tile * TILE;
                for (dc, row) in dst.chunks_exact_mut(rows).enumerate() {
                    let c = c0 + dc;
                    for r in r0..r1 {
                        row[r] = conv(chunk[(r - r0) * cols + c]);
                    }
                }
            });
    }
    Ok(out)
}

/// Element types whose every bit pattern is a valid value and that have no padding.
trait Plain: Copy {}
impl Plain for f32 {}
impl Plain for half::bf16 {}
impl Plain for half::f16 {}

/// The bytes of a buffer of plain little-endian numbers, to read a stored tensor into.
fn as_bytes_mut<T: Plain>(values: &mut [T]) -> &mut [u8] {
    // Stored tensors are little-endian; a big-endian host would need a byte swap.
    const { assert!(cfg!(target_endian = "little")) };
    // SAFETY: `Plain` types (f32, and half's bf16/f16, `repr(transparent)` over u16) have
    // no padding and every bit pattern is a valid value, and the
    // byte slice covers exactly the same memory, borrowed for as long as `values`.
    unsafe {
        std::slice::from_raw_parts_mut(
            values.as_mut_ptr().cast::<u8>(),
            std::mem::size_of_val(values),
        )
    }
}

/// Little-endian F32/F16/BF16 bytes to f32 (in parallel); `None` for other dtypes.
pub fn bytes_to_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    const CHUNK: usize = 1 << 16;
    let mut out;
    match dtype {
        Dtype::F32 => {
            out = vec![0f32; bytes.len() / 4];
            out.par_chunks_mut(CHUNK)
                .zip(bytes.par_chunks(CHUNK * 4))
                .for_each(|(o, b)| {
                    for (x, c) in o.iter_mut().zip(b.chunks_exact(4)) {
                        *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                });
        }
        Dtype::F16 | Dtype::BF16 => {
            out = vec![0f32; bytes.len() / 2];
            let bf = dtype == Dtype::BF16;
            out.par_chunks_mut(CHUNK)
                .zip(bytes.par_chunks(CHUNK * 2))
                .for_each(|(o, b)| {
                    for (x, c) in o.iter_mut().zip(b.chunks_exact(2)) {
                        let bits = u16::from_le_bytes([c[0], c[1]]);
                        *x = if bf {
                            half::bf16::from_bits(bits).to_f32()
                        } else {
                            half::f16::from_bits(bits).to_f32()
                        };
                    }
                });
        }
        _ => return None,
    }
    Some(out)
}

/// The dtype tensors are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveDtype {
    /// 32-bit float (exact for anything this crate computes).
    #[default]
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
}

impl SaveDtype {
    /// The torch name written to `config.json`.
    pub fn torch_name(self) -> &'static str {
        match self {
            SaveDtype::F32 => "float32",
            SaveDtype::F16 => "float16",
            SaveDtype::BF16 => "bfloat16",
        }
    }

    /// From a torch dtype name (`float32`, `torch.bfloat16`, `bf16` ...).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim_start_matches("torch.") {
            "float32" | "float" | "f32" | "fp32" => Some(SaveDtype::F32),
            "float16" | "half" | "f16" | "fp16" => Some(SaveDtype::F16),
            "bfloat16" | "bf16" => Some(SaveDtype::BF16),
            _ => None,
        }
    }

    /// The dtype the config says the checkpoint was stored in (f32 when unknown).
    pub fn from_config(config: &LlamaConfig) -> Self {
        config
            .stored_dtype()
            .and_then(Self::parse)
            .unwrap_or_default()
    }

    /// The dtype a checkpoint stored mostly in `dtype` is saved in (F32 unless F16/BF16).
    pub fn of_stored(dtype: Option<Dtype>) -> Self {
        match dtype {
            Some(Dtype::BF16) => SaveDtype::BF16,
            Some(Dtype::F16) => SaveDtype::F16,
            _ => SaveDtype::F32,
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            SaveDtype::F32 => Dtype::F32,
            SaveDtype::F16 => Dtype::F16,
            SaveDtype::BF16 => Dtype::BF16,
        }
    }
}

/// Load an HF model directory (`config.json` + safetensors) onto `device`, as f32.
pub fn load_pretrained<B: Backend>(dir: &Path, device: &B::Device) -> Result<Llama<B>> {
    load_pretrained_as(dir, device, Residency::F32)
}

/// Load an HF model directory with its weights held as `residency` says.
pub fn load_pretrained_as<B: Backend>(
    dir: &Path,
    device: &B::Device,
    residency: Residency,
) -> Result<Llama<B>> {
    load_pretrained_except(dir, device, residency, &Default::default())
}

/// [`load_pretrained_as`] with the blocks in `f32_blocks` held in f32 whatever
/// `residency` says.
pub fn load_pretrained_except<B: Backend>(
    dir: &Path,
    device: &B::Device,
    residency: Residency,
    f32_blocks: &std::collections::BTreeSet<usize>,
) -> Result<Llama<B>> {
    let config = LlamaConfig::from_file(&dir.join("config.json"))?;
    let checkpoint = SafetensorsCheckpoint::open(dir)?;
    build_llama_except(config, &checkpoint, device, residency, f32_blocks)
}

/// A tensor converted to bytes only when the writer asks for it, so saving streams.
struct LazyView<B: Backend> {
    tensor: NamedTensor<B>,
    shape: Vec<usize>,
    dtype: SaveDtype,
}

impl<B: Backend> View for LazyView<B> {
    fn dtype(&self) -> Dtype {
        self.dtype.safetensors()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let values = self.tensor.to_hf_f32();
        let bytes: Vec<u8> = match self.dtype {
            SaveDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            SaveDtype::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            SaveDtype::BF16 => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
        };
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        let n: usize = self.shape.iter().product();
        n * match self.dtype {
            SaveDtype::F32 => 4,
            SaveDtype::F16 | SaveDtype::BF16 => 2,
        }
    }
}

/// Write `model` to `dir` as `config.json` + `model.safetensors` with HF names, in
/// `dtype`. `dir` is created if needed; existing files of those names are replaced.
pub fn save_pretrained<B: Backend>(model: &Llama<B>, dir: &Path, dtype: SaveDtype) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut config = model.config();
    config.set_stored_dtype(dtype.torch_name());
    config.save(&dir.join("config.json"))?;
    let views: Vec<(String, LazyView<B>)> = hf_tensors(model)
        .into_iter()
        .map(|(name, tensor)| {
            let shape = tensor.hf_shape();
            (
                name,
                LazyView {
                    tensor,
                    shape,
                    dtype,
                },
            )
        })
        .collect();
    let path = dir.join("model.safetensors");
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &path)
        .map_err(|e| ModelError::format(&path, e.to_string()))
}

/// Copy the tokenizer and generation files that exist in `from` into `to`.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if src.is_file() {
            let dst = to.join(name);
            std::fs::copy(&src, &dst).map_err(|e| ModelError::io(&dst, e))?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}
