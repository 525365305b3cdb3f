//! Integration tests of the `.slayer/` store: hashing, the stat cache, publish, output
//! checks, gc, verify and locks. Each test gets a fresh temp workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use slayer_cache::{CacheError, ContentHash, OutputState, RunRecord, Store};
use tempfile::TempDir;

fn workspace() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

fn write(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

/// Sets a file's mtime an hour back, so the stat cache may trust it at once (a freshly
/// written file is "racy" and re-read until its mtime is safely in the past).
fn age(path: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    let f = fs::File::open(path).expect("open");
    f.set_modified(past).expect("set mtime");
}

fn age_tree(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            age_tree(&path);
        } else {
            age(&path);
        }
    }
}

#[cfg(unix)]
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
}

#[cfg(not(unix))]
fn make_writable(path: &Path) {
    let mut p = fs::metadata(path).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    p.set_readonly(false);
    fs::set_permissions(path, p).expect("chmod");
}

fn record(fingerprint: &str) -> RunRecord {
    RunRecord {
        manifest: None,
        fingerprint: fingerprint.to_string(),
        stage: "expand[layout=(2+1)x8|16]".to_string(),
        kind: "expand".to_string(),
        stage_version: 1,
        params: serde_json::json!({"layout": "(2+1)x8|16"}),
        inputs: BTreeMap::new(),
        env: BTreeMap::new(),
        outputs: BTreeMap::new(),
        metrics: serde_json::json!({"loss": 1.5}),
        started_at: slayer_cache::now_rfc3339(),
        finished_at: slayer_cache::now_rfc3339(),
        duration_s: 0.5,
        host: "test".to_string(),
        slayer_version: "0.1.0".to_string(),
        git_revision: None,
        log: None,
        job: Default::default(),
        usage: Default::default(),
    }
}

fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Stages a model file and a shards dir (two identical shards) for `fingerprint`.
fn stage_attempt(store: &Store, fingerprint: &str, model: &[u8]) -> PathBuf {
    let staging = store.staging_dir(fingerprint).expect("staging");
    write(&staging.join("model.bin"), model);
    write(&staging.join("shards/0.parquet"), b"same shard bytes");
    write(&staging.join("shards/1.parquet"), b"same shard bytes");
    write(&staging.join("shards/meta/info.json"), b"{\"n\": 2}");
    age_tree(&staging);
    staging
}

fn publish_default(store: &Store, fingerprint: &str, model: &[u8]) -> RunRecord {
    let staging = stage_attempt(store, fingerprint, model);
    let outs = outputs(&[("model", "model.bin"), ("shards", "shards")]);
    store
        .publish(&staging, &outs, record(fingerprint))
        .expect("publish")
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            n += count_files(&path);
        } else {
            n += 1;
        }
    }
    n
}

// ---------------------------------------------------------------- hashing

#[test]
fn file_hash_is_blake3_of_content() {
    let (ws, store) = workspace();
    let f = ws.path().join("a.txt");
    write(&f, b"hello");
    let h = store.hash_path(&f).expect("hash");
    assert_eq!(h.0, blake3::hash(b"hello").to_hex().to_string());
    assert_eq!(h.short().len(), 12);
    assert_eq!(format!("{h}"), h.0);
    write(&f, b"hellp");
    assert_ne!(store.hash_path(&f).expect("hash"), h);
}

#[test]
fn large_file_hash_matches_single_threaded_blake3() {
    let (ws, store) = workspace();
    let f = ws.path().join("big.bin");
    let data: Vec<u8> = (0..9_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&f, &data);
    assert_eq!(
        store.hash_path(&f).expect("hash").0,
        blake3::hash(&data).to_hex().to_string()
    );
}

#[test]
fn dir_hash_ignores_location_and_mtime_but_not_names_or_content() {
    let (ws, store) = workspace();
    let make = |root: &Path| {
        write(&root.join("a.txt"), b"alpha");
        write(&root.join("sub/b.txt"), b"beta");
        fs::create_dir_all(root.join("empty")).expect("mkdir");
    };
    let (one, two) = (ws.path().join("one"), ws.path().join("deep/er/two"));
    make(&one);
    make(&two);
    let h1 = store.hash_path(&one).expect("hash");
    assert_eq!(
        h1,
        store.hash_path(&two).expect("hash"),
        "same content, other place"
    );

    age(&two.join("a.txt"));
    assert_eq!(
        h1,
        store.hash_path(&two).expect("hash"),
        "mtime must not count"
    );

    fs::rename(two.join("sub/b.txt"), two.join("sub/c.txt")).expect("rename");
    let renamed = store.hash_path(&two).expect("hash");
    assert_ne!(h1, renamed, "renaming a file changes the dir hash");

    fs::remove_dir(one.join("empty")).expect("rmdir");
    assert_ne!(h1, store.hash_path(&one).expect("hash"), "empty dirs count");
}

#[test]
fn dir_hash_sees_content_changes_and_differs_from_file_hash() {
    let (ws, store) = workspace();
    let d = ws.path().join("d");
    write(&d.join("x"), b"1");
    let before = store.hash_path(&d).expect("hash");
    write(&d.join("x"), b"2");
    assert_ne!(before, store.hash_path(&d).expect("hash"));
    assert_ne!(before, store.hash_path(&d.join("x")).expect("hash"));
}

#[cfg(unix)]
#[test]
fn dir_hash_counts_the_executable_bit() {
    use std::os::unix::fs::PermissionsExt;
    let (ws, store) = workspace();
    let d = ws.path().join("d");
    write(&d.join("run.sh"), b"#!/bin/sh\n");
    let plain = store.hash_path(&d).expect("hash");
    fs::set_permissions(d.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_ne!(plain, store.hash_path(&d).expect("hash"));
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed_and_loops_reported() {
    use std::os::unix::fs::symlink;
    let (ws, store) = workspace();
    let real = ws.path().join("real");
    write(&real.join("f"), b"data");
    write(&real.join("sub/g"), b"more");
    let linked = ws.path().join("linked");
    fs::create_dir_all(&linked).expect("mkdir");
    symlink(real.join("f"), linked.join("f")).expect("symlink");
    symlink(real.join("sub"), linked.join("sub")).expect("symlink");
    assert_eq!(
        store.hash_path(&real).expect("hash"),
        store.hash_path(&linked).expect("hash")
    );

    symlink(&real, real.join("sub/loop")).expect("symlink");
    let err = store.hash_path(&real).expect_err("loop");
    assert!(matches!(err, CacheError::SymlinkLoop { .. }), "{err}");
}

#[test]
fn missing_path_error_names_it() {
    let (ws, store) = workspace();
    let missing = ws.path().join("nope.bin");
    let err = store.hash_path(&missing).expect_err("missing");
    assert!(matches!(err, CacheError::NotFound { .. }));
    assert!(err.to_string().contains("nope.bin"), "{err}");
}

#[test]
fn hash_set_is_order_free_and_label_sensitive() {
    let (ws, store) = workspace();
    let (a, b) = (ws.path().join("a"), ws.path().join("b"));
    write(&a, b"A");
    write(&b, b"B");
    let ab = store
        .hash_set(&[("a".into(), a.clone()), ("b".into(), b.clone())])
        .expect("hash");
    let ba = store
        .hash_set(&[("b".into(), b.clone()), ("a".into(), a.clone())])
        .expect("hash");
    assert_eq!(ab, ba);
    let swapped = store
        .hash_set(&[("a".into(), b.clone()), ("b".into(), a.clone())])
        .expect("hash");
    assert_ne!(ab, swapped);
}

// ---------------------------------------------------------------- stat cache

#[test]
fn stat_cache_hit_reads_nothing() {
    let (ws, store) = workspace();
    let d = ws.path().join("data");
    for i in 0..5 {
        write(&d.join(format!("{i}.txt")), format!("file {i}").as_bytes());
    }
    age_tree(&d);
    let h = store.hash_path(&d).expect("hash");
    assert_eq!(store.files_hashed(), 5);
    assert_eq!(store.hash_path(&d).expect("hash"), h);
    assert_eq!(
        store.files_hashed(),
        5,
        "unchanged files must not be read again"
    );

    // Same size, new content, new mtime: only that file is read.
    write(&d.join("3.txt"), b"file X");
    let h2 = store.hash_path(&d).expect("hash");
    assert_ne!(h, h2);
    assert_eq!(store.files_hashed(), 6);

    // Persisted: a new Store (another process) reads nothing for aged files.
    age(&d.join("3.txt"));
    store.hash_path(&d).expect("hash");
    store.save_stat_cache().expect("save");
    let again = Store::open(ws.path()).expect("open");
    assert_eq!(again.hash_path(&d).expect("hash"), h2);
    assert_eq!(again.files_hashed(), 0);
}

#[test]
fn freshly_written_file_is_reread_until_its_mtime_is_safely_past() {
    let (ws, store) = workspace();
    let f = ws.path().join("fresh");
    write(&f, b"now");
    store.hash_path(&f).expect("hash");
    store.hash_path(&f).expect("hash");
    assert_eq!(store.files_hashed(), 2, "a racy entry must not be trusted");
}

#[test]
fn stat_caches_of_two_processes_merge_on_save() {
    let (ws, _store) = workspace();
    let (a, b) = (ws.path().join("a"), ws.path().join("b"));
    write(&a, b"A");
    write(&b, b"B");
    age(&a);
    age(&b);
    let s1 = Store::open(ws.path()).expect("open");
    let s2 = Store::open(ws.path()).expect("open");
    s1.hash_path(&a).expect("hash");
    s2.hash_path(&b).expect("hash");
    s1.save_stat_cache().expect("save");
    s2.save_stat_cache().expect("save");
    let s3 = Store::open(ws.path()).expect("open");
    s3.hash_path(&a).expect("hash");
    s3.hash_path(&b).expect("hash");
    assert_eq!(s3.files_hashed(), 0, "both entries survive the second save");
}

#[test]
fn stat_cache_of_a_thousand_files_loads_and_checks_fast() {
    let (ws, store) = workspace();
    let d = ws.path().join("many");
    for i in 0..1000 {
        write(
            &d.join(format!("s{}/f{i}", i % 200)),
            format!("{i}").as_bytes(),
        );
    }
    age_tree(&d);
    let h = store.hash_path(&d).expect("hash");
    store.save_stat_cache().expect("save");
    // Best of three: the first open also warms the page cache.
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            let s = Store::open(ws.path()).expect("open");
            assert_eq!(s.hash_path(&d).expect("hash"), h);
            assert_eq!(s.files_hashed(), 0);
            let elapsed = t.elapsed();
            std::mem::forget(s); // nothing to save; keep Drop out of the timing
            elapsed
        })
        .min()
        .expect("three runs");
    // Generous bound for unoptimised test builds; release is a few ms.
    assert!(
        best < Duration::from_millis(100),
        "open + check took {best:?}"
    );
}

// ---------------------------------------------------------------- publish

#[test]
fn publish_commits_record_and_identical_out_dir() {
    let (_ws, store) = workspace();
    let scratch = store.scratch_dir("fp1").expect("scratch");
    write(&scratch.join("ckpt"), b"step 10");
    let staging = stage_attempt(&store, "fp1", b"weights");
    let model_hash = store.hash_path(&staging.join("model.bin")).expect("hash");
    let shards_hash = store.hash_path(&staging.join("shards")).expect("hash");

    let outs = outputs(&[("model", "model.bin"), ("shards", "./shards")]);
    let rec = store
        .publish(&staging, &outs, record("fp1"))
        .expect("publish");

    assert_eq!(store.record("fp1").expect("read"), Some(rec.clone()));
    assert_eq!(store.records().expect("records").len(), 1);
    let model = &rec.outputs["model"];
    assert_eq!(
        (model.hash.clone(), model.bytes, model.files),
        (model_hash, 7, 1)
    );
    let shards = &rec.outputs["shards"];
    assert_eq!(shards.path, "shards");
    assert_eq!(shards.hash, shards_hash);
    assert_eq!(shards.files, 3);

    let out_model = store.output_path(&rec, "model").expect("path");
    assert_eq!(fs::read(&out_model).expect("read"), b"weights");
    let out_shards = store.output_path(&rec, "shards").expect("path");
    assert_eq!(store.hash_path(&out_shards).expect("hash"), shards_hash);
    assert!(store.output_path(&rec, "nope").is_none());

    assert!(!staging.exists(), "staging dir removed");
    assert!(!scratch.exists(), "scratch dir removed on success");
    assert_eq!(
        store.check_outputs(&rec).expect("check"),
        OutputState::Intact
    );
}

#[test]
fn identical_files_are_stored_once() {
    let (_ws, store) = workspace();
    let rec = publish_default(&store, "fpa", b"weights");
    let objects = store.root().join("cache/objects");
    // model.bin, one shard object for two identical shards, info.json.
    assert_eq!(count_files(&objects), 3);
    let rec_b = publish_default(&store, "fpb", b"weights");
    assert_eq!(
        count_files(&objects),
        3,
        "a second identical run adds no objects"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: PathBuf| fs::metadata(p).expect("stat").ino();
        let dir_a = store.output_dir(&rec.fingerprint);
        let dir_b = store.output_dir(&rec_b.fingerprint);
        assert_eq!(
            ino(dir_a.join("shards/0.parquet")),
            ino(dir_a.join("shards/1.parquet"))
        );
        assert_eq!(ino(dir_a.join("model.bin")), ino(dir_b.join("model.bin")));
        let mode = fs::metadata(dir_a.join("model.bin")).expect("stat").mode();
        assert_eq!(mode & 0o222, 0, "objects are read-only");
    }
}

#[test]
fn missing_output_fails_naming_it_and_commits_nothing() {
    let (_ws, store) = workspace();
    let staging = store.staging_dir("fpm").expect("staging");
    write(&staging.join("a"), b"a");
    let outs = outputs(&[("a", "a"), ("tokenizer", "tok/tokenizer.json")]);
    let err = store
        .publish(&staging, &outs, record("fpm"))
        .expect_err("missing");
    match &err {
        CacheError::OutputMissing { output, path } => {
            assert_eq!(output, "tokenizer");
            assert!(path.ends_with("tok/tokenizer.json"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("`tokenizer`"), "{err}");
    assert_eq!(store.record("fpm").expect("read"), None);
    assert!(!store.output_dir("fpm").exists());
}

#[test]
fn escaping_output_path_is_rejected() {
    let (_ws, store) = workspace();
    let staging = store.staging_dir("fpe").expect("staging");
    let err = store
        .publish(&staging, &outputs(&[("x", "../../etc")]), record("fpe"))
        .expect_err("escape");
    assert!(matches!(err, CacheError::InvalidOutputPath { .. }), "{err}");
}

#[test]
fn staging_without_publish_leaves_no_record() {
    let (_ws, store) = workspace();
    let staging = store.staging_dir("fpk").expect("staging");
    write(&staging.join("model.bin"), b"half written");
    // The attempt dies here.
    assert_eq!(store.record("fpk").expect("read"), None);
    assert!(store.records().expect("records").is_empty());
    assert!(!store.output_dir("fpk").exists());
    let report = store.gc(&BTreeSet::from(["fpk".to_string()])).expect("gc");
    assert_eq!(report.records_removed, 0);
    assert!(
        !staging.exists(),
        "gc removes temp dirs of attempts not running"
    );
}

#[test]
fn staging_dirs_are_fresh_and_dead_attempts_are_cleaned() {
    let (_ws, store) = workspace();
    let a = store.staging_dir("fps").expect("staging");
    let b = store.staging_dir("fps").expect("staging");
    assert_ne!(a, b);
    assert_eq!(fs::read_dir(&a).expect("list").count(), 0);
    // pid 999999999 exceeds Linux's pid_max: certainly dead.
    let dead = store.root().join("tmp/fps-999999999-0");
    write(&dead.join("junk"), b"x");
    store.staging_dir("fps").expect("staging");
    if cfg!(target_os = "linux") {
        assert!(!dead.exists(), "leftover of a dead process removed");
    }
    assert!(a.exists() && b.exists(), "live attempts untouched");
}

#[test]
fn republish_replaces_result_and_stale_out_dir() {
    let (_ws, store) = workspace();
    // An out dir without a record: a publish killed before its commit point.
    let garbage = store.output_dir("fpr").join("stale.txt");
    write(&garbage, b"junk");
    let first = publish_default(&store, "fpr", b"v1");
    assert!(!garbage.exists(), "uncommitted out dir replaced");
    let second = publish_default(&store, "fpr", b"v2");
    assert_ne!(first.outputs["model"].hash, second.outputs["model"].hash);
    assert_eq!(store.record("fpr").expect("read"), Some(second.clone()));
    let model = store.output_path(&second, "model").expect("path");
    assert_eq!(fs::read(model).expect("read"), b"v2");
    assert_eq!(
        store.check_outputs(&second).expect("check"),
        OutputState::Intact
    );
}

#[cfg(unix)]
#[test]
fn published_symlinked_output_copies_and_leaves_the_target_alone() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let (ws, store) = workspace();
    let input = ws.path().join("input.txt");
    write(&input, b"user data");
    let staging = store.staging_dir("fpl").expect("staging");
    symlink(&input, staging.join("copy.txt")).expect("symlink");
    let rec = store
        .publish(&staging, &outputs(&[("copy", "copy.txt")]), record("fpl"))
        .expect("publish");
    assert!(
        input.exists(),
        "the symlink target must not be moved into the store"
    );
    let mode = fs::metadata(&input).expect("stat").permissions().mode();
    assert_ne!(mode & 0o200, 0, "nor made read-only");
    let out = store.output_path(&rec, "copy").expect("path");
    assert_eq!(fs::read(out).expect("read"), b"user data");
}

// ---------------------------------------------------------------- check_outputs

#[test]
fn intact_check_reads_nothing() {
    let (_ws, store) = workspace();
    let rec = publish_default(&store, "fpi", b"weights");
    let before = store.files_hashed();
    assert_eq!(
        store.check_outputs(&rec).expect("check"),
        OutputState::Intact
    );
    assert_eq!(
        store.files_hashed(),
        before,
        "intact outputs are checked by stat only"
    );
}

#[test]
fn modified_output_is_detected_even_through_the_hard_link() {
    let (_ws, store) = workspace();
    let rec = publish_default(&store, "fpx", b"weights");
    let model = store.output_path(&rec, "model").expect("path");
    make_writable(&model);
    fs::write(&model, b"WEIGHTS").expect("edit in place"); // same size
    match store.check_outputs(&rec).expect("check") {
        OutputState::Modified {
            output,
            path,
            old,
            new,
        } => {
            assert_eq!(output, "model");
            assert_eq!(path, model);
            assert_eq!(old, rec.outputs["model"].hash);
            assert_eq!(new, ContentHash::of_bytes(b"WEIGHTS"));
        }
        other => panic!("expected Modified, got {other:?}"),
    }
}

#[test]
fn modified_file_inside_dir_output_is_detected() {
    let (_ws, store) = workspace();
    let rec = publish_default(&store, "fpd", b"weights");
    let info = store.output_dir("fpd").join("shards/meta/info.json");
    make_writable(&info);
    fs::write(&info, b"{\"n\": 3}").expect("edit");
    assert!(matches!(
        store.check_outputs(&rec).expect("check"),
        OutputState::Modified { ref output, .. } if output == "shards"
    ));
}

#[test]
fn deleted_output_is_missing() {
    let (_ws, store) = workspace();
    let rec = publish_default(&store, "fpg", b"weights");
    let model = store.output_path(&rec, "model").expect("path");
    fs::remove_file(&model).expect("rm");
    assert_eq!(
        store.check_outputs(&rec).expect("check"),
        OutputState::Missing {
            output: "model".into(),
            path: model
        }
    );
}

// ---------------------------------------------------------------- gc and verify

#[test]
fn gc_removes_unreachable_and_reports_freed_bytes() {
    let (_ws, store) = workspace();
    let keep = publish_default(&store, "keep", b"kept weights");
    let big = vec![7u8; 100_000];
    let drop = publish_default(&store, "drop", &big);
    store.scratch_dir("drop").expect("scratch");
    write(&store.log_path("drop"), b"log");

    let report = store.gc(&BTreeSet::from(["keep".to_string()])).expect("gc");
    assert_eq!(report.records_removed, 1);
    assert_eq!(report.objects_removed, 1, "only drop's model is unshared");
    assert!(report.bytes_freed >= 100_000, "{report:?}");
    assert!(
        report.bytes_freed < 101_000,
        "shared objects free nothing: {report:?}"
    );

    assert_eq!(store.record("drop").expect("read"), None);
    assert!(!store.output_dir("drop").exists());
    assert!(!store.log_path("drop").exists());
    assert!(!store.root().join("scratch/drop").exists());
    assert_eq!(
        store.check_outputs(&keep).expect("check"),
        OutputState::Intact
    );
    assert_eq!(
        store.check_outputs(&drop).expect("check"),
        OutputState::Missing {
            output: "model".into(),
            path: store.output_dir("drop").join("model.bin"),
        }
    );

    let again = store.gc(&BTreeSet::from(["keep".to_string()])).expect("gc");
    assert_eq!(again, Default::default(), "gc is idempotent");
}

#[test]
fn gc_spares_running_stages() {
    let (_ws, store) = workspace();
    publish_default(&store, "busy", b"w");
    let (lock, _) = store.lock_stage("busy").expect("lock");
    let staging = store.staging_dir("busy").expect("staging");
    let report = store.gc(&BTreeSet::new()).expect("gc");
    assert_eq!(report.records_removed, 0);
    assert!(staging.exists());
    assert!(store.record("busy").expect("read").is_some());
    drop(lock);
    let report = store.gc(&BTreeSet::new()).expect("gc");
    assert_eq!(report.records_removed, 1);
    assert!(!staging.exists());
}

#[test]
fn verify_finds_corrupted_object() {
    let (_ws, store) = workspace();
    let rec = publish_default(&store, "fpv", b"weights");
    let clean = store.verify().expect("verify");
    assert_eq!(clean.objects_checked, 3);
    assert!(clean.is_clean(), "{clean:?}");

    let model = store.output_path(&rec, "model").expect("path");
    let object = store
        .root()
        .join("cache/objects")
        .join(&rec.outputs["model"].hash.0[..2])
        .join(&rec.outputs["model"].hash.0[2..]);
    assert!(object.exists());
    make_writable(&model);
    fs::write(&model, b"bitrot!").expect("corrupt");
    let report = store.verify().expect("verify");
    assert_eq!(report.corrupted.len(), 1, "{report:?}");
    let (path, expected, actual) = &report.corrupted[0];
    assert_eq!(path, &object);
    assert_eq!(expected, &rec.outputs["model"].hash);
    assert_eq!(actual, &ContentHash::of_bytes(b"bitrot!"));
    assert_eq!(
        report.records_with_modified_outputs,
        vec!["fpv".to_string()]
    );

    fs::remove_file(&model).expect("rm");
    let report = store.verify().expect("verify");
    assert_eq!(report.records_with_missing_outputs, vec!["fpv".to_string()]);
}

#[test]
fn publish_after_corruption_does_not_reuse_the_bad_object() {
    let (_ws, store) = workspace();
    let rec = publish_default(&store, "c1", b"weights");
    let model = store.output_path(&rec, "model").expect("path");
    make_writable(&model);
    fs::write(&model, b"WEIGHTS").expect("corrupt");
    let rec2 = publish_default(&store, "c2", b"weights");
    let model2 = store.output_path(&rec2, "model").expect("path");
    assert_eq!(fs::read(model2).expect("read"), b"weights");
    assert_eq!(
        store.check_outputs(&rec2).expect("check"),
        OutputState::Intact
    );
}

// ---------------------------------------------------------------- concurrency

#[test]
fn two_lockers_of_one_fingerprint_serialize() {
    let (_ws, store) = workspace();
    let store = Arc::new(store);
    let (first, waited) = store.lock_stage("fpz").expect("lock");
    assert!(!waited);
    let (tx, rx) = mpsc::channel();
    let s = Arc::clone(&store);
    let t = thread::spawn(move || {
        let start = Instant::now();
        let (_second, waited) = s.lock_stage("fpz").expect("lock");
        tx.send((waited, start.elapsed())).expect("send");
    });
    thread::sleep(Duration::from_millis(300));
    assert!(
        rx.try_recv().is_err(),
        "second locker must still be waiting"
    );
    // Another fingerprint is independent.
    let (_other, waited_other) = store.lock_stage("fpy").expect("lock");
    assert!(!waited_other);
    drop(first);
    let (waited, elapsed) = rx.recv().expect("recv");
    t.join().expect("join");
    assert!(waited);
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(store.try_lock_stage("fpz").expect("try").is_some());
}

#[test]
fn concurrent_publish_of_one_fingerprint_ends_with_one_valid_record() {
    let (_ws, store) = workspace();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [b"first".as_slice(), b"other"]
        .into_iter()
        .map(|content| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            thread::spawn(move || {
                let staging = stage_attempt(&store, "same", content);
                barrier.wait();
                let outs = outputs(&[("model", "model.bin"), ("shards", "shards")]);
                store.publish(&staging, &outs, record("same"))
            })
        })
        .collect();
    for h in handles {
        h.join().expect("join").expect("publish");
    }
    let rec = store.record("same").expect("read").expect("a record");
    assert_eq!(
        store.check_outputs(&rec).expect("check"),
        OutputState::Intact
    );
    let model = fs::read(store.output_path(&rec, "model").expect("path")).expect("read");
    assert!(model == b"first" || model == b"other");
    assert_eq!(rec.outputs["model"].hash, ContentHash::of_bytes(&model));
    let leftovers: Vec<_> = fs::read_dir(store.root().join("out"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("same")]);
    assert!(store.verify().expect("verify").is_clean());
}

/// Regression: right after a run, the first no-op check re-read every output written
/// within the stat cache's racy window (5 s for the quickstart's models).
#[test]
fn first_check_right_after_publish_reads_nothing() {
    let (_dir, store) = workspace();
    // Written just now, as a stage does right before it returns (no ageing).
    let staging = store.staging_dir("fresh").expect("staging");
    write(&staging.join("model.bin"), b"weights");
    write(&staging.join("shards/0.parquet"), b"shard");
    let outs = outputs(&[("model", "model.bin"), ("shards", "shards")]);
    let rec = store
        .publish(&staging, &outs, record("fresh"))
        .expect("publish");
    let before = store.files_hashed();
    assert!(matches!(
        store.check_outputs(&rec).unwrap(),
        OutputState::Intact
    ));
    assert_eq!(store.files_hashed(), before, "a fresh result was re-read");
}

#[test]
fn a_waiting_locker_is_told_who_holds_the_lock() {
    let (_ws, store) = workspace();
    let store = Arc::new(store);
    let (first, _) = store.lock_stage("fph").expect("lock");
    let (tx, rx) = mpsc::channel();
    let s = Arc::clone(&store);
    let t = thread::spawn(move || {
        let mut told = None;
        let (_second, waited) = s
            .lock_stage_reporting("fph", &mut |holder| {
                told = Some(holder.clone());
                tx.send(holder).expect("send");
            })
            .expect("lock");
        (waited, told)
    });
    let holder = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("told before waiting")
        .expect("the lock file names its holder");
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.host, slayer_cache::host_name());
    assert!(
        holder.since.ends_with('Z') && holder.since.len() == 20,
        "{holder}"
    );
    assert!(
        holder
            .to_string()
            .starts_with(&format!("pid {} on ", holder.pid))
    );
    drop(first);
    let (waited, told) = t.join().expect("join");
    assert!(waited);
    assert_eq!(told, Some(Some(holder)));
    // Nobody holds it now: no report.
    let mut reported = false;
    let (_third, waited) = store
        .lock_stage_reporting("fpi", &mut |_| reported = true)
        .expect("lock");
    assert!(!waited && !reported);
}
