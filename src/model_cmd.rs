//! The command line of the model subcommands (`perplexity`, `inspect`, `generate`),
//! flattened into the binary's commands; their work is
//! `slayer_stages::model_commands`.

use std::path::PathBuf;

use clap::Subcommand;
use slayer_stages::model::{GenerateOptions, ModelError};
use slayer_stages::model_commands;

#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Perplexity of a text file's first N tokens, scored in one window
    Perplexity {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value_t = 1024)]
        max_tokens: usize,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// A model's config, parameter count per block, dtype and size
    Inspect { model: PathBuf },
    /// Continue a prompt (greedy unless --temperature > 0), streaming tokens
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        /// Wrap the prompt as a user turn with the model's chat template
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

/// Runs one model subcommand, printing to stdout.
pub fn run(cmd: ModelCmd) -> Result<(), ModelError> {
    match cmd {
        ModelCmd::Perplexity {
            model,
            file,
            max_tokens,
            json,
            device,
        } => model_commands::perplexity(&model, &file, max_tokens, json, &device),
        ModelCmd::Inspect { model } => model_commands::inspect(&model),
        ModelCmd::Generate {
            model,
            prompt,
            chat,
            max_new_tokens,
            temperature,
            seed,
            device,
        } => {
            let opts = GenerateOptions {
                max_new_tokens,
                temperature,
                seed,
                ..Default::default()
            };
            model_commands::generate(&model, &prompt, chat, opts, &device)
        }
    }
}
