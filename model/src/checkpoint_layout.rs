//! Checking a safetensors checkpoint's headers against its `config.json` before any
//! tensor is read ([`check_layout`]): every tensor the config implies is present with
//! its HF shape, every block carries the same tensors, and no tensor belongs to a block
//! the config does not have. A wrong config (say `num_hidden_layers: 1000000000`) is
//! then an error naming the missing tensor, found in milliseconds with no allocation
//! beyond the header, instead of a model-sized allocation.

use std::collections::BTreeMap;

use safetensors::tensor::Dtype;

use super::config::LlamaConfig;
use super::error::{ModelError, Result};
use super::safetensors_io::SafetensorsCheckpoint;
use super::tensor_names::{
    expected_block_tensors, expected_top_tensors, layer_tensor, parse_layer_tensor,
};

/// One block's tensors as stored: suffix -> (dtype, shape).
pub type BlockTensors = BTreeMap<String, (Dtype, Vec<usize>)>;

/// Check `ckpt`'s headers against `config`: the tensors the config implies exist with
/// the right shapes, and blocks `0..L` carry the same tensors with the same shapes (no
/// block beyond `L`). Returns block 0's tensors. Reads no tensor data.
pub fn check_layout(ckpt: &SafetensorsCheckpoint, config: &LlamaConfig) -> Result<BlockTensors> {
    let origin = ckpt.origin_path().to_path_buf();
    let expect = |name: &str, shape: &[usize]| -> Result<()> {
        match ckpt.describe(name) {
            None => Err(ModelError::MissingTensor {
                file: origin.clone(),
                name: name.to_string(),
            }),
            Some((_, actual)) if actual != shape => Err(ModelError::ShapeMismatch {
                file: origin.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                actual,
            }),
            Some(_) => Ok(()),
        }
    };
    for (name, shape) in expected_top_tensors(config) {
        expect(name, &shape)?;
    }
    let l = config.num_hidden_layers;
    // Before anything is sized by `l`: a block count the file cannot hold fails at the
    // first missing block.
    let expected = expected_block_tensors(config);
    for i in 0..l {
        for (suffix, shape) in &expected {
            expect(&layer_tensor(i, suffix), shape)?;
        }
    }
    let mut blocks: Vec<BlockTensors> = vec![BlockTensors::new(); l];
    for name in ckpt.names() {
        let Some((i, suffix)) = parse_layer_tensor(&name) else {
            continue;
        };
        let Some(block) = blocks.get_mut(i) else {
            return Err(ModelError::format(
                &origin,
                format!(
                    "tensor `{name}` belongs to block {i}, but config.json says the model has \
                     {l} blocks (num_hidden_layers)"
                ),
            ));
        };
        // `names()` lists tensors that exist, so `describe` finds each.
        if let Some(info) = ckpt.describe(&name) {
            block.insert(suffix.to_string(), info);
        }
    }
    let first = blocks.first().cloned().unwrap_or_default();
    for (i, block) in blocks.iter().enumerate().skip(1) {
        if let Some(odd) = block
            .keys()
            .find(|s| !first.contains_key(*s))
            .or_else(|| first.keys().find(|s| !block.contains_key(*s)))
        {
            return Err(ModelError::format(
                &origin,
                format!(
                    "block {i} and block 0 carry different tensors (`{odd}` is in one only); \
                     surgery needs blocks of one shape"
                ),
            ));
        }
        if let Some((suffix, (_, shape))) = block.iter().find(|(s, v)| first[*s].1 != v.1) {
            return Err(ModelError::ShapeMismatch {
                file: origin.clone(),
                name: layer_tensor(i, suffix),
                expected: first[suffix].1.clone(),
                actual: shape.clone(),
            });
        }
    }
    Ok(first)
}
