//! `sft.format`: chat data -> tokenized SFT samples whose `loss_mask` is true exactly on
//! the assistant turns (their content and end-of-turn marker, not the role header).
//!
//! A record is a conversation (`messages: [{role, content}]`, ShareGPT's
//! `{from, value}` accepted) or an Alpaca triple (`instruction`, optional `input`,
//! `output`). It is rendered with the chat template; the span of an assistant message is
//! its answer: what follows its role header (the generation prompt's text), up to and
//! including its end-of-turn marker, minus trailing whitespace — for Qwen3 the `<think>`
//! block the template gives the last answer included. A token is trained on when it starts
//! inside such a span (offsets from the `tokenizers` crate, so ids are those of the whole
//! text).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::common::{
    BOS_CANDIDATES, LoadedTokenizer, OnError, input_files, load_tokenizer, metrics,
};
use super::error::{DataError, Result};
use super::shard::{
    Compression, META_KIND, META_TOKENIZER, ShardOptions, ShardWriter, ids_builder, mask_builder,
    sft_schema, string_builder,
};
use super::source::{Format, Record, Records, kind_of};
use crate::model::chat::{ChatMessage, ChatTemplate};

/// The `sft.format` stage kind.
pub struct SftFormat;

fn max_len() -> usize {
    2048
}
fn messages_field() -> String {
    "messages".into()
}
fn shard_rows() -> u64 {
    100_000
}

/// Chat template names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateName {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen).
    #[default]
    Chatml,
    /// Llama 2 `[INST]`.
    Llama2,
    /// Mistral `[INST]` (v0.1/v0.2: no system turn).
    Mistral,
    /// Llama 3 headers.
    Llama3,
    /// Gemma `<start_of_turn>` turns.
    Gemma,
    /// Qwen3's ChatML with `<think>` blocks (the last answer's kept, empty when none).
    Qwen3,
    /// Detected from `tokenizer_config.json` next to the tokenizer (its default system
    /// prompt included).
    Auto,
}

/// Over-long samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overlong {
    /// Drop the sample (counted in `dropped`).
    #[default]
    Drop,
    /// Keep its first `max_len` tokens (dropped if no assistant token remains).
    Truncate,
}

/// Parameters of `sft.format`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftParams {
    /// Chat template: `chatml`, `qwen3`, `llama2`, `mistral`, `llama3`, `gemma` or `auto`.
    #[serde(default)]
    pub template: TemplateName,
    /// System prompt for samples that have none (none = no system turn).
    #[serde(default)]
    pub system: Option<String>,
    /// Most tokens per sample.
    #[serde(default = "max_len")]
    pub max_len: usize,
    /// Samples longer than `max_len`: `drop` or `truncate`.
    #[serde(default)]
    pub overlong: Overlong,
    /// Field holding the conversation.
    #[serde(default = "messages_field")]
    pub messages_field: String,
    /// BOS token text for the non-ChatML templates; default: the first of `<s>`,
    /// `<|begin_of_text|>`, `<bos>` in the vocabulary (none: empty).
    #[serde(default)]
    pub bos_token: Option<String>,
    /// How to read the data files (see `tokenize`).
    #[serde(default)]
    pub format: Format,
    /// Bad records: `fail` (naming file and line) or `skip` (counted in `skipped`).
    #[serde(default)]
    pub on_error: OnError,
    /// Samples per output shard.
    #[serde(default = "shard_rows")]
    pub shard_rows: u64,
    /// Parquet codec.
    #[serde(default)]
    pub compression: Compression,
}

impl TypedStage for SftFormat {
    type Params = SftParams;
    const KIND: &'static str = "sft.format";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Chat or Alpaca data -> tokenized SFT samples with loss_mask on assistant tokens";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![
            InputSpec::required(
                "data",
                "JSONL/JSON/Parquet with `messages` or instruction/input/output",
            ),
            InputSpec::required(
                "tokenizer",
                "a tokenizer.json file, or a directory holding one (and tokenizer_config.json for `template: auto`)",
            ),
        ])
    }

    fn outputs(_: &SftParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("samples", "samples")]
    }

    fn validate(p: &SftParams) -> Result<(), ParamError> {
        ParamError::at_least_one("max_len", Some(p.max_len))?;
        ParamError::at_least_one("shard_rows", Some(p.shard_rows))?;
        Ok(())
    }

    fn run(&self, p: SftParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let tok_path = ctx.input("tokenizer")?.single("tokenizer")?;
        let tok = load_tokenizer(tok_path)?;
        let template = resolve_template(&p, tok_path)?;
        let files = input_files(ctx.input("data")?)?;
        let records = Records::new(files, p.format, None, p.on_error);
        let c = format_records(&p, &tok, &template, records, &ctx.out("samples"))?;
        Ok(metrics([
            ("documents", c.samples),
            ("tokens", c.tokens),
            ("trained_tokens", c.trained),
            ("dropped", c.dropped),
            ("truncated", c.truncated),
            ("skipped", c.skipped),
            ("shards", c.shards),
        ]))
    }
}

/// The template `p` asks for.
pub fn resolve_template(p: &SftParams, tok_path: &std::path::Path) -> Result<ChatTemplate> {
    Ok(match p.template {
        TemplateName::Chatml => ChatTemplate::ChatMl {
            default_system: None,
        },
        TemplateName::Llama2 => ChatTemplate::Llama2,
        TemplateName::Mistral => ChatTemplate::Mistral {
            space_after_eos: false,
        },
        TemplateName::Llama3 => ChatTemplate::Llama3,
        TemplateName::Gemma => ChatTemplate::Gemma,
        TemplateName::Qwen3 => ChatTemplate::Qwen3 { thinking: true },
        TemplateName::Auto => {
            let cfg = if tok_path.is_dir() {
                tok_path.join("tokenizer_config.json")
            } else {
                tok_path.with_file_name("tokenizer_config.json")
            };
            let text = std::fs::read_to_string(&cfg).map_err(|e| DataError::io(&cfg, e))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| DataError::line(&cfg, e.line() as u64, e.to_string()))?;
            let jinja = match v.get("chat_template") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            ChatTemplate::detect(&jinja).ok_or_else(|| {
                DataError::file(
                    &cfg,
                    "no recognised chat_template (ChatML, Qwen3, Llama 2, Mistral, Llama 3, Gemma); set `template`",
                )
            })?
        }
    })
}

/// Counts from formatting.
#[derive(Debug, Clone, Copy, Default)]
pub struct SftCounts {
    /// Samples written.
    pub samples: u64,
    /// Tokens written.
    pub tokens: u64,
    /// Tokens with `loss_mask` true.
    pub trained: u64,
    /// Samples dropped (over-long, or nothing to train on).
    pub dropped: u64,
    /// Samples truncated.
    pub truncated: u64,
    /// Bad records skipped.
    pub skipped: u64,
    /// Shards written.
    pub shards: u64,
}

/// A conversation from a record, or an error naming its file and line.
pub fn conversation(rec: &Record, p: &SftParams) -> Result<Vec<ChatMessage>> {
    let Value::Object(obj) = &rec.value else {
        return Err(rec.pos.error("expected a JSON object"));
    };
    let mut msgs = Vec::new();
    if let Some(list) = obj.get(&p.messages_field) {
        let Value::Array(items) = list else {
            return Err(rec.pos.error(format!(
                "field `{}` is {}, expected an array of messages",
                p.messages_field,
                kind_of(list)
            )));
        };
        for (i, m) in items.iter().enumerate() {
            let get = |keys: &[&str]| keys.iter().find_map(|k| m.get(*k).and_then(Value::as_str));
            let (Some(role), Some(content)) = (get(&["role", "from"]), get(&["content", "value"]))
            else {
                return Err(rec.pos.error(format!(
                    "message {i} needs string fields `role` and `content`"
                )));
            };
            let role = match role {
                "human" => "user",
                "gpt" => "assistant",
                r => r,
            };
            msgs.push(ChatMessage::new(role, content));
        }
    } else if let (Some(instruction), Some(output)) = (obj.get("instruction"), obj.get("output")) {
        let (Some(instruction), Some(output)) = (instruction.as_str(), output.as_str()) else {
            return Err(rec.pos.error("`instruction` and `output` must be strings"));
        };
        let input = obj.get("input").and_then(Value::as_str).unwrap_or("");
        if let Some(sys) = obj.get("system").and_then(Value::as_str) {
            msgs.push(ChatMessage::new("system", sys));
        }
        let user = if input.is_empty() {
            instruction.to_string()
        } else {
            format!("{instruction}\n\n{input}")
        };
        msgs.push(ChatMessage::new("user", &user));
        msgs.push(ChatMessage::new("assistant", output));
    } else {
        return Err(rec.pos.error(format!(
            "expected a `{}` array or `instruction`/`output` fields (fields present: {})",
            p.messages_field,
            obj.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    if !msgs.iter().any(|m| m.role == "assistant") {
        return Err(rec.pos.error("the conversation has no assistant message"));
    }
    if let Some(sys) = &p.system
        && msgs.first().is_none_or(|m| m.role != "system")
    {
        msgs.insert(0, ChatMessage::new("system", sys));
    }
    Ok(msgs)
}

/// Ids and loss mask of a conversation.
pub fn encode_conversation(
    tok: &tokenizers::Tokenizer,
    template: &ChatTemplate,
    msgs: &[ChatMessage],
    bos: &str,
) -> std::result::Result<(Vec<u32>, Vec<bool>), String> {
    let rendered = template
        .render_marked(msgs, false, bos)
        .map_err(|e| e.to_string())?;
    let enc = tok
        .encode(rendered.text.as_str(), false)
        .map_err(|e| e.to_string())?;
    let mask = enc
        .get_offsets()
        .iter()
        .map(|(start, _)| rendered.spans.iter().any(|s| s.contains(start)))
        .collect();
    Ok((enc.get_ids().to_vec(), mask))
}

/// Formats every record into shards under `dir`.
pub fn format_records(
    p: &SftParams,
    tok: &LoadedTokenizer,
    template: &ChatTemplate,
    mut records: Records,
    dir: &std::path::Path,
) -> Result<SftCounts> {
    let bos = match (&p.bos_token, template) {
        (Some(b), _) => b.clone(),
        (None, ChatTemplate::ChatMl { .. }) => String::new(),
        (None, _) => BOS_CANDIDATES
            .iter()
            .take(3)
            .find(|c| tok.inner.token_to_id(c).is_some())
            .map(|c| c.to_string())
            .unwrap_or_default(),
    };
    let mut meta = BTreeMap::new();
    meta.insert(META_TOKENIZER.to_string(), tok.hash.clone());
    meta.insert(META_KIND.to_string(), "sft.format".to_string());
    let mut writer = ShardWriter::new(
        ShardOptions {
            dir: dir.to_path_buf(),
            max_rows: Some(p.shard_rows),
            max_tokens: None,
            compression: p.compression,
            metadata: meta,
        },
        sft_schema(),
    )?;
    let mut c = SftCounts::default();
    let mut rows: Vec<(String, Vec<u32>, Vec<bool>)> = Vec::new();
    while let Some(rec) = records.next() {
        let rec = rec?;
        let id = match rec.value.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => rec.pos.default_id(),
        };
        let encoded = conversation(&rec, p).and_then(|msgs| {
            encode_conversation(&tok.inner, template, &msgs, &bos).map_err(|m| rec.pos.error(m))
        });
        let Some((mut ids, mut mask)) = records.policy(encoded)? else {
            continue;
        };
        if ids.len() > p.max_len {
            match p.overlong {
                Overlong::Drop => {
                    c.dropped += 1;
                    continue;
                }
                Overlong::Truncate => {
                    ids.truncate(p.max_len);
                    mask.truncate(p.max_len);
                    c.truncated += 1;
                }
            }
        }
        if !mask.iter().any(|&m| m) {
            c.dropped += 1;
            continue;
        }
        c.samples += 1;
        c.tokens += ids.len() as u64;
        c.trained += mask.iter().filter(|&&m| m).count() as u64;
        rows.push((id, ids, mask));
        if rows.len() >= 1024 {
            write_rows(&mut writer, &mut rows, dir)?;
        }
    }
    write_rows(&mut writer, &mut rows, dir)?;
    c.skipped = records.skipped();
    let (shards, _, _) = writer.finish()?;
    c.shards = shards.len() as u64;
    if c.samples == 0 {
        return Err(DataError::Invalid(
            "input `data`: no sample left (every record was dropped or skipped)".into(),
        ));
    }
    Ok(c)
}

fn write_rows(
    writer: &mut ShardWriter,
    rows: &mut Vec<(String, Vec<u32>, Vec<bool>)>,
    dir: &std::path::Path,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let total: usize = rows.iter().map(|r| r.1.len()).sum();
    let mut id = string_builder(n, rows.iter().map(|r| r.0.len()).sum());
    let mut ids = ids_builder(n, total);
    let mut mask = mask_builder(n, total);
    let mut lens = Vec::with_capacity(n);
    for (d, i, m) in rows.iter() {
        id.append_value(d);
        ids.values().append_slice(i);
        ids.append(true);
        for &b in m {
            mask.values().append_value(b);
        }
        mask.append(true);
        lens.push(i.len() as u32);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(ids.finish()),
        Arc::new(mask.finish()),
        Arc::new(UInt32Array::from(lens.clone())),
    ];
    let batch = RecordBatch::try_new(sft_schema(), columns)
        .map_err(|e| DataError::arrow(&PathBuf::from(dir), e))?;
    writer.write(&batch, &lens)?;
    rows.clear();
    Ok(())
}
