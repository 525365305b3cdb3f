//! The model trains: it runs on `Autodiff<Cpu>`, gradients reach every block, and seeded
//! random initialisation is reproducible.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use slayer_stages::model::weights::hf_tensors;
use slayer_stages::model::{Cpu, Llama, LlamaConfig};

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
