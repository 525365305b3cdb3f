//! Training-throughput benchmark harness (issue 6, acceptance 3), ignored by default:
//! fwd + bwd + AdamW on the CPU for a SmolLM2-135M-shaped model (random init), with 8
//! expanded blocks trainable or everything trainable, through the real training loop.
//! `bench/train_cpu.sh` runs it next to the PyTorch loop `bench/train_torch.py`.
//!
//! Environment: `TRAIN_BENCH_TRAINABLE` = `expanded` (default) | `all`,
//! `TRAIN_BENCH_SEQ` (inputs per sequence, default 256), `TRAIN_BENCH_BATCH` (default 4),
//! `TRAIN_BENCH_STEPS` (default 6; the first 2 are warm-up), `TRAIN_BENCH_DIR` (where the
//! random model and data are cached; default a temp dir), `TRAIN_BENCH_RANKS`
//! (data-parallel ranks, default 1; they split the `RAYON_NUM_THREADS` threads, and the
//! RESULT line adds the mean time per step spent in the gradient all-reduce;
//! `bench/train_dp_cpu.sh`). For the GPU run
//! (`bench/train_gpu.sh`, acceptance 4): `TRAIN_BENCH_DEVICE` (`cpu` | `cuda:N`),
//! `TRAIN_BENCH_PRECISION` (`f32` | `bf16`), `TRAIN_BENCH_SHAPE` (`smollm2-135m` |
//! `llama-0.5b`) or `TRAIN_BENCH_MODEL` (an HF checkpoint directory with its
//! `trainable.json`, e.g. an expanded 7B model: `bench/gpu_check.sh`) and
//! `TRAIN_BENCH_PEAK_TFLOPS` (for MFU; default 989, H100/H200 SXM dense bf16).
//! `TRAIN_BENCH_RECOMPUTE` = `none` (default) | `blocks` sets the stage's `recompute`
//! (`bench/train_recompute_cpu.sh`).
//!
//! Runs with the allocator of the `slayer` binary ([`slayer_stages::alloc`]).
//!
//! `cargo test -p slayer-stages --test train_bench -- --ignored --nocapture`

#[global_allocator]
static ALLOCATOR: slayer_stages::alloc::Allocator = slayer_stages::alloc::Allocator;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

mod train_support;

use slayer_engine::stage::{Logger, Progress};
use slayer_stages::model::{Cpu, DeviceSpec, Llama, LlamaConfig, SaveDtype, save_pretrained};
use slayer_stages::train::data_loader::write_packed;
use slayer_stages::train::{
    Mode, Precision, Recompute, TrainJob, TrainParams, Trainable, run_training,
};

/// SmolLM2-135M's config.json shape.
pub fn smollm2_135m_config() -> LlamaConfig {
    let text = r#"{"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "tie_word_embeddings": true, "torch_dtype": "float32"}"#;
    LlamaConfig::from_json_str(text, Path::new("config.json")).expect("valid config")
}

/// A 0.50B-parameter Llama shape for the GPU benchmark: hidden 1536, 16 blocks, 12
/// heads of 128, 4 kv heads, intermediate 4096, vocab 32000, untied head.
pub fn llama_05b_config() -> LlamaConfig {
    let text = r#"{"vocab_size": 32000, "hidden_size": 1536, "intermediate_size": 4096,
        "num_hidden_layers": 16, "num_attention_heads": 12, "num_key_value_heads": 4,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": false, "torch_dtype": "float32"}"#;
    LlamaConfig::from_json_str(text, Path::new("config.json")).expect("valid config")
}

/// Model FLOPs per trained token (PaLM accounting): 6 x matmul parameters (embedding
/// lookup excluded, a tied head included) + 12 x layers x hidden x seq for attention.
pub fn flops_per_token(c: &LlamaConfig, total_params: usize, seq: usize) -> f64 {
    let lookup = c.vocab_size * c.hidden_size;
    let head = if c.tie_word_embeddings { lookup } else { 0 };
    let matmul = (total_params - lookup + head) as f64;
    6.0 * matmul + 12.0 * (c.num_hidden_layers * c.hidden_size * seq) as f64
}

/// The 8 blocks a `(2+1)x8|6` expansion adds (the new block after every 2 originals).
pub const EXPANDED: [usize; 8] = [2, 5, 8, 11, 14, 17, 20, 23];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn train_throughput_smollm2_135m() {
    slayer_stages::alloc::keep_freed_memory();
    let trainable = std::env::var("TRAIN_BENCH_TRAINABLE").unwrap_or_else(|_| "expanded".into());
    let (seq, batch, steps) = (
        env("TRAIN_BENCH_SEQ", 256),
        env("TRAIN_BENCH_BATCH", 4),
        env("TRAIN_BENCH_STEPS", 6),
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let root: PathBuf = std::env::var("TRAIN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    let shape = std::env::var("TRAIN_BENCH_SHAPE").unwrap_or_else(|_| "smollm2-135m".into());
    let config = match shape.as_str() {
        "llama-0.5b" => llama_05b_config(),
        _ => smollm2_135m_config(),
    };
    let device: DeviceSpec = std::env::var("TRAIN_BENCH_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("TRAIN_BENCH_DEVICE is cpu or cuda:N");
    let precision = match std::env::var("TRAIN_BENCH_PRECISION").as_deref() {
        Ok("bf16") => Precision::Bf16,
        _ => Precision::F32,
    };
    // An existing checkpoint (with its trainable.json) instead of a random one.
    let given = std::env::var("TRAIN_BENCH_MODEL").ok().map(PathBuf::from);
    let config = match &given {
        Some(dir) => LlamaConfig::from_file(&dir.join("config.json")).expect("TRAIN_BENCH_MODEL"),
        None => config,
    };
    let model_dir = given.unwrap_or_else(|| root.join(format!("{shape}-random")));
    if !model_dir.join("config.json").is_file() {
        let model = Llama::<Cpu>::init_random(&config, 0, &Default::default()).unwrap();
        save_pretrained(&model, &model_dir, SaveDtype::F32).unwrap();
        let list: Vec<String> = EXPANDED.iter().map(|b| b.to_string()).collect();
        std::fs::write(
            model_dir.join("trainable.json"),
            format!("{{\"trainable_blocks\": [{}]}}", list.join(", ")),
        )
        .unwrap();
    }
    let data_dir = root.join(format!("data-{shape}-{seq}-{batch}-{steps}"));
    if !data_dir.is_dir() {
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut x: u64 = 0x1234_5678;
        let rows: Vec<(Vec<u32>, Option<Vec<bool>>)> = (0..batch * steps)
            .map(|_| {
                let ids = (0..=seq)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % config.vocab_size as u64) as u32
                    })
                    .collect();
                (ids, None)
            })
            .collect();
        write_packed(&data_dir.join("part-0.parquet"), &rows).unwrap();
    }
    let mut p = TrainParams::new(Mode::Cpt);
    p.trainable = match trainable.as_str() {
        "all" => Trainable::All,
        _ => Trainable::Expanded,
    };
    p.batch_size = batch;
    p.max_steps = Some(steps as u64);
    p.checkpoint_every = 0;
    p.shuffle = false;
    p.precision = precision;
    p.ranks = env("TRAIN_BENCH_RANKS", 1);
    p.recompute = match std::env::var("TRAIN_BENCH_RECOMPUTE").as_deref() {
        Err(_) | Ok("none") => Recompute::None,
        Ok("blocks") => Recompute::Blocks,
        Ok(other) => panic!("TRAIN_BENCH_RECOMPUTE is none or blocks, got {other}"),
    };
    let run_name = format!("{trainable}-{}-{:?}", p.ranks, p.recompute).to_lowercase();
    let out = root.join(format!("out-{run_name}"));
    let scratch = root.join(format!("scratch-{run_name}"));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let job = TrainJob {
        params: p,
        model_dir,
        data: vec![data_dir],
        eval_data: Vec::new(),
        out_dir: out,
        scratch_dir: scratch,
        device,
        progress: Progress::hidden(),
        log: Logger::discard(),
        rank_program: train_support::this_binary(),
        provenance: Default::default(),
    };
    let threads = rayon::current_num_threads();
    let summary = run_training(&job, &mut |_| ControlFlow::Continue(())).unwrap();
    // Per-step rates from rank 0's log (the steps of a data-parallel run happen in the
    // rank processes). tokens_per_s counts seq+1 tokens per sequence; the timed work is
    // `seq` inputs.
    let csv = std::fs::read_to_string(job.out_dir.join("log.csv")).unwrap();
    let mut times = Vec::new();
    for line in csv.lines().skip(1) {
        let f: Vec<f64> = line
            .split(',')
            .map(|x| x.parse().unwrap_or(f64::NAN))
            .collect();
        let dt = (batch * (seq + 1)) as f64 / f[5];
        times.push(dt);
        eprintln!(
            "step {}: {dt:.2}s loss {:.4} grad_norm {:.3} rss {:.0} MiB",
            f[0], f[1], f[3], f[6]
        );
    }
    let timed = &times[2.min(times.len() - 1)..];
    let secs: f64 = timed.iter().sum();
    let tok_s = (timed.len() * batch * seq) as f64 / secs;
    let peak_tflops: f64 = std::env::var("TRAIN_BENCH_PEAK_TFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(989.0);
    let mfu = tok_s * flops_per_token(&config, summary.total_params, seq) / (peak_tflops * 1e12);
    let mfu = if device == DeviceSpec::Cpu {
        String::new()
    } else {
        format!(" mfu={:.1}% (peak {peak_tflops} TFLOP/s)", 100.0 * mfu)
    };
    println!(
        "RESULT slayer shape={shape} device={device} precision={precision:?} \
         trainable={trainable} recompute={:?} seq={seq} batch={batch} ranks={} threads={} \
         tokens_per_s={tok_s:.1} step_s={:.3} trainable_params={} total_params={} \
         optimizer_state_params={} peak_rss_mb={:.0} allreduce_s_per_step={:.3} \
         planned_memory_gb={:.1}{mfu}",
        job.params.recompute,
        summary.ranks,
        threads,
        secs / timed.len() as f64,
        summary.trainable_params,
        summary.total_params,
        summary.optimizer_state_params,
        // A data-parallel run's ranks are other processes: rank 0's peak.
        if summary.ranks > 1 {
            summary.peak_rss_mb
        } else {
            peak_rss_mb()
        },
        summary.allreduce_s_per_step,
        summary.memory.total() as f64 / 1e9,
    );
}
