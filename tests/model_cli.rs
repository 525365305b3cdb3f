//! End-to-end tests of the model commands: `exec model.import`, `inspect`, and model
//! stages inside a manifest.

mod common;

use std::path::Path;

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("stages/tests/fixtures/tiny_llama")
        .display()
        .to_string()
}

#[test]
fn exec_model_import_writes_an_hf_directory_at_out() {
    let ws = common::Workspace::new();
    let out = ws.path().join("imported");
    let run = ws.slayer(&[
        "exec",
        "model.import",
        "--set",
        &format!("path={}", fixture()),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let metrics: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(metrics["blocks"], 3, "{metrics}");
    assert!(out.join("config.json").is_file() && out.join("model.safetensors").is_file());
    let inspect = ws.slayer(&["inspect", out.to_str().unwrap()]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(
        inspect.stdout.contains("blocks      3"),
        "{}",
        inspect.stdout
    );
}

#[test]
fn exec_refuses_to_overwrite_a_foreign_directory() {
    let ws = common::Workspace::new();
    ws.write("mine/notes.txt", "keep me");
    let run = ws.slayer(&[
        "exec",
        "model.import",
        "--set",
        &format!("path={}", fixture()),
        "--out",
        ws.path().join("mine").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("was not written by `slayer exec`"),
        "{}",
        run.stderr
    );
    assert!(ws.path().join("mine/notes.txt").exists());
}

#[test]
fn model_init_in_a_manifest_is_cached_and_deterministic() {
    let ws = common::Workspace::new();
    ws.write(
        "slayer.yaml",
        r#"
stages:
  tiny:
    kind: model.init
    with: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
           num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, seed: 7}
"#,
    );
    let first = ws.slayer(&["run"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let show: serde_json::Value =
        serde_json::from_str(&ws.slayer(&["show", "tiny", "--json"]).stdout).unwrap();
    let hash = show["outputs"]["model"]["hash"].clone();
    assert_eq!(show["metrics"]["blocks"], 2);
    // Forcing a rerun reproduces the same bytes (seeded init).
    let again = ws.slayer(&["run", "--force", "tiny"]);
    assert_eq!(again.ran(), common::set(&["tiny"]));
    let show: serde_json::Value =
        serde_json::from_str(&ws.slayer(&["show", "tiny", "--json"]).stdout).unwrap();
    assert_eq!(show["outputs"]["model"]["hash"], hash);
}

#[test]
fn cuda_without_the_feature_is_a_one_line_error() {
    let ws = common::Workspace::new();
    let run = ws.slayer(&[
        "perplexity",
        "--model",
        &fixture(),
        "--file",
        "nothing.txt",
        "--device",
        "cuda:0",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("cuda"), "{}", run.stderr);
}

#[test]
fn exec_of_a_stage_that_fails_exits_1_and_bad_flags_exit_2() {
    let ws = common::Workspace::new();
    let out = ws.path().join("out");
    let out = out.to_str().unwrap();
    let failed = ws.slayer(&["exec", "command", "--set", "run=exit 3", "--out", out]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("command exited with status 3"),
        "{}",
        failed.stderr
    );
    let usage = ws.slayer(&["exec", "command", "--set", "runn=true", "--out", out]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}

/// `inspect` names each family and what sets it apart, for HF directories and GGUF files
/// alike (issue 19).
#[test]
fn inspect_shows_each_familys_specifics() {
    let ws = common::Workspace::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("stages/tests/fixtures");
    let cases: [(&str, &[&str]); 4] = [
        (
            "tiny_qwen3",
            &[
                "family      qwen3 (Qwen3ForCausalLM)",
                "biases: none; q/k norms: yes",
                "head dim 24",
                "SwiGLU MLP",
            ],
        ),
        (
            "tiny_gemma3",
            &[
                "family      gemma3_text (Gemma3ForCausalLM)",
                "q/k norms: yes; sliding window: 6 keys in local blocks, global blocks 5",
                "score scale 0.2236",
                "GeGLU (gelu tanh) MLP; norms before and after attention and MLP; norms scale by 1 + w; embeddings x 6.9282; logits soft-capped at 15",
                "rope        RopeSettings { theta: 1000000.0, scaling: Linear { factor: 2.0 } }",
                "local rope  RopeSettings { theta: 10000.0, scaling: None }",
            ],
        ),
        (
            "tiny_gemma3/tiny_gemma3.f16.gguf",
            &[
                "family      gemma3_text (Gemma3ForCausalLM)",
                "sliding window: 6 keys in local blocks, global blocks 5",
                // llama.cpp's scale: head_dim^-1/2 (the GGUF stores no query_pre_attn_scalar).
                "score scale 0.2500",
            ],
        ),
        (
            "tiny_qwen3/tiny_qwen3.f16.gguf",
            &["family      qwen3 (Qwen3ForCausalLM)", "head dim 24"],
        ),
    ];
    for (path, lines) in cases {
        let path = fixtures.join(path);
        let run = ws.slayer(&["inspect", path.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{path:?}: {}", run.stderr);
        for line in lines {
            assert!(
                run.stdout.contains(line),
                "{path:?} lacks {line:?}:\n{}",
                run.stdout
            );
        }
    }
}
