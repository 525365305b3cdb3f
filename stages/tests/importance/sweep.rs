//! The importance measurement on a tiny random model: prefix reuse gives the numbers of
//! independent full forward passes (checked against surgery + `perplexity` and a host
//! `arccos` of the residual stream), costs fewer block forwards, and the stage writes
//! its json / csv / parquet / svg from a text file and from Parquet shards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use burn::prelude::*;
use serde_json::{Value, json};
use slayer_engine::stage::Typed;
use slayer_engine::{Stage, StageContext};
use slayer_stages::importance::{ImportanceStage, SweepOptions, measure};
use slayer_stages::model::{
    AttentionMask, Cpu, Llama, LlamaConfig, SaveDtype, perplexity, save_pretrained,
};
use slayer_stages::surgery::mean_block;

fn tiny_config(blocks: usize) -> LlamaConfig {
    let text = json!({
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": blocks,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "initializer_range": 0.1
    })
    .to_string();
    LlamaConfig::from_json_str(&text, Path::new("config.json")).unwrap()
}

fn tiny_model(blocks: usize) -> Llama<Cpu> {
    Llama::<Cpu>::init_random(&tiny_config(blocks), 11, &Default::default()).unwrap()
}

fn ids(n: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 73 + salt * 31 + 5) % 256) as u32)
        .collect()
}

fn all(reuse: bool, batch: usize) -> SweepOptions {
    SweepOptions {
        angular: true,
        remove: true,
        insert_copy: true,
        insert_average: true,
        batch_size: batch,
        reuse_prefix: reuse,
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

/// Perplexity over `windows` of `model` with its blocks replaced by `blocks`.
fn ppl_with(
    model: &Llama<Cpu>,
    blocks: Vec<slayer_stages::model::Block<Cpu>>,
    windows: &[Vec<u32>],
) -> f64 {
    let mut m = model.clone();
    m.blocks = blocks;
    let (mut nll, mut n) = (0.0, 0usize);
    for w in windows {
        let p = perplexity(&m, w).unwrap();
        nll += p.nll * p.predicted as f64;
        n += p.predicted;
    }
    (nll / n as f64).exp()
}

#[test]
fn prefix_reuse_matches_independent_forward_passes() {
    let model = tiny_model(5);
    let windows = vec![ids(40, 0), ids(33, 1)];
    let imp = measure(&model, &windows, &all(true, 3), &|| {}).unwrap();
    let l = 5;
    assert_eq!(imp.remove_ppl.len(), l);
    assert_eq!(imp.insert_copy_ppl.len(), l);
    assert_eq!(imp.insert_average_ppl.len(), l - 1);
    assert_eq!(imp.tokens, 73);
    assert_eq!(imp.predicted, 71);

    let base = ppl_with(&model, model.blocks.clone(), &windows);
    assert!(
        close(imp.base_ppl, base, 1e-5),
        "{} vs {base}",
        imp.base_ppl
    );
    for i in 0..l {
        let mut b = model.blocks.clone();
        b.remove(i);
        let want = ppl_with(&model, b, &windows);
        assert!(
            close(imp.remove_ppl[i], want, 1e-4),
            "remove {i}: {} vs {want}",
            imp.remove_ppl[i]
        );

        let mut b = model.blocks.clone();
        b.insert(i + 1, model.blocks[i].clone());
        let want = ppl_with(&model, b, &windows);
        assert!(close(imp.insert_copy_ppl[i], want, 1e-4), "copy {i}");

        if i + 1 < l {
            let avg =
                mean_block(&model.config(), &[&model.blocks[i], &model.blocks[i + 1]]).unwrap();
            let mut b = model.blocks.clone();
            b.insert(i + 1, avg);
            let want = ppl_with(&model, b, &windows);
            assert!(close(imp.insert_average_ppl[i], want, 1e-4), "average {i}");
        }
    }
    // Removal hurts: without a block, perplexity moves away from the base.
    assert!(imp.remove_ppl.iter().any(|p| !close(*p, base, 1e-3)));

    // Angular distance from the residual stream, arccos in f64 on the host.
    let mut sums = vec![0.0f64; l];
    let mut last = vec![0.0f64; l];
    for w in &windows {
        let t = w.len();
        let x: Vec<i64> = w.iter().map(|&v| v as i64).collect();
        let tokens =
            Tensor::<Cpu, 2, Int>::from_data(TensorData::new(x, [1, t]), &Default::default());
        let states = model.forward_hidden_states(tokens, &AttentionMask::Causal);
        let host: Vec<Vec<f32>> = states
            .into_iter()
            .map(|s| s.into_data().into_vec::<f32>().unwrap())
            .collect();
        let h = 64;
        for i in 0..l {
            for p in 0..t {
                let a = &host[i][p * h..(p + 1) * h];
                let b = &host[i + 1][p * h..(p + 1) * h];
                let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
                let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let ad = (dot / (na * nb)).clamp(-1.0, 1.0).acos() / std::f64::consts::PI;
                sums[i] += ad;
                if p == t - 1 {
                    last[i] += ad / windows.len() as f64;
                }
            }
        }
    }
    for i in 0..l {
        let mean = sums[i] / 73.0;
        assert!(
            (imp.angular_mean[i] - mean).abs() < 1e-5,
            "AD mean {i}: {} vs {mean}",
            imp.angular_mean[i]
        );
        assert!((imp.angular_last[i] - last[i]).abs() < 1e-5, "AD last {i}");
        assert!(imp.angular_mean[i] > 0.0 && imp.angular_mean[i] < 1.0);
    }
}

#[test]
fn naive_and_reuse_agree_and_reuse_costs_less() {
    let model = tiny_model(6);
    let windows = vec![ids(24, 3)];
    let fast = measure(&model, &windows, &all(true, 4), &|| {}).unwrap();
    let slow = measure(&model, &windows, &all(false, 1), &|| {}).unwrap();
    let pairs = [
        (&fast.remove_ppl, &slow.remove_ppl),
        (&fast.insert_copy_ppl, &slow.insert_copy_ppl),
        (&fast.insert_average_ppl, &slow.insert_average_ppl),
        (&fast.angular_mean, &slow.angular_mean),
    ];
    for (a, b) in pairs {
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(close(*x, *y, 1e-4), "{x} vs {y}");
        }
    }
    assert_eq!(slow.block_forwards, slow.naive_block_forwards);
    assert_eq!(fast.naive_block_forwards, slow.naive_block_forwards);
    // L = 6: naive 6 + 30 + 42 + 35 = 113; reuse 6 + 15 + 21 + 20 = 62.
    assert_eq!(slow.block_forwards, 113);
    assert_eq!(fast.block_forwards, 62);
}

fn write_tokenizer(dir: &Path) {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for (i, w) in "the cat sat on a mat and dog ran to see big red sun"
        .split(' ')
        .enumerate()
    {
        vocab.insert(w.into(), (i + 1).into());
    }
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}

fn run_stage(model: &Path, input: (&str, &Path), params: Value, out: &Path) -> Value {
    let stage = Typed(ImportanceStage);
    let params = stage
        .check_params(&params)
        .unwrap_or_else(|e| panic!("{}", e.message));
    std::fs::create_dir_all(out).unwrap();
    let label = |p: &Path| p.display().to_string();
    let ctx = StageContext::local("importance", out)
        .with_input("model", &label(model), model)
        .with_input(input.0, &label(input.1), input.1);
    Value::Object(stage.run(&params, &ctx).unwrap_or_else(|e| panic!("{e}")))
}

fn saved_model(dir: &Path, blocks: usize) -> PathBuf {
    let path = dir.join("model");
    save_pretrained(&tiny_model(blocks), &path, SaveDtype::F32).unwrap();
    write_tokenizer(&path);
    path
}

#[test]
fn stage_writes_every_output_from_a_text_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = saved_model(tmp.path(), 4);
    let text = tmp.path().join("text.txt");
    let words: Vec<&str> = "the cat sat on a mat and the dog ran to see the big red sun"
        .split(' ')
        .collect();
    let body: Vec<&str> = (0..200).map(|i| words[(i * 7) % words.len()]).collect();
    std::fs::write(&text, body.join(" ")).unwrap();
    let out = tmp.path().join("out");
    let m = run_stage(
        &model,
        ("text", &text),
        json!({"max_tokens": 100, "seq_len": 48}),
        &out,
    );
    assert_eq!(m["tokens"], 100);
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("importance.json")).unwrap())
            .unwrap();
    assert_eq!(j["windows"], 3, "48 + 48 + 4");
    assert_eq!(j["angular_mean"].as_array().unwrap().len(), 4);
    assert_eq!(j["insert_average_ppl"].as_array().unwrap().len(), 3);
    assert!(j["base_ppl"].as_f64().unwrap() > 1.0);
    let csv = std::fs::read_to_string(out.join("importance.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "block,angular_mean,angular_last,remove_ppl,insert_copy_ppl,insert_average_ppl"
    );
    assert_eq!(lines.len(), 5);
    assert!(
        lines[4].ends_with(','),
        "no average insertion after the last block"
    );
    let svg = std::fs::read_to_string(out.join("importance.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for needle in [
        "(a) Angular distance",
        "(b) Removing one block",
        "(c) Inserting",
        "base model",
        "copy",
        "average",
    ] {
        assert!(svg.contains(needle), "svg lacks {needle}");
    }
    assert!(
        std::fs::metadata(out.join("importance.parquet"))
            .unwrap()
            .len()
            > 0
    );
}

#[test]
fn stage_reads_parquet_shards_and_options_select_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let model = saved_model(tmp.path(), 3);
    let shards = tmp.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    let mut b = ListBuilder::new(UInt32Builder::new());
    for r in 0..4 {
        b.values().append_slice(&ids(30 + r, r));
        b.append(true);
    }
    let col: ArrayRef = Arc::new(b.finish());
    let batch = RecordBatch::try_from_iter([("input_ids", col)]).unwrap();
    let file = std::fs::File::create(shards.join("part-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let out = tmp.path().join("out");
    let params = json!({"max_tokens": 70, "metrics": ["angular", "remove"], "reduce": "last"});
    let m = run_stage(&model, ("data", &shards), params, &out);
    assert_eq!(m["tokens"], 70, "30 + 31 + 9 of the third row");
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("importance.json")).unwrap())
            .unwrap();
    assert_eq!(j["windows"], 3);
    assert_eq!(j["remove_ppl"].as_array().unwrap().len(), 3);
    assert!(j["insert_copy_ppl"].as_array().unwrap().is_empty());
    assert_eq!(j["reduce"], "last");
}

#[test]
fn out_of_vocabulary_tokens_are_a_clear_error() {
    let model = tiny_model(2);
    let err = measure(&model, &[vec![1, 2, 999]], &all(true, 1), &|| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token id 999 is outside the model's vocabulary (256)"),
        "{err}"
    );
}
