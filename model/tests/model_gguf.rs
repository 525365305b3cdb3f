//! GGUF import checks: the dequantiser against llama.cpp's Python reference
//! (`fixtures/gguf_quant.safetensors`, from `dev/make_gguf_quant_fixture.py`), and the
//! whole importer (metadata -> config, names, q/k un-permutation) on
//! `fixtures/tiny_llama/tiny_llama.f16.gguf`, whose weights must equal the safetensors
//! fixture's rounded to f16.

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use slayer_model::gguf::{GgmlType, GgufArray, GgufFile, dequantize};
use slayer_model::import::load_gguf;
use slayer_model::safetensors_io::SafetensorsCheckpoint;
use slayer_model::weights::{WeightSource, hf_tensors};
use slayer_model::{Cpu, LlamaConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages/tests/fixtures")
}

#[test]
fn dequantisation_matches_gguf_py_reference() {
    let bytes = std::fs::read(fixtures().join("gguf_quant.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let types = [
        ("Q4_0", GgmlType::Q4_0),
        ("Q4_1", GgmlType::Q4_1),
        ("Q5_0", GgmlType::Q5_0),
        ("Q5_1", GgmlType::Q5_1),
        ("Q5_K", GgmlType::Q5K),
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
    // Q2_K (type 10) is not dequantised.
    assert!(dequantize(GgmlType::Other(10), &[0u8; 84], 256).is_none());
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

#[test]
fn gguf_import_streams_the_same_tensors_as_the_in_memory_model() {
    let gguf = fixtures().join("tiny_llama/tiny_llama.f16.gguf");
    let out = tempfile::tempdir().unwrap();
    let report = slayer_model::import::import_to_dir(&gguf, out.path()).unwrap();
    assert!(
        report.files.contains(&"model.safetensors".to_string()),
        "{report:?}"
    );
    // The model as loading the GGUF builds it, written by save_pretrained.
    let reference_dir = tempfile::tempdir().unwrap();
    let model = load_gguf::<Cpu>(&gguf, &Default::default()).unwrap();
    slayer_model::safetensors_io::save_pretrained(
        &model,
        reference_dir.path(),
        slayer_model::safetensors_io::SaveDtype::F32,
    )
    .unwrap();
    let (streamed, reference) = (
        SafetensorsCheckpoint::open(out.path()).unwrap(),
        SafetensorsCheckpoint::open(reference_dir.path()).unwrap(),
    );
    assert_eq!(streamed.names(), reference.names());
    for name in reference.names() {
        let (a, b) = (
            streamed.tensor(&name).unwrap().unwrap(),
            reference.tensor(&name).unwrap().unwrap(),
        );
        assert_eq!(a.shape, b.shape, "{name}");
        let (a, b) = (a.into_f32(), b.into_f32());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs"
        );
    }
    let config = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
    };
    assert_eq!(config(out.path()), config(reference_dir.path()));
}

// Hostile files (issue 18): each must give an error naming the file and what is wrong,
// quickly and without a large allocation.

/// A GGUF v3 file built by hand: metadata, tensor descriptors, then the data section.
#[derive(Default)]
struct GgufBuilder {
    kv: Vec<u8>,
    n_kv: u64,
    tensors: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn gguf_string(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

impl GgufBuilder {
    /// A key with a raw value of GGUF type `ty`.
    fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        gguf_string(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(value);
        self.n_kv += 1;
        self
    }
    fn u64(self, key: &str, v: u64) -> Self {
        self.kv(key, 10, &v.to_le_bytes())
    }
    fn str(self, key: &str, v: &str) -> Self {
        let mut b = Vec::new();
        gguf_string(&mut b, v);
        self.kv(key, 8, &b)
    }
    /// An F32 tensor with zeros as data.
    fn tensor(mut self, name: &str, dims: &[u64]) -> Self {
        gguf_string(&mut self.tensors, name);
        self.tensors.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.tensors.extend(d.to_le_bytes());
        }
        self.tensors.extend(0u32.to_le_bytes());
        self.tensors.extend((self.data.len() as u64).to_le_bytes());
        self.data.resize(
            self.data.len() + 4 * dims.iter().product::<u64>() as usize,
            0,
        );
        self.n_tensors += 1;
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(self.n_tensors.to_le_bytes());
        b.extend(self.n_kv.to_le_bytes());
        b.extend(&self.kv);
        b.extend(&self.tensors);
        b.resize(b.len().div_ceil(32) * 32, 0);
        b.extend(&self.data);
        b
    }
}

/// A tiny valid llama GGUF (hidden 8, 2 heads, mlp 16, vocab 4) with `block_count`.
fn tiny_llama(block_count: u64) -> GgufBuilder {
    GgufBuilder::default()
        .str("general.architecture", "llama")
        .u64("llama.embedding_length", 8)
        .u64("llama.attention.head_count", 2)
        .u64("llama.feed_forward_length", 16)
        .u64("llama.block_count", block_count)
        .u64("llama.vocab_size", 4)
        .tensor("token_embd.weight", &[8, 4])
        .tensor("output_norm.weight", &[8])
        .tensor("blk.0.attn_q.weight", &[8, 8])
        .tensor("blk.0.ffn_up.weight", &[8, 16])
}

/// `GgufFile::open` of `bytes` fails, fast, with an error naming the file and `what`.
fn open_fails(bytes: &[u8], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.gguf");
    std::fs::write(&path, bytes).unwrap();
    let t = std::time::Instant::now();
    let err = match GgufFile::open(&path) {
        Ok(_) => panic!("{what}: opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("hostile.gguf") && err.contains(what), "{err}");
    assert!(t.elapsed().as_secs_f64() < 2.0, "{what}: {:?}", t.elapsed());
}

#[test]
fn gguf_hostile_headers_are_refused() {
    // n_dims = u32::MAX: 32 GiB of dims for Vec::with_capacity.
    let mut b = GgufBuilder::default();
    gguf_string(&mut b.tensors, "t");
    b.tensors.extend(u32::MAX.to_le_bytes());
    b.n_tensors = 1;
    open_fails(&b.bytes(), "tensor `t` has 4294967295 dims");
    // More tensors / key-values than the file could describe.
    let mut b = tiny_llama(1);
    b.n_tensors = 1000;
    open_fails(&b.bytes(), "tensor descriptors");
    let mut b = tiny_llama(1);
    b.n_kv = 1000;
    open_fails(&b.bytes(), "metadata key/values");
    // general.alignment = u64::MAX overflowed the data offset.
    open_fails(
        &tiny_llama(1).u64("general.alignment", u64::MAX).bytes(),
        "general.alignment",
    );
    open_fails(
        &tiny_llama(1).u64("general.alignment", 0).bytes(),
        "general.alignment",
    );
    // Arrays nested 100,000 deep overflowed the stack.
    let mut nested = Vec::new();
    for _ in 0..100_000 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend(0u32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    open_fails(
        &GgufBuilder::default().kv("deep", 9, &nested).bytes(),
        "nested more than 8 deep",
    );
    // An array claiming 2^40 u64 values in a small file.
    let mut huge = 10u32.to_le_bytes().to_vec();
    huge.extend((1u64 << 40).to_le_bytes());
    open_fails(
        &GgufBuilder::default().kv("huge", 9, &huge).bytes(),
        "implausible length",
    );
    let mut claims = 10u32.to_le_bytes().to_vec();
    claims.extend(50u64.to_le_bytes());
    open_fails(
        &GgufBuilder::default().kv("claims", 9, &claims).bytes(),
        "do not fit",
    );
    // Truncated data: the last tensor ends past the end of the file.
    let full = tiny_llama(1).bytes();
    open_fails(&full[..full.len() - 4], "`blk.0.ffn_up.weight`");
    open_fails(&full[..full.len() - 4], "lies outside the file");
}

#[test]
fn gguf_metadata_arrays_are_stored_compactly() {
    // A 64 MB u8 array once took 4.25 GB as one enum value per byte.
    let n = 64usize << 20;
    let mut arr = 0u32.to_le_bytes().to_vec();
    arr.extend((n as u64).to_le_bytes());
    arr.resize(arr.len() + n, 7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-array.gguf");
    std::fs::write(&path, GgufBuilder::default().kv("big", 9, &arr).bytes()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    match f.metadata["big"].as_array() {
        Some(GgufArray::U8(v)) => assert!(v.len() == n && v.iter().all(|&x| x == 7)),
        other => panic!("{:?}", other.map(GgufArray::len)),
    }
}

#[test]
fn gguf_config_must_match_the_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, tiny_llama(1).bytes()).unwrap();
    let config = GgufFile::open(&path).unwrap().config().unwrap();
    assert_eq!((config.num_hidden_layers, config.hidden_size), (1, 8));
    // block_count = 1e9 allocated a billion layers before reading a tensor.
    let cases = [
        (
            tiny_llama(1_000_000_000),
            "`llama.block_count` is 1000000000 but the file has tensors of 1 blocks",
        ),
        (
            tiny_llama(1).u64("llama.feed_forward_length", 1 << 40),
            "`blk.0.ffn_up.weight` should have GGUF dims [8, 1099511627776]",
        ),
        (
            tiny_llama(1).u64("llama.vocab_size", 1 << 40),
            "`token_embd.weight` should have GGUF dims [8, 1099511627776]",
        ),
        (
            tiny_llama(1).u64("llama.attention.head_count", 0),
            "head_count` is 0",
        ),
    ];
    for (b, what) in cases {
        std::fs::write(&path, b.bytes()).unwrap();
        let err = match load_gguf::<Cpu>(&path, &Default::default()) {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("tiny.gguf") && err.contains(what), "{err}");
    }
}

#[test]
fn safetensors_truncated_or_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let data = vec![0u8; 4 * 64];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8, 8], &data).unwrap();
    let bytes = safetensors::serialize([("w", view)], None).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = SafetensorsCheckpoint::open(&path)
        .err()
        .unwrap()
        .to_string();
    // safetensors' read_metadata checks the header against the file's length.
    assert!(
        err.contains("model.safetensors") && err.contains("incomplete metadata"),
        "{err}"
    );
    std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    let err = SafetensorsCheckpoint::open(&path)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(SafetensorsCheckpoint::open(&path).unwrap().names(), ["w"]);
}

/// A GGUF array value of `n` elements of GGUF type `ty`, their bytes `elems`.
fn gguf_array(ty: u32, n: usize, elems: &[u8]) -> Vec<u8> {
    let mut b = ty.to_le_bytes().to_vec();
    b.extend((n as u64).to_le_bytes());
    b.extend(elems);
    b
}

/// A SentencePiece vocabulary whose metadata does not hold together is refused with an
/// error naming the file and the key, not rebuilt into a wrong tokenizer.
#[test]
fn sentencepiece_vocabulary_metadata_is_checked() {
    let pieces = ["<unk>", "<s>", "</s>", "\u{2581}a"];
    let mut strings = Vec::new();
    for p in pieces {
        gguf_string(&mut strings, p);
    }
    let base = || {
        tiny_llama(1).str("tokenizer.ggml.model", "llama").kv(
            "tokenizer.ggml.tokens",
            9,
            &gguf_array(8, 4, &strings),
        )
    };
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let i32s = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let dir = tempfile::tempdir().unwrap();
    let rebuild = |b: GgufBuilder| {
        let path = dir.path().join("spm.gguf");
        std::fs::write(&path, b.bytes()).unwrap();
        GgufFile::open(&path).unwrap().tokenizer_json().map(|_| ())
    };
    let fails = |b: GgufBuilder, what: &str| {
        let err = rebuild(b).unwrap_err().to_string();
        assert!(
            err.contains("spm.gguf") && err.contains(what),
            "{what}: {err}"
        );
    };
    // Consistent: rebuilt (BOS id 1 names a token).
    rebuild(
        base()
            .kv(
                "tokenizer.ggml.scores",
                9,
                &gguf_array(6, 4, &f32s(&[0.0, 0.0, 0.0, -1.0])),
            )
            .kv(
                "tokenizer.ggml.token_type",
                9,
                &gguf_array(5, 4, &i32s(&[2, 3, 3, 1])),
            )
            .u64("tokenizer.ggml.bos_token_id", 1),
    )
    .unwrap();
    fails(
        base().kv(
            "tokenizer.ggml.scores",
            9,
            &gguf_array(6, 3, &f32s(&[0.0; 3])),
        ),
        "tokenizer.ggml.scores",
    );
    fails(
        base().kv(
            "tokenizer.ggml.token_type",
            9,
            &gguf_array(5, 2, &i32s(&[1, 1])),
        ),
        "tokenizer.ggml.token_type",
    );
    // add_bos_token defaults to true for SentencePiece: a BOS id naming no token is refused.
    fails(
        base().u64("tokenizer.ggml.bos_token_id", 99),
        "tokenizer.ggml.bos_token_id",
    );
}
