//! Shared by the model parity test crates (`model_families.rs`, `gpu_parity.rs`): the
//! committed tiny fixtures and transformers' reference ids and logits beside each
//! (`reference_logits.safetensors`, written by `dev/make_family_fixtures.py`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

/// `stages/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// transformers' ids and logits of one fixture.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn load(name: &str) -> Self {
        let path = fixture(name).join("reference_logits.safetensors");
        Reference {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    /// Shape and bytes of one tensor.
    pub fn raw(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("reference safetensors");
        let t = st.tensor(name).expect(name);
        (t.shape().to_vec(), t.data().to_vec())
    }

    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.raw(name)
            .1
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn ids(&self) -> Vec<i64> {
        self.raw("ids")
            .1
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// How many tokens the KV-cached reference prefilled before decoding one at a time.
    pub fn prefill(&self) -> usize {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        meta.metadata().as_ref().unwrap()["prefill"]
            .parse()
            .unwrap()
    }
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
