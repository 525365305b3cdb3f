//! Shared by the eval tests (`tests/eval/`, and `tests/importance/eval.rs`): the committed
//! fixtures and the tiny Llama as an HF directory with the byte-level tokenizer.

use std::path::{Path, PathBuf};

/// `stages/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The tiny Llama fixture with the byte-level tokenizer, as an HF directory in `dir`.
pub fn tiny_model_dir(dir: &Path) -> PathBuf {
    let out = dir.join("tiny");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("tiny_llama").join(f), out.join(f)).unwrap();
    }
    std::fs::copy(
        fixtures().join("eval/byte_tokenizer.json"),
        out.join("tokenizer.json"),
    )
    .unwrap();
    out
}
