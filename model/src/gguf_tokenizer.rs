//! The HF `tokenizer.json` and `tokenizer_config.json` of a GGUF file, rebuilt from its
//! `tokenizer.ggml.*` metadata ([`rebuild`]) for the two vocabulary types llama.cpp's
//! converter writes for the supported families:
//!
//! - `gpt2`, byte-level BPE (Llama 3, Qwen2/2.5/3, SmolLM): the stored merges and the
//!   pre-tokenizer named by `tokenizer.ggml.pre`.
//! - `llama`, SentencePiece BPE (Llama 2, Mistral, Gemma 3): tokens, scores and token
//!   types, turned into what transformers 4.x's `LlamaConverter` / `GemmaConverter` make of
//!   the original `tokenizer.model`, so the `tokenizers` crate gives the original ids.
//!   `tokenizer.ggml.add_space_prefix` (missing: true, llama.cpp's default) picks the
//!   Llama variant (a "▁" prepended to every stretch of text, stripped again on decoding)
//!   or Gemma's (spaces become "▁", nothing prepended); byte fallback for characters
//!   outside the vocabulary; control and unknown tokens are special added tokens,
//!   user-defined ones (e.g. Gemma's `<start_of_turn>` in older files, runs of spaces)
//!   plain added tokens. The merges, which the GGUF does not store, are derived from the
//!   pieces and their scores as transformers' `SentencePieceExtractor` does
//!   ([`sentencepiece_merges`]).
//!
//! What llama.cpp's converter changed is undone: a user-defined token's "▁" was written as
//! " ", and every token listed in `added_tokens_decoder` got the score -1000 (SentencePiece
//! scores its meta pieces 0, which is what ranks their merges). The reference this follows
//! line by line is `dev/spm_gguf_to_tokenizer_json.py`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::error::{ModelError, Result};
use super::gguf::{GgufArray, GgufFile, GgufValue};

/// SentencePiece's whitespace symbol.
const SPACE: &str = "\u{2581}";

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
mod token_type {
    pub const NORMAL: u64 = 1;
    pub const UNKNOWN: u64 = 2;
    pub const CONTROL: u64 = 3;
    pub const USER_DEFINED: u64 = 4;
    pub const UNUSED: u64 = 5;
}

/// `(tokenizer.json, tokenizer_config.json)` of `file` (module doc); other vocabulary
/// types are [`ModelError::Unsupported`].
pub fn rebuild(file: &GgufFile) -> Result<(Value, Value)> {
    let model = file
        .meta("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .unwrap_or("");
    match model {
        "gpt2" => byte_level_bpe(file),
        "llama" => sentencepiece(file),
        other => Err(ModelError::Unsupported(format!(
            "{}: tokenizer type `{other}`; byte-level BPE (`gpt2`) and SentencePiece (`llama`) are converted, supply tokenizer.json for others",
            file.path().display()
        ))),
    }
}

/// The metadata of a vocabulary, read and checked once.
struct Vocabulary<'a> {
    file: &'a GgufFile,
    tokens: &'a [String],
    types: Option<&'a GgufArray>,
}

impl<'a> Vocabulary<'a> {
    fn read(file: &'a GgufFile) -> Result<Self> {
        let tokens = strings(file, "tokenizer.ggml.tokens")?;
        let types = file
            .meta("tokenizer.ggml.token_type")
            .and_then(GgufValue::as_array);
        if let Some(t) = types
            && t.len() != tokens.len()
        {
            return Err(ModelError::format(
                file.path(),
                format!(
                    "`tokenizer.ggml.token_type` has {} entries for {} tokens",
                    t.len(),
                    tokens.len()
                ),
            ));
        }
        Ok(Vocabulary {
            file,
            tokens,
            types,
        })
    }

    /// Token `id`'s type (normal when the file has no types).
    fn kind(&self, id: usize) -> u64 {
        self.types
            .and_then(|t| t.u64_at(id))
            .unwrap_or(token_type::NORMAL)
    }

    /// The id stored under `key`, if it names a token.
    fn id_at(&self, key: &str) -> Option<usize> {
        self.file
            .meta(key)
            .and_then(GgufValue::as_u64)
            .map(|id| id as usize)
            .filter(|&id| id < self.tokens.len())
    }

    fn flag(&self, key: &str, default: bool) -> bool {
        self.file
            .meta(key)
            .and_then(GgufValue::as_bool)
            .unwrap_or(default)
    }
}

/// `key` as an array of strings.
fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<&'a [String]> {
    file.meta(key)
        .ok_or_else(|| ModelError::format(file.path(), format!("metadata `{key}` is missing")))?
        .as_array()
        .and_then(GgufArray::as_strings)
        .ok_or_else(|| {
            ModelError::format(file.path(), format!("`{key}` is not an array of strings"))
        })
}

/// The special-token texts a `tokenizer_config.json` names.
#[derive(Default)]
struct SpecialTokens {
    bos: Option<String>,
    eos: Option<String>,
    unk: Option<String>,
    pad: Option<String>,
}

/// What both vocabulary types put in `tokenizer_config.json`.
fn base_config(
    file: &GgufFile,
    class: &str,
    add_bos: bool,
    specials: &SpecialTokens,
) -> Map<String, Value> {
    let mut config = Map::new();
    config.insert("tokenizer_class".into(), json!(class));
    config.insert("add_bos_token".into(), json!(add_bos));
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    for (name, token) in [
        ("bos_token", &specials.bos),
        ("eos_token", &specials.eos),
        ("pad_token", &specials.pad),
        ("unk_token", &specials.unk),
    ] {
        if let Some(t) = token {
            config.insert(name.into(), json!(t));
        }
    }
    if let Some(t) = file
        .meta("tokenizer.chat_template")
        .and_then(GgufValue::as_str)
    {
        config.insert("chat_template".into(), json!(t));
    }
    config.insert(
        "model_max_length".into(),
        json!(
            file.architecture()
                .ok()
                .and_then(|a| file.meta_usize(&format!("{a}.context_length")).ok())
                .unwrap_or(2048)
        ),
    );
    config
}

/// A `tokenizer.json` document: its added tokens, `[normalizer, pre_tokenizer,
/// post_processor]`, decoder and model.
fn document(added: Vec<Value>, pipeline: [Value; 3], decoder: Value, model: Value) -> Value {
    let [normalizer, pre_tokenizer, post_processor] = pipeline;
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": model
    })
}

/// A byte-level BPE vocabulary (`tokenizer.ggml.model = gpt2`).
fn byte_level_bpe(file: &GgufFile) -> Result<(Value, Value)> {
    let v = Vocabulary::read(file)?;
    let merges = strings(file, "tokenizer.ggml.merges")?;
    let pre = file
        .meta("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let (normalizer, pre_tokenizer) = match pre {
        "default" | "gpt2" | "gpt-2" => (Value::Null, byte_level(true)),
        "smollm" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        "llama-bpe" | "llama3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(false)]}),
        ),
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(false)]}),
        ),
        other => {
            return Err(ModelError::Unsupported(format!(
                "{}: BPE pre-tokenizer `{other}` is not known (smollm, gpt2, llama-bpe, qwen2 are)",
                file.path().display()
            )));
        }
    };
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, tok) in v.tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        // Control and user-defined tokens are matched whole, before BPE.
        let ty = v.kind(id);
        if ty == token_type::CONTROL || ty == token_type::USER_DEFINED {
            added.push(
                json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": ty == token_type::USER_DEFINED,
                "special": ty == token_type::CONTROL}),
            );
        }
    }
    let piece = |key: &str| v.id_at(key).map(|id| v.tokens[id].clone());
    let specials = SpecialTokens {
        bos: piece("tokenizer.ggml.bos_token_id"),
        eos: piece("tokenizer.ggml.eos_token_id"),
        unk: piece("tokenizer.ggml.unknown_token_id"),
        pad: piece("tokenizer.ggml.padding_token_id"),
    };
    let add_bos = v.flag("tokenizer.ggml.add_bos_token", false);
    let byte_post = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    let post_processor = match (&specials.bos, v.id_at("tokenizer.ggml.bos_token_id")) {
        (Some(bos), Some(bos_id)) if add_bos => {
            json!({"type": "Sequence", "processors": [byte_post, {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos.clone(): {"id": bos, "ids": [bos_id], "tokens": [bos]}}
            }]})
        }
        _ => byte_post,
    };
    let tokenizer = document(
        added,
        [normalizer, pre_tokenizer, post_processor],
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
        json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
               "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
               "ignore_merges": false, "vocab": vocab, "merges": merges}),
    );
    let config = base_config(file, "PreTrainedTokenizerFast", add_bos, &specials);
    Ok((tokenizer, Value::Object(config)))
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model = llama`).
fn sentencepiece(file: &GgufFile) -> Result<(Value, Value)> {
    let v = Vocabulary::read(file)?;
    let n = v.tokens.len();
    let scores: Vec<f32> = match file.meta("tokenizer.ggml.scores") {
        None => vec![0.0; n],
        Some(GgufValue::Array(GgufArray::F32(s))) if s.len() == n => s.clone(),
        Some(_) => {
            return Err(ModelError::format(
                file.path(),
                format!("`tokenizer.ggml.scores` is not an array of {n} f32 values"),
            ));
        }
    };
    let types: Vec<u64> = (0..n).map(|id| v.kind(id)).collect();
    let add_bos = v.flag("tokenizer.ggml.add_bos_token", true);
    let add_eos = v.flag("tokenizer.ggml.add_eos_token", false);
    let space_prefix = v.flag("tokenizer.ggml.add_space_prefix", true);

    // The SentencePiece spelling of each piece: a user-defined token's " " back to "▁";
    // in Gemma's variant a missing tab piece is the byte piece <0x09> renamed
    // (transformers' GemmaConverter, for older Gemma tokenizers).
    let mut pieces: Vec<String> = v
        .tokens
        .iter()
        .zip(&types)
        .map(|(t, &ty)| {
            if ty == token_type::USER_DEFINED {
                t.replace(' ', SPACE)
            } else {
                t.clone()
            }
        })
        .collect();
    if !space_prefix
        && !pieces.iter().any(|p| p == "\t")
        && let Some(tab) = pieces.iter().position(|p| p == "<0x09>")
    {
        pieces[tab] = "\t".into();
    }

    let piece = |key: &str| v.id_at(key).map(|id| pieces[id].clone());
    let specials = SpecialTokens {
        bos: piece("tokenizer.ggml.bos_token_id"),
        eos: piece("tokenizer.ggml.eos_token_id"),
        unk: piece("tokenizer.ggml.unknown_token_id").or_else(|| {
            types
                .iter()
                .position(|&t| t == token_type::UNKNOWN)
                .map(|id| pieces[id].clone())
        }),
        pad: piece("tokenizer.ggml.padding_token_id"),
    };

    // Unknown and control tokens are special; user-defined ones are added but not
    // special. All are matched on the raw text, before the normalizer.
    let added: Vec<Value> = types
        .iter()
        .enumerate()
        .filter(|(_, ty)| {
            [
                token_type::UNKNOWN,
                token_type::CONTROL,
                token_type::USER_DEFINED,
            ]
            .contains(ty)
        })
        .map(|(id, &ty)| {
            json!({"id": id, "content": pieces[id], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": ty != token_type::USER_DEFINED})
        })
        .collect();

    let replace_space = json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE});
    let (normalizer, pre_tokenizer) = if space_prefix {
        (
            json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace_space]}),
            Value::Null,
        )
    } else {
        // What transformers writes for Gemma; after the normalizer there is no " " left
        // to split on.
        (
            replace_space,
            json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false}),
        )
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }

    // transformers' `update_post_processor`: BOS and EOS around each sequence as the
    // flags say.
    let special =
        |flag: bool, key: &str, token: &Option<String>| -> Result<Option<(String, usize)>> {
            if !flag {
                return Ok(None);
            }
            match (token, v.id_at(key)) {
                (Some(token), Some(id)) => Ok(Some((token.clone(), id))),
                _ => Err(ModelError::format(
                    file.path(),
                    format!("`{key}` is missing or names no token, but the tokenizer adds it"),
                )),
            }
        };
    let bos = special(add_bos, "tokenizer.ggml.bos_token_id", &specials.bos)?;
    let eos = special(add_eos, "tokenizer.ggml.eos_token_id", &specials.eos)?;
    let around = |name: &str, type_id: u32| -> Vec<Value> {
        let token = |t: &(String, usize)| json!({"SpecialToken": {"id": t.0, "type_id": type_id}});
        bos.iter()
            .map(token)
            .chain([json!({"Sequence": {"id": name, "type_id": type_id}})])
            .chain(eos.iter().map(token))
            .collect()
    };
    let single = around("A", 0);
    let pair: Vec<Value> = single.iter().cloned().chain(around("B", 1)).collect();
    let special_tokens: Map<String, Value> = bos
        .iter()
        .chain(eos.iter())
        .map(|(token, id)| {
            (
                token.clone(),
                json!({"id": token, "ids": [id], "tokens": [token]}),
            )
        })
        .collect();
    let post_processor = json!({"type": "TemplateProcessing", "single": single, "pair": pair,
                                "special_tokens": special_tokens});

    let mut vocab = Map::new();
    for (id, p) in pieces.iter().enumerate() {
        vocab.insert(p.clone(), json!(id));
    }
    let merges: Vec<Value> = sentencepiece_merges(&pieces, &scores, &types)
        .into_iter()
        .map(|(l, r)| json!([l, r]))
        .collect();
    // tokenizer_config.json's `added_tokens_decoder`: the added tokens by id.
    let decoder: Map<String, Value> = added
        .iter()
        .filter_map(Value::as_object)
        .map(|a| {
            let mut entry = a.clone();
            let id = entry.remove("id").unwrap_or(Value::Null);
            (id.to_string(), Value::Object(entry))
        })
        .collect();
    let tokenizer = document(
        added,
        [normalizer, pre_tokenizer, post_processor],
        json!({"type": "Sequence", "decoders": decoders}),
        json!({"type": "BPE", "dropout": null, "unk_token": specials.unk,
               "continuing_subword_prefix": null, "end_of_word_suffix": null,
               "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
               "vocab": vocab, "merges": merges}),
    );

    let gemma = file.architecture().is_ok_and(|a| a.starts_with("gemma"));
    let class = if gemma {
        "GemmaTokenizer"
    } else {
        "LlamaTokenizer"
    };
    let mut config = base_config(file, class, add_bos, &specials);
    config.insert("add_eos_token".into(), json!(add_eos));
    if space_prefix {
        config.insert("legacy".into(), json!(true));
    }
    config.insert("added_tokens_decoder".into(), Value::Object(decoder));
    Ok((tokenizer, Value::Object(config)))
}

/// The BPE merges of a SentencePiece vocabulary, as transformers 4.x's
/// `SentencePieceExtractor.extract` derives them: every split of every piece into two
/// pieces of the vocabulary, ranked by the whole piece's score (normal pieces: the stored
/// score; meta pieces: 0), then the left and the right part's length in characters, all
/// descending; ties keep the order of the pieces' ids, and within a piece the order of
/// the parts' ids. Unused pieces take no part.
pub fn sentencepiece_merges(
    pieces: &[String],
    scores: &[f32],
    types: &[u64],
) -> Vec<(String, String)> {
    // Python's dict: a repeated piece keeps its first position and its last id.
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(pieces.len());
    let mut order = Vec::with_capacity(pieces.len());
    for (id, p) in pieces.iter().enumerate() {
        if types.get(id) == Some(&token_type::UNUSED) {
            continue;
        }
        if ids.insert(p.as_str(), id).is_none() {
            order.push(p.as_str());
        }
    }
    struct Merge<'a> {
        left: &'a str,
        right: &'a str,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut ranked: Vec<Merge<'_>> = Vec::new();
    for p in order {
        let id = ids[p];
        let score = if types.get(id) == Some(&token_type::NORMAL) {
            scores.get(id).copied().unwrap_or(0.0)
        } else {
            0.0
        };
        let start = ranked.len();
        for (chars, (at, _)) in p.char_indices().enumerate().skip(1) {
            let (left, right) = p.split_at(at);
            if ids.contains_key(left) && ids.contains_key(right) {
                ranked.push(Merge {
                    left,
                    right,
                    score,
                    left_chars: chars,
                    right_chars: p[at..].chars().count(),
                });
            }
        }
        ranked[start..].sort_by_key(|m| (ids[m.left], ids[m.right]));
    }
    // As Python compares floats: -0 equals 0 (NaN, from a broken file, sorts first).
    let key = |s: f32| if s == 0.0 { 0.0 } else { s };
    ranked.sort_by(|a, b| {
        key(b.score)
            .total_cmp(&key(a.score))
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    ranked
        .into_iter()
        .map(|m| (m.left.to_string(), m.right.to_string()))
        .collect()
}
