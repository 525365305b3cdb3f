//! Timing checks, ignored by default (they write a 1 GB file). Run with
//! `cargo test --release -p slayer-cache --test perf -- --ignored --nocapture`.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use slayer_cache::Store;

/// Best of `n` runs of `f`.
fn best<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let mut fastest = Duration::MAX;
    for _ in 0..n {
        let t = Instant::now();
        let v = f();
        fastest = fastest.min(t.elapsed());
        out = Some(v);
    }
    (fastest, out.expect("n > 0"))
}

#[test]
#[ignore = "writes 1 GB; a benchmark"]
fn one_gigabyte_file_hashes_faster_than_single_threaded_blake3() {
    let ws = tempfile::tempdir().expect("temp dir");
    let path = ws.path().join("big.bin");
    let mut f = fs::File::create(&path).expect("create");
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    for i in 0..1024u32 {
        let mut c = chunk.clone();
        c[..4].copy_from_slice(&i.to_le_bytes());
        f.write_all(&c).expect("write");
    }
    drop(f);

    let (single, expected) = best(3, || {
        let mut h = blake3::Hasher::new();
        h.update_reader(fs::File::open(&path).expect("open"))
            .expect("read");
        h.finalize().to_hex().to_string()
    });
    let (parallel, got) = best(3, || {
        // A fresh store each time: no stat-cache hit, the file is really read.
        let s = Store::open(ws.path()).expect("open");
        let h = s.hash_path(&path).expect("hash");
        assert_eq!(s.files_hashed(), 1);
        std::mem::forget(s);
        h
    });
    eprintln!("1 GiB: single-threaded blake3 {single:?}, Store::hash_path {parallel:?}");
    assert_eq!(got.0, expected);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        assert!(
            parallel < single,
            "{parallel:?} vs {single:?} on {cores} cores"
        );
    }
}

#[test]
#[ignore = "a benchmark"]
fn stat_cache_load_and_check_time() {
    let ws = tempfile::tempdir().expect("temp dir");
    let d = ws.path().join("stages");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    // 200 stages x 5 files.
    for i in 0..1000 {
        let p = d.join(format!("s{}/f{i}", i % 200));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, format!("{i}")).expect("write");
        fs::File::open(&p)
            .expect("open")
            .set_modified(old)
            .expect("mtime");
    }
    let store = Store::open(ws.path()).expect("open");
    let h = store.hash_path(&d).expect("hash");
    store.save_stat_cache().expect("save");
    drop(store);
    let (open, _) = best(5, || {
        let s = Store::open(ws.path()).expect("open");
        std::mem::forget(s);
    });
    let (open_check, _) = best(5, || {
        let s = Store::open(ws.path()).expect("open");
        assert_eq!(s.hash_path(&d).expect("hash"), h);
        assert_eq!(s.files_hashed(), 0);
        std::mem::forget(s);
    });
    eprintln!("1000-entry stat cache: open {open:?}, open + check {open_check:?}");
    assert!(open_check < Duration::from_millis(10), "{open_check:?}");
}
