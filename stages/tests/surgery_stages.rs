//! The `expand` and `prune` stage kinds on a tiny random model (issue 5, acceptance 1
//! and 3): zero-out expansion preserves the function for every layout kind, a
//! non-zeroed average expansion does not, merged final blocks are exact means, and
//! `trainable.json` records what trains and how it was initialised.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::{Value, json};
use slayer_engine::stage::{Logger, Progress, Typed};
use slayer_engine::{Stage, StageContext, StageInput};
use slayer_stages::model::safetensors_io::SafetensorsCheckpoint;
use slayer_stages::model::weights::WeightSource;
use slayer_stages::model::{Cpu, Llama, LlamaConfig, SaveDtype, load_pretrained, save_pretrained};
use slayer_stages::surgery::expand::Expand;
use slayer_stages::surgery::prune::Prune;
use slayer_stages::surgery::{Layout, TrainableFile, zero_outputs};

const BLOCKS: usize = 8;

fn tiny_config(blocks: usize) -> LlamaConfig {
    let text = json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": blocks,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
        "initializer_range": 0.1, "torch_dtype": "float32"
    })
    .to_string();
    LlamaConfig::from_json_str(&text, Path::new("config.json")).unwrap()
}

/// A random 8-block model saved as an HF directory, with a tokenizer file to copy.
fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("source");
    let model = Llama::<Cpu>::init_random(&tiny_config(BLOCKS), 7, &Default::default()).unwrap();
    save_pretrained(&model, &path, SaveDtype::F32).unwrap();
    std::fs::write(path.join("tokenizer.json"), "{\"fake\": true}\n").unwrap();
    path
}

fn run_stage(stage: &dyn Stage, params: Value, model: &Path, out: &Path) -> Value {
    let params = stage
        .check_params(&params)
        .unwrap_or_else(|e| panic!("{}", e.message));
    std::fs::create_dir_all(out).unwrap();
    let ctx = StageContext {
        stage: stage.kind().to_string(),
        inputs: BTreeMap::from([(
            "model".to_string(),
            StageInput {
                items: vec![("model".into(), model.to_path_buf())],
            },
        )]),
        out_dir: out.to_path_buf(),
        work_dir: out.to_path_buf(),
        scratch_dir: out.to_path_buf(),
        device: "cpu".into(),
        threads: 1,
        progress: Progress::hidden(),
        log: Logger::discard(),
    };
    Value::Object(
        stage
            .run(&params, &ctx)
            .unwrap_or_else(|e| panic!("{}: {e}", stage.kind())),
    )
}

fn expand(src: &Path, out: &Path, params: Value) -> PathBuf {
    run_stage(&Typed(Expand), params, src, out);
    out.join("model")
}

fn logits(dir: &Path) -> Vec<f32> {
    let model = load_pretrained::<Cpu>(dir, &Default::default()).unwrap();
    logits_of(&model)
}

fn logits_of(model: &Llama<Cpu>) -> Vec<f32> {
    let ids: Vec<i64> = (0..24).map(|i| (i * 37 + 11) % 256).collect();
    let tokens =
        Tensor::<Cpu, 2, Int>::from_data(TensorData::new(ids, [1, 24]), &Default::default());
    model.forward(tokens).into_data().into_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every layout kind that only inserts blocks: groups over all blocks, shallow half,
/// deep half, mixed group sizes, with and without ◇.
const PRESERVING: [&str; 6] = [
    "(2+1)x4",
    "(2+1)x2|4",
    "(2+1)x2|4◇",
    "4|(2+1)x2",
    "(1+1)x2 (2+1)x1 (4+1)x1",
    "(4+1)x2<>",
];

#[test]
fn zero_out_expansion_preserves_logits_for_every_layout_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let base = logits(&src);
    for (i, layout) in PRESERVING.iter().enumerate() {
        let out = expand(
            &src,
            &tmp.path().join(format!("e{i}")),
            json!({"layout": layout}),
        );
        let diff = max_diff(&base, &logits(&out));
        assert!(diff <= 1e-5, "{layout}: max |logit diff| {diff}");
        let cfg = LlamaConfig::from_file(&out.join("config.json")).unwrap();
        let added = Layout::parse(layout).unwrap().new_blocks();
        assert_eq!(cfg.num_hidden_layers, BLOCKS + added, "{layout}");
        assert!(out.join("tokenizer.json").is_file(), "tokenizer copied");
    }
}

#[test]
fn s_strategy_with_zero_out_equals_the_pruned_and_merged_model() {
    // (2+1)x2|1|1◇ on 8 blocks: 2 groups, 1 block, the final block merged from the 2
    // deleted ones. With zeroed new blocks it computes what prune(delete 2) computes.
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let expanded = expand(
        &src,
        &tmp.path().join("e"),
        json!({"layout": "(2+1)x2|1|1◇"}),
    );
    run_stage(
        &Typed(Prune),
        json!({"delete": 2}),
        &src,
        &tmp.path().join("p"),
    );
    let pruned = tmp.path().join("p/model");
    let diff = max_diff(&logits(&pruned), &logits(&expanded));
    assert!(diff <= 1e-5, "max |logit diff| {diff}");

    let t = TrainableFile::read(&expanded).unwrap().unwrap();
    assert_eq!(t.num_blocks, 8);
    assert_eq!(t.trainable, vec![2, 5, 7]);
    assert_eq!(
        t.blocks[0].init,
        "average of blocks 1 and 2, o_proj/down_proj zeroed"
    );
    assert_eq!(t.blocks[2].init, "mean of blocks 6, 7");
    assert_eq!(t.history.len(), 1);
    assert_eq!(t.history[0].plan.layout.as_deref(), Some("(2+1)x2|1|1◇"));
}

#[test]
fn average_without_zero_out_changes_the_function() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let base = logits(&src);
    for layout in ["(2+1)x2|4◇", "(2+1)x4"] {
        let params = json!({"layout": layout, "init": "average", "zero_out": false});
        let out = expand(
            &src,
            &tmp.path().join(layout.replace(['(', ')', '|', '+'], "_")),
            params,
        );
        let diff = max_diff(&base, &logits(&out));
        assert!(
            diff > 1e-3,
            "{layout}: expected a different function, diff {diff}"
        );
        let t = TrainableFile::read(&out).unwrap().unwrap();
        assert!(t.blocks.iter().all(|b| !b.zeroed));
    }
}

/// HF tensors of layer `i` by suffix (`self_attn.q_proj.weight`, ...).
fn layer(ckpt: &SafetensorsCheckpoint, i: usize) -> BTreeMap<String, Vec<f32>> {
    let prefix = format!("model.layers.{i}.");
    ckpt.names()
        .into_iter()
        .filter_map(|n| {
            let suffix = n.strip_prefix(&prefix)?.to_string();
            Some((suffix, ckpt.tensor(&n).unwrap().unwrap().data))
        })
        .collect()
}

fn host_mean(layers: &[BTreeMap<String, Vec<f32>>]) -> BTreeMap<String, Vec<f32>> {
    layers[0]
        .keys()
        .map(|k| {
            let mut acc = layers[0][k].clone();
            for l in &layers[1..] {
                for (a, b) in acc.iter_mut().zip(&l[k]) {
                    *a += *b;
                }
            }
            if layers.len() > 1 {
                let n = layers.len() as f32;
                acc.iter_mut().for_each(|a| *a /= n);
            }
            (k.clone(), acc)
        })
        .collect()
}

#[test]
fn prune_merge_discarded_is_exactly_the_mean_of_the_deleted_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let source = SafetensorsCheckpoint::open(&src).unwrap();
    for (d, merge) in [(2, "discarded"), (3, "discarded"), (2, "with_final")] {
        let out = tmp.path().join(format!("p{d}{merge}"));
        let metrics = run_stage(
            &Typed(Prune),
            json!({"delete": d, "merge": merge}),
            &src,
            &out,
        );
        assert_eq!(metrics["blocks"], BLOCKS - d);
        let pruned = SafetensorsCheckpoint::open(&out.join("model")).unwrap();
        let last = BLOCKS - d - 1;
        let from: Vec<usize> = if merge == "with_final" {
            (last..BLOCKS).collect()
        } else {
            (last + 1..BLOCKS).collect()
        };
        let inputs: Vec<_> = from.iter().map(|&i| layer(&source, i)).collect();
        let expected = host_mean(&inputs);
        let got = layer(&pruned, last);
        assert_eq!(got.len(), 9, "every tensor of the block");
        for (name, values) in &expected {
            assert!(
                got[name] == *values,
                "delete {d} {merge}: {name} differs from the mean"
            );
        }
        // Untouched blocks are bit-identical.
        assert!(layer(&pruned, 0) == layer(&source, 0));
        assert!(
            pruned
                .tensor(&format!("model.layers.{}.mlp.up_proj.weight", last + 1))
                .unwrap()
                .is_none()
        );
        let t = TrainableFile::read(&out.join("model")).unwrap().unwrap();
        assert_eq!(t.trainable, vec![last]);
    }
}

#[test]
fn prune_carries_trainable_marks_of_an_expanded_model() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let expanded = expand(&src, &tmp.path().join("e"), json!({"layout": "(2+1)x2|4◇"}));
    // 10 blocks, new ones at 2 and 5; remove block 3 (an original) and the last two.
    run_stage(
        &Typed(Prune),
        json!({"remove": [3, 8, 9], "merge": "discarded"}),
        &expanded,
        &tmp.path().join("p"),
    );
    let t = TrainableFile::read(&tmp.path().join("p/model"))
        .unwrap()
        .unwrap();
    assert_eq!(t.num_blocks, 7);
    // Block 5 of the expanded model is now block 4; the merged final block is 6.
    assert_eq!(t.trainable, vec![2, 4, 6]);
    assert_eq!(t.blocks[1].operation, "expand");
    assert_eq!(t.blocks[2].operation, "prune");
    assert_eq!(t.history.len(), 2);
}

#[test]
fn stage_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let stage = Typed(Expand);
    let err = stage
        .check_params(&json!({"layout": "(2+1)x"}))
        .unwrap_err();
    assert!(
        err.message.contains("expected a repeat count"),
        "{}",
        err.message
    );
    let err = stage
        .check_params(&json!({"layout": "(2+1)x8|16◇", "init": "copy"}))
        .unwrap_err();
    assert!(err.message.contains("init: copy"), "{}", err.message);

    let params = stage
        .check_params(&json!({"layout": "(2+1)x8|16"}))
        .unwrap();
    let out = tmp.path().join("bad");
    std::fs::create_dir_all(&out).unwrap();
    let ctx = StageContext {
        stage: "expand".into(),
        inputs: BTreeMap::from([(
            "model".to_string(),
            StageInput {
                items: vec![("model".into(), src.clone())],
            },
        )]),
        out_dir: out.clone(),
        work_dir: out.clone(),
        scratch_dir: out.clone(),
        device: "cpu".into(),
        threads: 1,
        progress: Progress::hidden(),
        log: Logger::discard(),
    };
    let err = stage.run(&params, &ctx).unwrap_err().to_string();
    assert_eq!(
        err,
        "layout `(2+1)x8|16` covers 32 original blocks (2x8 + 16), model has 8"
    );

    let prune = Typed(Prune);
    let err = prune.check_params(&json!({})).unwrap_err();
    assert!(err.message.contains("delete: D"), "{}", err.message);
    let err = prune
        .check_params(&json!({"delete": 1, "remove": [2]}))
        .unwrap_err();
    assert!(err.message.contains("not both"), "{}", err.message);
}

#[test]
fn zeroed_block_adds_nothing() {
    let model = Llama::<Cpu>::init_random(&tiny_config(2), 3, &Default::default()).unwrap();
    let mut model = model;
    let z = zero_outputs(model.blocks[1].clone());
    let o = z.self_attn.o_proj.weight.val().abs().max().into_scalar();
    let d = z.mlp.down_proj.weight.val().abs().max().into_scalar();
    assert_eq!((o, d), (0.0, 0.0));
    let before = logits_of(&model);
    model.blocks.insert(1, z);
    assert!(max_diff(&before, &logits_of(&model)) <= 1e-6);
}
