//! Assembling a [`Llama`] from named HF tensors, whatever file they come from.
//!
//! A [`WeightSource`] hands out tensors by HF name (`model.layers.{i}.self_attn.q_proj.weight`
//! ...) as f32 with their HF shape; [`build_llama`] checks every shape against the config,
//! transposes linear weights from HF's `[out, in]` to burn's `[in, out]`, and uploads
//! tensor by tensor so that peak memory stays near one copy of the model.
//! [`hf_tensors`] is the reverse direction used by the savers.

use std::path::Path;

use burn::prelude::*;
use rayon::prelude::*;

use super::config::LlamaConfig;
use super::error::{ModelError, Result};
use super::llama::{BlockWeights, Llama};

/// One tensor in host memory: HF shape and row-major f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape as stored (HF order).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Something that yields HF-named tensors as f32 (safetensors files, a GGUF file).
pub trait WeightSource {
    /// The tensor called `name`, or `Ok(None)` when the source has no such tensor.
    fn tensor(&self, name: &str) -> Result<Option<HostTensor>>;
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
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0f32; data.len()];
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

fn vector<B: Backend>(
    src: &dyn WeightSource,
    name: &str,
    len: usize,
    device: &B::Device,
) -> Result<Tensor<B, 1>> {
    let t = fetch(src, name, &[len])?;
    Ok(Tensor::from_data(TensorData::new(t.data, [len]), device))
}

/// An HF `[out, in]` linear weight as a burn `[in, out]` tensor.
fn linear_weight<B: Backend>(
    src: &dyn WeightSource,
    name: &str,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    let t = fetch(src, name, &[d_out, d_in])?;
    let data = transpose(&t.data, d_out, d_in);
    Ok(Tensor::from_data(
        TensorData::new(data, [d_in, d_out]),
        device,
    ))
}

fn linear<B: Backend>(
    src: &dyn WeightSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Result<(Tensor<B, 2>, Option<Tensor<B, 1>>)> {
    let w = linear_weight(src, &format!("{prefix}.weight"), d_in, d_out, device)?;
    let b = if bias {
        Some(vector(src, &format!("{prefix}.bias"), d_out, device)?)
    } else {
        None
    };
    Ok((w, b))
}

/// Build a model from HF-named tensors, checking every shape against `config`.
pub fn build_llama<B: Backend>(
    config: LlamaConfig,
    src: &dyn WeightSource,
    device: &B::Device,
) -> Result<Llama<B>> {
    config.validate().map_err(|message| ModelError::Config {
        path: src.origin().join("config.json"),
        message,
    })?;
    let (h, inter, vocab) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let qd = config.num_attention_heads * config.head_dim();
    let kvd = config.num_key_value_heads() * config.head_dim();
    let embed = fetch(src, "model.embed_tokens.weight", &[vocab, h])?;
    let embed = Tensor::from_data(TensorData::new(embed.data, [vocab, h]), device);
    let mut blocks = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let ab = config.attention_bias;
        let mb = config.mlp_bias;
        let w = BlockWeights {
            input_layernorm: vector(src, &format!("{p}.input_layernorm.weight"), h, device)?,
            post_attention_layernorm: vector(
                src,
                &format!("{p}.post_attention_layernorm.weight"),
                h,
                device,
            )?,
            attn: [
                linear(src, &format!("{p}.self_attn.q_proj"), h, qd, ab, device)?,
                linear(src, &format!("{p}.self_attn.k_proj"), h, kvd, ab, device)?,
                linear(src, &format!("{p}.self_attn.v_proj"), h, kvd, ab, device)?,
                linear(src, &format!("{p}.self_attn.o_proj"), qd, h, ab, device)?,
            ],
            mlp: [
                linear(src, &format!("{p}.mlp.gate_proj"), h, inter, mb, device)?,
                linear(src, &format!("{p}.mlp.up_proj"), h, inter, mb, device)?,
                linear(src, &format!("{p}.mlp.down_proj"), inter, h, mb, device)?,
            ],
        };
        blocks.push(super::block::Block::from_weights(&config, w));
    }
    let norm = vector(src, "model.norm.weight", h, device)?;
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(linear_weight(src, "lm_head.weight", h, vocab, device)?)
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

/// Every tensor of `model` under its HF name, in HF's order (embedding, layers, norm,
/// head). A tied head is omitted, as transformers does.
pub fn hf_tensors<B: Backend>(model: &Llama<B>) -> Vec<(String, NamedTensor<B>)> {
    let mut out = Vec::new();
    out.push((
        "model.embed_tokens.weight".to_string(),
        NamedTensor::Matrix(model.embed_tokens.weight.val()),
    ));
    for (i, b) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        out.push((
            format!("{p}.input_layernorm.weight"),
            NamedTensor::Vector(b.input_layernorm.weight.val()),
        ));
        let a = &b.self_attn;
        let m = &b.mlp;
        let linears = [
            ("self_attn.q_proj", &a.q_proj),
            ("self_attn.k_proj", &a.k_proj),
            ("self_attn.v_proj", &a.v_proj),
            ("self_attn.o_proj", &a.o_proj),
            ("mlp.gate_proj", &m.gate_proj),
            ("mlp.up_proj", &m.up_proj),
            ("mlp.down_proj", &m.down_proj),
        ];
        for (name, lin) in linears {
            out.push((
                format!("{p}.{name}.weight"),
                NamedTensor::Linear(lin.weight.val()),
            ));
            if let Some(bias) = &lin.bias {
                out.push((format!("{p}.{name}.bias"), NamedTensor::Vector(bias.val())));
            }
        }
        out.push((
            format!("{p}.post_attention_layernorm.weight"),
            NamedTensor::Vector(b.post_attention_layernorm.weight.val()),
        ));
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
