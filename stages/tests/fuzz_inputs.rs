//! Seeded mutation fuzzing of the readers of untrusted bytes: the manifest loader, the
//! layout parser, the GGUF reader, the safetensors reader and `tokenizer.json` import.
//! Each target starts from real seed inputs (the repository's manifests and fixtures),
//! mutates them (bit flips, boundary integers written over headers, truncation,
//! splices, deletions, inserted syntax) and feeds every mutant to the reader, which must
//! return `Ok` or `Err` and never panic. A panicking mutant is written to
//! `$CARGO_TARGET_TMPDIR/fuzz-crashes/` and fails the test with its path.
//!
//! The normal tests run a few thousand mutants per target with fixed seeds (the same
//! inputs every run). `dev/fuzz.sh` runs the `#[ignore]`d `fuzz_long` for a time budget
//! with a fresh seed (`SLAYER_FUZZ_SECONDS`, `SLAYER_FUZZ_SEED`).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slayer_engine::Pipeline;
use slayer_stages::model::Tokenizer;
use slayer_stages::model::gguf::GgufFile;
use slayer_stages::model::safetensors_io::SafetensorsCheckpoint;
use slayer_stages::rng::SplitMix64;
use slayer_stages::surgery::layout::Layout;

/// One reader under test: a name, its seed inputs, and a function that feeds it bytes
/// (through `scratch`, a file it may write them to).
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    feed: fn(&[u8], &Path),
    /// Whether mutants are text (syntax tokens are spliced in, not only bytes).
    text: bool,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()))
}

fn write_scratch(bytes: &[u8], scratch: &Path) {
    std::fs::write(scratch, bytes).expect("write scratch file");
}

fn feed_manifest(bytes: &[u8], scratch: &Path) {
    write_scratch(bytes, scratch);
    let _ = Pipeline::load(scratch, &slayer_stages::registry());
}

fn feed_layout(bytes: &[u8], _: &Path) {
    if let Ok(layout) = Layout::parse(&String::from_utf8_lossy(bytes)) {
        let _ = (
            layout.arithmetic(),
            layout.to_ascii(),
            layout.deleted_blocks(32),
        );
        let _ = (layout.output_blocks(), layout.trainable_blocks());
    }
}

fn feed_gguf(bytes: &[u8], scratch: &Path) {
    write_scratch(bytes, scratch);
    if let Ok(file) = GgufFile::open(scratch) {
        let _ = file.config();
        let mut names: Vec<String> = file.tensors.keys().cloned().collect();
        names.sort();
        for name in names.iter().take(4) {
            let _ = file.read(name);
        }
    }
}

fn feed_safetensors(bytes: &[u8], scratch: &Path) {
    write_scratch(bytes, scratch);
    if let Ok(ckpt) = SafetensorsCheckpoint::open(scratch) {
        for name in ckpt.names() {
            let _ = (ckpt.describe(&name), ckpt.locate(&name));
        }
        let _ = ckpt.dominant_dtype();
    }
}

fn feed_tokenizer(bytes: &[u8], scratch: &Path) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(tok) = Tokenizer::from_json_str(&text, scratch)
        && let Ok(ids) = tok.encode("Hello wörld  12\n\tend", false)
    {
        let _ = tok.decode(&ids, false);
    }
}

fn targets() -> Vec<Target> {
    let manifests = [
        repo().join("manifests/quickstart.yaml"),
        repo().join("manifests/smollm2/smollm2.yaml"),
    ];
    let layouts = [
        "16|(2+1)x8",
        "(2+1)x3 (4+1)x3 (7+1)x2",
        "(2+1)x8|13|1◇",
        "0..8 8..16x2",
    ];
    vec![
        Target {
            name: "manifest",
            seeds: manifests
                .iter()
                .filter(|p| p.is_file())
                .map(|p| read(p))
                .collect(),
            feed: feed_manifest,
            text: true,
        },
        Target {
            name: "layout",
            seeds: layouts.iter().map(|s| s.as_bytes().to_vec()).collect(),
            feed: feed_layout,
            text: true,
        },
        Target {
            name: "gguf",
            seeds: vec![read(&fixtures().join("tiny_llama/tiny_llama.f16.gguf"))],
            feed: feed_gguf,
            text: false,
        },
        Target {
            name: "safetensors",
            seeds: vec![
                read(&fixtures().join("gguf_quant.safetensors")),
                read(&fixtures().join("tiny_llama/model.safetensors")),
            ],
            feed: feed_safetensors,
            text: false,
        },
        Target {
            name: "tokenizer",
            seeds: vec![read(&fixtures().join("eval/byte_tokenizer.json"))],
            feed: feed_tokenizer,
            text: true,
        },
    ]
}

/// Integers at the edges of the ranges headers use.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    i64::MAX as u64,
    u64::MAX,
];

/// Syntax spliced into text mutants.
const TOKENS: &[&str] = &[
    "\n",
    " ",
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "\"",
    "'",
    "\\",
    ",",
    "|",
    "x",
    "(",
    ")",
    "+",
    "◇",
    "..",
    "${",
    "}",
    "999999999999",
    "-1",
    "null",
    "0",
    "\u{feff}",
    "\0",
];

/// One mutant of `seed`: one to four edits.
fn mutate(rng: &mut SplitMix64, seed: &[u8], text: bool) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        let at = if len == 0 { 0 } else { rng.below(len) };
        match rng.below(if text { 8 } else { 7 }) {
            0 if len > 0 => b[at] ^= 1 << rng.below(8),
            1 if len > 0 => b[at] = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'0', b'9']),
            2 if len >= 8 => {
                let at = at.min(len - 8);
                let v = *rng.pick(INTERESTING);
                let width = *rng.pick(&[1usize, 2, 4, 8]);
                b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            3 => b.truncate(at),
            4 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                b.drain(at..end);
            }
            5 if len > 0 => {
                let end = (at + 1 + rng.below(256)).min(len);
                let piece = b[at..end].to_vec();
                let to = rng.below(len + 1);
                b.splice(to..to, piece);
            }
            6 => {
                let n = 1 + rng.below(16);
                let noise: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
                b.splice(at..at, noise);
            }
            _ => {
                let token = rng.pick(TOKENS).repeat(1 + rng.below(3));
                b.splice(at..at, token.into_bytes());
            }
        }
    }
    b
}

/// Feeds `target` mutants until `count` ran or `budget` passed; panics, naming a saved
/// copy of the input, if the reader panicked.
fn fuzz(target: &Target, seed: u64, count: usize, budget: Duration) -> usize {
    assert!(!target.seeds.is_empty(), "{}: no seed inputs", target.name);
    let dir = tempfile::tempdir().expect("temp dir");
    let scratch = dir.path().join(format!("input.{}", target.name));
    let mut rng = SplitMix64::with_stream(seed, 0);
    let started = Instant::now();
    let mut ran = 0;
    // Seeds themselves first, then mutants (of seeds or of earlier mutants' bases).
    for s in &target.seeds {
        check(target, s, &scratch, seed, ran);
    }
    while ran < count && started.elapsed() < budget {
        let base = rng.pick(&target.seeds);
        let input = mutate(&mut rng, base, target.text);
        check(target, &input, &scratch, seed, ran);
        ran += 1;
    }
    ran
}

fn check(target: &Target, input: &[u8], scratch: &Path, seed: u64, index: usize) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (target.feed)(input, scratch)));
    if outcome.is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let saved = dir.join(format!("{}-{seed}-{index}", target.name));
        let _ = std::fs::write(&saved, input);
        panic!(
            "{}: the reader panicked on mutant {index} of seed {seed}; input saved to {}",
            target.name,
            saved.display()
        );
    }
}

fn short(name: &str, count: usize) {
    let target = targets()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let ran = fuzz(&target, 1, count, Duration::from_secs(600));
    assert_eq!(ran, count);
}

#[test]
fn fuzz_manifest() {
    short("manifest", 2000);
}

#[test]
fn fuzz_layout() {
    short("layout", 20_000);
}

#[test]
fn fuzz_gguf() {
    short("gguf", 3000);
}

#[test]
fn fuzz_safetensors() {
    short("safetensors", 3000);
}

#[test]
fn fuzz_tokenizer() {
    short("tokenizer", 2000);
}

/// Every target for `SLAYER_FUZZ_SECONDS` each (default 60) from `SLAYER_FUZZ_SEED`
/// (default: the clock); `SLAYER_FUZZ_TARGET` picks one. Run by `dev/fuzz.sh`.
#[test]
#[ignore = "long: run by dev/fuzz.sh"]
fn fuzz_long() {
    let env = |k: &str| std::env::var(k).ok();
    let seconds: u64 = env("SLAYER_FUZZ_SECONDS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = env("SLAYER_FUZZ_SEED")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let only = env("SLAYER_FUZZ_TARGET");
    for target in targets() {
        if only.as_deref().is_some_and(|o| o != target.name) {
            continue;
        }
        let ran = fuzz(&target, seed, usize::MAX, Duration::from_secs(seconds));
        eprintln!(
            "fuzz {}: {ran} mutants in {seconds} s, seed {seed}, no panic",
            target.name
        );
    }
}

/// Found by `fuzz_tokenizer`: a `decoder` object cut short made the `tokenizers` crate
/// panic (`.expect("Helper")`); it is now an error naming the file.
#[test]
fn a_malformed_decoder_is_an_error_not_a_panic() {
    let good = String::from_utf8(read(&fixtures().join("eval/byte_tokenizer.json")))
        .expect("UTF-8 fixture");
    let cut = r#""decoder": {"type": "ByteLevel", "add_prefix_space""#;
    assert!(good.contains(cut), "fixture changed");
    let bad = good.replace(cut, r#""decoder": {"type": "ByteLevel",ix_space""#);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, &bad).expect("write");
    let err = Tokenizer::from_json_str(&bad, &path)
        .expect_err("rejected")
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    let err = match slayer_stages::data::common::load_tokenizer(&path) {
        Ok(_) => panic!("a malformed tokenizer.json loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("tokenizer.json: not a valid tokenizer.json"),
        "{err}"
    );
}
