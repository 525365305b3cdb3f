//! What the `slayer` binary's model subcommands do: [`perplexity`], [`inspect`],
//! [`generate`] (a model is an HF directory or a `.gguf` file; `device` picks the backend
//! they run on). The binary owns their command line (clap); the work stays here, where
//! the model's generic code is compiled optimised even in the dev profile.

use std::io::Write;
use std::path::Path;

use crate::model::config::Activation;
use burn::prelude::Backend;

use crate::model::device::BackendTask;
use crate::model::{self, ChatMessage, DeviceSpec, GenerateOptions, Llama, ModelError, Residency};

/// `slayer perplexity`: the perplexity of `file`'s first `max_tokens` tokens under
/// `model`, scored in one window on `device` (`cpu`, `cuda:N`), printed (as JSON with
/// `json`).
pub fn perplexity(
    model: &Path,
    file: &Path,
    max_tokens: usize,
    json: bool,
    device: &str,
) -> Result<(), ModelError> {
    let device: DeviceSpec = device.parse()?;
    device.dispatch(Perplexity {
        model,
        file,
        max_tokens,
        json,
    })?
}

/// `slayer generate`: continue `prompt` (a user turn of the model's chat template with
/// `chat`) on `device`, streaming the tokens to stdout.
pub fn generate(
    model: &Path,
    prompt: &str,
    chat: bool,
    opts: GenerateOptions,
    device: &str,
) -> Result<(), ModelError> {
    let device: DeviceSpec = device.parse()?;
    device.dispatch(Generate {
        model,
        prompt,
        chat,
        opts,
    })?
}

fn load<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(Llama<B>, model::Tokenizer), ModelError> {
    let tok = model::load_tokenizer(path)?;
    // Weights stay in the checkpoint's dtype (bf16 models at 2 bytes a parameter).
    let m = model::load_model_as::<B>(path, device, Residency::Stored)?;
    Ok((m, tok))
}

/// `slayer perplexity`, run on the `--device` backend.
struct Perplexity<'a> {
    model: &'a Path,
    file: &'a Path,
    max_tokens: usize,
    json: bool,
}

impl BackendTask for Perplexity<'_> {
    type Output = Result<(), ModelError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        perplexity_on::<B>(self.model, self.file, self.max_tokens, self.json, &device)
    }
}

/// `slayer generate`, run on the `--device` backend.
struct Generate<'a> {
    model: &'a Path,
    prompt: &'a str,
    chat: bool,
    opts: GenerateOptions,
}

impl BackendTask for Generate<'_> {
    type Output = Result<(), ModelError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        generate_on::<B>(self.model, self.prompt, self.chat, self.opts, &device)
    }
}

fn perplexity_on<B: Backend>(
    model_path: &Path,
    file: &Path,
    max_tokens: usize,
    json: bool,
    device: &B::Device,
) -> Result<(), ModelError> {
    let text = std::fs::read_to_string(file).map_err(|e| ModelError::io(file, e))?;
    let (m, tok) = load::<B>(model_path, device)?;
    // No BOS unless the tokenizer's own post-processor adds one.
    let mut ids = tok.encode(&text, true)?;
    ids.truncate(max_tokens);
    let p = model::perplexity(&m, &ids)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"tokens": p.tokens, "nll": p.nll, "ppl": p.ppl})
        );
    } else {
        println!(
            "{} tokens, mean NLL {:.6} nats, perplexity {:.4}",
            p.tokens, p.nll, p.ppl
        );
    }
    Ok(())
}

/// `slayer inspect`: a model's config, parameter count per block, dtype and size.
pub fn inspect(path: &Path) -> Result<(), ModelError> {
    // Opening checks that every tensor's data lies inside its file.
    let (config, tensors) = if model::import::is_gguf(path) {
        let gguf = model::gguf::GgufFile::open(path)?;
        (gguf.config()?, gguf.tensors.len())
    } else {
        let weights = model::safetensors_io::SafetensorsCheckpoint::open(path)?;
        let config = model::LlamaConfig::from_file(&path.join("config.json"))?;
        // The headers must hold every tensor config.json implies, with its shape.
        model::checkpoint_layout::check_layout(&weights, &config)?;
        (config, weights.names().len())
    };
    let total = crate::model_kinds::parameter_count(&config);
    let per_block = {
        let mut one = config.clone();
        one.num_hidden_layers = 1;
        let mut none = config.clone();
        none.num_hidden_layers = 0;
        crate::model_kinds::parameter_count(&one) - crate::model_kinds::parameter_count(&none)
    };
    let family = config.family().map_err(ModelError::Unsupported)?;
    let biases: Vec<&str> = ["q", "k", "v", "o"]
        .into_iter()
        .zip(config.attention_biases())
        .filter_map(|(name, has)| has.then_some(name))
        .collect();
    println!("model       {}", path.display());
    println!("family      {family} ({})", family.architecture());
    let window = match config.sliding_window() {
        None => "none".to_string(),
        Some(w) if config.mixed_layers() => {
            let global: Vec<String> = config
                .sliding_layers()
                .iter()
                .enumerate()
                .filter(|(_, s)| !**s)
                .map(|(i, _)| i.to_string())
                .collect();
            format!(
                "{w} keys in local blocks, global blocks {}",
                global.join(",")
            )
        }
        Some(w) => format!("{w} keys"),
    };
    println!(
        "attention   biases: {}; q/k norms: {}; sliding window: {window}; score scale {:.4}",
        if biases.is_empty() {
            "none".to_string()
        } else {
            biases.join("/")
        },
        if config.qk_norm() { "yes" } else { "no" },
        config.attention_scale()
    );
    let mut block = vec![format!(
        "{} MLP",
        match config.activation().map_err(ModelError::Unsupported)? {
            Activation::Silu => "SwiGLU",
            Activation::GeluTanh => "GeGLU (gelu tanh)",
        }
    )];
    if config.sandwich_norms() {
        block.push("norms before and after attention and MLP".into());
    }
    if config.norm_unit_offset() {
        block.push("norms scale by 1 + w".into());
    }
    if let Some(scale) = config.embedding_scale() {
        block.push(format!("embeddings x {scale:.4}"));
    }
    if let Some(cap) = config.final_logit_softcapping() {
        block.push(format!("logits soft-capped at {cap}"));
    }
    println!("block       {}", block.join("; "));
    println!("tensors     {tensors}");
    println!("blocks      {}", config.num_hidden_layers);
    println!(
        "hidden      {} (heads {}, kv heads {}, head dim {})",
        config.hidden_size,
        config.num_attention_heads,
        config.num_key_value_heads(),
        config.head_dim()
    );
    println!("mlp         {}", config.intermediate_size);
    println!(
        "vocab       {}{}",
        config.vocab_size,
        if config.tie_word_embeddings {
            " (tied embeddings)"
        } else {
            ""
        }
    );
    println!(
        "rope        {:?}",
        config.rope().map_err(ModelError::Unsupported)?
    );
    if let Some(local) = config.local_rope().map_err(ModelError::Unsupported)? {
        println!("local rope  {local:?}");
    }
    println!("dtype       {}", config.stored_dtype().unwrap_or("unknown"));
    println!(
        "parameters  {} total, {} per block",
        human(total),
        human(per_block)
    );
    let size: u64 = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| ModelError::io(path, e))?
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    } else {
        std::fs::metadata(path)
            .map_err(|e| ModelError::io(path, e))?
            .len()
    };
    println!(
        "size        {:.1} MiB on disk",
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn human(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2}B", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else {
        format!("{:.1}K", n as f64 / 1e3)
    }
}

fn generate_on<B: Backend>(
    path: &Path,
    prompt: &str,
    chat: bool,
    mut opts: GenerateOptions,
    device: &B::Device,
) -> Result<(), ModelError> {
    let (m, tok) = load::<B>(path, device)?;
    let ids = if chat {
        tok.encode_chat(&[ChatMessage::new("user", prompt)], true)?
    } else {
        tok.encode(prompt, true)?
    };
    opts.stop_ids = tok.stop_ids();
    let mut shown = String::new();
    let mut all = Vec::new();
    let mut stdout = std::io::stdout();
    let gen_result = model::generate(&m, &ids, &opts, |t| {
        all.push(t);
        // Decode the whole continuation so multi-byte characters print whole.
        if let Ok(text) = tok.decode(&all, true)
            && text.len() > shown.len()
            && text.is_char_boundary(shown.len())
        {
            let _ = write!(stdout, "{}", &text[shown.len()..]);
            let _ = stdout.flush();
            shown = text;
        }
        true
    })?;
    println!();
    eprintln!(
        "{} tokens; prefill {:.2} s ({:.1} tok/s), decode {:.1} tok/s",
        gen_result.tokens.len(),
        gen_result.prefill_secs,
        ids.len() as f64 / gen_result.prefill_secs.max(1e-9),
        gen_result.tokens.len().saturating_sub(1) as f64 / gen_result.decode_secs.max(1e-9)
    );
    Ok(())
}
