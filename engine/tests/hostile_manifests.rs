//! Hostile manifests get a clear error (file, line, the limit hit) instead of exhausting
//! memory, time or the stack: alias bombs, long alias chains, deep nesting, huge
//! mappings, deep include chains, a byte-order mark, bytes that are not UTF-8.
//! Each case is generated here; the limits cap the work, so nothing is timed.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use slayer_engine::{Manifest, Pipeline, Registry};

const STAGES: &str = "stages:\n  s: {kind: command, with: {run: \"true\"}}\n";

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// The rendered error of loading `path`, which must fail.
fn load_err(path: &Path) -> String {
    Manifest::load(path)
        .expect_err("the manifest must be rejected")
        .to_string()
}

#[test]
fn billion_laughs_in_defaults_hits_the_expansion_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::from(
        "name: bomb\ndefaults:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    let names: Vec<char> = ('a'..='i').collect();
    for pair in names.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        let _ = writeln!(
            text,
            "  {next}: &{next} [{}]",
            vec![format!("*{prev}"); 9].join(", ")
        );
    }
    text.push_str(STAGES);
    assert!(text.len() < 700, "{} bytes", text.len());
    let path = write(dir.path(), "bomb.yaml", &text);
    let err = load_err(&path);
    assert!(
        err.contains("limit on the total size of alias expansions"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:", path.display())),
        "names the file: {err}"
    );
}

#[test]
fn many_aliases_hit_the_alias_count_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::from("defaults:\n  x: &x 1\n  many: [");
    text.push_str(&vec!["*x"; 10_001].join(", "));
    text.push_str("]\n");
    text.push_str(STAGES);
    let err = load_err(&write(dir.path(), "many.yaml", &text));
    assert!(err.contains("more than 10000 alias expansions"), "{err}");
    assert!(err.contains("many.yaml:3:"), "names file and line: {err}");
}

#[test]
fn a_doubling_alias_chain_of_8000_lines_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::from("defaults:\n  a0: &a0 [x, x]\n");
    for i in 1..8000 {
        let _ = writeln!(text, "  a{i}: &a{i} [*a{}, *a{}]", i - 1, i - 1);
    }
    text.push_str(STAGES);
    let err = load_err(&write(dir.path(), "chain.yaml", &text));
    assert!(
        err.contains("limit on the total size of alias expansions"),
        "{err}"
    );
}

#[test]
fn a_nesting_alias_chain_hits_the_depth_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::from("defaults:\n  a0: &a0 [x]\n");
    for i in 1..8000 {
        let _ = writeln!(text, "  a{i}: &a{i} [*a{}]", i - 1);
    }
    text.push_str(STAGES);
    let err = load_err(&write(dir.path(), "deep-alias.yaml", &text));
    assert!(err.contains("limit on nesting depth"), "{err}");
}

#[test]
fn deeply_nested_lists_hit_a_depth_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nested = |depth: usize| {
        let text = format!(
            "defaults:\n  d: {}{}\n{STAGES}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        load_err(&write(dir.path(), "nested.yaml", &text))
    };
    let err = nested(230);
    assert!(err.contains("nest more than 200 deep"), "{err}");
    assert!(err.contains("nested.yaml:2:"), "{err}");
    // Deeper still, yaml-rust2's own scanner limit answers first.
    let err = nested(5000);
    assert!(
        err.contains("recursion limit exceeded") && err.contains("nested.yaml:2:"),
        "{err}"
    );
}

#[test]
fn fifty_thousand_defaults_load_and_the_last_one_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = write(
        dir.path(),
        "base.yaml",
        "defaults: {k49999: from-base, only: base}\n",
    );
    let mut text = format!("include: [{}]\ndefaults:\n", base.display());
    for i in 0..50_000 {
        let _ = writeln!(text, "  k{i}: {i}");
    }
    text.push_str(STAGES);
    let m = Manifest::load(&write(dir.path(), "wide.yaml", &text)).expect("load");
    assert_eq!(m.defaults.len(), 50_001);
    assert_eq!(
        m.default_value("k49999").map(|n| n.to_json()),
        Some(49_999.into())
    );
    assert_eq!(
        m.default_value("only").and_then(|n| n.as_str()),
        Some("base")
    );
}

#[test]
fn a_duplicate_among_many_keys_is_still_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::from("defaults:\n");
    for i in 0..20_000 {
        let _ = writeln!(text, "  k{i}: {i}");
    }
    text.push_str("  k7: again\n");
    text.push_str(STAGES);
    let err = load_err(&write(dir.path(), "dup.yaml", &text));
    assert!(
        err.contains("duplicate key `k7` (first defined at line 9:3)"),
        "{err}"
    );
}

#[test]
fn an_include_chain_of_2000_files_hits_the_depth_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..2000 {
        write(
            dir.path(),
            &format!("f{i}.yaml"),
            format!("include: [f{}.yaml]\n", i + 1),
        );
    }
    write(dir.path(), "f2000.yaml", STAGES);
    let err = load_err(&dir.path().join("f0.yaml"));
    assert!(
        err.contains("includes nest more than 64 files deep"),
        "{err}"
    );
    assert!(
        err.contains("f0.yaml -> "),
        "names the start of the chain: {err}"
    );
    assert!(
        err.contains("f63.yaml -> ") && err.contains("f64.yaml"),
        "and its end: {err}"
    );
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        dir.path(),
        "bom.yaml",
        format!("\u{feff}name: bom\n{STAGES}"),
    );
    let m = Manifest::load(&path).expect("a BOM is not part of the first key");
    assert_eq!(m.name, "bom");
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = b"name: x\ndefaults: {a: caf".to_vec();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xe9}\n");
    bytes.extend_from_slice(STAGES.as_bytes());
    let path = write(dir.path(), "latin1.yaml", bytes);
    let err = load_err(&path);
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(
        err.contains(&format!("byte 0xe9 at byte offset {offset} (line 2")),
        "{err}"
    );
    assert!(err.contains("latin1.yaml"), "{err}");
}

#[test]
fn command_outputs_naming_the_output_directory_itself_are_rejected_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, problem) in [
        (".", "names $SLAYER_OUT itself"),
        ("./", "names $SLAYER_OUT itself"),
        ("./.", "names $SLAYER_OUT itself"),
        ("", "is empty"),
        ("a/..", "has a `..` component"),
        ("/etc/x", "is absolute"),
    ] {
        let text = format!(
            "stages:\n  gen:\n    kind: command\n    with: {{run: \"true\", outputs: {{x: \"{path}\"}}}}\n"
        );
        let file = write(dir.path(), "out.yaml", &text);
        let Err(err) = Pipeline::load(&file, &Registry::with_builtins()) else {
            panic!("`{path}` must be rejected");
        };
        let err = err.to_string();
        assert!(err.contains("out.yaml:4:"), "names file and line: {err}");
        assert!(err.contains("gen"), "names the stage: {err}");
        assert!(err.contains("outputs.x"), "names the key: {err}");
        assert!(err.contains(problem), "`{path}`: {err}");
        assert!(
            err.contains("relative to $SLAYER_OUT"),
            "says what is expected: {err}"
        );
    }
}
