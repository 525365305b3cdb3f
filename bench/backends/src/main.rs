//! Prefill 512 random tokens and greedy-decode 32 with SmolLM2 (an HF directory) on each
//! CPU backend compiled in, printing tokens/s per backend. Usage: `MODEL_DIR [THREADS]`
//! (threads go to rayon for Flex and NdArray, and to OpenBLAS through its env vars).

use std::path::{Path, PathBuf};

use burn::prelude::Backend;
use slayer_stages::rng::SplitMix64;
use slayer_stages::model::{GenerateOptions, generate, load_model};

fn bench<B: Backend>(name: &str, dir: &Path, device: &B::Device) {
    let model = load_model::<B>(dir, device).expect("loading the model");
    let vocab = model.config().vocab_size as u64;
    let mut rng = SplitMix64::new(0);
    let prompt: Vec<u32> = (0..512).map(|_| (rng.next_u64() % vocab) as u32).collect();
    let warm = GenerateOptions {
        max_new_tokens: 2,
        ..Default::default()
    };
    generate(&model, &prompt[..16], &warm, |_| true).expect("warm-up");
    let opts = GenerateOptions {
        max_new_tokens: 33,
        ..Default::default()
    };
    let g = generate(&model, &prompt, &opts, |_| true).expect("generation");
    println!(
        "RESULT backend={name} prefill_512_tok_s={:.1} decode_32_tok_s={:.1}",
        512.0 / g.prefill_secs,
        32.0 / g.decode_secs
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: MODEL_DIR [THREADS]"));
    if let Some(t) = args.next() {
        let t: usize = t.parse().expect("THREADS must be a number");
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .expect("rayon pool");
    }
    bench::<burn::backend::Flex>("flex", &dir, &Default::default());
    #[cfg(feature = "ndarray")]
    bench::<burn::backend::NdArray>(
        if cfg!(feature = "openblas") {
            "ndarray+openblas"
        } else {
            "ndarray"
        },
        &dir,
        &Default::default(),
    );
}
