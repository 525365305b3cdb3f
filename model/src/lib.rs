//! slayer's model core: a Llama-family decoder in burn (Llama, Mistral, Qwen2/2.5, Qwen3,
//! Gemma 3 as config data) and its file formats. It knows nothing of the engine, the
//! stages or their data formats (the compiler keeps it that way: this crate does not
//! depend on them); `slayer-stages` re-exports it as `slayer_stages::model`.
//!
//! - [`config`]: [`LlamaConfig`], HF `config.json` with HF field names, and its
//!   [`Family`] (Llama, Mistral, Qwen2): per-family differences as config data.
//! - [`llama`]: [`Llama`] (embedding, `blocks`, norm, `lm_head`), [`KvCache`], seeded init.
//! - [`block`], [`attention`], [`mlp`], [`rms_norm`], [`rope`]: the pieces of a block;
//!   [`fused_softmax`]: the attention's softmax as one autodiff op;
//!   [`token_linear`]: their linear layers as one 2-D product over all tokens.
//! - [`device`]: [`DeviceSpec`] (`cpu`, `cuda:N`) and the CPU backend alias [`Cpu`].
//! - [`safetensors_io`]: HF directories in and out ([`load_pretrained`], [`save_pretrained`]).
//! - [`safetensors_stream`]: streamed checkpoint writing (copy / mean / zeros per
//!   tensor, sharded like `save_pretrained`) for surgery and import.
//! - [`checkpoint_layout`]: a checkpoint's headers checked against its config.
//! - [`tensor_names`]: the one table of block tensor names (HF, GGUF), expected tensors,
//!   order; [`block_weights`]: a block's tensors by name ([`BlockWeights`]).
//! - [`weights`]: assembling a model from HF-named tensors, whatever the file format.
//! - [`tokenizer`], [`chat`]: `tokenizer.json` via the `tokenizers` crate, chat templates.
//! - [`gguf`]: GGUF import (dequantisation, q/k un-permutation); [`gguf_tokenizer`]: its
//!   tokenizer rebuilt as `tokenizer.json` (byte-level BPE and SentencePiece).
//! - [`import`]: one entry for "a model path" (HF dir or .gguf): load, tokenizer, import.
//! - [`generate`]: KV-cached generation, perplexity, per-token log-probabilities.
//! - [`precision`]: [`Residency`] (weights as f32 or as stored) and widening at use.
//! - [`error`]: [`ModelError`], naming files, tensors and keys.
//! - [`rng`]: the seeded generator every random choice in slayer draws from.

pub mod attention;
pub mod block;
pub mod block_weights;
pub mod chat;
pub mod checkpoint_layout;
pub mod config;
pub mod device;
pub mod error;
pub mod fused_softmax;
pub mod generate;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod import;
pub mod llama;
pub mod mlp;
pub mod precision;
pub mod rms_norm;
pub mod rng;
pub mod rope;
pub mod safetensors_io;
pub mod safetensors_stream;
pub mod tensor_names;
pub mod token_linear;
pub mod tokenizer;
pub mod weights;

pub use attention::{AttentionMask, LayerCache};
pub use block::Block;
pub use block_weights::{BlockWeights, LinearWeights};
pub use chat::{ChatMessage, ChatTemplate};
pub use config::{Family, LlamaConfig, RopeScaling, RopeSettings, TokenIds};
#[cfg(feature = "cuda")]
pub use device::Cuda;
pub use device::{Cpu, DeviceSpec};
pub use error::{ModelError, Result};
pub use generate::{GenerateOptions, Generation, Perplexity, generate, perplexity, token_logprobs};
pub use import::{import_to_dir, load_model, load_model_as, load_tokenizer};
pub use llama::{KvCache, Llama};
pub use precision::Residency;
pub use safetensors_io::{
    SaveDtype, load_pretrained, load_pretrained_as, load_pretrained_except, save_pretrained,
};
pub use tokenizer::Tokenizer;
