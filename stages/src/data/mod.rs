//! Data stages: raw text to training- and evaluation-ready Parquet.
//!
//! | kind | module | inputs -> outputs |
//! |---|---|---|
//! | `corpus.synthetic` | [`synthetic`] | — -> `corpus_a/b.jsonl`, `questions_a/b.jsonl`, `people.jsonl` |
//! | `tokenizer.train` | [`tokenizer_train`] | `corpus` -> `tokenizer.json` |
//! | `tokenize` | [`tokenize`] | `corpus`, `tokenizer` -> `shards/part-*.parquet` |
//! | `pack` | [`pack`] | `shards` (one or more sources) -> `sequences/part-*.parquet` |
//! | `sft.format` | [`sft`] | `data`, `tokenizer` -> `samples/part-*.parquet` |
//! | `corpus.files` | [`corpus`] | `files` -> `corpus.jsonl` |
//! | `corpus.jsonl`, `corpus.parquet` | [`corpus`] | `files` -> `corpus.jsonl` |
//!
//! Shared pieces: [`source`] streams records (JSONL lines, Parquet rows, text files)
//! naming file and line in every error, [`shard`] writes and reads Parquet shards,
//! [`common`] holds the `on_error` policy and file helpers, [`error`] the [`DataError`]
//! enum; the seeded generator behind "same seed, same bytes" is [`crate::rng`].

pub mod arrow_value;
pub mod chunk;
pub mod common;
pub mod corpus;
pub mod error;
pub mod pack;
pub mod sft;
pub mod shard;
pub mod source;
pub mod synthetic;
pub mod tokenize;
pub mod tokenizer_train;

pub use error::DataError;

use slayer_engine::Registry;

/// Adds every data stage kind to `r`.
pub fn register(r: &mut Registry) {
    r.add_typed(synthetic::Synthetic);
    r.add_typed(tokenizer_train::TokenizerTrain);
    r.add_typed(tokenize::Tokenize);
    r.add_typed(pack::Pack);
    r.add_typed(sft::SftFormat);
    r.add_typed(corpus::CorpusFiles);
    r.add_typed(corpus::CorpusRecords::<false>);
    r.add_typed(corpus::CorpusRecords::<true>);
}
