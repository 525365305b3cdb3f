//! `tokenizer.train`: a byte-level BPE (GPT-2 style: byte-level pre-tokenizer with the
//! GPT-2 split regex, no normalizer, byte-level decoder) trained with the `tokenizers`
//! crate on a streamed corpus; writes an HF `tokenizer.json` that Python `tokenizers`
//! and `transformers` load unchanged.

use std::sync::Mutex;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpec, InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use super::common::{OnError, input_files, metrics};
use super::error::{DataError, Result};
use super::source::{Fields, Format, Records, extract_document};

/// The `tokenizer.train` stage kind.
pub struct TokenizerTrain;

fn vocab_size() -> usize {
    4096
}
fn min_frequency() -> u64 {
    2
}
fn specials() -> Vec<String> {
    vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ]
}

/// Parameters of `tokenizer.train`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizerTrainParams {
    /// Vocabulary size, special tokens and the 256 byte tokens included.
    #[serde(default = "vocab_size")]
    pub vocab_size: usize,
    /// Special tokens, given ids 0, 1, … in this order (the first is the EOS that
    /// `tokenize` finds by default; `<|im_start|>`/`<|im_end|>` serve ChatML SFT).
    #[serde(default = "specials")]
    pub special_tokens: Vec<String>,
    /// A merge is learned only for pairs seen at least this often.
    #[serde(default = "min_frequency")]
    pub min_frequency: u64,
    /// Train on at most this many bytes of text (the first documents); none = all.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// How to read the corpus files (see `tokenize`).
    #[serde(default)]
    pub format: Format,
    /// Field (JSONL) or column (Parquet) holding the text.
    #[serde(default = "super::common::text_field")]
    pub text_field: String,
    /// Bad records: `fail` (naming file and line) or `skip` (counted in `skipped`).
    #[serde(default)]
    pub on_error: OnError,
}

impl TypedStage for TokenizerTrain {
    type Params = TokenizerTrainParams;
    const KIND: &'static str = "tokenizer.train";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Train a byte-level BPE tokenizer on a corpus; writes an HF tokenizer.json";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(vec![InputSpec::required(
            "corpus",
            "documents: JSONL, Parquet or text files, or directories of them",
        )])
    }

    fn outputs(_: &TokenizerTrainParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("tokenizer", "tokenizer.json")]
    }

    fn validate(p: &TokenizerTrainParams) -> Result<(), ParamError> {
        let min = 256 + p.special_tokens.len();
        if p.vocab_size < min {
            return Err(ParamError::new(
                "vocab_size",
                format!("must be at least {min} (256 byte tokens + the special tokens)"),
            ));
        }
        Ok(())
    }

    fn default_threads() -> usize {
        0
    }

    fn run(&self, p: TokenizerTrainParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let files = input_files(ctx.input("corpus")?)?;
        let records = Records::new(
            files,
            p.format,
            Some(vec![p.text_field.clone()]),
            p.on_error,
        );
        let (tokenizer, counts) = train(&p, records)?;
        let out = ctx.out("tokenizer.json");
        tokenizer
            .save(&out, false)
            .map_err(|e| DataError::file(&out, format!("cannot save tokenizer: {e}")))?;
        Ok(metrics([
            ("documents", counts.documents),
            ("bytes", counts.bytes),
            ("skipped", counts.skipped),
            ("vocab_size", tokenizer.get_vocab_size(true) as u64),
        ]))
    }
}

/// Counts from training.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrainCounts {
    /// Documents fed.
    pub documents: u64,
    /// Bytes fed.
    pub bytes: u64,
    /// Records skipped.
    pub skipped: u64,
}

/// Train on `records`; the first record error stops training and is returned.
pub fn train(p: &TokenizerTrainParams, records: Records) -> Result<(Tokenizer, TrainCounts)> {
    let fields = Fields {
        text: p.text_field.clone(),
        ..Fields::default()
    };
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(p.vocab_size)
        .min_frequency(p.min_frequency)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(
            p.special_tokens
                .iter()
                .map(|t| AddedToken::from(t.clone(), true))
                .collect(),
        )
        .build();
    let mut tok =
        TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_post_processor(Some(ByteLevel::default().trim_offsets(false)))
            .with_decoder(Some(ByteLevel::default()))
            .build()
            .map_err(|e| DataError::Invalid(format!("cannot build tokenizer: {e}")))?;

    let failure: Mutex<Option<DataError>> = Mutex::new(None);
    let counts = Mutex::new(TrainCounts::default());
    let budget = p.max_bytes.unwrap_or(u64::MAX);
    let mut records = records;
    {
        let texts = std::iter::from_fn(|| {
            let mut c = counts.lock().ok()?;
            if c.bytes >= budget {
                return None;
            }
            loop {
                let rec = records.next()?;
                let doc = match rec.and_then(|r| extract_document(r, &fields)) {
                    Ok(d) => d,
                    Err(e) => match records.policy::<()>(Err(e)) {
                        Ok(_) => continue,
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                *f = Some(e);
                            }
                            return None;
                        }
                    },
                };
                c.documents += 1;
                c.bytes += doc.text.len() as u64;
                return Some(doc.text);
            }
        });
        tok.train(&mut trainer, texts)
            .map_err(|e| DataError::Invalid(format!("tokenizer training failed: {e}")))?;
    }
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut c = counts.into_inner().unwrap_or_default();
    c.skipped = records.skipped();
    if c.documents == 0 {
        return Err(DataError::Invalid(
            "input `corpus`: no documents to train on".into(),
        ));
    }
    Ok((Tokenizer::from(tok), c))
}
