//! The `expand` and `prune` stage kinds on a tiny random model (issue 5, acceptance 1
//! and 3): zero-out expansion preserves the function for every layout kind, a
//! non-zeroed average expansion does not, merged final blocks are exact means, and
//! `trainable.json` records what trains and how it was initialised; every model written
//! carries a model card (README.md) whose lineage runs through expand, prune, train and
//! export (issue 22).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::{Value, json};
use slayer_engine::stage::Typed;
use slayer_engine::{Stage, StageContext};
use slayer_stages::model::safetensors_io::SafetensorsCheckpoint;
use slayer_stages::model::weights::WeightSource;
use slayer_stages::model::{Cpu, Llama, LlamaConfig, SaveDtype, load_pretrained, save_pretrained};
use slayer_stages::model_card::{CARD_FILE, front_matter};
use slayer_stages::model_kinds::{ModelExport, ModelImport};
use slayer_stages::surgery::expand::Expand;
use slayer_stages::surgery::prune::Prune;
use slayer_stages::surgery::{
    BlockSource, ExpandOptions, Init, LayerPlan, Layout, Merge, TrainableFile, apply_plan,
    zero_outputs,
};
use slayer_stages::train::TrainStage;
use slayer_stages::train::data_loader::write_packed;

use crate::block_support::{host_mean, layer};

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
    let ctx = context(stage.kind(), model, out);
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
    let err = stage
        .run(&params, &context("expand", &src, &out))
        .unwrap_err()
        .to_string();
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
    let z = zero_outputs(&model.config(), model.blocks[1].clone());
    let o = z.self_attn.o_proj.weight.val().abs().max().into_scalar();
    let d = z.mlp.down_proj.weight.val().abs().max().into_scalar();
    assert_eq!((o, d), (0.0, 0.0));
    let before = logits_of(&model);
    model.blocks.insert(1, z);
    assert!(max_diff(&before, &logits_of(&model)) <= 1e-6);
}

/// The in-memory surgery (load the model, `apply_plan`, `save_pretrained`), the
/// reference the streamed stages must reproduce.
fn in_memory(src: &Path, plan: &LayerPlan, dtype: SaveDtype, out: &Path) {
    let model = load_pretrained::<Cpu>(src, &Default::default()).unwrap();
    let model = apply_plan(model, plan).unwrap();
    save_pretrained(&model, out, dtype).unwrap();
}

/// Every tensor's raw bytes, by name.
fn raw_tensors(dir: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let ckpt = SafetensorsCheckpoint::open(dir).unwrap();
    ckpt.names()
        .into_iter()
        .map(|n| {
            let loc = ckpt.locate(&n).unwrap();
            let (file, _) = ckpt.shard_file(loc.shard);
            let mut bytes = vec![0u8; loc.len as usize];
            std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, loc.offset).unwrap();
            (n, (format!("{:?}", loc.dtype), loc.shape, bytes))
        })
        .collect()
}

/// Layouts and prunings of every kind: insert-only groups (copy, ◇, deep half, mixed
/// sizes, no zero-out), deletion with merge (discarded, with_final, none), and prune lists.
fn plans_of_every_kind() -> Vec<(Value, LayerPlan)> {
    let expand_plan = |layout: &str, init: Option<Init>, zero_out: bool, merge: Merge| {
        let opts = ExpandOptions {
            init,
            zero_out,
            merge,
        };
        LayerPlan::expand(&Layout::parse(layout).unwrap(), BLOCKS, opts).unwrap()
    };
    let mut out = Vec::new();
    for layout in PRESERVING {
        out.push((
            json!({"layout": layout}),
            expand_plan(layout, None, true, Merge::Discarded),
        ));
    }
    out.push((
        json!({"layout": "(2+1)x4", "init": "average", "zero_out": false}),
        expand_plan("(2+1)x4", Some(Init::Average), false, Merge::Discarded),
    ));
    for (merge, m) in [
        ("discarded", Merge::Discarded),
        ("with_final", Merge::WithFinal),
        ("none", Merge::None),
    ] {
        out.push((
            json!({"layout": "(2+1)x2|1|1◇", "merge": merge}),
            expand_plan("(2+1)x2|1|1◇", None, true, m),
        ));
    }
    for (params, removed, merge) in [
        (json!({"delete": 3}), vec![5, 6, 7], Merge::Discarded),
        (
            json!({"remove": [1, 6, 7], "merge": "with_final"}),
            vec![1, 6, 7],
            Merge::WithFinal,
        ),
        (
            json!({"remove": [0, 3], "merge": "none"}),
            vec![0, 3],
            Merge::None,
        ),
    ] {
        out.push((params, LayerPlan::prune(BLOCKS, &removed, merge).unwrap()));
    }
    out
}

fn run_plan_stage(params: &Value, src: &Path, out: &Path) -> PathBuf {
    let stage: Box<dyn Stage> = if params.get("layout").is_some() {
        Box::new(Typed(Expand))
    } else {
        Box::new(Typed(Prune))
    };
    run_stage(&*stage, params.clone(), src, out);
    out.join("model")
}

#[test]
fn streamed_surgery_equals_the_in_memory_result_for_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    for (i, (params, plan)) in plans_of_every_kind().into_iter().enumerate() {
        let streamed = run_plan_stage(&params, &src, &tmp.path().join(format!("s{i}")));
        let reference = tmp.path().join(format!("m{i}"));
        in_memory(&src, &plan, SaveDtype::F32, &reference);
        let (got, want) = (raw_tensors(&streamed), raw_tensors(&reference));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{params}: tensor names"
        );
        for (name, w) in &want {
            assert!(got[name] == *w, "{params}: `{name}` differs from in-memory");
        }
        let cfg = LlamaConfig::from_file(&streamed.join("config.json")).unwrap();
        assert_eq!(cfg.num_hidden_layers, plan.len(), "{params}");
    }
}

#[test]
fn bf16_sources_keep_copied_tensors_byte_identical_and_round_means_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bf16");
    let mut config = tiny_config(BLOCKS);
    config.torch_dtype = Some("bfloat16".into());
    let model = Llama::<Cpu>::init_random(&config, 11, &Default::default()).unwrap();
    save_pretrained(&model, &path, SaveDtype::BF16).unwrap();
    let source = raw_tensors(&path);
    let hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let layout = "(2+1)x2|1|1◇";
    let out = expand(&path, &tmp.path().join("e"), json!({"layout": layout}));
    let got = raw_tensors(&out);
    let plan = LayerPlan::expand(
        &Layout::parse(layout).unwrap(),
        BLOCKS,
        ExpandOptions::default(),
    )
    .unwrap();
    // Copied tensors: the source's bytes (by hash), in the source's dtype.
    let mut copies = 0;
    for (o, planned) in plan.blocks.iter().enumerate() {
        let BlockSource::Original { index } = planned.source else {
            continue;
        };
        for (name, (dtype, _, bytes)) in &got {
            if let Some(suffix) = name.strip_prefix(&format!("model.layers.{o}.")) {
                let (sdtype, _, sbytes) = &source[&format!("model.layers.{index}.{suffix}")];
                assert_eq!((dtype, hash(bytes)), (sdtype, hash(sbytes)), "{name}");
                copies += 1;
            }
        }
    }
    assert_eq!(copies, 9 * 5, "five original blocks of nine tensors");
    assert_eq!(
        hash(&got["model.embed_tokens.weight"].2),
        hash(&source["model.embed_tokens.weight"].2)
    );
    // Averaged, merged and zeroed tensors: what the in-memory path gives in bf16
    // (f32 mean rounded once).
    let reference = tmp.path().join("m");
    in_memory(&path, &plan, SaveDtype::BF16, &reference);
    let want = raw_tensors(&reference);
    for (name, w) in &want {
        assert!(
            got[name] == *w,
            "`{name}` differs from the in-memory bf16 result"
        );
    }
    assert!(
        got["model.layers.2.self_attn.o_proj.weight"]
            .2
            .iter()
            .all(|&b| b == 0)
    );
}

#[test]
fn small_max_shard_size_writes_transformers_shards_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let whole = expand(&src, &tmp.path().join("one"), json!({"layout": "(2+1)x4"}));
    let sharded = expand(
        &src,
        &tmp.path().join("many"),
        json!({"layout": "(2+1)x4", "max_shard_size": "100KB"}),
    );
    assert!(!sharded.join("model.safetensors").exists());
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(sharded.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    let mut files: Vec<&str> = map.values().map(|v| v.as_str().unwrap()).collect();
    files.sort();
    files.dedup();
    let n = files.len();
    assert!(n >= 5, "{n} shards");
    for (i, f) in files.iter().enumerate() {
        assert_eq!(*f, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
        let size = std::fs::metadata(sharded.join(f)).unwrap().len();
        // The embedding (64 KiB) and a block's 32 KiB matrices fit; headers are small.
        assert!(size <= 100_000 + 4096, "{f}: {size} bytes");
    }
    let whole_tensors = raw_tensors(&whole);
    assert_eq!(map.len(), whole_tensors.len());
    let total: u64 = whole_tensors.values().map(|t| t.2.len() as u64).sum();
    assert_eq!(index["metadata"]["total_size"], total);
    assert!(
        raw_tensors(&sharded) == whole_tensors,
        "same tensors either way"
    );
    assert!(max_diff(&logits(&whole), &logits(&sharded)) == 0.0);
}

#[test]
fn a_layout_that_does_not_fit_fails_before_any_tensor_is_read() {
    // The weights file is garbage: reading it would fail with a format error, so the
    // layout error proves nothing was read.
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    std::fs::write(src.join("model.safetensors"), b"not a safetensors file").unwrap();
    let stage = Typed(Expand);
    let params = stage
        .check_params(&json!({"layout": "(2+1)x8|16"}))
        .unwrap();
    let out = tmp.path().join("bad");
    std::fs::create_dir_all(&out).unwrap();
    let err = Stage::run(&stage, &params, &context("expand", &src, &out))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "layout `(2+1)x8|16` covers 32 original blocks (2x8 + 16), model has 8"
    );
    // A fitting layout then reaches the weights and names the file.
    let params = stage.check_params(&json!({"layout": "(2+1)x4"})).unwrap();
    let err = Stage::run(&stage, &params, &context("expand", &src, &out))
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn a_checkpoint_that_disagrees_with_its_config_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    // config.json claims 9 blocks; the file has 8.
    let mut cfg = tiny_config(9);
    cfg.torch_dtype = Some("float32".into());
    cfg.save(&src.join("config.json")).unwrap();
    let stage = Typed(Prune);
    let params = stage.check_params(&json!({"delete": 1})).unwrap();
    let out = tmp.path().join("bad");
    std::fs::create_dir_all(&out).unwrap();
    let err = Stage::run(&stage, &params, &context("prune", &src, &out))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor `model.layers.8.self_attn.q_proj.weight` is missing"),
        "{err}"
    );
    assert!(
        !out.join("model/model.safetensors").exists(),
        "nothing written"
    );
}

fn context(stage: &str, model: &Path, out: &Path) -> StageContext {
    context_with(stage, &[("model", "model", model)], out)
}

/// A context with inputs `(name, label, path)`.
fn context_with(stage: &str, inputs: &[(&str, &str, &Path)], out: &Path) -> StageContext {
    inputs.iter().fold(
        StageContext::local(stage, out),
        |ctx, (name, label, path)| ctx.with_input(name, label, path),
    )
}

/// The front matter of `model`'s card, read by the engine's YAML reader, and its body.
fn card(model: &Path) -> (Value, String) {
    let text = std::fs::read_to_string(model.join(CARD_FILE))
        .unwrap_or_else(|e| panic!("{}: no model card: {e}", model.display()));
    let front = front_matter(&text).unwrap_or_else(|| panic!("no front matter:\n{text}"));
    let node = slayer_engine::yaml::parse(std::sync::Arc::new(slayer_engine::yaml::SourceFile {
        path: model.join(CARD_FILE),
        text: front.to_string(),
    }))
    .unwrap_or_else(|e| panic!("front matter is not YAML: {e}\n{front}"));
    let body = text
        .rsplit_once("\n---\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (node.to_json(), body)
}

fn kinds(card: &Value) -> Vec<String> {
    card["slayer"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn model_cards_name_the_base_model_and_carry_the_lineage_through_train_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    // The base model's name, as transformers records it.
    let config_path = src.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["_name_or_path"] = json!("org/tiny-base");
    std::fs::write(&config_path, config.to_string()).unwrap();

    let expanded = expand(&src, &tmp.path().join("e"), json!({"layout": "(2+1)x4<>"}));
    let (e, body) = card(&expanded);
    assert_eq!(e["base_model"], "org/tiny-base");
    assert_eq!(e["library_name"], "transformers");
    assert_eq!(e["tags"], json!(["slayer", "layer-expansion"]));
    let step = &e["slayer"]["steps"][0];
    assert_eq!(step["layout"], "(2+1)x4◇");
    assert_eq!(step["new_blocks"], json!([2, 5, 8, 11]));
    assert_eq!(step["trainable"], json!([2, 5, 8, 11]));
    assert_eq!(
        (step["source_blocks"].clone(), step["blocks"].clone()),
        (json!(8), json!(12))
    );
    assert_eq!(step["init"], "average");
    assert!(
        body.contains("Expanded `model` from 8 to 12 blocks with layout `(2+1)x4◇`: 4 new blocks at positions 2, 5, 8, 11, initialised by averaging"),
        "{body}"
    );

    let pruned = tmp.path().join("p");
    run_stage(&Typed(Prune), json!({"delete": 2}), &expanded, &pruned);
    let (p, _) = card(&pruned.join("model"));
    assert_eq!(p["base_model"], "org/tiny-base");
    assert_eq!(kinds(&p), ["expand", "prune"]);
    assert_eq!(p["slayer"]["steps"][1]["deleted"], json!([10, 11]));

    // Train the expanded model on a few packed sequences, then export it.
    let data = tmp.path().join("tok");
    std::fs::create_dir_all(&data).unwrap();
    let rows: Vec<(Vec<u32>, Option<Vec<bool>>)> = (0..4)
        .map(|i| ((0..16).map(|t| (i * 31 + t * 7) % 256).collect(), None))
        .collect();
    write_packed(&data.join("part-0.parquet"), &rows).unwrap();
    let stage = Typed(TrainStage);
    let params = stage
        .check_params(&json!({"mode": "cpt", "lr": 0.001, "batch_size": 2, "max_steps": 2, "checkpoint_every": 0}))
        .unwrap_or_else(|e| panic!("{}", e.message));
    let out = tmp.path().join("t");
    std::fs::create_dir_all(&out).unwrap();
    let ctx = context_with(
        "cpt",
        &[("model", "expand_s", &expanded), ("data", "tok", &data)],
        &out,
    );
    stage
        .run(&params, &ctx)
        .unwrap_or_else(|e| panic!("train: {e}"));
    let (t, body) = card(&out.join("model"));
    assert_eq!(t["base_model"], "org/tiny-base");
    assert_eq!(kinds(&t), ["expand", "train"]);
    assert_eq!(
        t["tags"],
        json!(["slayer", "layer-expansion", "continued-pretraining"])
    );
    let step = &t["slayer"]["steps"][1];
    assert_eq!(step["stage"], "cpt");
    assert_eq!(step["input"], "expand_s");
    assert_eq!(step["data"], json!({"data": ["tok"]}));
    assert_eq!(step["training"]["mode"], "cpt");
    assert_eq!(step["training"]["lr"], 0.001);
    assert_eq!(step["training"]["trainable"], "expanded");
    assert_eq!(step["results"]["steps"], 2.0);
    assert!(step["results"]["final_loss"].as_f64().unwrap().is_finite());
    // The expansion is still described, layout and all.
    assert_eq!(t["slayer"]["steps"][0]["layout"], "(2+1)x4◇");
    assert!(
        body.contains("1. **expand**") && body.contains("2. **train** (stage `cpt`)"),
        "{body}"
    );

    let exported = tmp.path().join("x");
    run_stage(
        &Typed(ModelExport),
        json!({"dtype": "bf16"}),
        &out.join("model"),
        &exported,
    );
    let (x, _) = card(&exported.join("model"));
    assert_eq!(x["base_model"], "org/tiny-base");
    assert_eq!(kinds(&x), ["expand", "train", "model.export"]);
    assert_eq!(x["slayer"]["steps"][2]["dtype"], "bf16");
}

#[test]
fn a_model_without_a_name_is_named_by_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model(tmp.path());
    let out = expand(&src, &tmp.path().join("e"), json!({"layout": "(4+1)x2"}));
    let (c, _) = card(&out);
    assert_eq!(c["base_model"], "source");
    assert_eq!(c["slayer"]["base_model_from"], "directory");
    assert_eq!(c["slayer"]["steps"][0]["init"], "copy");
}

/// `model.import` starts the lineage: its card names the imported file or directory as the
/// base model and says what was read, for an HF directory and for a GGUF file.
#[test]
fn an_imported_model_carries_a_card_naming_its_source() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (source, format, text) in [
        ("tiny_llama", "hf", "HF directory"),
        ("tiny_llama/tiny_llama.f16.gguf", "gguf", "GGUF"),
    ] {
        let out = tmp.path().join(format);
        let path = fixtures.join(source);
        run_stage(&Typed(ModelImport), json!({"path": path}), &path, &out);
        let (c, body) = card(&out.join("model"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(c["base_model"], name, "{format}");
        assert_eq!(kinds(&c), ["model.import"], "{format}");
        assert_eq!(c["slayer"]["steps"][0]["source_format"], format);
        assert!(
            body.contains(&format!("Imported `{name}` ({text}")),
            "{body}"
        );
    }
}
