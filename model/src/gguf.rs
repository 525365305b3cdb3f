//! GGUF import (llama.cpp's format) for the `llama`, `qwen2`, `qwen3` and `gemma3`
//! architectures.
//!
//! [`GgufFile::open`] memory-maps the file and parses its header: metadata key/values and
//! tensor descriptors. [`GgufFile::config`] turns `{arch}.*` metadata into a
//! [`LlamaConfig`] of the matching [`Family`]: `qwen2` is Qwen2/Qwen2.5 (q/k/v biases as
//! `blk.N.attn_{q,k,v}.bias`); `qwen3` is Qwen3 (q/k norms `blk.N.attn_{q,k}_norm`);
//! `gemma3` is Gemma 3's text model, whose norm weights llama.cpp's converter stores as
//! `1 + w` (undone here) and whose fixed settings it does not store (local rotary base
//! 10000, every 6th block global, attention scale `head_dim^-1/2` but for the 27B) and
//! are filled in as llama.cpp does; `llama` is Llama, and also Mistral, which llama.cpp's
//! converter writes as `llama` without its sliding window: such a file imports as Llama
//! (full attention, as llama.cpp runs it) unless it carries
//! `llama.attention.sliding_window`, which makes it Mistral with that window.
//! [`GgufFile::weights`] is a [`WeightSource`] that answers HF tensor
//! names, dequantising on the fly ([`dequantize`]: F32, F16, BF16, Q8_0, Q4_0, Q4_1,
//! Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) and undoing the row permutation llama.cpp's converter applies to q/k of
//! the `llama` architecture only (`convert_hf_to_gguf.py::LlamaModel.permute`; `qwen2`
//! tensors are stored as in HF). [`GgufFile::tokenizer_json`] rebuilds
//! an HF `tokenizer.json` from `tokenizer.ggml.*` for the byte-level BPE (`gpt2`) and
//! SentencePiece (`llama`) types ([`gguf_tokenizer`](super::gguf_tokenizer)).
//!
//! GGUF dims are listed fastest-varying first (`ne[0]`), so an HF `[out, in]` matrix
//! appears as `[in, out]`; [`GgufTensorInfo::hf_shape`] reverses them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use serde_json::{Map, Value, json};

use super::config::{Family, LlamaConfig, TokenIds};
use super::error::{ModelError, Result};
use super::tensor_names::{gguf_block_name, parse_layer_tensor};
use super::weights::{HostData, HostTensor, WeightSource};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// u8
    U8(u8),
    /// i8
    I8(i8),
    /// u16
    U16(u16),
    /// i16
    I16(i16),
    /// u32
    U32(u32),
    /// i32
    I32(i32),
    /// f32
    F32(f32),
    /// bool
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// Array of values
    Array(GgufArray),
    /// u64
    U64(u64),
    /// i64
    I64(i64),
    /// f64
    F64(f64),
}

impl GgufValue {
    /// As an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// As a float, if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// As a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            GgufValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// As an array.
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A metadata array, stored by element type (a `u8` array takes a byte per value, as in
/// the file).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    /// u8
    U8(Vec<u8>),
    /// i8
    I8(Vec<i8>),
    /// u16
    U16(Vec<u16>),
    /// i16
    I16(Vec<i16>),
    /// u32
    U32(Vec<u32>),
    /// i32
    I32(Vec<i32>),
    /// f32
    F32(Vec<f32>),
    /// bool
    Bool(Vec<bool>),
    /// UTF-8 strings
    String(Vec<String>),
    /// Arrays (nested at most [`MAX_ARRAY_DEPTH`] deep)
    Array(Vec<GgufArray>),
    /// u64
    U64(Vec<u64>),
    /// i64
    I64(Vec<i64>),
    /// f64
    F64(Vec<f64>),
}

/// How deep metadata arrays may nest (llama.cpp writes none nested).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// GGML_MAX_DIMS: a tensor has at most this many dims.
pub const MAX_DIMS: usize = 4;

impl GgufArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::Array(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F64(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The strings, if it is a string array.
    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    /// Element `i` as an unsigned integer, if it is a non-negative integer.
    pub fn u64_at(&self, i: usize) -> Option<u64> {
        match self {
            GgufArray::U8(v) => v.get(i).map(|&x| x as u64),
            GgufArray::U16(v) => v.get(i).map(|&x| x as u64),
            GgufArray::U32(v) => v.get(i).map(|&x| x as u64),
            GgufArray::U64(v) => v.get(i).copied(),
            GgufArray::I8(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
            GgufArray::I16(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
            GgufArray::I32(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
            GgufArray::I64(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
            _ => None,
        }
    }
}

/// ggml tensor types this importer knows (by their ggml numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 0
    F32,
    /// 1
    F16,
    /// 2: 32 values, f16 scale, 4-bit `q - 8`.
    Q4_0,
    /// 3: 32 values, f16 scale and min, 4-bit.
    Q4_1,
    /// 6: 32 values, f16 scale, 5-bit `q - 16` (low 4 bits packed, high bits in a u32).
    Q5_0,
    /// 7: 32 values, f16 scale and min, 5-bit.
    Q5_1,
    /// 8: 32 values, f16 scale, i8.
    Q8_0,
    /// 12: 256 values, 8 sub-blocks with 6-bit scales/mins, 4-bit.
    Q4K,
    /// 13: 256 values, 8 sub-blocks with 6-bit scales/mins (as Q4_K), 5-bit.
    Q5K,
    /// 14: 256 values, 16 sub-blocks with i8 scales, 6-bit.
    Q6K,
    /// 30
    BF16,
    /// Any other type, by number (reading it is an error naming the tensor).
    Other(u32),
}

impl GgmlType {
    fn from_u32(v: u32) -> Self {
        match v {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }

    /// (values per block, bytes per block), `None` for unsupported types.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::BF16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q4_1 => Some((32, 20)),
            GgmlType::Q5_0 => Some((32, 22)),
            GgmlType::Q5_1 => Some((32, 24)),
            GgmlType::Q8_0 => Some((32, 34)),
            GgmlType::Q4K => Some((256, 144)),
            GgmlType::Q5K => Some((256, 176)),
            GgmlType::Q6K => Some((256, 210)),
            GgmlType::Other(_) => None,
        }
    }

    /// Human name (`Q4_K`, `type 13` ...).
    pub fn name(self) -> String {
        match self {
            GgmlType::F32 => "F32".into(),
            GgmlType::F16 => "F16".into(),
            GgmlType::Q4_0 => "Q4_0".into(),
            GgmlType::Q4_1 => "Q4_1".into(),
            GgmlType::Q5_0 => "Q5_0".into(),
            GgmlType::Q5_1 => "Q5_1".into(),
            GgmlType::Q8_0 => "Q8_0".into(),
            GgmlType::Q4K => "Q4_K".into(),
            GgmlType::Q5K => "Q5_K".into(),
            GgmlType::Q6K => "Q6_K".into(),
            GgmlType::BF16 => "BF16".into(),
            GgmlType::Other(n) => format!("ggml type {n}"),
        }
    }
}

/// Where a tensor lies and what it holds.
#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    /// GGUF dims, fastest-varying first.
    pub dims: Vec<usize>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: usize,
}

impl GgufTensorInfo {
    /// Shape in HF (row-major, slowest first) order.
    pub fn hf_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// Number of values (dims are checked by [`GgufFile::open`] not to overflow).
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Bytes `data_start + offset ..` the tensor's end, `None` for a type whose block
    /// layout is unknown; an error when the size overflows or is not a whole number of
    /// blocks.
    fn data_range(&self, data_start: usize) -> std::result::Result<Option<Range<usize>>, String> {
        let n = self
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("dims {:?} overflow", self.dims))?;
        let Some((per_block, block_bytes)) = self.ggml_type.block_layout() else {
            return Ok(None);
        };
        if !n.is_multiple_of(per_block) {
            return Err(format!(
                "{n} values, not a multiple of the {per_block}-value {} block",
                self.ggml_type.name()
            ));
        }
        let start = data_start.checked_add(self.offset);
        let end = (n / per_block)
            .checked_mul(block_bytes)
            .and_then(|size| start?.checked_add(size));
        match (start, end) {
            (Some(start), Some(end)) => Ok(Some(start..end)),
            _ => Err(format!("offset {} + {n} values overflows", self.offset)),
        }
    }

    /// Whether the tensor has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed, memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    /// Metadata key/values.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor descriptors by GGUF name.
    pub tensors: HashMap<String, GgufTensorInfo>,
    data_start: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, message: impl std::fmt::Display) -> ModelError {
        ModelError::format(self.path, format!("{message} (at byte {})", self.pos))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(format!("truncated GGUF header: {n} more bytes needed")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    /// A u64 that must be at most the file's size.
    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| self.err(format!("implausible length {n}")))
    }
    /// `n` items of at least `min_bytes` each fit in what is left of the file (checked
    /// before allocating for them).
    fn fits(&self, what: &str, n: usize, min_bytes: usize) -> Result<()> {
        let left = self.buf.len() - self.pos;
        match n.checked_mul(min_bytes) {
            Some(b) if b <= left => Ok(()),
            _ => Err(self.err(format!(
                "{what}: {n} items of at least {min_bytes} bytes do not fit in the {left} bytes left"
            ))),
        }
    }
    /// `n` fixed-size values, read as one slice.
    fn values<T, const N: usize>(&mut self, n: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
        self.fits("array", n, N)?;
        let b = self.bytes(n * N)?;
        Ok(b.chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks_exact")))
            .collect())
    }
    fn array(&mut self, depth: usize) -> Result<GgufArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.err(format!(
                "metadata arrays nested more than {MAX_ARRAY_DEPTH} deep"
            )));
        }
        let item_ty = self.u32()?;
        let n = self.len()?;
        Ok(match item_ty {
            0 => GgufArray::U8(self.values(n, |[b]: [u8; 1]| b)?),
            1 => GgufArray::I8(self.values(n, |[b]: [u8; 1]| b as i8)?),
            2 => GgufArray::U16(self.values(n, u16::from_le_bytes)?),
            3 => GgufArray::I16(self.values(n, i16::from_le_bytes)?),
            4 => GgufArray::U32(self.values(n, u32::from_le_bytes)?),
            5 => GgufArray::I32(self.values(n, i32::from_le_bytes)?),
            6 => GgufArray::F32(self.values(n, f32::from_le_bytes)?),
            7 => GgufArray::Bool(self.values(n, |[b]: [u8; 1]| b != 0)?),
            8 => {
                self.fits("string array", n, 8)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string()?);
                }
                GgufArray::String(v)
            }
            9 => {
                self.fits("array of arrays", n, 12)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array(depth + 1)?);
                }
                GgufArray::Array(v)
            }
            10 => GgufArray::U64(self.values(n, u64::from_le_bytes)?),
            11 => GgufArray::I64(self.values(n, i64::from_le_bytes)?),
            12 => GgufArray::F64(self.values(n, f64::from_le_bytes)?),
            other => return Err(self.err(format!("unknown GGUF array item type {other}"))),
        })
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        let b = self.bytes(n)?;
        // Token texts may hold invalid UTF-8 in broken files; keep them readable.
        Ok(String::from_utf8_lossy(b).into_owned())
    }
    fn value(&mut self, ty: u32) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(self.arr::<1>()?[0]),
            1 => GgufValue::I8(self.arr::<1>()?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.arr()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.arr()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.arr()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.arr()?)),
            7 => GgufValue::Bool(self.arr::<1>()?[0] != 0),
            8 => GgufValue::String(self.string()?),
            9 => GgufValue::Array(self.array(0)?),
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.arr()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.arr()?)),
            other => return Err(self.err(format!("unknown GGUF value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Map and parse `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: read-only map of a file we only read; see safetensors_io.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let mut r = Reader {
            buf: &mmap,
            pos: 0,
            path,
        };
        if r.bytes(4)? != b"GGUF" {
            return Err(ModelError::format(
                path,
                "not a GGUF file (magic is not `GGUF`)",
            ));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::format(
                path,
                format!("GGUF version {version} is not supported (2 or 3)"),
            ));
        }
        let n_tensors = r.len()?;
        let n_kv = r.len()?;
        // Smallest key/value: empty key (8), type (4), one byte; smallest tensor: empty
        // name (8), n_dims (4), type (4), offset (8).
        r.fits("metadata key/values", n_kv, 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty).map_err(|e| match e {
                ModelError::Format { file, message } => {
                    ModelError::format(file, format!("metadata `{key}`: {message}"))
                }
                other => other,
            })?;
            metadata.insert(key, value);
        }
        r.fits("tensor descriptors", n_tensors, 24)?;
        let mut tensors = HashMap::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims > MAX_DIMS {
                return Err(r.err(format!(
                    "tensor `{name}` has {n_dims} dims (at most {MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(r.len()?);
            }
            let ggml_type = GgmlType::from_u32(r.u32()?);
            let offset = r.len()?;
            tensors.insert(
                name,
                GgufTensorInfo {
                    dims,
                    ggml_type,
                    offset,
                },
            );
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= 1 << 30)
                .ok_or_else(|| {
                    ModelError::format(
                        path,
                        format!("`general.alignment` is {v:?}, not a power of two up to 2^30"),
                    )
                })? as usize,
        };
        // r.pos <= file length, alignment <= 2^30: no overflow.
        let data_start = r.pos.div_ceil(alignment) * alignment;
        for (name, info) in &tensors {
            let range = info
                .data_range(data_start)
                .map_err(|why| ModelError::format(path, format!("tensor `{name}`: {why}")))?;
            if let Some(range) = range
                && range.end > mmap.len()
            {
                return Err(ModelError::format(
                    path,
                    format!(
                        "tensor `{name}`: data at bytes {}..{} lies outside the file ({} bytes; truncated?)",
                        range.start,
                        range.end,
                        mmap.len()
                    ),
                ));
            }
        }
        let path = path.to_path_buf();
        Ok(GgufFile {
            path,
            mmap,
            metadata,
            tensors,
            data_start,
        })
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The metadata value under `key`.
    pub fn meta(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The metadata integer under `key` (an error naming the key when it is not one).
    pub fn meta_usize(&self, key: &str) -> Result<usize> {
        self.meta(key)
            .and_then(GgufValue::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| {
                ModelError::format(
                    &self.path,
                    format!("metadata key `{key}` is missing or not an integer"),
                )
            })
    }

    /// Dequantised values of the GGUF tensor `name` (GGUF order, i.e. HF row-major).
    pub fn read(&self, name: &str) -> Result<Option<(GgufTensorInfo, Vec<f32>)>> {
        let Some(info) = self.tensors.get(name) else {
            return Ok(None);
        };
        let unsupported = || ModelError::UnsupportedDtype {
            file: self.path.clone(),
            name: name.to_string(),
            dtype: info.ggml_type.name(),
        };
        let range = info
            .data_range(self.data_start)
            .map_err(|why| ModelError::format(&self.path, format!("tensor `{name}`: {why}")))?
            .ok_or_else(unsupported)?;
        // open() checked that the range lies inside the file.
        let bytes = &self.mmap[range];
        let values = dequantize(info.ggml_type, bytes, info.len()).ok_or_else(|| {
            ModelError::UnsupportedDtype {
                file: self.path.clone(),
                name: name.to_string(),
                dtype: info.ggml_type.name(),
            }
        })?;
        Ok(Some((info.clone(), values)))
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        let arch = self
            .meta("general.architecture")
            .and_then(GgufValue::as_str)
            .ok_or_else(|| {
                ModelError::format(&self.path, "metadata `general.architecture` is missing")
            })?;
        if !SUPPORTED_ARCHITECTURES.contains(&arch) {
            return Err(ModelError::Unsupported(format!(
                "{}: GGUF architecture `{arch}` is not supported (supported: {})",
                self.path.display(),
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        Ok(arch)
    }

    /// The HF config implied by the `{arch}.*` metadata (`llama.*`, `qwen2.*`).
    pub fn config(&self) -> Result<LlamaConfig> {
        let a = self.architecture()?.to_string();
        let key = |k: &str| format!("{a}.{k}");
        let hidden = self.meta_usize(&key("embedding_length"))?;
        let heads = self.meta_usize(&key("attention.head_count"))?;
        if heads == 0 {
            return Err(ModelError::format(
                &self.path,
                format!("`{a}.attention.head_count` is 0"),
            ));
        }
        let kv_heads = self
            .meta(&key("attention.head_count_kv"))
            .and_then(GgufValue::as_u64)
            .map_or(heads, |v| v as usize);
        let vocab = match self.meta(&key("vocab_size")).and_then(GgufValue::as_u64) {
            Some(v) => v as usize,
            None => self
                .meta("tokenizer.ggml.tokens")
                .and_then(GgufValue::as_array)
                .map(GgufArray::len)
                .ok_or_else(|| {
                    ModelError::format(
                        &self.path,
                        format!("neither `{a}.vocab_size` nor `tokenizer.ggml.tokens`"),
                    )
                })?,
        };
        // Qwen3 and Gemma 3 configs default `head_dim` to 128 / 256, not hidden / heads:
        // theirs is always written out.
        let explicit_head_dim = matches!(a.as_str(), "qwen3" | "gemma3");
        let head_dim = self
            .meta(&key("attention.key_length"))
            .or_else(|| self.meta(&key("rope.dimension_count")))
            .and_then(GgufValue::as_u64)
            .map(|v| v as usize)
            .or(explicit_head_dim.then_some(hidden / heads))
            .filter(|&d| explicit_head_dim || d != hidden / heads);
        if self.tensors.contains_key("rope_freqs.weight") {
            return Err(ModelError::Unsupported(format!(
                "{}: `rope_freqs.weight` (Llama 3.1 rope scaling stored as factors) is not supported",
                self.path.display()
            )));
        }
        let rope_scaling = match self
            .meta(&key("rope.scaling.type"))
            .and_then(GgufValue::as_str)
        {
            None | Some("none") => None,
            Some("linear") => {
                let factor = self
                    .meta(&key("rope.scaling.factor"))
                    .and_then(GgufValue::as_f64)
                    .unwrap_or(1.0);
                Some(json!({"type": "linear", "factor": factor}))
            }
            Some(other) => {
                return Err(ModelError::Unsupported(format!(
                    "{}: rope scaling `{other}` is not supported (linear only for GGUF)",
                    self.path.display()
                )));
            }
        };
        let token_id = |k: &str| {
            self.meta(k)
                .and_then(GgufValue::as_u64)
                .map(|v| TokenIds::One(v as u32))
        };
        // The model is allocated from these sizes before a tensor is read: they must be
        // those of the tensors in the file.
        let layers = self.meta_usize(&key("block_count"))?;
        let in_file: std::collections::BTreeSet<usize> = self
            .tensors
            .keys()
            .filter_map(|n| n.strip_prefix("blk.")?.split_once('.')?.0.parse().ok())
            .collect();
        if in_file.len() != layers || in_file.last().is_some_and(|&l| l + 1 != layers) {
            return Err(ModelError::format(
                &self.path,
                format!(
                    "`{a}.block_count` is {layers} but the file has tensors of {} blocks (`blk.N.*`)",
                    in_file.len()
                ),
            ));
        }
        let intermediate = self.meta_usize(&key("feed_forward_length"))?;
        let q_width = heads.saturating_mul(head_dim.unwrap_or(hidden / heads));
        let mut expected = vec![(
            "token_embd.weight",
            [hidden, vocab],
            "embedding_length, vocab size",
        )];
        if layers > 0 {
            expected.push((
                "blk.0.ffn_up.weight",
                [hidden, intermediate],
                "embedding_length, feed_forward_length",
            ));
            expected.push((
                "blk.0.attn_q.weight",
                [hidden, q_width],
                "embedding_length, head_count x head dim",
            ));
        }
        for (name, dims, what) in expected {
            match self.tensors.get(name) {
                Some(t) if t.dims == dims => {}
                other => {
                    return Err(ModelError::format(
                        &self.path,
                        format!(
                            "`{name}` should have GGUF dims {dims:?} ({what} from the metadata), found {:?}",
                            other.map(|t| &t.dims)
                        ),
                    ));
                }
            }
        }
        let mut extra = Map::new();
        let window = self
            .meta(&key("attention.sliding_window"))
            .and_then(GgufValue::as_u64)
            .filter(|&w| w > 0);
        let f32_key = |k: &str| {
            self.meta(&key(k))
                .and_then(GgufValue::as_f64)
                // Stored as f32: the shortest decimal reads as the original config did.
                .map(|v| format!("{}", v as f32).parse().unwrap_or(v))
        };
        let family = match (a.as_str(), window) {
            ("qwen2" | "qwen3", _) => {
                // Released Qwen2/2.5/3 models attend fully; llama.cpp stores no window.
                extra.insert("use_sliding_window".into(), json!(false));
                extra.insert("sliding_window".into(), Value::Null);
                if a == "qwen3" {
                    Family::Qwen3
                } else {
                    Family::Qwen2
                }
            }
            ("gemma3", _) => {
                extra.insert("sliding_window".into(), json!(window));
                // llama.cpp fixes Gemma 3's pattern (every 6th block global) unless
                // the file says otherwise.
                let pattern = self
                    .meta(&key("attention.sliding_window_pattern"))
                    .and_then(GgufValue::as_u64)
                    .unwrap_or(6);
                extra.insert("sliding_window_pattern".into(), json!(pattern));
                extra.insert(
                    "rope_local_base_freq".into(),
                    json!(f32_key("rope.freq_base_swa").unwrap_or(10000.0)),
                );
                // llama.cpp's attention scale: 1/sqrt(head_dim), except Gemma 3 27B (62
                // blocks), which uses 1/sqrt(hidden / heads) as its
                // `query_pre_attn_scalar` says.
                let scalar = if layers == 62 {
                    hidden / heads
                } else {
                    head_dim.unwrap_or(hidden / heads)
                };
                extra.insert("query_pre_attn_scalar".into(), json!(scalar));
                extra.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
                if let Some(c) = f32_key("final_logit_softcapping") {
                    extra.insert("final_logit_softcapping".into(), json!(c));
                }
                Family::Gemma3
            }
            (_, Some(w)) => {
                extra.insert("sliding_window".into(), json!(w));
                Family::Mistral
            }
            _ => Family::Llama,
        };
        extra.insert("architectures".into(), json!([family.architecture()]));
        extra.insert("model_type".into(), json!(family.model_type()));
        if let Some(pad) = self
            .meta("tokenizer.ggml.padding_token_id")
            .and_then(GgufValue::as_u64)
        {
            extra.insert("pad_token_id".into(), json!(pad));
        }
        let config = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim,
            rms_norm_eps: self
                .meta(&key("attention.layer_norm_rms_epsilon"))
                .and_then(GgufValue::as_f64)
                // GGUF stores f32; round to the f32 value's shortest decimal (1e-5, not
                // 9.99999974e-6) so the config reads as the original did.
                .map(|v| format!("{}", v as f32).parse().unwrap_or(v))
                .unwrap_or(1e-5),
            rope_theta: Some(
                f32_key("rope.freq_base").unwrap_or(if family == Family::Gemma3 {
                    1_000_000.0
                } else {
                    10000.0
                }),
            ),
            rope_scaling,
            max_position_embeddings: self
                .meta(&key("context_length"))
                .and_then(GgufValue::as_u64)
                .map_or(2048, |v| v as usize),
            tie_word_embeddings: !self.tensors.contains_key("output.weight"),
            // Qwen2's q/k/v biases come with the family; `attention_bias` is the
            // other families' switch for all four projections.
            attention_bias: family != Family::Qwen2
                && self.tensors.contains_key("blk.0.attn_q.bias"),
            mlp_bias: self.tensors.contains_key("blk.0.ffn_up.bias"),
            // Gemma 3's activation is `hidden_activation`, set above.
            hidden_act: (family != Family::Gemma3).then(|| "silu".into()),
            bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
            eos_token_id: token_id("tokenizer.ggml.eos_token_id"),
            torch_dtype: Some("float32".into()),
            extra,
        };
        config.validate().map_err(|message| ModelError::Config {
            path: self.path.clone(),
            message,
        })?;
        Ok(config)
    }

    /// HF-named weights of this file (needs the config for the q/k un-permutation and
    /// the family's tensor names).
    pub fn weights(&self, config: &LlamaConfig) -> GgufWeights<'_> {
        let arch = self
            .meta("general.architecture")
            .and_then(GgufValue::as_str);
        GgufWeights {
            file: self,
            n_heads: config.num_attention_heads,
            n_kv_heads: config.num_key_value_heads(),
            permuted: arch == Some("llama"),
            norms_plus_one: arch == Some("gemma3"),
            family: config.family().unwrap_or(Family::Llama),
        }
    }

    /// An HF `tokenizer.json` rebuilt from `tokenizer.ggml.*` (byte-level BPE or
    /// SentencePiece), and the matching `tokenizer_config.json` (special tokens, chat
    /// template): [`gguf_tokenizer::rebuild`](super::gguf_tokenizer::rebuild).
    pub fn tokenizer_json(&self) -> Result<(Value, Value)> {
        super::gguf_tokenizer::rebuild(self)
    }
}

/// HF-named view of a GGUF file's tensors.
pub struct GgufWeights<'a> {
    file: &'a GgufFile,
    n_heads: usize,
    n_kv_heads: usize,
    /// Whether q/k rows are in llama.cpp's permuted order (`llama` architecture only).
    permuted: bool,
    /// Whether norm weights are stored as `1 + w` (`gemma3`: llama.cpp's converter
    /// folds Gemma's `(1 + w)` scale into the weight; HF's `w` is read back).
    norms_plus_one: bool,
    /// The family, for its tensor names.
    family: Family,
}

/// The `general.architecture` values [`GgufFile::config`] reads.
pub const SUPPORTED_ARCHITECTURES: [&str; 4] = ["llama", "qwen2", "qwen3", "gemma3"];

/// The GGUF name of an HF tensor name of `family` (llama.cpp's `tensor_mapping.py` for
/// the llama, qwen2, qwen3 and gemma3 architectures; the block tensors' names come from
/// the one table, [`gguf_block_name`]).
pub fn gguf_name(hf: &str, family: Family) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight".into()),
        "model.norm.weight" => Some("output_norm.weight".into()),
        "lm_head.weight" => Some("output.weight".into()),
        _ => {
            let (index, suffix) = parse_layer_tensor(hf)?;
            gguf_block_name(index, suffix, family)
        }
    }
}

/// Undo llama.cpp's q/k permutation: within each head, GGUF row `2 * i + s` is HF row
/// `s * head_dim / 2 + i`. Works on `[rows, cols]` (cols = 1 for biases).
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_heads: usize) -> Vec<f32> {
    let head_rows = rows / n_heads;
    let half = head_rows / 2;
    let mut out = vec![0f32; data.len()];
    out.par_chunks_mut(cols)
        .enumerate()
        .for_each(|(hf_row, dst)| {
            let h = hf_row / head_rows;
            let within = hf_row % head_rows;
            let (s, i) = (within / half, within % half);
            let src = h * head_rows + 2 * i + s;
            dst.copy_from_slice(&data[src * cols..(src + 1) * cols]);
        });
    out
}

impl WeightSource for GgufWeights<'_> {
    fn tensor(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(g) = gguf_name(name, self.family) else {
            return Ok(None);
        };
        let Some((info, mut data)) = self.file.read(&g)? else {
            return Ok(None);
        };
        if self.norms_plus_one && g.ends_with("norm.weight") {
            // Exact for stored values in [0.5, 2] (Sterbenz), so `1 + w` is again the
            // stored value bit for bit.
            data.iter_mut().for_each(|v| *v -= 1.0);
        }
        let shape = info.hf_shape();
        let heads = if !self.permuted {
            None
        } else if g.ends_with("attn_q.weight") || g.ends_with("attn_q.bias") {
            Some(self.n_heads)
        } else if g.ends_with("attn_k.weight") || g.ends_with("attn_k.bias") {
            Some(self.n_kv_heads)
        } else {
            None
        };
        let data = match heads {
            Some(n) if shape[0] % (2 * n) == 0 => {
                let cols = shape.get(1).copied().unwrap_or(1);
                unpermute_rows(&data, shape[0], cols, n)
            }
            _ => data,
        };
        Ok(Some(HostTensor {
            shape,
            data: HostData::F32(data),
        }))
    }

    fn origin(&self) -> &Path {
        &self.file.path
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Scale and min of sub-block `j` from Q4_K's packed 12-byte table (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn dequant_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            let qs = &b[2..18];
            for j in 0..16 {
                y[j] = ((qs[j] & 0xF) as i32 - 8) as f32 * d;
                y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        GgmlType::Q4_1 => {
            let d = f16_at(b, 0);
            let m = f16_at(b, 2);
            let qs = &b[4..20];
            for j in 0..16 {
                y[j] = (qs[j] & 0xF) as f32 * d + m;
                y[j + 16] = (qs[j] >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            // Q5_0: d, qh, qs, values `q - 16`; Q5_1: d, m, qh, qs, values `q d + m`.
            let d = f16_at(b, 0);
            let (m, at) = match ty {
                GgmlType::Q5_1 => (Some(f16_at(b, 2)), 4),
                _ => (None, 2),
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let qs = &b[at + 4..at + 20];
            for j in 0..16 {
                let hi0 = (((qh >> j) << 4) & 0x10) as u8;
                let hi1 = ((qh >> (j + 12)) & 0x10) as u8;
                let q0 = (qs[j] & 0xF) | hi0;
                let q1 = (qs[j] >> 4) | hi1;
                let value = |q: u8| match m {
                    Some(m) => q as f32 * d + m,
                    None => (q as i32 - 16) as f32 * d,
                };
                y[j] = value(q0);
                y[j + 16] = value(q1);
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for (j, q) in b[2..34].iter().enumerate() {
                y[j] = (*q as i8) as f32 * d;
            }
        }
        GgmlType::Q4K => {
            let d = f16_at(b, 0);
            let dmin = f16_at(b, 2);
            let scales = &b[4..16];
            let qs = &b[16..144];
            for chunk in 0..4 {
                let q = &qs[chunk * 32..chunk * 32 + 32];
                let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
                let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
                let out = &mut y[chunk * 64..chunk * 64 + 64];
                for l in 0..32 {
                    out[l] = d1 * (q[l] & 0xF) as f32 - min1;
                    out[l + 32] = d2 * (q[l] >> 4) as f32 - min2;
                }
            }
        }
        GgmlType::Q5K => {
            let d = f16_at(b, 0);
            let dmin = f16_at(b, 2);
            let scales = &b[4..16];
            let qh = &b[16..48];
            let qs = &b[48..176];
            for chunk in 0..4 {
                let ql = &qs[chunk * 32..chunk * 32 + 32];
                let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
                let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
                // The fifth bits of this chunk's two halves: bits 2c and 2c+1 of qh.
                let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
                let high = |h: u8, u: u8| if h & u != 0 { 16 } else { 0 };
                let out = &mut y[chunk * 64..chunk * 64 + 64];
                for l in 0..32 {
                    out[l] = d1 * ((ql[l] & 0xF) + high(qh[l], u1)) as f32 - min1;
                    out[l + 32] = d2 * ((ql[l] >> 4) + high(qh[l], u2)) as f32 - min2;
                }
            }
        }
        GgmlType::Q6K => {
            let ql_all = &b[0..128];
            let qh_all = &b[128..192];
            let sc_all = &b[192..208];
            let d = f16_at(b, 208);
            for half in 0..2 {
                let ql = &ql_all[half * 64..];
                let qh = &qh_all[half * 32..];
                let sc = &sc_all[half * 8..];
                let out = &mut y[half * 128..half * 128 + 128];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = f16_at(b, 0),
        GgmlType::BF16 => y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        GgmlType::Other(_) => {}
    }
}

/// Dequantise `n` values of type `ty` from `bytes` (in parallel over blocks). `None`
/// for an unsupported type or when `bytes` is too short.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    let (per_block, block_bytes) = ty.block_layout()?;
    if !n.is_multiple_of(per_block) || bytes.len() < n / per_block * block_bytes {
        return None;
    }
    let mut out = vec![0f32; n];
    // Group blocks so each rayon task does a useful amount of work.
    let group = (4096 / per_block).max(1);
    out.par_chunks_mut(per_block * group)
        .zip(bytes.par_chunks(block_bytes * group))
        .for_each(|(y, b)| {
            for (yb, bb) in y.chunks_mut(per_block).zip(b.chunks(block_bytes)) {
                dequant_block(ty, bb, yb);
            }
        });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_block() {
        let mut b = Vec::from(h(0.5));
        // qs[j] = low nibble j%16, high nibble 15 - j%16.
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], ((15 - j) as f32 - 8.0) * 0.5);
        }
    }

    #[test]
    fn q4_1_block() {
        let mut b = Vec::from(h(0.25));
        b.extend(h(-1.0));
        b.extend((0..16u8).map(|j| j | (3 << 4)));
        let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_eq!(y[5], 5.0 * 0.25 - 1.0);
        assert_eq!(y[20], 3.0 * 0.25 - 1.0);
    }

    #[test]
    fn q8_0_block() {
        let mut b = Vec::from(h(2.0));
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        for (j, v) in y.iter().enumerate() {
            assert_eq!(*v, (j as f32 - 16.0) * 2.0);
        }
    }

    #[test]
    fn q4_k_block() {
        // d = 1, dmin = 0.5; sub-block scales/mins chosen per ggml's 6-bit packing.
        let mut b = Vec::from(h(1.0));
        b.extend(h(0.5));
        let sc: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 63];
        let mn: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 40];
        let mut scales = [0u8; 12];
        for j in 0..4 {
            scales[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            scales[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            scales[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
        }
        b.extend(scales);
        b.extend((0..128).map(|i| ((i % 16) as u8) | (((i / 8 % 16) as u8) << 4)));
        let y = dequantize(GgmlType::Q4K, &b, 256).unwrap();
        for chunk in 0..4 {
            for l in 0..32 {
                let q = (chunk * 32 + l) as u8;
                let (lo, hi) = (q % 16, q / 8 % 16);
                let s1 = 2 * chunk;
                let s2 = 2 * chunk + 1;
                assert_eq!(
                    y[chunk * 64 + l],
                    sc[s1] as f32 * lo as f32 - 0.5 * mn[s1] as f32
                );
                assert_eq!(
                    y[chunk * 64 + 32 + l],
                    sc[s2] as f32 * hi as f32 - 0.5 * mn[s2] as f32
                );
            }
        }
    }

    #[test]
    fn q6_k_block() {
        // Encode known 6-bit values q (0..64) and check y = d * scale * (q - 32).
        let q: Vec<u8> = (0..256).map(|i| ((i * 7) % 64) as u8).collect();
        let scales: [i8; 16] = [
            1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16,
        ];
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for half in 0..2 {
            for l in 0..32 {
                let base = half * 128;
                let (q1, q2, q3, q4) = (
                    q[base + l],
                    q[base + l + 32],
                    q[base + l + 64],
                    q[base + l + 96],
                );
                ql[half * 64 + l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
                ql[half * 64 + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
                qh[half * 32 + l] =
                    (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
        let mut b = Vec::from(ql);
        b.extend(qh);
        b.extend(scales.iter().map(|s| *s as u8));
        b.extend(h(0.5));
        let y = dequantize(GgmlType::Q6K, &b, 256).unwrap();
        for (i, v) in y.iter().enumerate() {
            let scale = scales[i / 16] as f32;
            assert_eq!(*v, 0.5 * scale * (q[i] as f32 - 32.0), "value {i}");
        }
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (n_head, hd, cols) = (2, 4, 3);
        let rows = n_head * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..n_head {
            for s in 0..2 {
                for i in 0..hd / 2 {
                    let src = h * hd + s * hd / 2 + i;
                    let dst = h * hd + i * 2 + s;
                    gguf[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        assert_eq!(unpermute_rows(&gguf, rows, cols, n_head), hf);
    }

    #[test]
    fn hf_names_map_to_gguf() {
        let llama = |hf: &str| gguf_name(hf, Family::Llama);
        let gemma = |hf: &str| gguf_name(hf, Family::Gemma3);
        assert_eq!(
            llama("model.layers.12.self_attn.o_proj.weight").unwrap(),
            "blk.12.attn_output.weight"
        );
        assert_eq!(
            llama("model.layers.0.post_attention_layernorm.weight").unwrap(),
            "blk.0.ffn_norm.weight"
        );
        assert_eq!(llama("lm_head.weight").unwrap(), "output.weight");
        assert!(llama("model.rotary.inv_freq").is_none());
        assert!(llama("model.layers.0.pre_feedforward_layernorm.weight").is_none());
        assert_eq!(
            gguf_name("model.layers.3.self_attn.k_norm.weight", Family::Qwen3).unwrap(),
            "blk.3.attn_k_norm.weight"
        );
        // Gemma 3: the norm before the MLP is `ffn_norm`, not `post_attention_layernorm`.
        for (hf, g) in [
            ("post_attention_layernorm", "post_attention_norm"),
            ("pre_feedforward_layernorm", "ffn_norm"),
            ("post_feedforward_layernorm", "post_ffw_norm"),
        ] {
            assert_eq!(
                gemma(&format!("model.layers.1.{hf}.weight")).unwrap(),
                format!("blk.1.{g}.weight")
            );
        }
    }
}
