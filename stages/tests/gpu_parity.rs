//! CUDA parity (issue 23, `bench/gpu_check.sh`): the committed tiny fixtures of every
//! family (`tests/fixtures/tiny_{llama,mistral,qwen2,qwen2_tied,qwen3,gemma3}`), loaded
//! on `cuda:0` in f32, give transformers' logits within 1e-4 for the full sequence and
//! for KV-cached decoding, as they do on the CPU (`model/tests/model_parity.rs`,
//! `model_families.rs`). Built only with the `cuda` feature; it needs a CUDA device
//! and fails (does not skip) without one.
//!
//! `cargo test --features cuda -p slayer-stages --test gpu_parity -- --nocapture`

#![cfg(feature = "cuda")]

use burn::prelude::*;
use slayer_stages::model::{Cuda, DeviceSpec, Llama, load_pretrained};

mod reference_support;

use reference_support::{Reference, fixture, max_abs_diff};

const TOL: f32 = 1e-4;
const FIXTURES: [&str; 6] = [
    "tiny_llama",
    "tiny_mistral",
    "tiny_qwen2",
    "tiny_qwen2_tied",
    "tiny_qwen3",
    "tiny_gemma3",
];

fn device() -> burn::backend::cuda::CudaDevice {
    DeviceSpec::Cuda(0)
        .check()
        .expect("this test needs a CUDA device (cuda:0)");
    burn::backend::cuda::CudaDevice { index: 0 }
}

fn tokens(ids: &[i64]) -> Tensor<Cuda, 2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &device())
}

fn values<const D: usize>(t: Tensor<Cuda, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

fn model(name: &str) -> Llama<Cuda> {
    load_pretrained::<Cuda>(&fixture(name), &device()).unwrap()
}

#[test]
fn cuda_full_sequence_logits_match_transformers() {
    for name in FIXTURES {
        let r = Reference::load(name);
        let got = values(model(name).forward(tokens(&r.ids())));
        let diff = max_abs_diff(&got, &r.f32("logits_full"));
        println!("RESULT cuda {name}: full sequence max |logit diff| {diff:.3e}");
        assert!(diff < TOL, "{name}: full sequence max |logit diff| {diff}");
    }
}

#[test]
fn cuda_kv_cached_decoding_matches_transformers() {
    for name in FIXTURES {
        let r = Reference::load(name);
        let (ids, prefill) = (r.ids(), r.prefill());
        let m = model(name);
        let mut cache = m.new_cache();
        let mut got = values(m.forward_with_cache(tokens(&ids[..prefill]), &mut cache));
        for i in prefill..ids.len() {
            got.extend(values(
                m.forward_with_cache(tokens(&ids[i..i + 1]), &mut cache),
            ));
        }
        let diff = max_abs_diff(&got, &r.f32("logits_incremental"));
        println!("RESULT cuda {name}: KV-cached max |logit diff| {diff:.3e}");
        assert!(diff < TOL, "{name}: KV-cached max |logit diff| {diff}");
    }
}
