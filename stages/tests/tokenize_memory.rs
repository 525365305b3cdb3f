//! Peak memory of tokenizing one 20 MB document, measured from outside: run with
//! `/usr/bin/time -v` (see docs/reliability.md), `SLAYER_MEM_MODE` = `whole` (one
//! `encode` call on the whole text, what `tokenize` did for a document without
//! newlines), `chunked` ([`encode_docs`] with exact chunks) or `stage` (the `tokenize`
//! stage on a one-line JSONL file, 2 threads).

#[path = "data/support/mod.rs"]
mod data_support;

use std::path::Path;

use serde_json::json;
use slayer_stages::data::source::Document;
use slayer_stages::data::tokenize::encode_docs;

/// About `bytes` of one-line prose: words, numbers, punctuation, unicode, space runs.
fn one_line_document(bytes: usize) -> String {
    let words = [
        "the", "model's", "layers", "were", "pruned", "to", "24", "blocks,", "and", "café", "東京",
        "—", "  then", "trained", "again;", "loss", "3.14", "fell.", "\t",
    ];
    let mut text = String::with_capacity(bytes + 16);
    let mut i = 0usize;
    while text.len() < bytes {
        text.push_str(words[(i * 7 + i / 13) % words.len()]);
        text.push(' ');
        i += 1;
    }
    text
}

#[test]
#[ignore = "a measurement: run under /usr/bin/time -v with SLAYER_MEM_MODE"]
fn tokenize_a_20mb_document() {
    let mode = std::env::var("SLAYER_MEM_MODE").unwrap_or_else(|_| "stage".into());
    let tok_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/byte_tokenizer.json");
    let text = one_line_document(20 << 20);
    let tok = slayer_stages::data::common::load_tokenizer(&tok_path).expect("tokenizer");
    let doc = Document {
        id: "big".into(),
        source: "s".into(),
        text,
    };
    let tokens = match mode.as_str() {
        "whole" => tok
            .inner
            .encode(doc.text.as_str(), false)
            .expect("encode")
            .len(),
        "chunked" => {
            encode_docs(&tok.inner, &[doc], false, None, None, true).expect("encode")[0].len()
        }
        _ => {
            let tmp = tempfile::tempdir().expect("temp dir");
            let line =
                serde_json::to_string(&json!({"id": "big", "text": doc.text})).expect("json");
            let corpus = data_support::write(&tmp.path().join("big.jsonl"), &line);
            drop(doc);
            let m = data_support::run(
                "tokenize",
                json!({"add_eos": false}),
                &[
                    ("corpus", &[corpus.as_path()]),
                    ("tokenizer", &[tok_path.as_path()]),
                ],
                &tmp.path().join("out"),
                2,
            )
            .expect("tokenize");
            data_support::metric(&m, "tokens") as usize
        }
    };
    eprintln!("{mode}: {tokens} tokens");
}
