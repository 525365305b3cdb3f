//! Acceptance tests of the `train` stage on a tiny model (issue 6): the loss falls on a
//! memorisable corpus; frozen tensors stay bit-identical while every trainable one
//! moves; a run stopped mid-way resumes from its checkpoint to the same parameters;
//! 4x2 gradient accumulation equals one batch of 8; SFT masks give zero gradient; the
//! learning-rate schedule follows its formula; per-block recomputation trains to the
//! same bytes as keeping every activation.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

mod train_support;
use train_support::{as_f32, corpus_rows, data_dir, job, model_dir, params, tensors, tiny_config};

use burn::backend::Autodiff;
use burn::prelude::*;
use slayer_engine::stage::{Stage, StageContext, Typed};
use slayer_stages::model::{Cpu, Llama, SaveDtype, save_pretrained};
use slayer_stages::train::data_loader::PackedData;
use slayer_stages::train::loss::{FusedLoss, HostBatch, weighted_cross_entropy};
use slayer_stages::train::optimizer::{AdamW, AdamWConfig, GradBuffer, host_f32};
use slayer_stages::train::trainable::{TrainableSet, freeze, param_table};
use slayer_stages::train::{
    LrSchedule, Mode, Recompute, Schedule, TrainError, TrainStage, Trainable, run_training,
};

type Ad = Autodiff<Cpu>;

#[test]
fn loss_decreases_over_50_steps_through_the_stage_api() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = model_dir(root);
    let data = data_dir(root);
    let out = root.join("out");
    let scratch = root.join("scratch");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let ctx = StageContext {
        work_dir: root.to_path_buf(),
        scratch_dir: scratch,
        threads: 2,
        ..StageContext::local("cpt", &out)
    }
    .with_input("model", "x", &model)
    .with_input("data", "x", &data)
    .with_input("eval_data", "x", &data);
    let stage = Typed(TrainStage);
    let raw = serde_json::json!({"mode": "cpt", "trainable": "all", "lr": 1e-2,
        "warmup": 0.1, "batch_size": 4, "max_steps": 50, "eval_every": 25});
    let canonical = stage.check_params(&raw).unwrap();
    let metrics = stage.run(&canonical, &ctx).unwrap();

    let csv = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let losses: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 50);
    let first = losses[..5].iter().sum::<f64>() / 5.0;
    let last = losses[45..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.3 * first,
        "loss did not fall enough: first {first:.3}, last {last:.3}"
    );
    assert_eq!(metrics["steps"], 50);
    assert_eq!(metrics["tokens"], 50 * 4 * 16);
    assert_eq!(metrics["trainable_params"], metrics["total_params"]);
    assert!(metrics["eval_loss"].as_f64().unwrap() < first);
    for f in [
        "model/config.json",
        "model/model.safetensors",
        "model/trainable.json",
        "log.parquet",
        "loss.svg",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    assert!(
        std::fs::read_to_string(out.join("loss.svg"))
            .unwrap()
            .contains("<polyline")
    );
    // The output is a loadable HF dir.
    let back =
        slayer_stages::model::load_pretrained::<Cpu>(&out.join("model"), &Default::default())
            .unwrap();
    assert_eq!(back.blocks.len(), 4);
}

#[test]
fn frozen_tensors_are_bit_identical_and_trainable_ones_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    model_dir(root);
    data_dir(root);
    let j = job(root, "run", params(Mode::Cpt, Trainable::Expanded));
    let s = run_training(&j, &mut |_| ControlFlow::Continue(())).unwrap();
    let before = tensors(&root.join("model/model.safetensors"));
    let after = tensors(&j.out_dir.join("model/model.safetensors"));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let mut trainable = 0usize;
    for (name, b) in &before {
        let a = &after[name];
        let is_trainable =
            name.starts_with("model.layers.1.") || name.starts_with("model.layers.3.");
        if is_trainable {
            trainable += b.len() / 4;
            let (x, y) = (as_f32(b), as_f32(a));
            let changed = x.iter().zip(&y).filter(|(p, q)| p != q).count();
            assert!(
                changed > x.len() / 2,
                "{name}: only {changed}/{} changed",
                x.len()
            );
        } else {
            assert!(a == b, "frozen tensor {name} changed");
        }
    }
    assert_eq!(s.trainable_params, trainable);
    // Optimiser state exists only for trainable parameters: m and v.
    assert_eq!(s.optimizer_state_params, 2 * trainable);
    assert!(s.trainable_params < s.total_params / 2);
    // The memory plan counts the same tensors: f32 on the CPU, so no separate masters;
    // gradients and AdamW moments for the trainable ones only.
    let m = s.memory;
    let (t, frozen) = (trainable as u64, (s.total_params - trainable) as u64);
    assert_eq!(m.frozen_weights, 4 * frozen);
    assert_eq!((m.trainable_weights, m.gradients), (4 * t, 4 * t));
    assert_eq!(m.master_weights, 0);
    assert_eq!(m.optimizer_state, 4 * s.optimizer_state_params as u64);
    assert!(m.activations_estimate > 0);
}

/// A bf16 checkpoint trained on the CPU keeps its frozen blocks in bf16 (half the
/// memory) and trains exactly as its f32 copy does: every output tensor equals the f32
/// run's rounded to bf16, frozen ones are the source's bytes.
#[test]
fn bf16_checkpoint_trains_like_its_f32_copy_with_frozen_blocks_in_bf16() {
    let tmp = tempfile::tempdir().unwrap();
    let (half, full) = (tmp.path().join("bf16"), tmp.path().join("f32"));
    for root in [&half, &full] {
        data_dir(root);
    }
    let mut config = tiny_config();
    config.torch_dtype = Some("bfloat16".into());
    let model = Llama::<Cpu>::init_random(&config, 11, &Default::default()).unwrap();
    save_pretrained(&model, &half.join("model"), SaveDtype::BF16).unwrap();
    let exact =
        slayer_stages::model::load_pretrained::<Cpu>(&half.join("model"), &Default::default())
            .unwrap();
    save_pretrained(&exact, &full.join("model"), SaveDtype::F32).unwrap();
    for root in [&half, &full] {
        std::fs::write(
            root.join("model/trainable.json"),
            r#"{"trainable_blocks": [1, 3]}"#,
        )
        .unwrap();
    }
    let run = |root: &Path| {
        let j = job(root, "run", params(Mode::Cpt, Trainable::Expanded));
        let s = run_training(&j, &mut |_| ControlFlow::Continue(())).unwrap();
        (s, tensors(&j.out_dir.join("model/model.safetensors")))
    };
    let ((hs, got), (fs, want)) = (run(&half), run(&full));
    assert_eq!(
        hs.final_loss.to_bits(),
        fs.final_loss.to_bits(),
        "same losses"
    );
    let source = tensors(&half.join("model/model.safetensors"));
    for (name, w) in &want {
        let rounded: Vec<u8> = as_f32(w)
            .into_iter()
            .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        assert!(
            got[name] == rounded,
            "{name}: differs from the f32 run in bf16"
        );
        if !name.starts_with("model.layers.1.") && !name.starts_with("model.layers.3.") {
            assert!(got[name] == source[name], "frozen {name} changed");
        }
    }
    let frozen = (hs.total_params - hs.trainable_params) as u64;
    assert_eq!(
        hs.memory.frozen_weights,
        2 * frozen,
        "frozen blocks held in bf16"
    );
    assert_eq!(fs.memory.frozen_weights, 4 * frozen);
}

/// The same job run twice gives bit-identical parameters, with gradient clipping active
/// on every step (the global norm sums the per-parameter norms in a fixed order).
#[test]
fn repeated_runs_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    model_dir(root);
    data_dir(root);
    let mut p = params(Mode::Cpt, Trainable::All);
    p.grad_clip = Some(1e-3);
    p.max_steps = Some(20);
    let run = |name: &str| {
        let j = job(root, name, p.clone());
        run_training(&j, &mut |_| ControlFlow::Continue(())).unwrap();
        tensors(&j.out_dir.join("model/model.safetensors"))
    };
    let first = run("first");
    for k in 0..3 {
        assert!(
            first == run(&format!("again-{k}")),
            "run {k} differs from the first"
        );
    }
}

/// `recompute: blocks` gives the bytes of `recompute: none` — every tensor, the loss and
/// the gradient norm of every step — for CPT and SFT, with accumulation and clipping, for
/// the blocks of `trainable.json` (the backward stops at block 1), the last block only,
/// and everything (the embedding's segment; a tied embedding gets its head and embedding
/// gradients summed as the whole backward sums them).
#[test]
fn recomputing_blocks_trains_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    data_dir(root);
    let mut tied = tiny_config();
    tied.tie_word_embeddings = true;
    for (config_name, config) in [("untied", tiny_config()), ("tied", tied)] {
        let dir = root.join("model");
        let _ = std::fs::remove_dir_all(&dir);
        let model = Llama::<Cpu>::init_random(&config, 5, &Default::default()).unwrap();
        save_pretrained(&model, &dir, SaveDtype::F32).unwrap();
        std::fs::write(
            dir.join("trainable.json"),
            r#"{"trainable_blocks": [1, 3]}"#,
        )
        .unwrap();
        for mode in [Mode::Cpt, Mode::Sft] {
            for trainable in [Trainable::Expanded, Trainable::Final, Trainable::All] {
                let mut p = params(mode, trainable.clone());
                p.micro_batch = Some(2);
                p.grad_clip = Some(0.05);
                p.max_steps = Some(4);
                let run = |recompute: Recompute| {
                    let mut p = p.clone();
                    p.recompute = recompute;
                    let name = format!("{config_name}-{mode:?}-{trainable:?}-{recompute:?}");
                    let j = job(root, &name, p);
                    let s = run_training(&j, &mut |_| ControlFlow::Continue(())).unwrap();
                    // step, loss, lr, grad_norm, tokens (not the speed and memory).
                    let log: String = std::fs::read_to_string(j.out_dir.join("log.csv"))
                        .unwrap()
                        .lines()
                        .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(",") + "\n")
                        .collect();
                    (tensors(&j.out_dir.join("model/model.safetensors")), log, s)
                };
                let (kept, kept_log, kept_summary) = run(Recompute::None);
                let (again, again_log, again_summary) = run(Recompute::Blocks);
                let case = format!("{config_name} {mode:?} {trainable:?}");
                assert!(
                    kept_log == again_log,
                    "{case}: logs differ\n{kept_log}\n{again_log}"
                );
                for (name, bytes) in &kept {
                    assert!(again[name] == *bytes, "{case}: {name} differs");
                }
                let clipped = kept_log
                    .lines()
                    .skip(1)
                    .any(|l| l.split(',').nth(3).unwrap().parse::<f64>().unwrap() > 0.05);
                assert!(clipped, "{case}: clipping must be active\n{kept_log}");
                let (a, b) = (kept_summary.memory, again_summary.memory);
                // One block to recompute (`final`) saves nothing: its input is kept too.
                assert!(
                    b.activations_estimate < a.activations_estimate
                        || trainable == Trainable::Final,
                    "{case}: {b:?} vs {a:?}"
                );
                assert_eq!(
                    a.total() - a.activations_estimate,
                    b.total() - b.activations_estimate
                );
            }
        }
    }
}

#[test]
fn stopped_run_resumes_to_the_same_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    model_dir(root);
    data_dir(root);
    let mut p = params(Mode::Sft, Trainable::Blocks(vec![0, 2]));
    p.batch_size = 4;
    p.micro_batch = Some(2);
    p.max_steps = Some(10);

    let straight = job(root, "straight", p.clone());
    run_training(&straight, &mut |_| ControlFlow::Continue(())).unwrap();

    p.checkpoint_every = 3;
    let killed = job(root, "killed", p);
    // "Kill" after step 7: the last checkpoint is step 6.
    let err = run_training(&killed, &mut |row| {
        if row.step == 7 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap_err();
    assert!(matches!(err, TrainError::Stopped { step: 7 }), "{err}");
    assert!(!killed.out_dir.join("model").exists());
    let s = run_training(&killed, &mut |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(s.resumed_from, Some(6));
    assert_eq!(s.steps, 10);

    let a = tensors(&straight.out_dir.join("model/model.safetensors"));
    let b = tensors(&killed.out_dir.join("model/model.safetensors"));
    let mut worst = 0f32;
    for (name, x) in &a {
        for (p, q) in as_f32(x).iter().zip(as_f32(&b[name])) {
            worst = worst.max((p - q).abs());
        }
    }
    assert!(worst <= 1e-6, "resumed parameters differ by {worst}");
    let log_a = std::fs::read_to_string(straight.out_dir.join("log.csv")).unwrap();
    let log_b = std::fs::read_to_string(killed.out_dir.join("log.csv")).unwrap();
    let losses = |s: &str| -> Vec<String> {
        s.lines()
            // step and loss (lr goes through JSON in the checkpoint: equal to ~1 ulp)
            .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses(&log_a).len(), 11);
    assert_eq!(
        losses(&log_a),
        losses(&log_b),
        "log rows differ after resume"
    );
}

/// Summed gradients (flattened, by parameter path) of one optimizer step's batch split
/// into micro-batches of `micro` sequences.
fn step_gradients(data: &PackedData, micro: usize, mode: Mode) -> BTreeMap<String, Vec<f32>> {
    let device = Default::default();
    let model = Llama::<Ad>::init_random(&tiny_config(), 5, &device).unwrap();
    let set = TrainableSet {
        everything: true,
        blocks: (0..4).collect(),
    };
    let model = freeze(model, &set);
    let indices: Vec<usize> = (0..8).collect();
    let batches: Vec<HostBatch> = indices
        .chunks(micro)
        .map(|c| HostBatch::new(data, c, mode))
        .collect();
    let norm: usize = batches.iter().map(HostBatch::count).sum();
    let mut buffer = GradBuffer::<Cpu>::default();
    for b in &batches {
        let (x, y, w) = b.tensors::<Ad>(norm, &device);
        let loss = Ad::fused_cross_entropy(model.forward(x), y, w);
        let mut grads = loss.backward();
        buffer.accumulate(&model, &mut grads);
    }
    param_table(&model, &set)
        .into_iter()
        .map(|info| {
            let g = buffer.get(info.id).expect("every parameter has a gradient");
            (info.path, host_f32(g.clone()))
        })
        .collect()
}

#[test]
fn gradient_accumulation_4x2_equals_one_batch_of_8() {
    let data = PackedData::from_rows(&corpus_rows(8, 16)).unwrap();
    for mode in [Mode::Cpt, Mode::Sft] {
        let one = step_gradients(&data, 8, mode);
        let four = step_gradients(&data, 2, mode);
        for (path, g1) in &one {
            let g4 = &four[path];
            let scale = g1.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let diff = g1
                .iter()
                .zip(g4)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= 1e-5 * scale.max(1.0) && diff / scale < 1e-4,
                "{mode:?} {path}: max diff {diff} (scale {scale})"
            );
        }
    }
}

/// The fused training loss equals the composed one (log-softmax, gather, weighted sum)
/// in value and in its gradient with respect to the logits, masked rows included.
#[test]
fn fused_cross_entropy_equals_the_composed_loss() {
    let device = Default::default();
    let data = PackedData::from_rows(&corpus_rows(3, 24)).unwrap();
    let batch = HostBatch::new(&data, &[0, 1, 2], Mode::Sft);
    assert!(batch.counted.iter().any(|c| !c) && batch.counted.iter().any(|c| *c));
    let logits = Tensor::<Cpu, 3>::random(
        [3, 23, 32],
        burn::tensor::Distribution::Normal(0.0, 4.0),
        &device,
    );
    let run = |fused: bool| {
        let (_, y, w) = batch.tensors::<Ad>(batch.count(), &device);
        let x = Tensor::<Ad, 3>::from_inner(logits.clone()).require_grad();
        let loss = if fused {
            Ad::fused_cross_entropy(x.clone(), y, w)
        } else {
            weighted_cross_entropy(x.clone(), y, w)
        };
        // A non-unit upstream gradient, as when the loss is scaled.
        let grads = loss.clone().mul_scalar(3.0).backward();
        let value = host_f32(loss.inner())[0];
        (value, host_f32(x.grad(&grads).unwrap()))
    };
    let ((fused, gf), (composed, gc)) = (run(true), run(false));
    assert!(
        (fused - composed).abs() <= 1e-6 * composed.abs(),
        "loss {fused} vs {composed}"
    );
    assert_eq!(gf.len(), gc.len());
    for (i, (a, b)) in gf.iter().zip(&gc).enumerate() {
        assert!((a - b).abs() <= 1e-6, "logit {i}: gradient {a} vs {b}");
    }
}

#[test]
fn sft_gradients_are_zero_for_masked_tokens() {
    let device = Default::default();
    // (a) d loss / d logits is exactly zero at masked target positions.
    let rows = corpus_rows(2, 16);
    let data = PackedData::from_rows(&rows).unwrap();
    let batch = HostBatch::new(&data, &[0, 1], Mode::Sft);
    let (_, y, w) = batch.tensors::<Ad>(batch.count(), &device);
    let logits = Tensor::<Ad, 3>::random(
        [2, 15, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    )
    .require_grad();
    let loss = Ad::fused_cross_entropy(logits.clone(), y, w);
    let grads = loss.backward();
    let g = host_f32(logits.grad(&grads).unwrap());
    for (pos, counted) in batch.counted.iter().enumerate() {
        let row = &g[pos * 32..(pos + 1) * 32];
        let norm: f32 = row.iter().map(|v| v.abs()).sum();
        if *counted {
            assert!(norm > 0.0, "counted position {pos} has no gradient");
        } else {
            assert_eq!(norm, 0.0, "masked position {pos} has gradient {norm}");
        }
    }

    // (b) Parameter gradients ignore masked targets: changing the tokens at the masked
    // tail of a sequence (targets only, never inputs of a counted prediction) leaves
    // every gradient bit-identical.
    let len = 16;
    let ids: Vec<u32> = (0..len as u32).map(|t| (t * 3 + 1) % 32).collect();
    let mask: Vec<bool> = (0..len).map(|t| (2..10).contains(&t)).collect();
    let mut other = ids.clone();
    for t in other.iter_mut().skip(10) {
        *t = (*t + 5) % 32;
    }
    let grads_for = |ids: &[u32]| {
        let d = PackedData::from_rows(&[(ids.to_vec(), Some(mask.clone()))]).unwrap();
        let model = Llama::<Ad>::init_random(&tiny_config(), 9, &device).unwrap();
        let set = TrainableSet {
            everything: true,
            blocks: (0..4).collect(),
        };
        let model = freeze(model, &set);
        let b = HostBatch::new(&d, &[0], Mode::Sft);
        let (x, y, w) = b.tensors::<Ad>(b.count(), &device);
        let mut grads = Ad::fused_cross_entropy(model.forward(x), y, w).backward();
        let mut buffer = GradBuffer::<Cpu>::default();
        buffer.accumulate(&model, &mut grads);
        param_table(&model, &set)
            .into_iter()
            .map(|i| host_f32(buffer.get(i.id).unwrap().clone()))
            .collect::<Vec<_>>()
    };
    let (a, b) = (grads_for(&ids), grads_for(&other));
    assert!(a.iter().any(|g| g.iter().any(|v| *v != 0.0)));
    assert_eq!(a, b, "masked targets changed the gradients");
}

/// The CPU's one-pass AdamW (`host_update`) gives bit-identical parameters to the tensor
/// formulation over three steps with clipping scale, weight decay on some parameters
/// and not on the norms.
#[test]
fn host_adamw_equals_the_tensor_formulation() {
    let device = Default::default();
    let data = PackedData::from_rows(&corpus_rows(4, 16)).unwrap();
    let set = TrainableSet {
        everything: true,
        blocks: (0..4).collect(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |host: bool| {
        let model = Llama::<Ad>::init_random(&tiny_config(), 3, &device).unwrap();
        let mut model = freeze(model, &set);
        let mut opt = AdamW::<Cpu>::new(AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        });
        opt.host_update = host;
        for step in 0..3 {
            let b = HostBatch::new(&data, &[step, step + 1], Mode::Cpt);
            let (x, y, w) = b.tensors::<Ad>(b.count(), &device);
            let mut grads = Ad::fused_cross_entropy(model.forward(x), y, w).backward();
            let mut buffer = GradBuffer::<Cpu>::default();
            buffer.accumulate(&model, &mut grads);
            let decays = |path: &[String]| !path.iter().any(|p| p.contains("norm"));
            model = opt.step(model, buffer, 3e-2, 0.7, &decays);
        }
        let dir = tmp.path().join(if host { "host" } else { "tensor" });
        save_pretrained(&model, &dir, SaveDtype::F32).unwrap();
        (tensors(&dir.join("model.safetensors")), opt.state_numel())
    };
    let ((host, host_state), (tensor, tensor_state)) = (run(true), run(false));
    assert_eq!(host_state, tensor_state);
    let init = Llama::<Cpu>::init_random(&tiny_config(), 3, &device).unwrap();
    save_pretrained(&init, &tmp.path().join("init"), SaveDtype::F32).unwrap();
    let init = tensors(&tmp.path().join("init/model.safetensors"));
    assert_eq!(
        host.keys().collect::<Vec<_>>(),
        tensor.keys().collect::<Vec<_>>()
    );
    for (name, h) in &host {
        let (h, t, i) = (as_f32(h), as_f32(&tensor[name]), as_f32(&init[name]));
        assert!(h != i, "{name} did not move");
        // Same f32 operations in the same order: bit-identical.
        for (k, (a, b)) in h.iter().zip(&t).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{name}[{k}]: host {a} vs tensor {b}"
            );
        }
    }
}

#[test]
fn lr_schedule_matches_the_formula() {
    let (lr, min_lr, total) = (2e-4, 2e-5, 1000u64);
    let s = LrSchedule::new(Schedule::Cosine, lr, min_lr, 0.021, total);
    let w = 21u64; // ceil(0.021 * 1000)
    assert_eq!(s.warmup_steps, w);
    let formula = |step: u64| -> f64 {
        if step < w {
            lr * (step + 1) as f64 / w as f64
        } else {
            let p = (step - w) as f64 / (total - w - 1) as f64;
            min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
        }
    };
    for step in [0, 1, 9, 20, 21, 22, 100, 250, 509, 510, 700, 998, 999] {
        let (got, want) = (s.at(step), formula(step));
        assert!((got - want).abs() < 1e-15, "step {step}: {got} vs {want}");
    }
    assert!((s.at(20) - lr).abs() < 1e-15, "peak at the end of warmup");
    assert!((s.at(21) - lr).abs() < 1e-15, "decay starts from the peak");
    assert!(
        (s.at(999) - min_lr).abs() < 1e-15,
        "min_lr at the last step"
    );
    assert!(
        (s.at(510) - (lr + min_lr) / 2.0).abs() < 1e-15,
        "midpoint of the cosine"
    );
    let l = LrSchedule::new(Schedule::Linear, 1.0, 0.0, 0.0, 11);
    assert!((l.at(5) - 0.5).abs() < 1e-15);
}

#[test]
fn bf16_on_cpu_and_bad_params_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    model_dir(root);
    data_dir(root);
    let mut p = params(Mode::Cpt, Trainable::Expanded);
    p.precision = slayer_stages::train::Precision::Bf16;
    let err = run_training(&job(root, "bf16", p), &mut |_| ControlFlow::Continue(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bf16 needs a CUDA device"), "{err}");

    let err = run_training(
        &job(root, "bad", params(Mode::Cpt, Trainable::Blocks(vec![9]))),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("block 9 does not exist"), "{err}");

    let stage = Typed(TrainStage);
    let e = stage
        .check_params(&serde_json::json!({"mode": "cpt", "batch_size": 8, "micro_batch": 3}))
        .unwrap_err();
    assert!(e.message.contains("must divide"), "{}", e.message);
    assert!(
        stage
            .check_params(&serde_json::json!({"mode": "cpt", "learning_rate": 1}))
            .is_err()
    );
}
