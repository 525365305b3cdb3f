//! [`Tokenizer`]: an HF `tokenizer.json` through the `tokenizers` crate (ids identical to
//! Python's `tokenizers` for the same file), plus what `tokenizer_config.json` adds: BOS/EOS
//! token texts and the chat template ([`ChatTemplate`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chat::{ChatMessage, ChatTemplate};
use super::error::{ModelError, Result};

/// A loaded tokenizer with its chat template, if any.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    bos_token: Option<String>,
    eos_token: Option<String>,
    chat_template: Option<ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("chat_template", &self.chat_template)
            .finish()
    }
}

/// Parses `tokenizer.json` text. The `tokenizers` crate panics on some malformed files
/// (e.g. a `decoder` object that matches no decoder: `.expect("Helper")` in its
/// deserializer); that panic is caught and returned as an error like any other.
pub fn parse_tokenizer_json(json: &str) -> std::result::Result<tokenizers::Tokenizer, String> {
    let parsed = std::panic::catch_unwind(|| json.parse::<tokenizers::Tokenizer>());
    match parsed {
        Ok(Ok(tok)) => Ok(tok),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            Err("malformed tokenizer.json (the tokenizers library panicked reading it)".into())
        }
    }
}

/// `tokenizer_config.json` stores special tokens as a string or as `{"content": ...}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// Load `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut tok = Self::from_file(&dir.join("tokenizer.json"))?;
        let config_path = dir.join("tokenizer_config.json");
        if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| ModelError::io(&config_path, e))?;
            let config: Value = serde_json::from_str(&text).map_err(|e| ModelError::Tokenizer {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
            tok.apply_config(&config);
        }
        Ok(tok)
    }

    /// Load a `tokenizer.json` file alone (no chat template).
    pub fn from_file(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&json, path)
    }

    /// Parse `tokenizer.json` text (`path` names it in errors).
    pub fn from_json_str(json: &str, path: &Path) -> Result<Self> {
        let inner = parse_tokenizer_json(json).map_err(|message| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(Self::bare(inner, path))
    }

    /// A tokenizer without BOS/EOS texts or chat template (set by `apply_config`).
    fn bare(inner: tokenizers::Tokenizer, path: &Path) -> Self {
        Tokenizer {
            inner,
            path: path.to_path_buf(),
            bos_token: None,
            eos_token: None,
            chat_template: None,
        }
    }

    /// Take BOS/EOS texts and the chat template from a `tokenizer_config.json` value.
    pub fn apply_config(&mut self, config: &Value) {
        self.bos_token = token_text(config.get("bos_token")).or(self.bos_token.take());
        self.eos_token = token_text(config.get("eos_token")).or(self.eos_token.take());
        let jinja = match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        if let Some(jinja) = jinja {
            self.chat_template = ChatTemplate::detect(&jinja);
        }
    }

    /// Override the chat template (e.g. `--chat-template llama3`).
    pub fn set_chat_template(&mut self, template: Option<ChatTemplate>) {
        self.chat_template = template;
    }

    /// The detected chat template.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The file this tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn err(&self, e: tokenizers::Error) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Token ids of `text`. With `add_special_tokens`, the tokenizer's post-processor
    /// adds what it is configured to (e.g. BOS for Llama), exactly as HF's
    /// `tokenizer(text)` does; SmolLM2's adds nothing.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.err(e))
    }

    /// Id of a token text.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Text of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The BOS token text from `tokenizer_config.json`.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// Ids that end generation: the EOS token and the chat format's end-of-turn token.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut texts: Vec<&str> = self.eos_token.as_deref().into_iter().collect();
        if let Some(t) = &self.chat_template {
            texts.extend(t.stop_tokens());
        }
        for text in texts {
            if let Some(id) = self.token_to_id(text)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// Render `messages` with the chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_ref().ok_or_else(|| ModelError::Tokenizer {
            path: self.path.clone(),
            message: "no recognised chat template (tokenizer_config.json has none, or not ChatML / Llama 2 / Mistral / Llama 3 / Gemma); pass one by name".into(),
        })?;
        template.render(
            messages,
            add_generation_prompt,
            self.bos_token.as_deref().unwrap_or(""),
        )
    }

    /// Render and encode a conversation (special tokens come from the template text,
    /// so none are added by the post-processor).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }
}
