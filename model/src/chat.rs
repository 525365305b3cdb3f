//! Chat templates of the common Llama-family formats, rendered in Rust.
//!
//! HF stores a Jinja template in `tokenizer_config.json`; rather than embedding a Jinja
//! engine, [`ChatTemplate::detect`] recognises the family by its markers and renders the
//! same text:
//!
//! | family | marker | shape |
//! |---|---|---|
//! | ChatML (SmolLM2, Qwen2/2.5) | `<\|im_start\|>` | `<\|im_start\|>role\ncontent<\|im_end\|>\n` |
//! | Qwen3 | `<\|im_start\|>`, `</think>`, `last_query_index` | ChatML; the last answer as `<think>\nreasoning\n</think>\n\nanswer` (earlier ones without) |
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

use std::ops::Range;
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
    /// Qwen3's ChatML with thinking markup: the last answer (and any later one with a
    /// reasoning part) carries its `<think>` block, empty when it has none; earlier
    /// answers lose theirs; tool results are folded into user turns.
    Qwen3 {
        /// The generation prompt leaves thinking to the model (Qwen3's default); `false`
        /// closes an empty `<think>` block first (`enable_thinking=False`).
        thinking: bool,
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
            "qwen3" => Ok(ChatTemplate::Qwen3 { thinking: true }),
            "qwen3-no-thinking" => Ok(ChatTemplate::Qwen3 { thinking: false }),
            other => Err(ModelError::Input(format!(
                "unknown chat template `{other}`; expected chatml, qwen3, qwen3-no-thinking, llama2, mistral, llama3 or gemma"
            ))),
        }
    }
}

impl ChatTemplate {
    /// Recognise the family of a Jinja chat template by its markers.
    pub fn detect(jinja: &str) -> Option<Self> {
        if jinja.contains("<|im_start|>") && jinja.contains("</think>") {
            // Qwen3's own template; other thinking templates (Qwen3.5, QwQ, SmolLM3)
            // differ in where the <think> blocks go and are not guessed at.
            (jinja.contains("last_query_index") && jinja.contains("reasoning_content.strip("))
                .then_some(ChatTemplate::Qwen3 { thinking: true })
        } else if jinja.contains("<|im_start|>") {
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
        Ok(self
            .render_marked(messages, add_generation_prompt, bos)?
            .text)
    }

    /// [`ChatTemplate::render`] with the byte span of each assistant message's answer:
    /// what follows its role header (the text the generation prompt ends with), up to and
    /// including its end-of-turn marker, without trailing whitespace.
    pub fn render_marked(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos: &str,
    ) -> Result<Rendered> {
        let mut out = Rendered::default();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let (Some(system), Some(first)) = (default_system, messages.first())
                    && first.role != "system"
                {
                    out.push(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                }
                for m in messages {
                    out.push(&format!("<|im_start|>{}\n", m.role));
                    out.turn(m, &format!("{}<|im_end|>\n", m.content));
                }
                if add_generation_prompt {
                    out.push("<|im_start|>assistant\n");
                }
            }
            ChatTemplate::Qwen3 { thinking } => {
                qwen3(&mut out, messages);
                if add_generation_prompt {
                    out.push("<|im_start|>assistant\n");
                    if !thinking {
                        out.push("<think>\n\n</think>\n\n");
                    }
                }
            }
            ChatTemplate::Llama3 => {
                out.push(bos);
                for m in messages {
                    out.push(&format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n",
                        m.role
                    ));
                    out.turn(m, &format!("{}<|eot_id|>", m.content.trim()));
                }
                if add_generation_prompt {
                    out.push("<|start_header_id|>assistant<|end_header_id|>\n\n");
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
                        out.push(&format!("{bos}[INST] {} [/INST]", content.trim()));
                    } else {
                        out.turn(m, &format!(" {} </s>", m.content.trim()));
                    }
                }
                // Llama 2 has no assistant prefix: generation continues after [/INST].
            }
            ChatTemplate::Mistral { space_after_eos } => {
                out.push(bos);
                for (i, m) in messages.iter().enumerate() {
                    alternating("Mistral", i, m)?;
                    if m.role == "user" {
                        out.push(&format!("[INST] {} [/INST]", m.content));
                    } else {
                        let eos = if *space_after_eos { "</s> " } else { "</s>" };
                        out.turn(m, &format!("{}{eos}", m.content));
                    }
                }
                // Generation continues after [/INST], as for Llama 2.
            }
            ChatTemplate::Gemma => {
                out.push(bos);
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
                    out.push(&format!("<start_of_turn>{role}\n"));
                    out.turn(m, &format!("{prefix}{}<end_of_turn>\n", m.content.trim()));
                }
                if add_generation_prompt {
                    out.push("<start_of_turn>model\n");
                }
            }
        }
        Ok(out)
    }

    /// Token texts that end an assistant turn in this format (besides the model's EOS).
    pub fn stop_tokens(&self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl { .. } | ChatTemplate::Qwen3 { .. } => &["<|im_end|>"],
            ChatTemplate::Llama3 => &["<|eot_id|>"],
            ChatTemplate::Llama2 | ChatTemplate::Mistral { .. } => &["</s>"],
            ChatTemplate::Gemma => &["<end_of_turn>"],
        }
    }
}

/// A rendered conversation and where its answers are (see [`ChatTemplate::render_marked`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// Byte ranges of the assistant messages' answers in `text`.
    pub spans: Vec<Range<usize>>,
}

impl Rendered {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Message `m`'s turn after its header: an answer when `m` is the assistant's.
    fn turn(&mut self, m: &ChatMessage, body: &str) {
        let start = self.text.len();
        self.text.push_str(body);
        let end = self.text.trim_end().len();
        if m.role == "assistant" && end > start {
            self.spans.push(start..end);
        }
    }
}

/// The messages as Qwen3's template renders them (llama.cpp's copy of Qwen3-0.6B's,
/// `models/templates/Qwen-Qwen3-0.6B.jinja`, without tools): a system message first,
/// then user turns, assistant turns and tool results.
fn qwen3(out: &mut Rendered, messages: &[ChatMessage]) {
    if let Some(first) = messages.first()
        && first.role == "system"
    {
        out.push(&format!(
            "<|im_start|>system\n{}<|im_end|>\n",
            first.content
        ));
    }
    // The last user message that is not a wrapped tool result.
    let last_query = messages
        .iter()
        .rposition(|m| {
            m.role == "user"
                && !(m.content.starts_with("<tool_response>")
                    && m.content.ends_with("</tool_response>"))
        })
        .unwrap_or(messages.len().saturating_sub(1));
    for (i, m) in messages.iter().enumerate() {
        match m.role.as_str() {
            "user" => out.push(&format!("<|im_start|>user\n{}<|im_end|>\n", m.content)),
            "system" if i > 0 => {
                out.push(&format!("<|im_start|>system\n{}<|im_end|>\n", m.content))
            }
            "assistant" => {
                let (reasoning, content) = match m.content.split_once("</think>") {
                    Some((head, _)) => {
                        let reasoning = head
                            .trim_end_matches('\n')
                            .rsplit("<think>")
                            .next()
                            .unwrap_or("")
                            .trim_start_matches('\n');
                        let content = m.content.rsplit("</think>").next().unwrap_or("");
                        (reasoning, content.trim_start_matches('\n'))
                    }
                    None => ("", m.content.as_str()),
                };
                out.push("<|im_start|>assistant\n");
                let last = i + 1 == messages.len();
                let body = if i > last_query && (last || !reasoning.is_empty()) {
                    format!(
                        "<think>\n{}\n</think>\n\n{}",
                        reasoning.trim_matches('\n'),
                        content.trim_start_matches('\n')
                    )
                } else {
                    content.to_string()
                };
                out.turn(m, &format!("{body}<|im_end|>\n"));
            }
            "tool" => {
                if i == 0 || messages[i - 1].role != "tool" {
                    out.push("<|im_start|>user");
                }
                out.push(&format!(
                    "\n<tool_response>\n{}\n</tool_response>",
                    m.content
                ));
                if messages.get(i + 1).is_none_or(|next| next.role != "tool") {
                    out.push("<|im_end|>\n");
                }
            }
            // The template renders nothing for other roles (and the first system message
            // was rendered above).
            _ => {}
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

    /// The spans `render_marked` gives are those the prefix rule gives for templates that
    /// render turns as prefixes: the text `render(messages[..=i])` adds to
    /// `render(messages[..i])` with the generation prompt, minus trailing whitespace.
    #[test]
    fn answer_spans_are_what_each_answer_adds_to_its_prompt() {
        let conversations = [
            vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi"),
                ChatMessage::new("assistant", " Hello. \n"),
                ChatMessage::new("user", "Bye"),
                ChatMessage::new("assistant", "Bye!"),
            ],
            vec![
                ChatMessage::new("user", "Hi"),
                ChatMessage::new("assistant", ""),
            ],
        ];
        let templates = [
            ChatTemplate::ChatMl {
                default_system: Some("You are helpful.".into()),
            },
            ChatTemplate::Llama2,
            ChatTemplate::Llama3,
            ChatTemplate::Gemma,
            ChatTemplate::Mistral {
                space_after_eos: true,
            },
        ];
        for t in &templates {
            for msgs in &conversations {
                // Mistral has no system turn.
                let msgs = match t {
                    ChatTemplate::Mistral { .. } => &msgs[usize::from(msgs[0].role == "system")..],
                    _ => &msgs[..],
                };
                let marked = t.render_marked(msgs, false, "<s>").unwrap();
                let mut want = Vec::new();
                for (i, m) in msgs.iter().enumerate() {
                    if m.role == "assistant" {
                        let before = t.render(&msgs[..i], true, "<s>").unwrap();
                        let upto = t.render(&msgs[..=i], false, "<s>").unwrap();
                        assert!(upto.starts_with(&before) && marked.text.starts_with(&upto));
                        let end = upto.trim_end().len();
                        if end > before.len() {
                            want.push(before.len()..end);
                        }
                    }
                }
                assert_eq!(marked.spans, want, "{t:?} {msgs:?}");
                assert!(!want.is_empty(), "{t:?}");
            }
        }
    }

    /// Qwen3's earlier answers lose their `<think>` blocks once a later question comes, so
    /// its turns are not prefixes of the whole conversation; the spans are still each
    /// answer as the whole conversation renders it, the last one with its (empty) block.
    #[test]
    fn qwen3_answer_spans_follow_the_whole_conversation() {
        let msgs = [
            ChatMessage::new("user", "q1"),
            ChatMessage::new("assistant", "<think>r1</think>a1"),
            ChatMessage::new("user", "q2"),
            ChatMessage::new("assistant", "a2"),
        ];
        let r = ChatTemplate::Qwen3 { thinking: true }
            .render_marked(&msgs, false, "")
            .unwrap();
        let answers: Vec<&str> = r.spans.iter().map(|s| &r.text[s.clone()]).collect();
        assert_eq!(
            answers,
            ["a1<|im_end|>", "<think>\n\n</think>\n\na2<|im_end|>"]
        );
        assert!(
            r.text
                .starts_with("<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1")
        );
    }

    /// Thinking templates other than Qwen3's put their `<think>` blocks elsewhere; they are
    /// not taken for plain ChatML (nor for Qwen3's).
    #[test]
    fn other_thinking_templates_are_not_guessed() {
        let qwq_like = "{{ '<|im_start|>' + message.role }}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{ '<|im_start|>assistant\n<think>\n' }}";
        assert_eq!(ChatTemplate::detect(qwq_like), None);
        let qwen3_like = "<|im_start|>{% set ns = namespace(last_query_index=0) %}{% set reasoning_content = '' %}</think>{{ reasoning_content.strip('\n') }}";
        assert_eq!(
            ChatTemplate::detect(qwen3_like),
            Some(ChatTemplate::Qwen3 { thinking: true })
        );
        assert_eq!(
            "qwen3-no-thinking".parse::<ChatTemplate>().unwrap(),
            ChatTemplate::Qwen3 { thinking: false }
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
