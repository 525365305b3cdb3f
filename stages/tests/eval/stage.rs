//! The `eval` stage end to end on the tiny Llama fixture: parameters, inputs, outputs
//! (`metrics.json` keyed by task, `items.parquet` one row per item) and the returned
//! metrics, for multiple-choice, HellaSwag-format, user-defined and synthetic tasks.

use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use serde_json::{Value, json};
use slayer_engine::Registry;
use slayer_engine::stage::StageContext;

use crate::support::{fixtures, tiny_model_dir};

fn run(
    params: Value,
    data: Option<PathBuf>,
) -> (
    tempfile::TempDir,
    Result<serde_json::Map<String, Value>, String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let mut registry = Registry::default();
    slayer_stages::eval::register(&mut registry);
    let stage = registry.get("eval").unwrap().clone();
    let params = match stage.check_params(&params) {
        Ok(p) => p,
        Err(e) => return (dir, Err(e.message)),
    };
    let out = dir.path().join("out");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let mut ctx = StageContext {
        work_dir: fixtures().join("eval"),
        scratch_dir: scratch,
        threads: 2,
        ..StageContext::local("eval", &out)
    }
    .with_input("model", "model", &model);
    if let Some(d) = data {
        ctx = ctx.with_input("data", "data", &d);
    }
    let r = stage.run(&params, &ctx).map_err(|e| e.to_string());
    (dir, r)
}

fn parquet_rows(path: &Path) -> i64 {
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    r.metadata().file_metadata().num_rows()
}

#[test]
fn eval_stage_multiple_choice_writes_metrics_and_items() {
    let (dir, r) = run(
        json!({"tasks": ["arc_easy"], "limit": 4, "num_fewshot": 0, "batch_size": 3}),
        Some(fixtures().join("eval/mc_mini.jsonl")),
    );
    let m = r.unwrap();
    let arc = &m["arc_easy"];
    assert_eq!(arc["n"], 4);
    for k in ["acc", "acc_norm", "acc_stderr", "acc_norm_stderr"] {
        let v = arc[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    let out = dir.path().join("out");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(written, Value::Object(m));
    assert_eq!(parquet_rows(&out.join("items.parquet")), 4);
}

#[test]
fn eval_stage_user_task_file_with_data_dir() {
    // `data_dir` and task paths are relative to the manifest directory.
    let (_d, r) = run(
        json!({"tasks": ["custom_task.yaml", "hellaswag"], "data_dir": ".", "num_fewshot": 0}),
        None,
    );
    let e = r.unwrap_err();
    assert!(e.contains("hellaswag/hellaswag_val.jsonl not found"), "{e}");
    let (_d, r) = run(
        json!({"tasks": ["custom_task.yaml"], "data_dir": "."}),
        None,
    );
    assert_eq!(r.unwrap()["capitals"]["n"], 3);
}

#[test]
fn eval_stage_is_deterministic_across_batch_sizes() {
    let p =
        |b: usize| json!({"tasks": ["hellaswag"], "num_fewshot": 1, "batch_size": b, "seed": 3});
    let data = Some(fixtures().join("eval/hellaswag_mini.jsonl"));
    let (_d1, a) = run(p(1), data.clone());
    let (_d2, b) = run(p(16), data);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a["hellaswag"]["n"], 3);
    assert_eq!(a["hellaswag"]["acc"], b["hellaswag"]["acc"]);
    assert_eq!(a["hellaswag"]["acc_norm"], b["hellaswag"]["acc_norm"]);
}

#[test]
fn eval_stage_synthetic_recall() {
    let (_d, r) = run(
        json!({"tasks": ["synthetic"]}),
        Some(fixtures().join("eval/synthetic_mini.jsonl")),
    );
    let m = r.unwrap();
    let s = &m["synthetic"];
    assert_eq!(s["n"], 2);
    for k in ["acc", "acc_norm", "recall_top1", "recall_greedy"] {
        assert!(s[k].is_number(), "{k} missing in {s}");
    }
}

#[test]
fn eval_stage_recall_scores_the_target_exactly_as_written() {
    // The target of the first question is what the model itself generates greedily after
    // the prompt (leading space included, as the synthetic corpus writes " Paris"), so
    // both recall metrics must count it; the second question's target is not.
    type B = slayer_stages::model::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model_dir = tiny_model_dir(dir.path());
    let device = Default::default();
    let model = slayer_stages::model::load_model::<B>(&model_dir, &device).unwrap();
    let tok = slayer_stages::model::load_tokenizer(&model_dir).unwrap();
    // The byte-level fixture tokenizer can generate bytes that are not UTF-8; take the
    // longest prefix of a greedy continuation that is printable text re-encoding to the
    // same ids, from the first prompt that has one.
    let opts = slayer_stages::model::GenerateOptions {
        max_new_tokens: 3,
        ..Default::default()
    };
    let prompts = [
        "Alma Vex was born in",
        "Bo Tarn works for",
        "The city of",
        "A",
        "Q",
        "x=",
    ];
    let (prompt, target) = prompts
        .iter()
        .find_map(|&p| {
            let ids = tok.encode(p, false).unwrap();
            let g = slayer_stages::model::generate(&model, &ids, &opts, |_| true).unwrap();
            (1..=g.tokens.len()).rev().find_map(|n| {
                let t = tok.decode(&g.tokens[..n], false).unwrap();
                let ok = tok.encode(&t, false).unwrap() == g.tokens[..n]
                    && t.chars().all(|c| c.is_ascii_graphic() || c == ' ')
                    && !t.trim().is_empty();
                ok.then_some((p, t))
            })
        })
        .expect("no fixture prompt has a printable greedy continuation");
    let file = dir.path().join("questions.jsonl");
    let q = |id: &str, target: &str| {
        json!({"id": id, "question": "Where was Alma Vex born?", "choices": ["Oslo", "Lima"],
               "answer": 1, "prompt": prompt, "target": target})
        .to_string()
    };
    std::fs::write(
        &file,
        format!("{}\n{}\n", q("hit", &target), q("miss", " zzzz")),
    )
    .unwrap();
    let (_d, r) = run(json!({"tasks": ["synthetic"]}), Some(file));
    let s = &r.unwrap()["synthetic"];
    assert_eq!(s["recall_top1"], 0.5, "{s}");
    assert_eq!(s["recall_greedy"], 0.5, "{s}");
}

#[test]
fn eval_stage_max_gen_toks_caps_generation() {
    // A random model rarely stops on its own: with the task's 256-token budget its
    // GSM8K answers run long; `max_gen_toks: 3` caps every one at 3 (byte) tokens.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gsm8k.jsonl");
    let item = |q: &str| json!({"question": q, "answer": "1 + 1 = 2\n#### 2"}).to_string();
    std::fs::write(
        &file,
        format!("{}\n{}\n", item("What is 1+1?"), item("And 2+2?")),
    )
    .unwrap();
    let generations = |max: Option<usize>| {
        let mut p = json!({"tasks": ["gsm8k"], "num_fewshot": 0});
        if let Some(m) = max {
            p["max_gen_toks"] = json!(m);
        }
        let (d, r) = run(p, Some(file.clone()));
        assert_eq!(r.unwrap()["gsm8k"]["n"], 2);
        let reader = SerializedFileReader::new(
            std::fs::File::open(d.path().join("out/items.parquet")).unwrap(),
        )
        .unwrap();
        let idx = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "generation")
            .unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().get_string(idx).unwrap().chars().count())
            .collect::<Vec<_>>()
    };
    assert!(generations(Some(3)).iter().all(|&n| n <= 3));
    assert!(generations(None).iter().any(|&n| n > 3));
}

#[test]
fn eval_stage_rejects_zero_counts_naming_the_key() {
    let mut registry = Registry::default();
    slayer_stages::eval::register(&mut registry);
    let stage = registry.get("eval").unwrap().clone();
    for key in ["batch_size", "num_samples", "max_gen_toks"] {
        let mut p = json!({"tasks": ["gsm8k"]});
        p[key] = json!(0);
        let e = stage.check_params(&p).unwrap_err();
        assert_eq!(format!("{:?}", e.path), format!("[Key(\"{key}\")]"));
        assert_eq!(e.message, "must be at least 1");
    }
    assert!(
        stage
            .check_params(&json!({"tasks": ["gsm8k"], "max_gen_toks": 1}))
            .is_ok()
    );
}

/// A program timeout that cannot bound a program (none, endless, beyond a Duration) is
/// refused naming the key, in the stage's parameters and in a task file alike.
#[test]
fn eval_stage_rejects_timeouts_out_of_range() {
    let mut registry = Registry::default();
    slayer_stages::eval::register(&mut registry);
    let stage = registry.get("eval").unwrap().clone();
    for t in [0.0, -1.0, 1e300, 86_401.0] {
        let e = stage
            .check_params(&json!({"tasks": ["humaneval"], "timeout_s": t}))
            .unwrap_err();
        assert_eq!(format!("{:?}", e.path), "[Key(\"timeout_s\")]");
        assert!(e.message.contains("at most 86400"), "{}", e.message);
    }
    assert!(
        stage
            .check_params(&json!({"tasks": ["humaneval"], "timeout_s": 86_400.0}))
            .is_ok()
    );
    let src = tempfile::tempdir().unwrap();
    let task = src.path().join("slow.yaml");
    std::fs::write(
        &task,
        "name: slow\ntype: multiple_choice\nfile: x.jsonl\ncontext: \"{q}\"\nchoices: \"{c}\"\ngold: \"{g}\"\ntimeout_s: 1e300\n",
    )
    .unwrap();
    let (_d, r) = run(json!({"tasks": [task.display().to_string()]}), None);
    let e = r.unwrap_err();
    assert!(e.contains("slow.yaml") && e.contains("`timeout_s`"), "{e}");
}

#[test]
fn eval_stage_errors_are_clear() {
    let (_d, r) = run(json!({"tasks": ["arc_easy"], "limit": 2}), None);
    let e = r.unwrap_err();
    assert!(
        e.contains("arc/arc_easy.jsonl not found") && e.contains("data_dir"),
        "{e}"
    );
    let (_d, r) = run(json!({"tasks": ["arc_eazy"]}), None);
    assert!(r.unwrap_err().contains("did you mean `arc_easy`"));
    let (_d, r) = run(json!({"tasks": ["arc_easy"], "bogus": 1}), None);
    assert!(r.unwrap_err().contains("bogus"));
    let (_d, r) = run(
        json!({"tasks": ["arc_easy"]}),
        Some(fixtures().join("eval/bad_choice_count.jsonl")),
    );
    let e = r.unwrap_err();
    assert!(
        e.contains("bad_choice_count.jsonl:2: choice count mismatch"),
        "{e}"
    );
}

/// `items.parquet` rows as JSON records of the columns perplexity tasks fill.
fn parquet_records(path: &Path) -> Vec<Value> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let (lls, ids) = (col("logliks"), col("item_id"));
        for row in 0..batch.num_rows() {
            let mut rec = serde_json::Map::new();
            let ll = lls.as_list::<i32>().value(row);
            let ll: Vec<f64> = ll.as_primitive::<Float64Type>().values().to_vec();
            rec.insert("logliks".into(), json!(ll));
            rec.insert("item_id".into(), json!(ids.as_string::<i32>().value(row)));
            for k in ["n_tokens", "n_bytes", "n_words"] {
                let c = col(k);
                let v = c.as_primitive::<Int64Type>();
                rec.insert(
                    k.into(),
                    if v.is_null(row) {
                        Value::Null
                    } else {
                        json!(v.value(row))
                    },
                );
            }
            out.push(Value::Object(rec));
        }
    }
    out
}

/// Token shards with the byte tokenizer's ids of `texts`, one row each.
fn write_token_shard(path: &Path, texts: &[&str]) {
    use arrow_array::builder::{ListBuilder, UInt32Builder};
    let tok =
        slayer_stages::model::Tokenizer::from_file(&fixtures().join("eval/byte_tokenizer.json"))
            .unwrap();
    let mut ids = ListBuilder::new(UInt32Builder::new());
    for t in texts {
        ids.values().append_slice(&tok.encode(t, false).unwrap());
        ids.append(true);
    }
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "input_ids",
        std::sync::Arc::new(ids.finish()) as _,
    )])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn eval_stage_perplexity_from_text_records_and_token_shards() {
    let texts = [
        "The quick brown fox jumps over the lazy dog. It was not amused.",
        "  Two  spaces and\na newline ",
        "",
        "Short.",
    ];
    let src = tempfile::tempdir().unwrap();
    let jsonl = src.path().join("docs.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .map(|t| json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    // max_length 8 forces several rolling windows per document.
    let params = json!({"tasks": ["perplexity"], "max_length": 8, "batch_size": 3});
    let (dir, r) = run(params.clone(), Some(jsonl));
    let m = r.unwrap();
    let p = &m["perplexity"];
    assert_eq!(p["n"], 4);
    assert!(p.get("bits_per_byte_stderr").is_none());
    let rows = parquet_records(&dir.path().join("out/items.parquet"));
    let ll: Vec<f64> = rows
        .iter()
        .map(|r| r["logliks"][0].as_f64().unwrap())
        .collect();
    let count = |k: &str| -> Vec<f64> { rows.iter().map(|r| r[k].as_f64().unwrap()).collect() };
    // Python: len(s.encode()), len(re.split(r"\s+", s)); the byte tokenizer: one token a byte.
    assert_eq!(count("n_bytes"), vec![63.0, 28.0, 0.0, 6.0]);
    assert_eq!(count("n_words"), vec![13.0, 7.0, 1.0, 1.0]);
    assert_eq!(count("n_tokens"), count("n_bytes"));
    assert_eq!(ll[2], 0.0);
    assert!(
        ll.iter().enumerate().all(|(i, &x)| i == 2 || x < 0.0),
        "{ll:?}"
    );
    let total: f64 = ll.iter().sum();
    let bpb = -total / 97.0 / std::f64::consts::LN_2;
    assert!((p["bits_per_byte"].as_f64().unwrap() - bpb).abs() < 1e-9);
    assert!((p["byte_perplexity"].as_f64().unwrap() - (-total / 97.0).exp()).abs() < 1e-9);
    assert!((p["word_perplexity"].as_f64().unwrap() - (-total / 22.0).exp()).abs() < 1e-6);
    assert!((p["token_perplexity"].as_f64().unwrap() - (-total / 97.0).exp()).abs() < 1e-9);

    // The same documents as Parquet token shards (a file, then a folder) score the same.
    let shards = src.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    write_token_shard(&shards.join("part-00000.parquet"), &texts[..2]);
    write_token_shard(&shards.join("part-00001.parquet"), &texts[2..]);
    let (dir2, r2) = run(params.clone(), Some(shards.clone()));
    assert_eq!(r2.unwrap()["perplexity"]["n"], 4);
    let rows2 = parquet_records(&dir2.path().join("out/items.parquet"));
    for (a, b) in rows.iter().zip(&rows2) {
        assert!(
            (a["logliks"][0].as_f64().unwrap() - b["logliks"][0].as_f64().unwrap()).abs() < 1e-6
        );
        assert_eq!(a["n_words"], b["n_words"]);
    }
    assert_eq!(rows2[3]["item_id"], "part-00001:1");
    let (_d3, r3) = run(
        json!({"tasks": ["perplexity"], "max_length": 8, "limit": 1}),
        Some(shards.join("part-00001.parquet")),
    );
    assert_eq!(r3.unwrap()["perplexity"]["n"], 1);

    // A plain text file is one document.
    let txt = src.path().join("corpus.txt");
    std::fs::write(&txt, texts[0]).unwrap();
    let (_d4, r4) = run(params, Some(txt));
    let one = r4.unwrap();
    assert_eq!(one["perplexity"]["n"], 1);
    // The text file runs unbatched, the JSONL record in a batch of 3: the matrix
    // products block differently, so the logliks agree to f32 rounding, not exactly
    // (2.2e-8 bits/byte apart with OpenBLAS 0.3.21 on a Haswell core type).
    let want = (-ll[0] / 63.0 / std::f64::consts::LN_2
        - one["perplexity"]["bits_per_byte"].as_f64().unwrap())
    .abs();
    assert!(want < 1e-6, "{want}");
}

#[test]
fn eval_stage_wikitext_counts_the_original_page() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("wiki.jsonl");
    let page = " = Title = \n The cat 's hat @-@ box , red . \n";
    std::fs::write(&file, json!({ "page": page }).to_string() + "\n").unwrap();
    let (dir, r) = run(json!({"tasks": ["wikitext"]}), Some(file));
    let m = r.unwrap();
    for k in ["word_perplexity", "byte_perplexity", "bits_per_byte"] {
        assert!(
            m["wikitext"][k].as_f64().unwrap() > 1.0 || k == "bits_per_byte",
            "{k}"
        );
    }
    assert!(m["wikitext"].get("token_perplexity").is_none());
    let rows = parquet_records(&dir.path().join("out/items.parquet"));
    // Python: len(page.encode()) = 45, len(re.split(r"\s+", page)) = 14; the scored text
    // is the detokenized " = Title =\nThe cat's hat-box, red.\n" (35 byte tokens).
    assert_eq!(rows[0]["n_bytes"], 45);
    assert_eq!(rows[0]["n_words"], 14);
    assert_eq!(rows[0]["n_tokens"], 35);
}

#[test]
fn eval_stage_perplexity_rejects_demonstrations_and_foreign_metrics() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("docs.jsonl");
    std::fs::write(&file, "{\"text\": \"abc\"}\n").unwrap();
    let (_d, r) = run(
        json!({"tasks": ["perplexity"], "num_fewshot": 2}),
        Some(file.clone()),
    );
    let e = r.unwrap_err();
    assert!(e.contains("take no demonstrations"), "{e}");
    let task = src.path().join("ppl.yaml");
    std::fs::write(
        &task,
        "name: ppl\ntype: perplexity\nfile: docs.jsonl\ncontext: \"{text}\"\nmetrics: [acc]\n",
    )
    .unwrap();
    let (_d, r) = run(
        json!({"tasks": [task.display().to_string()], "data_dir": src.path().display().to_string()}),
        None,
    );
    let e = r.unwrap_err();
    assert!(
        e.contains("metric `acc` does not apply to perplexity tasks"),
        "{e}"
    );
    // A record without the templated field names the file and line.
    std::fs::write(&file, "{\"text\": \"abc\"}\n{\"body\": \"x\"}\n").unwrap();
    let (_d, r) = run(json!({"tasks": ["perplexity"]}), Some(file));
    let e = r.unwrap_err();
    assert!(
        e.contains("docs.jsonl:2") && e.contains("no field `text`"),
        "{e}"
    );
}
