//! `tokenizer.train` and `tokenize`: HF-loadable tokenizer, Parquet shards with the
//! documented schema whose ids equal direct tokenization, same bytes for any thread
//! count, and bad input reported with file and line.

use std::path::{Path, PathBuf};

use crate::support::{
    metric, parquet_files, read_parquet, run, strings, tree_hashes, u32_lists, write,
};
use arrow_schema::DataType;
use serde_json::json;

/// A synthetic corpus and a tokenizer trained on it.
fn corpus_and_tokenizer(dir: &Path) -> (PathBuf, PathBuf) {
    run(
        "corpus.synthetic",
        json!({"people_a": 40, "people_b": 5, "bios_per_person": 3}),
        &[],
        &dir.join("syn"),
        1,
    )
    .unwrap();
    let corpus = dir.join("syn/corpus_a.jsonl");
    let m = run(
        "tokenizer.train",
        json!({"vocab_size": 600}),
        &[("corpus", &[corpus.as_path()])],
        &dir.join("tok"),
        2,
    )
    .unwrap();
    assert_eq!(metric(&m, "documents"), 120);
    (corpus, dir.join("tok/tokenizer.json"))
}

#[test]
fn trained_tokenizer_loads_and_keeps_special_tokens_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, tok) = corpus_and_tokenizer(tmp.path());
    let t = tokenizers::Tokenizer::from_file(&tok).unwrap();
    assert!(t.get_vocab_size(true) <= 600);
    assert!(t.get_vocab_size(true) > 400, "merges were learned");
    assert_eq!(t.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(t.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_to_id("<|im_end|>"), Some(2));
    let enc = t
        .encode("Alice Abbott was born in the city of Paris.", false)
        .unwrap();
    assert_eq!(
        t.decode(enc.get_ids(), false).unwrap(),
        "Alice Abbott was born in the city of Paris."
    );
}

#[test]
fn shards_round_trip_to_direct_tokenization_with_documented_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let (corpus, tok) = corpus_and_tokenizer(tmp.path());
    let out = tmp.path().join("out");
    let m = run(
        "tokenize",
        json!({"shard_rows": 50}),
        &[
            ("corpus", &[corpus.as_path()]),
            ("tokenizer", &[tok.as_path()]),
        ],
        &out,
        2,
    )
    .unwrap();
    assert_eq!(metric(&m, "documents"), 120);
    assert_eq!(metric(&m, "shards"), 3);
    let files = parquet_files(&out.join("shards"));
    assert_eq!(
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        [
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet"
        ]
    );

    let t = tokenizers::Tokenizer::from_file(&tok).unwrap();
    let eos = t.token_to_id("<|endoftext|>").unwrap();
    let hash = blake3::hash(&std::fs::read(&tok).unwrap())
        .to_hex()
        .to_string();
    let docs: Vec<serde_json::Value> = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut row = 0usize;
    let mut tokens = 0u64;
    for f in &files {
        let (batches, meta) = read_parquet(f);
        assert_eq!(meta["slayer.tokenizer.blake3"], hash);
        assert_eq!(meta["slayer.eos_id"], eos.to_string());
        for b in &batches {
            let schema = b.schema();
            let fields: Vec<(String, DataType, bool)> = schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
                .collect();
            assert_eq!(fields[0], ("doc_id".into(), DataType::Utf8, false));
            assert_eq!(fields[1], ("source".into(), DataType::Utf8, false));
            assert!(
                matches!(&fields[2].1, DataType::List(item) if item.data_type() == &DataType::UInt32)
            );
            assert_eq!(fields[2].0, "input_ids");
            assert_eq!(fields[3], ("n_tokens".into(), DataType::UInt32, false));
            let ids = u32_lists(b, "input_ids");
            let doc_ids = strings(b, "doc_id");
            let n = b
                .column_by_name("n_tokens")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::UInt32Array>()
                .unwrap();
            for (i, got) in ids.iter().enumerate() {
                let doc = &docs[row];
                assert_eq!(doc_ids[i], doc["id"].as_str().unwrap());
                let mut want = t
                    .encode(doc["text"].as_str().unwrap(), false)
                    .unwrap()
                    .get_ids()
                    .to_vec();
                want.push(eos);
                assert_eq!(got, &want, "row {row}");
                assert_eq!(n.value(i) as usize, want.len());
                tokens += want.len() as u64;
                row += 1;
            }
        }
    }
    assert_eq!(row, docs.len());
    assert_eq!(metric(&m, "tokens"), tokens);
}

#[test]
fn shards_are_the_same_bytes_for_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (corpus, tok) = corpus_and_tokenizer(tmp.path());
    for threads in [1, 2] {
        run(
            "tokenize",
            json!({"add_bos": true, "bos_token": "<|im_start|>"}),
            &[
                ("corpus", &[corpus.as_path()]),
                ("tokenizer", &[tok.as_path()]),
            ],
            &tmp.path().join(format!("t{threads}")),
            threads,
        )
        .unwrap();
    }
    assert_eq!(
        tree_hashes(&tmp.path().join("t1")),
        tree_hashes(&tmp.path().join("t2"))
    );
}

fn tokenize_err(dir: &Path, corpus: &Path, tok: &Path, params: serde_json::Value) -> String {
    run(
        "tokenize",
        params,
        &[("corpus", &[corpus]), ("tokenizer", &[tok])],
        &dir.join("bad-out"),
        2,
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn bad_input_names_file_and_line_or_is_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, tok) = corpus_and_tokenizer(tmp.path());
    let dir = tmp.path();

    let malformed = write(
        &dir.join("bad/malformed.jsonl"),
        "{\"text\": \"ok\"}\n\n{\"text\": \"fine\"}\n{\"text\": oops}\n",
    );
    let e = tokenize_err(dir, &malformed, &tok, json!({}));
    assert!(e.contains("malformed.jsonl:4: malformed JSON"), "{e}");

    let missing = write(
        &dir.join("bad/missing.jsonl"),
        "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n",
    );
    let e = tokenize_err(dir, &missing, &tok, json!({}));
    assert!(
        e.contains("missing.jsonl:2: missing field `text` (fields present: body)"),
        "{e}"
    );

    let utf8 = dir.join("bad/latin1.jsonl");
    std::fs::write(&utf8, b"{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n").unwrap();
    let e = tokenize_err(dir, &utf8, &tok, json!({}));
    assert!(e.contains("latin1.jsonl:2: invalid UTF-8"), "{e}");

    let text = dir.join("bad/latin1.txt");
    std::fs::write(&text, b"line one\nline two\nbad \xff here\n").unwrap();
    let e = tokenize_err(dir, &text, &tok, json!({}));
    assert!(e.contains("latin1.txt:3: invalid UTF-8"), "{e}");

    let e = tokenize_err(dir, &dir.join("bad/absent.jsonl"), &tok, json!({}));
    assert!(
        e.contains("absent.jsonl") && e.contains("No such file"),
        "{e}"
    );

    let e = tokenize_err(dir, &missing, &malformed, json!({}));
    assert!(
        e.contains("malformed.jsonl: not a valid tokenizer.json"),
        "{e}"
    );

    // A run failing after shards were closed removes them: nothing looks complete.
    let big = "Alice Abbott was born in the city of Paris.\n".repeat(60_000);
    let late = write(
        &dir.join("bad/late.jsonl"),
        &format!(
            "{}\n{}\n{{\"text\": oops}}\n",
            json!({"text": big}),
            json!({"text": big})
        ),
    );
    let out = dir.join("late-out");
    let e = run(
        "tokenize",
        json!({"shard_rows": 1}),
        &[
            ("corpus", &[late.as_path()]),
            ("tokenizer", &[tok.as_path()]),
        ],
        &out,
        2,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("late.jsonl:3: malformed JSON"), "{e}");
    assert_eq!(parquet_files(&out.join("shards")), Vec::<PathBuf>::new());

    let m = run(
        "tokenize",
        json!({"on_error": "skip"}),
        &[
            (
                "corpus",
                &[malformed.as_path(), missing.as_path(), utf8.as_path()],
            ),
            ("tokenizer", &[tok.as_path()]),
        ],
        &dir.join("skip-out"),
        2,
    )
    .unwrap();
    assert_eq!(metric(&m, "skipped"), 3);
    assert_eq!(metric(&m, "documents"), 4);
}

/// Code-like text with every kind of whitespace around newlines.
fn code_text(lines: usize) -> String {
    let mut rng = slayer_stages::rng::SplitMix64::with_stream(11, 0);
    let pieces = [
        "def f(x):",
        "    return x + 1",
        "\tindent = 2",
        "",
        "  trailing  ",
        "x = [1, 2, 3]",
        "# café ünïcode — 東京",
        "if a:\r",
        "    pass",
        "\u{3000}wide space",
        "12345 67",
        "}",
        "print('hi')  # done",
        "    ",
        "class A:",
        "<|endoftext|>",
    ];
    (0..lines)
        .map(|_| *rng.pick(&pieces))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn chunked_encoding_of_long_documents_equals_whole_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = write(&tmp.path().join("code.txt"), &code_text(4000));
    run(
        "tokenizer.train",
        json!({"vocab_size": 800}),
        &[("corpus", &[corpus.as_path()])],
        &tmp.path().join("tok"),
        1,
    )
    .unwrap();
    let path = tmp.path().join("tok/tokenizer.json");
    let loaded = slayer_stages::data::common::load_tokenizer(&path).unwrap();
    assert!(loaded.chunkable, "a trained byte-level BPE splits safely");
    let text = code_text(60_000);
    assert!(text.len() > 20 * slayer_stages::data::chunk::CHUNK_BYTES);
    let doc = slayer_stages::data::source::Document {
        id: "d".into(),
        source: "s".into(),
        text: text.clone(),
    };
    let chunked =
        slayer_stages::data::tokenize::encode_docs(&loaded.inner, &[doc], false, None, None, true)
            .unwrap();
    let whole = loaded
        .inner
        .encode(text.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(chunked[0].len(), whole.len());
    assert_eq!(chunked[0], whole);
}

/// Prose in long lines: words, contractions, digits, punctuation, unicode, runs of
/// spaces and tabs, NBSP and ideographic spaces, CRLF and blank lines, special tokens;
/// with `newlines` false, one line of it.
fn prose_text(words: usize, newlines: bool) -> String {
    let mut rng = slayer_stages::rng::SplitMix64::with_stream(12, 0);
    let pieces = [
        "the",
        "quick",
        "brown",
        "fox",
        "it's",
        "we'll",
        "don't",
        "café",
        "naïve",
        "東京",
        "Ünïcode",
        "1234567",
        "3.14",
        "—",
        "(x,",
        "y)",
        "\"quoted\"",
        "<|endoftext|>",
        "emoji🙂",
        "a's",
        "x'll",
        "!!!",
        "--",
        "über",
        "日本語の文",
        "€100",
    ];
    let gaps = [
        " ", " ", " ", " ", "  ", "   ", "\t", " \t ", "\u{a0}", "\u{3000}", " \u{a0} ", "\n",
        "\r\n", "\n\n", "  \n", "\n  ", " \n\t",
    ];
    let mut text = String::new();
    for i in 0..words {
        let piece = *rng.pick(&pieces);
        text.push_str(piece);
        let gap = rng.pick(&gaps);
        if newlines || !gap.contains(['\n', '\r']) {
            text.push_str(gap);
        } else {
            text.push(' ');
        }
        if i % 997 == 0 {
            text.push_str("     ");
        }
    }
    text
}

#[test]
fn chunked_encoding_at_spaces_equals_whole_encoding_for_prose() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = write(&tmp.path().join("prose.txt"), &prose_text(20_000, true));
    run(
        "tokenizer.train",
        json!({"vocab_size": 900}),
        &[("corpus", &[corpus.as_path()])],
        &tmp.path().join("tok"),
        1,
    )
    .unwrap();
    let trained = tmp.path().join("tok/tokenizer.json");
    let byte_level =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/byte_tokenizer.json");
    for path in [trained, byte_level] {
        let loaded = slayer_stages::data::common::load_tokenizer(&path).unwrap();
        assert!(loaded.chunkable, "{} splits safely", path.display());
        for newlines in [true, false] {
            let text = prose_text(150_000, newlines);
            let chunk = slayer_stages::data::chunk::CHUNK_BYTES;
            let ranges = slayer_stages::data::chunk::chunk_ranges(&text, chunk);
            assert!(ranges.len() > 20, "{} chunks", ranges.len());
            assert!(ranges.iter().all(|r| r.len() < 2 * chunk));
            let doc = slayer_stages::data::source::Document {
                id: "d".into(),
                source: "s".into(),
                text: text.clone(),
            };
            let chunked = slayer_stages::data::tokenize::encode_docs(
                &loaded.inner,
                &[doc],
                false,
                None,
                None,
                true,
            )
            .unwrap();
            let whole = loaded.inner.encode(text.as_str(), false).unwrap();
            assert_eq!(
                chunked[0].len(),
                whole.get_ids().len(),
                "{}",
                path.display()
            );
            assert!(chunked[0] == whole.get_ids(), "{}", path.display());
        }
    }
}

#[test]
fn a_document_over_max_document_bytes_names_file_line_and_document() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, tok) = corpus_and_tokenizer(tmp.path());
    let big = "word ".repeat(400);
    let jsonl = write(
        &tmp.path().join("big.jsonl"),
        &format!(
            "{{\"id\": \"small\", \"text\": \"hi\"}}\n{{\"id\": \"huge\", \"text\": \"{big}\"}}\n"
        ),
    );
    let e = tokenize_err(
        tmp.path(),
        &jsonl,
        &tok,
        json!({"max_document_bytes": 1000}),
    );
    assert!(e.contains("big.jsonl:2"), "{e}");
    assert!(e.contains("the line has 2027 bytes"), "{e}");
    assert!(e.contains("more than max_document_bytes (1000)"), "{e}");
    // The line is refused before it is read whole; with `skip` the lines after it are
    // still read.
    let mixed = write(
        &tmp.path().join("mixed.jsonl"),
        &format!(
            "{{\"id\": \"a\", \"text\": \"hi\"}}\n{{\"id\": \"huge\", \"text\": \"{}\"}}\n\
             {{\"id\": \"b\", \"text\": \"there\"}}\n",
            "word ".repeat(100_000)
        ),
    );
    let m = run(
        "tokenize",
        json!({"max_document_bytes": 1000, "on_error": "skip"}),
        &[
            ("corpus", &[mixed.as_path()]),
            ("tokenizer", &[tok.as_path()]),
        ],
        &tmp.path().join("skip-out"),
        1,
    )
    .unwrap();
    assert_eq!(metric(&m, "skipped"), 1);
    assert_eq!(metric(&m, "documents"), 2);
    let text = write(&tmp.path().join("big.txt"), &big);
    let e = tokenize_err(tmp.path(), &text, &tok, json!({"max_document_bytes": 1000}));
    assert!(
        e.contains("big.txt: 2000 bytes, more than max_document_bytes (1000)"),
        "{e}"
    );
    // Under the limit it runs.
    run(
        "tokenize",
        json!({"max_document_bytes": 3000}),
        &[
            ("corpus", &[jsonl.as_path()]),
            ("tokenizer", &[tok.as_path()]),
        ],
        &tmp.path().join("ok-out"),
        1,
    )
    .unwrap();
}
