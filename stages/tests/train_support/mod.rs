//! Helpers shared by the `train_*` tests: a tiny random Llama with `trainable.json`, a
//! memorisable packed corpus with SFT masks, a [`TrainJob`] in a temp dir, reading
//! safetensors back, and the rank program of data-parallel runs (the ignored test
//! [`rank_entry`] of whichever test binary includes this module).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slayer_engine::stage::{Logger, Progress};
use slayer_stages::model::{Cpu, DeviceSpec, Llama, LlamaConfig, SaveDtype, save_pretrained};
use slayer_stages::train::data_loader::write_packed;
use slayer_stages::train::ranks::{RANK_JOB_ENV, RankProgram, run_rank_from_env};
use slayer_stages::train::{Mode, TrainJob, TrainParams, Trainable};

pub fn tiny_config() -> LlamaConfig {
    let text = r#"{"vocab_size": 32, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "tie_word_embeddings": false, "rms_norm_eps": 1e-5}"#;
    LlamaConfig::from_json_str(text, Path::new("config.json")).unwrap()
}

/// A tiny random model with `trainable.json` listing blocks 1 and 3.
pub fn model_dir(root: &Path) -> PathBuf {
    let dir = root.join("model");
    let model = Llama::<Cpu>::init_random(&tiny_config(), 11, &Default::default()).unwrap();
    save_pretrained(&model, &dir, SaveDtype::F32).unwrap();
    std::fs::write(
        dir.join("trainable.json"),
        r#"{"trainable_blocks": [1, 3]}"#,
    )
    .unwrap();
    dir
}

/// Eight short sequences of a few repeating patterns (easy to memorise), with an SFT
/// mask that hides the first half of each row.
pub fn corpus_rows(n: usize, len: usize) -> Vec<(Vec<u32>, Option<Vec<bool>>)> {
    (0..n)
        .map(|i| {
            let ids: Vec<u32> = (0..len)
                .map(|t| ((i % 4) * 7 + t * (1 + i % 3)) as u32 % 32)
                .collect();
            let mask: Vec<bool> = (0..len).map(|t| t >= len / 2 || (t + i) % 5 == 0).collect();
            (ids, Some(mask))
        })
        .collect()
}

pub fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    write_packed(&dir.join("part-0.parquet"), &corpus_rows(8, 16)).unwrap();
    dir
}

pub fn params(mode: Mode, trainable: Trainable) -> TrainParams {
    let mut p = TrainParams::new(mode);
    p.trainable = trainable;
    p.lr = 1e-2;
    p.warmup = 0.1;
    p.batch_size = 4;
    p.max_steps = Some(10);
    p.checkpoint_every = 0;
    p
}

pub fn job(root: &Path, name: &str, params: TrainParams) -> TrainJob {
    let out = root.join(name).join("out");
    let scratch = root.join(name).join("scratch");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    TrainJob {
        params,
        model_dir: root.join("model"),
        data: vec![root.join("data")],
        eval_data: Vec::new(),
        out_dir: out,
        scratch_dir: scratch,
        device: DeviceSpec::Cpu,
        progress: Progress::hidden(),
        log: Logger::discard(),
        rank_program: RankProgram::slayer(),
        provenance: Default::default(),
    }
}

/// Every tensor of a safetensors file, as raw bytes.
pub fn tensors(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect()
}

pub fn as_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One rank, when mpirun (or a test) starts this binary with a job; nothing otherwise.
#[test]
#[ignore = "the rank program of data-parallel runs"]
fn rank_entry() {
    if std::env::var_os(RANK_JOB_ENV).is_none() {
        return;
    }
    // As `slayer`'s main does (a no-op without mimalloc as the global allocator).
    slayer_stages::alloc::keep_freed_memory();
    if let Err(e) = run_rank_from_env() {
        eprintln!("rank failed: {e}");
        std::process::exit(1);
    }
}

/// This test binary running only [`rank_entry`].
pub fn this_binary() -> RankProgram {
    RankProgram {
        program: std::env::current_exe().expect("the test binary's path"),
        args: [
            "train_support::rank_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]
        .map(String::from)
        .to_vec(),
    }
}
