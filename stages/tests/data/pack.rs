//! `pack`, `sft.format` and the corpus stages: every token exactly once, mixing ratios
//! within 1%, the SFT loss mask on exactly the assistant spans (hand-checked), and
//! corpus filtering, dedup and error reporting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{
    bool_lists, metric, parquet_files, read_parquet, run, tree_hashes, u32_lists, write,
};
use serde_json::json;
use slayer_stages::data::shard::{ShardOptions, ShardWriter, documents_schema};
use slayer_stages::data::source::Document;
use slayer_stages::data::tokenize::documents_batch;
use slayer_stages::rng::SplitMix64;

const EOS: u32 = 0;

/// Writes tokenized shards of `docs` (ids ending with EOS) under `dir`.
fn shards(dir: &Path, docs: &[Vec<u32>]) -> PathBuf {
    let mut meta = BTreeMap::new();
    meta.insert("slayer.eos_id".to_string(), EOS.to_string());
    meta.insert("slayer.tokenizer.blake3".to_string(), "test".to_string());
    let mut w = ShardWriter::new(
        ShardOptions {
            dir: dir.to_path_buf(),
            max_rows: Some(37),
            max_tokens: None,
            compression: Default::default(),
            metadata: meta,
        },
        documents_schema(),
    )
    .unwrap();
    let d: Vec<Document> = (0..docs.len())
        .map(|i| Document {
            id: i.to_string(),
            source: "t".into(),
            text: String::new(),
        })
        .collect();
    let (batch, lens) = documents_batch(&d, docs).unwrap();
    w.write(&batch, &lens).unwrap();
    w.finish().unwrap();
    dir.to_path_buf()
}

/// `n` documents with ids unique across sources (`base + …`), lengths 5..200, EOS-ended.
fn docs(n: usize, base: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::with_stream(seed, 0);
    let mut next = base;
    (0..n)
        .map(|_| {
            let len = 5 + rng.below(195);
            let mut d: Vec<u32> = (0..len as u32).map(|k| next + k).collect();
            next += len as u32;
            d.push(EOS);
            d
        })
        .collect()
}

/// (input_ids, loss_mask) rows of every shard under `dir`.
fn rows(dir: &Path) -> Vec<(Vec<u32>, Vec<bool>)> {
    let mut out = Vec::new();
    for f in parquet_files(dir) {
        for b in read_parquet(&f).0 {
            out.extend(
                u32_lists(&b, "input_ids")
                    .into_iter()
                    .zip(bool_lists(&b, "loss_mask")),
            );
        }
    }
    out
}

#[test]
fn budget_mode_preserves_every_token_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = docs(300, 1, 1);
    let total: u64 = input.iter().map(|d| d.len() as u64).sum();
    let src = shards(&tmp.path().join("src"), &input);
    let m = run(
        "pack",
        json!({"seq_len": 64, "token_budget": total, "seed": 5, "shuffle_buffer": 50}),
        &[("shards", &[src.as_path()])],
        &tmp.path().join("out"),
        1,
    )
    .unwrap();
    assert_eq!(metric(&m, "tokens"), total);
    let rows = rows(&tmp.path().join("out/sequences"));
    assert_eq!(rows.len() as u64, total.div_ceil(64));
    let mut stream = Vec::new();
    for (ids, mask) in &rows {
        assert_eq!(ids.len(), 64);
        assert_eq!(mask.len(), 64);
        stream.extend(ids.iter().zip(mask).filter(|(_, m)| **m).map(|(i, _)| *i));
    }
    assert_eq!(stream.len() as u64, total);
    // Every non-EOS token once, and the stream is the documents concatenated in some order.
    let mut seen: Vec<u32> = stream.iter().copied().filter(|&t| t != EOS).collect();
    seen.sort();
    let mut want: Vec<u32> = input
        .iter()
        .flatten()
        .copied()
        .filter(|&t| t != EOS)
        .collect();
    want.sort();
    assert_eq!(seen, want);
    let mut docs_out: Vec<Vec<u32>> = stream
        .split_inclusive(|&t| t == EOS)
        .map(<[u32]>::to_vec)
        .collect();
    assert_ne!(docs_out, input, "documents are shuffled");
    docs_out.sort();
    let mut sorted = input.clone();
    sorted.sort();
    assert_eq!(docs_out, sorted);
    // The padding of the last row is masked out.
    let pad = rows.len() as u64 * 64 - total;
    assert_eq!(metric(&m, "padding"), pad);
}

#[test]
fn smaller_budget_cuts_the_stream_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let src = shards(&tmp.path().join("src"), &docs(100, 1, 2));
    let m = run(
        "pack",
        json!({"seq_len": 32, "token_budget": 1000, "last": "drop"}),
        &[("shards", &[src.as_path()])],
        &tmp.path().join("out"),
        1,
    )
    .unwrap();
    // 1000 tokens = 31 full rows of 32 (992) + 8 dropped.
    assert_eq!(metric(&m, "sequences"), 31);
    assert_eq!(metric(&m, "tokens"), 992);
    let rows = rows(&tmp.path().join("out/sequences"));
    assert!(rows.iter().all(|(_, m)| m.iter().all(|&b| b)));
}

#[test]
fn mixing_ratio_is_within_one_percent_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let math = shards(&tmp.path().join("math"), &docs(2000, 1, 3));
    let code = shards(&tmp.path().join("code"), &docs(2000, 10_000_000, 4));
    let params =
        json!({"seq_len": 128, "token_budget": 150_000, "mix": {"math": 5, "code": 2}, "seed": 9});
    let mut hashes = Vec::new();
    for name in ["one", "two"] {
        let out = tmp.path().join(name);
        let m = run(
            "pack",
            params.clone(),
            &[("shards", &[math.as_path(), code.as_path()])],
            &out,
            1,
        )
        .unwrap();
        let (mut from_math, mut from_code) = (0u64, 0u64);
        for (ids, mask) in rows(&out.join("sequences")) {
            for (t, m) in ids.iter().zip(mask) {
                if m && *t != EOS {
                    if *t >= 10_000_000 {
                        from_code += 1
                    } else {
                        from_math += 1
                    }
                }
            }
        }
        let share = from_math as f64 / (from_math + from_code) as f64;
        assert!((share - 5.0 / 7.0).abs() < 0.01, "math share {share}");
        let reported = m["share.math"].as_f64().unwrap();
        assert!(
            (reported - 5.0 / 7.0).abs() < 0.01,
            "reported share {reported}"
        );
        assert_eq!(metric(&m, "tokens"), 150_000);
        hashes.push(tree_hashes(&out));
    }
    assert_eq!(hashes[0], hashes[1]);
}

#[test]
fn unknown_mix_name_is_an_error_listing_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let math = shards(&tmp.path().join("math"), &docs(10, 1, 3));
    let e = run(
        "pack",
        json!({"seq_len": 16, "mix": {"maths": 1}}),
        &[("shards", &[math.as_path()])],
        &tmp.path().join("out"),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no source named `maths` (sources: math)"), "{e}");
}

/// A tokenizer trained on a little chat-like text.
fn tokenizer(dir: &Path) -> PathBuf {
    let text: String = (0..50)
        .map(|i| {
            format!("user {i}: Hi! assistant: Hello there! How are you today? Fine, thanks.\n")
        })
        .collect();
    let corpus = write(&dir.join("chat.txt"), &text);
    run(
        "tokenizer.train",
        json!({"vocab_size": 300}),
        &[("corpus", &[corpus.as_path()])],
        &dir.join("tok"),
        1,
    )
    .unwrap();
    dir.join("tok/tokenizer.json")
}

/// The trained (`want` = true) or untrained parts of a sample, decoded run by run.
fn runs(tok: &tokenizers::Tokenizer, ids: &[u32], mask: &[bool], want: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for (i, m) in ids.iter().zip(mask) {
        if *m == want {
            cur.push(*i);
        } else if !cur.is_empty() {
            out.push(tok.decode(&cur, false).unwrap());
            cur.clear();
        }
    }
    if !cur.is_empty() {
        out.push(tok.decode(&cur, false).unwrap());
    }
    out
}

const TWO_TURNS: &str = r#"{"id": "c1", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine, thanks."}]}"#;

/// With Qwen3's template the last answer is trained with the empty `<think>` block the
/// template gives it; the earlier one, rendered without a block, is trained as it is.
#[test]
fn sft_with_qwen3_trains_the_last_answer_with_its_think_block() {
    let tmp = tempfile::tempdir().unwrap();
    let tok_path = tokenizer(tmp.path());
    let data = write(&tmp.path().join("chat.jsonl"), &format!("{TWO_TURNS}\n"));
    run(
        "sft.format",
        json!({"template": "qwen3"}),
        &[
            ("data", &[data.as_path()]),
            ("tokenizer", &[tok_path.as_path()]),
        ],
        &tmp.path().join("out"),
        1,
    )
    .unwrap();
    let tok = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    let rows = rows(&tmp.path().join("out/samples"));
    let (ids, mask) = &rows[0];
    assert_eq!(
        tok.decode(ids, false).unwrap(),
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nFine, thanks.<|im_end|>\n"
    );
    assert_eq!(
        runs(&tok, ids, mask, true),
        [
            "Hello there!<|im_end|>",
            "<think>\n\n</think>\n\nFine, thanks.<|im_end|>"
        ]
    );
}

#[test]
fn sft_loss_mask_covers_exactly_the_assistant_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let tok_path = tokenizer(tmp.path());
    let data = write(
        &tmp.path().join("chat.jsonl"),
        &format!(
            "{TWO_TURNS}\n{}\n",
            r#"{"instruction": "Greet", "input": "Bob", "output": "Hi Bob!"}"#
        ),
    );
    let m = run(
        "sft.format",
        json!({}),
        &[
            ("data", &[data.as_path()]),
            ("tokenizer", &[tok_path.as_path()]),
        ],
        &tmp.path().join("out"),
        1,
    )
    .unwrap();
    assert_eq!(metric(&m, "documents"), 2);
    let tok = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    let rows = rows(&tmp.path().join("out/samples"));
    let runs = |ids: &[u32], mask: &[bool], want: bool| runs(&tok, ids, mask, want);
    let (ids, mask) = &rows[0];
    assert_eq!(
        tok.decode(ids, false).unwrap(),
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine, thanks.<|im_end|>\n"
    );
    assert_eq!(
        runs(ids, mask, true),
        ["Hello there!<|im_end|>", "Fine, thanks.<|im_end|>"]
    );
    assert_eq!(
        runs(ids, mask, false),
        [
            "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            "\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n",
            "\n"
        ]
    );
    let (ids, mask) = &rows[1];
    assert_eq!(runs(ids, mask, true), ["Hi Bob!<|im_end|>"]);
    assert_eq!(
        runs(ids, mask, false)[0],
        "<|im_start|>user\nGreet\n\nBob<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn sft_overlong_samples_are_dropped_or_truncated_and_bad_lines_named() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let long = "word ".repeat(200);
    let data = write(
        &tmp.path().join("d.jsonl"),
        &format!(
            "{}\n{}\n",
            json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}),
            json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": long}]}),
        ),
    );
    let inputs: [(&str, &[&Path]); 2] =
        [("data", &[data.as_path()]), ("tokenizer", &[tok.as_path()])];
    let m = run(
        "sft.format",
        json!({"max_len": 64}),
        &inputs,
        &tmp.path().join("a"),
        1,
    )
    .unwrap();
    assert_eq!((metric(&m, "documents"), metric(&m, "dropped")), (1, 1));
    let m = run(
        "sft.format",
        json!({"max_len": 64, "overlong": "truncate"}),
        &inputs,
        &tmp.path().join("b"),
        1,
    )
    .unwrap();
    assert_eq!((metric(&m, "documents"), metric(&m, "truncated")), (2, 1));
    assert!(
        rows(&tmp.path().join("b/samples"))
            .iter()
            .all(|(i, _)| i.len() <= 64)
    );

    let bad = write(
        &tmp.path().join("bad.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n{\"prompt\": 1}\n",
    );
    let e = run(
        "sft.format",
        json!({}),
        &[("data", &[bad.as_path()]), ("tokenizer", &[tok.as_path()])],
        &tmp.path().join("c"),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("bad.jsonl:1: the conversation has no assistant message"),
        "{e}"
    );
}

#[test]
fn corpus_files_filters_dedups_splits_and_reports_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    write(&root.join("a.py"), "print('a')\n");
    write(&root.join("pkg/b.py"), "print('b')\n");
    write(&root.join("pkg/copy_of_a.py"), "print('a')\n");
    write(&root.join("pkg/tests/test_b.py"), "assert True\n");
    write(&root.join("notes.md"), "part one\n---\npart two\n");
    write(&root.join("big.py"), &"x = 1\n".repeat(1000));
    let m = run(
        "corpus.files",
        json!({"extensions": ["py"], "exclude": ["**/tests/**"], "max_bytes": 1000}),
        &[("files", &[root.as_path()])],
        &tmp.path().join("out"),
        1,
    )
    .unwrap();
    assert_eq!(
        (
            metric(&m, "documents"),
            metric(&m, "duplicates"),
            metric(&m, "too_large"),
            metric(&m, "filtered")
        ),
        (2, 1, 1, 2)
    );
    let lines = std::fs::read_to_string(tmp.path().join("out/corpus.jsonl")).unwrap();
    assert!(
        lines.contains(r#"{"id":"repo/a.py","source":"repo/a.py","text":"print('a')\n"}"#),
        "{lines}"
    );

    let m = run(
        "corpus.files",
        json!({"include": ["*.md"], "split": "\n---\n"}),
        &[("files", &[root.as_path()])],
        &tmp.path().join("md"),
        1,
    )
    .unwrap();
    assert_eq!(metric(&m, "documents"), 2);

    std::fs::write(root.join("latin1.py"), b"ok = 1\nname = '\xe9'\n").unwrap();
    let e = run(
        "corpus.files",
        json!({}),
        &[("files", &[root.as_path()])],
        &tmp.path().join("bad"),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("latin1.py:2: invalid UTF-8"), "{e}");
    let m = run(
        "corpus.files",
        json!({"on_error": "skip"}),
        &[("files", &[root.as_path()])],
        &tmp.path().join("skip"),
        1,
    )
    .unwrap();
    assert_eq!(metric(&m, "skipped"), 1);
}

#[test]
fn corpus_jsonl_keeps_messages_and_names_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        &tmp.path().join("chat.jsonl"),
        "{\"id\": 7, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n{\"id\": 8, \"messages\": \"oops\"}\n",
    );
    let e = run(
        "corpus.jsonl",
        json!({"messages_field": "messages"}),
        &[("files", &[f.as_path()])],
        &tmp.path().join("a"),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("chat.jsonl:2: field `messages` is a string, expected an array"),
        "{e}"
    );
    let m = run(
        "corpus.jsonl",
        json!({"messages_field": "messages", "on_error": "skip"}),
        &[("files", &[f.as_path()])],
        &tmp.path().join("b"),
        1,
    )
    .unwrap();
    assert_eq!((metric(&m, "documents"), metric(&m, "skipped")), (1, 1));
    let out = std::fs::read_to_string(tmp.path().join("b/corpus.jsonl")).unwrap();
    assert_eq!(
        out,
        "{\"id\":\"7\",\"source\":\"chat.jsonl\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}\n"
    );
}
