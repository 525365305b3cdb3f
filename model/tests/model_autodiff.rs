//! The model trains: it runs on `Autodiff<Cpu>`, gradients reach every block, seeded
//! random initialisation is reproducible, and the attention's softmax is one autodiff op
//! (`model::fused_softmax`) whose values and gradients are those of its composition from
//! elementary ops (whose gradients burn derives op by op).

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use slayer_model::fused_softmax::softmax;
use slayer_model::rng::SplitMix64;
use slayer_model::weights::hf_tensors;
use slayer_model::{Cpu, Llama, LlamaConfig};

type Ad = Autodiff<Cpu>;

fn tiny_config() -> LlamaConfig {
    let text = r#"{"vocab_size": 32, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "tie_word_embeddings": true}"#;
    LlamaConfig::from_json_str(text, std::path::Path::new("config.json")).unwrap()
}

#[test]
fn gradients_reach_every_block() {
    let device = Default::default();
    let model = Llama::<Ad>::init_random(&tiny_config(), 7, &device).unwrap();
    let ids: Vec<i64> = vec![1, 5, 9, 3, 7, 2];
    let tokens = Tensor::<Ad, 2, Int>::from_data(TensorData::new(ids.clone(), [1, 6]), &device);
    let logits = model.forward(tokens);
    let logp = log_softmax(logits.slice([0..1, 0..5, 0..32]), 2);
    let targets =
        Tensor::<Ad, 3, Int>::from_data(TensorData::new(ids[1..].to_vec(), [1, 5, 1]), &device);
    let loss = logp.gather(2, targets).mean().neg();
    let grads = loss.backward();
    for (i, block) in model.blocks.iter().enumerate() {
        let g = block
            .self_attn
            .q_proj
            .weight
            .grad(&grads)
            .expect("q_proj grad");
        let norm: f32 = g.abs().sum().into_scalar();
        assert!(norm > 0.0, "block {i} got no gradient");
    }
    assert!(model.embed_tokens.weight.grad(&grads).is_some());
}

#[test]
fn seeded_init_is_reproducible() {
    let device = Default::default();
    let a = Llama::<Cpu>::init_random(&tiny_config(), 42, &device).unwrap();
    let b = Llama::<Cpu>::init_random(&tiny_config(), 42, &device).unwrap();
    let c = Llama::<Cpu>::init_random(&tiny_config(), 43, &device).unwrap();
    let flat = |m: &Llama<Cpu>| -> Vec<f32> {
        hf_tensors(m)
            .iter()
            .flat_map(|(_, t)| t.to_hf_f32())
            .collect()
    };
    assert_eq!(flat(&a), flat(&b));
    assert_ne!(flat(&a), flat(&c));
    assert!(
        hf_tensors(&a).iter().all(|(n, _)| n != "lm_head.weight"),
        "tied head is not saved"
    );
}

#[test]
fn removing_a_block_updates_the_config() {
    let device = Default::default();
    let mut m = Llama::<Cpu>::init_random(&tiny_config(), 1, &device).unwrap();
    let copy = m.blocks[0].clone();
    m.blocks.insert(1, copy);
    assert_eq!(m.config().num_hidden_layers, 3);
    m.blocks.remove(0);
    m.blocks.remove(0);
    assert_eq!(m.config().num_hidden_layers, 1);
    let tokens =
        Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3], [1, 3]), &device);
    assert_eq!(m.forward(tokens).dims(), [1, 3, 32]);
}

fn random(seed: u64, shape: [usize; 3], scale: f64) -> Tensor<Ad, 3> {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * scale) as f32)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn composed_softmax(x: Tensor<Ad, 3>, dim: usize) -> Tensor<Ad, 3> {
    let shifted = x.clone() - x.max_dim(dim).detach();
    (shifted.clone() - shifted.exp().sum_dim(dim).log()).exp()
}

/// `(value, d sum(f(x) * w) / dx)` on the host.
fn value_and_grad(
    f: impl Fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>,
    x: &Tensor<Ad, 3>,
    w: &Tensor<Ad, 3>,
) -> (Vec<f32>, Vec<f32>) {
    let x = x.clone().require_grad();
    let y = f(x.clone());
    let loss = (y.clone() * w.clone()).sum();
    let grads = loss.backward();
    let g = x.grad(&grads).expect("x has a gradient");
    (
        y.into_data().into_vec::<f32>().unwrap(),
        g.into_data().into_vec::<f32>().unwrap(),
    )
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

/// Along the last and a middle dimension, for a small tensor and one large enough for
/// the CPU backend's parallel kernels: the fused softmax's value is the backend's
/// softmax kernel bit for bit, its gradient is `g y - y sum(g y)` bit for bit (the
/// decomposition burn records otherwise computes it through other ops), and both agree
/// with the composed function within f32 rounding.
#[test]
fn fused_softmax_is_one_op_with_the_gradient_of_its_composition() {
    for (shape, scale) in [([2, 5, 7], 3.0), ([4, 9, 4099], 8.0)] {
        let x = random(1, shape, scale);
        let w = random(2, shape, 1.0);
        for dim in [2, 1] {
            let what = |f: &str| format!("{f} {shape:?} dim {dim}");
            let (y, g) = value_and_grad(|t| softmax(t, dim), &x, &w);
            let (y0, g0) = value_and_grad(|t| composed_softmax(t, dim), &x, &w);
            assert_close(&y, &y0, 1e-5, &what("softmax value"));
            assert_close(&g, &g0, 1e-5, &what("softmax grad"));
            let plain = burn::tensor::activation::softmax(x.clone().inner(), dim);
            let gy = w.clone().inner() * plain.clone();
            let formula = gy.clone() - plain.clone() * gy.sum_dim(dim);
            assert_eq!(
                y,
                plain.into_data().into_vec::<f32>().unwrap(),
                "{}",
                what("value")
            );
            assert_eq!(
                g,
                formula.into_data().into_vec::<f32>().unwrap(),
                "{}",
                what("grad")
            );
        }
    }
}
