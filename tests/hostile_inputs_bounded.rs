//! Every hostile input of the reliability attack list, fed to the `slayer` binary in a
//! process of its own: each must end with a clear error naming the file (exit 1 or 2),
//! within 5 s and under 200 MB of peak RSS, measured per case with `wait4`'s rusage.
//! (The in-process tests of each parser check the exact messages: engine's
//! `hostile_manifests.rs`, the model crate's `model_gguf.rs`.)

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Workspace;

/// What one run of the binary cost.
struct Measured {
    code: i32,
    stderr: String,
    wall: Duration,
    peak_rss_mb: f64,
}

/// Runs `slayer ARGS` in `ws` and measures it with `wait4` (its own rusage, not the
/// test process's).
#[allow(clippy::zombie_processes)] // reaped by wait4, which std cannot see
fn measure(ws: &Workspace, args: &[&str]) -> Measured {
    let t0 = Instant::now();
    let mut child = ws
        .cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start slayer");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for this child only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    // SAFETY: waits for our own child, whose pid std has not reaped.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4 failed");
    let wall = t0.elapsed();
    let status = std::process::ExitStatus::from_raw(status);
    Measured {
        code: status.code().unwrap_or(-1),
        stderr: reader.join().unwrap_or_default(),
        wall,
        // Linux reports ru_maxrss in KiB.
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

fn assert_bounded(case: &str, m: &Measured, names: &Path) {
    assert!(
        m.code == 1 || m.code == 2,
        "{case}: exit code {} (expected 1 or 2): {}",
        m.code,
        m.stderr
    );
    let name = names.file_name().unwrap().to_string_lossy();
    assert!(
        m.stderr.contains(&*name),
        "{case}: does not name {name}: {}",
        m.stderr
    );
    assert!(m.wall < Duration::from_secs(5), "{case}: took {:?}", m.wall);
    assert!(
        m.peak_rss_mb < 200.0,
        "{case}: peak RSS {:.0} MB",
        m.peak_rss_mb
    );
    eprintln!(
        "{case}: exit {}, {:.2} s, {:.0} MB",
        m.code,
        m.wall.as_secs_f64(),
        m.peak_rss_mb
    );
}

const STAGE: &str = "stages:\n  s:\n    kind: command\n    with: {run: \"true\"}\n";

#[test]
fn hostile_manifests_are_refused_quickly_in_little_memory() {
    let ws = Workspace::new();
    // A 9^9 "billion laughs" in `defaults`.
    let mut bomb = String::from("defaults:\n  a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (p, n) in ('a'..'i').zip('b'..='i') {
        bomb += &format!("  {n}: &{n} [{}]\n", vec![format!("*{p}"); 9].join(", "));
    }
    // A chain of 8000 aliases, each doubling the last.
    let mut chain = String::from("defaults:\n  k0: &k0 [y, y]\n");
    for i in 1..8000 {
        chain += &format!("  k{i}: &k{i} [*k{}, *k{}]\n", i - 1, i - 1);
    }
    // Lists nested 100,000 deep.
    let deep = format!(
        "defaults:\n  d: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (file, text) in [
        ("bomb.yaml", bomb),
        ("chain.yaml", chain),
        ("deep.yaml", deep),
    ] {
        let path = ws.write(file, &(text + STAGE));
        assert_bounded(file, &measure(&ws, &["status", file]), &path);
    }
    // An include chain of 2500 files.
    for i in 0..2500 {
        ws.write(
            &format!("inc/f{i}.yaml"),
            &format!("include: [f{}.yaml]\n", i + 1),
        );
    }
    ws.write("inc/f2500.yaml", STAGE);
    let first = ws.path().join("inc/f0.yaml");
    assert_bounded(
        "include chain",
        &measure(&ws, &["status", "inc/f0.yaml"]),
        &first,
    );
}

/// A GGUF v3 header: metadata entries (key, type, payload) and tensor descriptors
/// (name, dims, type, offset) as raw bytes.
fn gguf(kv: &[(&str, u32, Vec<u8>)], tensors: &[(&str, Vec<u64>, u32, u64)]) -> Vec<u8> {
    let s = |b: &mut Vec<u8>, t: &str| {
        b.extend((t.len() as u64).to_le_bytes());
        b.extend(t.as_bytes());
    };
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kv.len() as u64).to_le_bytes());
    for (key, ty, payload) in kv {
        s(&mut b, key);
        b.extend(ty.to_le_bytes());
        b.extend(payload);
    }
    for (name, dims, ty, offset) in tensors {
        s(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
    }
    b
}

fn string_value(text: &str) -> Vec<u8> {
    let mut v = (text.len() as u64).to_le_bytes().to_vec();
    v.extend(text.as_bytes());
    v
}

#[test]
fn hostile_model_files_are_refused_quickly_in_little_memory() {
    let ws = Workspace::new();
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    const U64: u32 = 10;
    let arch = ("general.architecture", STRING, string_value("llama"));
    // n_dims = u32::MAX, written over the dims count of a 1-dim descriptor.
    let mut huge_dims = gguf(std::slice::from_ref(&arch), &[("t", vec![4], 0, 0)]);
    let at = huge_dims.len() - 8 - 4 - 8 - 4;
    huge_dims[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    // An array of arrays nested 100,000 deep.
    let mut nested = Vec::new();
    for _ in 0..100_000 {
        nested.extend(ARRAY.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend(U64.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    let nested = gguf(&[arch.clone(), ("deep", ARRAY, nested)], &[]);
    // `general.alignment` = u64::MAX.
    let alignment = gguf(
        &[
            arch.clone(),
            ("general.alignment", U64, u64::MAX.to_le_bytes().to_vec()),
        ],
        &[("t", vec![4], 0, 0)],
    );
    // An array claiming 2^40 u64 values in a file of a few bytes.
    let mut claim = U64.to_le_bytes().to_vec();
    claim.extend((1u64 << 40).to_le_bytes());
    let claim = gguf(&[arch.clone(), ("big", ARRAY, claim)], &[]);
    // `block_count` = 1e9 with one tiny tensor.
    let blocks = gguf(
        &[
            arch,
            (
                "llama.block_count",
                U64,
                1_000_000_000u64.to_le_bytes().to_vec(),
            ),
        ],
        &[("token_embd.weight", vec![4, 4], 0, 0)],
    );
    let mut blocks = blocks;
    while !blocks.len().is_multiple_of(32) {
        blocks.push(0);
    }
    blocks.extend([0u8; 64]);
    for (file, bytes) in [
        ("dims.gguf", huge_dims),
        ("nested.gguf", nested),
        ("alignment.gguf", alignment),
        ("claim.gguf", claim),
        ("blocks.gguf", blocks),
    ] {
        let path = ws.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        assert_bounded(file, &measure(&ws, &["inspect", file]), &path);
    }
    // An HF directory whose config.json claims a billion layers.
    ws.write(
        "hf/config.json",
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
            "intermediate_size": 16, "num_attention_heads": 2, "num_key_value_heads": 2,
            "num_hidden_layers": 1000000000, "vocab_size": 16, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": true}"#,
    );
    let header = br#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[16,8],"data_offsets":[0,512]},"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[512,544]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend(header);
    st.extend([0u8; 544]);
    std::fs::write(ws.path().join("hf/model.safetensors"), st).unwrap();
    let config = ws.path().join("hf/config.json");
    let m = measure(&ws, &["inspect", "hf"]);
    // The first block config.json promises is not in the file.
    assert!(
        m.stderr
            .contains("`model.layers.0.self_attn.q_proj.weight` is missing"),
        "{}",
        m.stderr
    );
    assert_bounded("billion layers", &m, config.parent().unwrap());
}
