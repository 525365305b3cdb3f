//! Greedy, KV-cached generation until a stop string (lm-eval's `generate_until`), on top
//! of [`crate::model::generate`].
//!
//! The prompt is left-truncated to `max_len - max_new_tokens` tokens; generation stops at
//! the tokenizer's end tokens, at `max_new_tokens`, or as soon as the decoded text holds
//! a stop string; the returned text is cut before the first stop string.

use burn::prelude::*;

use super::error::Result;
use crate::model::{GenerateOptions, Llama, Tokenizer, generate};

/// Settings of one generation.
#[derive(Debug, Clone)]
pub struct GenSettings {
    /// Stop strings (the text is cut before the earliest one).
    pub until: Vec<String>,
    /// New-token budget.
    pub max_new_tokens: usize,
    /// The model's context length.
    pub max_len: usize,
    /// Add the tokenizer's special tokens to the prompt.
    pub add_special: bool,
    /// 0 = greedy.
    pub temperature: f32,
    /// Sampler seed (temperature > 0).
    pub seed: u64,
}

/// Cut `text` before the earliest stop string.
pub fn cut_at_stops(text: &str, until: &[String]) -> String {
    let end = until
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
        .unwrap_or(text.len());
    text[..end].to_string()
}

/// Generate a continuation of `prompt` and return its text, cut at the stop strings.
pub fn generate_text<B: Backend>(
    model: &Llama<B>,
    tok: &Tokenizer,
    prompt: &str,
    s: &GenSettings,
) -> Result<String> {
    let mut ids = tok.encode(prompt, s.add_special)?;
    let room = s.max_len.saturating_sub(s.max_new_tokens).max(1);
    if ids.len() > room {
        ids.drain(..ids.len() - room);
    }
    if ids.is_empty() {
        ids = tok.encode(" ", false)?;
    }
    let opts = GenerateOptions {
        max_new_tokens: s
            .max_new_tokens
            .min(s.max_len.saturating_sub(ids.len()).max(1)),
        temperature: s.temperature,
        seed: s.seed,
        stop_ids: tok.stop_ids(),
        ..Default::default()
    };
    let mut tokens: Vec<u32> = Vec::new();
    let mut decode_error = None;
    generate(model, &ids, &opts, |t| {
        tokens.push(t);
        if s.until.is_empty() {
            return true;
        }
        match tok.decode(&tokens, true) {
            Ok(text) => !s
                .until
                .iter()
                .any(|u| !u.is_empty() && text.contains(u.as_str())),
            Err(e) => {
                decode_error = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = decode_error {
        return Err(e.into());
    }
    let text = tok.decode(&tokens, true)?;
    Ok(cut_at_stops(&text, &s.until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_earliest_stop() {
        let until = vec!["\ndef".to_string(), "\nif".to_string()];
        assert_eq!(
            cut_at_stops("  return 1\nif x:\ndef f", &until),
            "  return 1"
        );
        assert_eq!(cut_at_stops("abc", &until), "abc");
    }
}
