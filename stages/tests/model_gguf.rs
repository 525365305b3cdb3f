//! GGUF import checks: the dequantiser against llama.cpp's Python reference
//! (`fixtures/gguf_quant.safetensors`, from `dev/make_gguf_quant_fixture.py`), and the
//! whole importer (metadata -> config, names, q/k un-permutation) on
//! `fixtures/tiny_llama/tiny_llama.f16.gguf`, whose weights must equal the safetensors
//! fixture's rounded to f16.

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use slayer_stages::model::gguf::{GgmlType, GgufFile, dequantize};
use slayer_stages::model::import::load_gguf;
use slayer_stages::model::safetensors_io::SafetensorsCheckpoint;
use slayer_stages::model::weights::{WeightSource, hf_tensors};
use slayer_stages::model::{Cpu, LlamaConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn dequantisation_matches_gguf_py_reference() {
    let bytes = std::fs::read(fixtures().join("gguf_quant.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let types = [
        ("Q4_0", GgmlType::Q4_0),
        ("Q4_1", GgmlType::Q4_1),
        ("Q8_0", GgmlType::Q8_0),
        ("Q4_K", GgmlType::Q4K),
        ("Q6_K", GgmlType::Q6K),
        ("F16", GgmlType::F16),
        ("BF16", GgmlType::BF16),
    ];
    for (name, ty) in types {
        let raw = st.tensor(&format!("{name}.raw")).unwrap();
        let expected: Vec<f32> = st
            .tensor(&format!("{name}.values"))
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let got = dequantize(ty, raw.data(), expected.len()).unwrap();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                "{name} value {i}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn unsupported_quant_type_is_refused() {
    assert!(dequantize(GgmlType::Other(13), &[0u8; 176], 256).is_none());
}

#[test]
fn tiny_gguf_imports_to_the_same_model() {
    let dir = fixtures().join("tiny_llama");
    let file = GgufFile::open(&dir.join("tiny_llama.f16.gguf")).unwrap();
    let config = file.config().unwrap();
    let hf = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(config.hidden_size, hf.hidden_size);
    assert_eq!(config.num_key_value_heads(), hf.num_key_value_heads());
    assert_eq!(config.head_dim(), hf.head_dim());
    assert_eq!(config.rms_norm_eps, hf.rms_norm_eps);
    assert!(!config.tie_word_embeddings);

    let reference = SafetensorsCheckpoint::open(&dir).unwrap();
    let weights = file.weights(&config);
    for name in reference.names() {
        let want = reference.tensor(&name).unwrap().unwrap();
        let got = weights
            .tensor(&name)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(got.shape, want.shape, "{name}");
        let vector = want.shape.len() == 1;
        let round = |x: f32| {
            if vector {
                x
            } else {
                half::f16::from_f32(x).to_f32()
            }
        };
        for (g, w) in got.into_f32().iter().zip(&want.into_f32()) {
            assert_eq!(g.to_bits(), round(*w).to_bits(), "{name}");
        }
    }
    let model = load_gguf::<Cpu>(&dir.join("tiny_llama.f16.gguf"), &Default::default()).unwrap();
    assert_eq!(model.blocks.len(), 3);
    assert_eq!(hf_tensors(&model).len(), reference.names().len());
}
