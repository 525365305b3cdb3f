//! Chat templates of the common Llama-family formats, rendered in Rust.
//!
//! HF stores a Jinja template in `tokenizer_config.json`; rather than embedding a Jinja
//! engine, [`ChatTemplate::detect`] recognises the family by its markers and renders the
//! same text:
//!
//! | family | marker | shape |
//! |---|---|---|
//! | ChatML (SmolLM2, Qwen) | `<\|im_start\|>` | `<\|im_start\|>role\ncontent<\|im_end\|>\n` |
//! | Llama 2 | `[INST]` and `<<SYS>>` | `<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s>` |
//! | Mistral (v0.1, v0.2) | `[INST]` | `<s>[INST] user [/INST]answer</s>` (no system role) |
//! | Llama 3 | `<\|start_header_id\|>` | `<\|start_header_id\|>role<\|end_header_id\|>\n\ncontent<\|eot_id\|>` |
//! | Gemma | `<start_of_turn>` | `<bos><start_of_turn>user\nsys\n\nuser<end_of_turn>\n<start_of_turn>model\n` |
//!
//! A ChatML template that inserts a default system prompt when the conversation has
//! none (SmolLM2, Qwen2.5) keeps that behaviour: the prompt is read from the template.
//! `stages/tests/model_families.rs` checks the renderings against transformers'
//! `apply_chat_template` on the released templates (`dev/make_chat_fixture.py`).
//! The rendered text already contains the special tokens, so encode it with
//! `add_special_tokens = false`, as transformers' `apply_chat_template` does.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{ModelError, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// A chat format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// ChatML, with the system prompt the template inserts when none is given.
    ChatMl {
        /// Default system prompt, if the template has one.
        default_system: Option<String>,
    },
    /// Llama 2 `[INST]` format.
    Llama2,
    /// Mistral's `[INST]` format (Mistral-7B-Instruct v0.1/v0.2): no system prompt, the
    /// answer right after `[/INST]`, then EOS (and a space after it in v0.1).
    Mistral {
        /// Whether a space follows each answer's EOS (v0.1's template).
        space_after_eos: bool,
    },
    /// Llama 3 header format.
    Llama3,
    /// Gemma's turns (`<start_of_turn>user` / `model`), the system prompt folded into
    /// the first user turn.
    Gemma,
}

impl FromStr for ChatTemplate {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "chatml" => Ok(ChatTemplate::ChatMl {
                default_system: None,
            }),
            "llama2" | "llama-2" => Ok(ChatTemplate::Llama2),
            "mistral" => Ok(ChatTemplate::Mistral {
                space_after_eos: false,
            }),
            "llama3" | "llama-3" => Ok(ChatTemplate::Llama3),
            "gemma" => Ok(ChatTemplate::Gemma),
            other => Err(ModelError::Input(format!(
                "unknown chat template `{other}`; expected chatml, llama2, mistral, llama3 or gemma"
            ))),
        }
    }
}

impl ChatTemplate {
    /// Recognise the family of a Jinja chat template by its markers.
    pub fn detect(jinja: &str) -> Option<Self> {
        if jinja.contains("<|im_start|>") {
            Some(ChatTemplate::ChatMl {
                default_system: chatml_default_system(jinja),
            })
        } else if jinja.contains("<|start_header_id|>") {
            Some(ChatTemplate::Llama3)
        } else if jinja.contains("<start_of_turn>") {
            Some(ChatTemplate::Gemma)
        } else if jinja.contains("[INST]") && jinja.contains("<<SYS>>") {
            Some(ChatTemplate::Llama2)
        } else if jinja.contains("[INST]") {
            Some(ChatTemplate::Mistral {
                space_after_eos: jinja.contains("eos_token + ' '"),
            })
        } else {
            None
        }
    }

    /// The text of `messages`, followed by the assistant prefix when
    /// `add_generation_prompt`. `bos` is the BOS token text (Llama 2/3 templates start
    /// with it).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos: &str,
    ) -> Result<String> {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let (Some(system), Some(first)) = (default_system, messages.first())
                    && first.role != "system"
                {
                    out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                }
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
            }
            ChatTemplate::Llama3 => {
                out.push_str(bos);
                for m in messages {
                    out.push_str(&format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                        m.role,
                        m.content.trim()
                    ));
                }
                if add_generation_prompt {
                    out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
            }
            ChatTemplate::Llama2 => {
                // The system prompt is folded into the first user turn; roles must then
                // alternate user/assistant.
                let (system, rest) = match messages.first() {
                    Some(m) if m.role == "system" => (Some(m.content.as_str()), &messages[1..]),
                    _ => (None, messages),
                };
                for (i, m) in rest.iter().enumerate() {
                    alternating("Llama 2", i, m)?;
                    if m.role == "user" {
                        let content = match (i, system) {
                            (0, Some(s)) => format!("<<SYS>>\n{s}\n<</SYS>>\n\n{}", m.content),
                            _ => m.content.clone(),
                        };
                        out.push_str(&format!("{bos}[INST] {} [/INST]", content.trim()));
                    } else {
                        out.push_str(&format!(" {} </s>", m.content.trim()));
                    }
                }
                // Llama 2 has no assistant prefix: generation continues after [/INST].
                let _ = add_generation_prompt;
            }
            ChatTemplate::Mistral { space_after_eos } => {
                out.push_str(bos);
                for (i, m) in messages.iter().enumerate() {
                    alternating("Mistral", i, m)?;
                    if m.role == "user" {
                        out.push_str(&format!("[INST] {} [/INST]", m.content));
                    } else {
                        out.push_str(&m.content);
                        out.push_str(if *space_after_eos { "</s> " } else { "</s>" });
                    }
                }
                // Generation continues after [/INST], as for Llama 2.
            }
            ChatTemplate::Gemma => {
                out.push_str(bos);
                let (system, rest) = match messages.first() {
                    Some(m) if m.role == "system" => (Some(m.content.as_str()), &messages[1..]),
                    _ => (None, messages),
                };
                for (i, m) in rest.iter().enumerate() {
                    alternating("Gemma", i, m)?;
                    let role = if m.role == "assistant" {
                        "model"
                    } else {
                        "user"
                    };
                    let prefix = match (i, system) {
                        (0, Some(s)) => format!("{s}\n\n"),
                        _ => String::new(),
                    };
                    out.push_str(&format!(
                        "<start_of_turn>{role}\n{prefix}{}<end_of_turn>\n",
                        m.content.trim()
                    ));
                }
                if add_generation_prompt {
                    out.push_str("<start_of_turn>model\n");
                }
            }
        }
        Ok(out)
    }

    /// Token texts that end an assistant turn in this format (besides the model's EOS).
    pub fn stop_tokens(&self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl { .. } => &["<|im_end|>"],
            ChatTemplate::Llama3 => &["<|eot_id|>"],
            ChatTemplate::Llama2 | ChatTemplate::Mistral { .. } => &["</s>"],
            ChatTemplate::Gemma => &["<end_of_turn>"],
        }
    }
}

/// Message `i` of a conversation whose roles must alternate user/assistant (as the HF
/// templates of `format` raise otherwise).
fn alternating(format: &str, i: usize, m: &ChatMessage) -> Result<()> {
    let expected = if i.is_multiple_of(2) {
        "user"
    } else {
        "assistant"
    };
    if m.role == expected {
        return Ok(());
    }
    Err(ModelError::Input(format!(
        "{format} chat: message {i} has role `{}`, expected `{expected}` (roles must alternate user/assistant)",
        m.role
    )))
}

/// The system prompt a ChatML template inserts when the conversation has none, e.g.
/// SmolLM2's "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
/// (`if messages[0]['role'] != 'system'`) or Qwen2.5's "You are Qwen, created by Alibaba
/// Cloud. ..." (the `else` of `if messages[0]['role'] == 'system'`): a literal system
/// turn in the template is there to be the default.
fn chatml_default_system(jinja: &str) -> Option<String> {
    let marker = "<|im_start|>system";
    let mut search = jinja;
    while let Some(pos) = search.find(marker) {
        let after = &search[pos + marker.len()..];
        let end = after.find("<|im_end|>")?;
        let body = &after[..end];
        // A literal prompt, not the expression that prints messages[0]['content'].
        if !body.contains("{{") && !body.contains('+') && !body.contains('\'') {
            let body = body.replace("\\n", "\n");
            let body = body.strip_prefix('\n').unwrap_or(&body);
            return Some(body.to_string());
        }
        search = &after[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_inserts_its_default_system_prompt() {
        let t = ChatTemplate::detect(SMOL).unwrap();
        let text = t
            .render(
                &[ChatMessage::new("user", "What is the capital of France?")],
                true,
                "",
            )
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama2_folds_system_into_first_turn() {
        let msgs = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "Bye"),
        ];
        let text = ChatTemplate::Llama2.render(&msgs, true, "<s>").unwrap();
        assert_eq!(
            text,
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]"
        );
    }

    #[test]
    fn llama3_headers() {
        let text = ChatTemplate::Llama3
            .render(&[ChatMessage::new("user", "Hi")], true, "<|begin_of_text|>")
            .unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }
}
