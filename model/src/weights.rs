//! Assembling a [`Llama`] from named HF tensors, whatever file they come from.
//!
//! A [`WeightSource`] hands out tensors by HF name (`model.layers.{i}.self_attn.q_proj.weight`
//! ...) with their HF shape, as f32 or in the half type they are stored in
//! ([`HostData`]); [`build_llama`] checks every shape against the config, transposes
//! linear weights from HF's `[out, in]` to burn's `[in, out]`, converts to f32 or keeps
//! the stored dtype ([`Residency`]), and uploads tensor by tensor so that peak memory
//! stays near one copy of the model (in its resident dtype) plus one tensor.
//! [`hf_tensors`] is the reverse direction used by the savers.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::TensorCreationOptions;
use rayon::prelude::*;

use super::block_weights::{BlockWeights, LinearWeights};
use super::config::LlamaConfig;
use super::error::{ModelError, Result};
use super::llama::Llama;
use super::precision::Residency;
use super::tensor_names::{BLOCK_MODULES, BlockLinear, BlockModule, layer_tensor};

/// Row-major values of a host tensor: f32, or a half type as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// bfloat16, as stored.
    BF16(Vec<half::bf16>),
    /// IEEE half, as stored.
    F16(Vec<half::f16>),
}

impl HostData {
    /// The values as f32 (exact), widened in parallel.
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            HostData::F32(v) => v,
            HostData::BF16(v) => v.par_iter().map(|x| x.to_f32()).collect(),
            HostData::F16(v) => v.par_iter().map(|x| x.to_f32()).collect(),
        }
    }

    /// Held as `residency` asks: f32, or unchanged.
    pub fn resident(self, residency: Residency) -> HostData {
        match residency {
            Residency::F32 => HostData::F32(self.into_f32()),
            Residency::Stored => self,
        }
    }

    /// Row-major `[rows, cols]` -> `[cols, rows]`, same dtype.
    fn transposed(&self, rows: usize, cols: usize) -> HostData {
        match self {
            HostData::F32(v) => HostData::F32(transpose(v, rows, cols)),
            HostData::BF16(v) => HostData::BF16(transpose(v, rows, cols)),
            HostData::F16(v) => HostData::F16(transpose(v, rows, cols)),
        }
    }

    fn into_tensor<B: Backend, const D: usize>(
        self,
        shape: [usize; D],
        device: &B::Device,
    ) -> Tensor<B, D> {
        // f32 follows the device's dtype policy (bf16 on a CUDA device set up for bf16
        // training); halves are only here when they are to stay as stored.
        let data = match self {
            HostData::F32(v) => return Tensor::from_data(TensorData::new(v, shape), device),
            HostData::BF16(v) => TensorData::new(v, shape),
            HostData::F16(v) => TensorData::new(v, shape),
        };
        let dtype = data.dtype;
        Tensor::from_data(
            data,
            TensorCreationOptions::new(device.clone()).with_dtype(dtype),
        )
    }
}

/// One tensor in host memory: HF shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape as stored (HF order).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: HostData,
}

impl HostTensor {
    /// The values as f32.
    pub fn into_f32(self) -> Vec<f32> {
        self.data.into_f32()
    }
}

/// Something that yields HF-named tensors as f32 (safetensors files, a GGUF file).
pub trait WeightSource {
    /// The tensor called `name`, or `Ok(None)` when the source has no such tensor.
    fn tensor(&self, name: &str) -> Result<Option<HostTensor>>;
    /// The 2-D tensor `name` (`[rows, cols]` as stored) transposed to `[cols, rows]` and
    /// held as `residency` says; other ranks are returned as stored. Sources that can
    /// read a tensor in pieces override this so that the stored and the transposed copy
    /// of a large matrix never coexist.
    fn tensor_transposed(&self, name: &str, residency: Residency) -> Result<Option<HostTensor>> {
        Ok(self.tensor(name)?.map(|t| match t.shape[..] {
            [rows, cols] => HostTensor {
                shape: vec![cols, rows],
                data: t.data.resident(residency).transposed(rows, cols),
            },
            _ => t,
        }))
    }
    /// The file or directory to name in errors.
    fn origin(&self) -> &Path;
}

fn fetch(src: &dyn WeightSource, name: &str, expected: &[usize]) -> Result<HostTensor> {
    let t = src.tensor(name)?.ok_or_else(|| ModelError::MissingTensor {
        file: src.origin().to_path_buf(),
        name: name.to_string(),
    })?;
    if t.shape != expected {
        return Err(ModelError::ShapeMismatch {
            file: src.origin().to_path_buf(),
            name: name.to_string(),
            expected: expected.to_vec(),
            actual: t.shape,
        });
    }
    Ok(t)
}

/// Row-major `[rows, cols]` -> `[cols, rows]`, blocked for cache locality, in parallel.
pub fn transpose<T: Copy + Default + Send + Sync>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 32;
    let mut out = vec![T::default(); data.len()];
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(tile, chunk)| {
            // `chunk` holds output rows c0..c0+n (input columns).
            let c0 = tile * TILE;
            let n = chunk.len() / rows.max(1);
            for r0 in (0..rows).step_by(TILE) {
                let r1 = (r0 + TILE).min(rows);
                for dc in 0..n {
                    let c = c0 + dc;
                    for r in r0..r1 {
                        chunk[dc * rows + r] = data[r * cols + c];
                    }
                }
            }
        });
    out
}

/// Where [`build_llama`] reads tensors from and how it holds them.
#[derive(Clone, Copy)]
struct Loader<'a, B: Backend> {
    src: &'a dyn WeightSource,
    residency: Residency,
    device: &'a B::Device,
}

impl<B: Backend> Loader<'_, B> {
    fn vector(&self, name: &str, len: usize) -> Result<Tensor<B, 1>> {
        let t = fetch(self.src, name, &[len])?;
        Ok(t.data
            .resident(self.residency)
            .into_tensor([len], self.device))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor<B, 2>> {
        let t = fetch(self.src, name, &[rows, cols])?;
        Ok(t.data
            .resident(self.residency)
            .into_tensor([rows, cols], self.device))
    }

    /// An HF `[out, in]` linear weight as a burn `[in, out]` tensor.
    fn linear_weight(&self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        let src = self.src;
        let t = src
            .tensor_transposed(name, self.residency)?
            .ok_or_else(|| ModelError::MissingTensor {
                file: src.origin().to_path_buf(),
                name: name.to_string(),
            })?;
        if t.shape != [d_in, d_out] {
            let mut actual = t.shape;
            actual.reverse();
            return Err(ModelError::ShapeMismatch {
                file: src.origin().to_path_buf(),
                name: name.to_string(),
                expected: vec![d_out, d_in],
                actual,
            });
        }
        Ok(t.data.into_tensor([d_in, d_out], self.device))
    }

    /// Projection `l` of the block named by `prefix` (`model.layers.{i}`).
    fn linear(
        &self,
        prefix: &str,
        l: BlockLinear,
        config: &LlamaConfig,
    ) -> Result<LinearWeights<B>> {
        let names = l.names();
        let (d_in, d_out) = l.dims(config);
        let weight = self.linear_weight(&format!("{prefix}.{}", names.weight), d_in, d_out)?;
        let bias = if l.has_bias(config) {
            Some(self.vector(&format!("{prefix}.{}", names.bias), d_out)?)
        } else {
            None
        };
        Ok(LinearWeights { weight, bias })
    }
}

/// Build a model from HF-named tensors, checking every shape against `config`; weights
/// are held as `residency` says.
pub fn build_llama<B: Backend>(
    config: LlamaConfig,
    src: &dyn WeightSource,
    device: &B::Device,
    residency: Residency,
) -> Result<Llama<B>> {
    build_llama_except(config, src, device, residency, &Default::default())
}

/// [`build_llama`] with the blocks in `f32_blocks` converted to f32 whatever `residency`
/// says (training: the blocks that train need f32 weights, frozen ones stay as stored).
pub fn build_llama_except<B: Backend>(
    config: LlamaConfig,
    src: &dyn WeightSource,
    device: &B::Device,
    residency: Residency,
    f32_blocks: &std::collections::BTreeSet<usize>,
) -> Result<Llama<B>> {
    let l = Loader {
        src,
        residency,
        device,
    };
    let f32_loader = Loader {
        residency: Residency::F32,
        ..l
    };
    config.validate().map_err(|message| ModelError::Config {
        path: src.origin().join("config.json"),
        message,
    })?;
    let (h, vocab) = (config.hidden_size, config.vocab_size);
    let embed = l.matrix("model.embed_tokens.weight", vocab, h)?;
    // Not sized by the config: a block count the file cannot hold fails at the first
    // missing tensor, before any large allocation.
    let mut blocks = Vec::new();
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let l = if f32_blocks.contains(&i) {
            &f32_loader
        } else {
            &l
        };
        let w = BlockWeights::build(
            &config,
            config.layer_attention(i),
            |n, len| l.vector(&format!("{p}.{}", n.names().weight), len),
            |lin| l.linear(&p, lin, &config),
        )?;
        blocks.push(super::block::Block::from_weights(&config, w));
    }
    let norm = l.vector("model.norm.weight", h)?;
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(l.linear_weight("lm_head.weight", h, vocab)?)
    };
    Llama::from_parts(config, embed, blocks, norm, lm_head)
}

/// A model tensor to be written under an HF name.
#[derive(Debug, Clone)]
pub enum NamedTensor<B: Backend> {
    /// A vector (norm weight, bias).
    Vector(Tensor<B, 1>),
    /// A matrix stored as is (embedding).
    Matrix(Tensor<B, 2>),
    /// A burn `[in, out]` linear weight, written transposed as HF `[out, in]`.
    Linear(Tensor<B, 2>),
}

impl<B: Backend> NamedTensor<B> {
    /// The shape as written (HF order).
    pub fn hf_shape(&self) -> Vec<usize> {
        match self {
            NamedTensor::Vector(t) => t.dims().to_vec(),
            NamedTensor::Matrix(t) => t.dims().to_vec(),
            NamedTensor::Linear(t) => {
                let [i, o] = t.dims();
                vec![o, i]
            }
        }
    }

    /// Values in HF layout as f32, row-major.
    pub fn to_hf_f32(&self) -> Vec<f32> {
        let data = match self {
            NamedTensor::Vector(t) => t.to_data(),
            NamedTensor::Matrix(t) => t.to_data(),
            NamedTensor::Linear(t) => {
                let [i, o] = t.dims();
                let d = t.to_data().convert::<f32>();
                let v = d.to_vec::<f32>().unwrap_or_default();
                return transpose(&v, i, o);
            }
        };
        data.convert::<f32>().into_vec::<f32>().unwrap_or_default()
    }
}

/// Every tensor of `model` under its HF name, in HF's order (embedding, layers in the
/// table's module order, norm, head). A tied head is omitted, as transformers does.
pub fn hf_tensors<B: Backend>(model: &Llama<B>) -> Vec<(String, NamedTensor<B>)> {
    let mut out = Vec::new();
    out.push((
        "model.embed_tokens.weight".to_string(),
        NamedTensor::Matrix(model.embed_tokens.weight.val()),
    ));
    for (i, block) in model.blocks.iter().enumerate() {
        let w = block.weights();
        for row in &BLOCK_MODULES {
            let name = |suffix: &str| layer_tensor(i, suffix);
            match row.module {
                BlockModule::Linear(l) => {
                    let lin = w.linear(l);
                    out.push((name(row.weight), NamedTensor::Linear(lin.weight.clone())));
                    if let Some(bias) = &lin.bias {
                        out.push((name(row.bias), NamedTensor::Vector(bias.clone())));
                    }
                }
                BlockModule::Norm(n) => {
                    if let Some(weight) = w.norm(n) {
                        out.push((name(row.weight), NamedTensor::Vector(weight.clone())));
                    }
                }
            }
        }
    }
    out.push((
        "model.norm.weight".to_string(),
        NamedTensor::Vector(model.norm.weight.val()),
    ));
    if let Some(head) = &model.lm_head {
        out.push((
            "lm_head.weight".to_string(),
            NamedTensor::Linear(head.weight.val()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_naive() {
        for (r, c) in [(1, 1), (3, 70), (65, 33), (40, 1)] {
            let data: Vec<f32> = (0..r * c).map(|x| x as f32).collect();
            let t = transpose(&data, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], data[i * c + j]);
                }
            }
        }
    }
}
