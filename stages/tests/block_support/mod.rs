//! Shared by the surgery and model-family tests: a checkpoint's block tensors read back
//! by name, and the block mean that expansion and pruning must reproduce, computed on the
//! host.

use std::collections::BTreeMap;

use slayer_stages::model::safetensors_io::SafetensorsCheckpoint;
use slayer_stages::model::weights::WeightSource;

/// Block `i`'s HF tensors by suffix (`self_attn.q_proj.weight`, ...), as f32.
pub fn layer(ckpt: &SafetensorsCheckpoint, i: usize) -> BTreeMap<String, Vec<f32>> {
    let prefix = format!("model.layers.{i}.");
    ckpt.names()
        .into_iter()
        .filter_map(|n| {
            let suffix = n.strip_prefix(&prefix)?.to_string();
            Some((suffix, ckpt.tensor(&n).unwrap().unwrap().into_f32()))
        })
        .collect()
}

/// The element-wise mean of blocks, summed in order then divided, on the host.
pub fn host_mean(layers: &[BTreeMap<String, Vec<f32>>]) -> BTreeMap<String, Vec<f32>> {
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
