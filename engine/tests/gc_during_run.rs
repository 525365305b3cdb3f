//! `slayer gc` of one manifest while a run of another is in flight: gc must leave alone
//! every result the run has read or published (its lease), or the running downstream
//! stage reads deleted files and its result is lost or wrong.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Workspace, fingerprint, ran, run_with};
use slayer_cache::Store;

const X: &str = r#"
name: x
stages:
  up:
    kind: command
    with: {run: "echo upstream-bytes > $SLAYER_OUT/text.txt", outputs: {text: text.txt}}
  down:
    kind: command
    inputs: {text: up.text}
    with:
      run: "touch started; while [ ! -f go ]; do sleep 0.02; done; cp $SLAYER_IN_TEXT $SLAYER_OUT/copy.txt"
      outputs: {copy: copy.txt}
"#;

/// Waits (bounded) until `path` exists.
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn gc_of_another_manifest_keeps_what_a_running_pipeline_uses() {
    let w = Workspace::new("x.yaml", X);
    let ws = w.path();
    let pipeline = w.pipeline();
    let run_store = w.store();

    let results = std::thread::scope(|scope| {
        let run = scope.spawn(|| run_with(&pipeline, &run_store));
        // `up` is published and `down` is running: collect with a keep-set (another
        // manifest's) that has none of x's fingerprints, as a second process would.
        wait_for(&ws.join("started"));
        let gc_store = Store::open(ws).expect("open store for gc");
        gc_store.gc(&BTreeSet::new()).expect("gc");
        std::fs::write(ws.join("go"), "").expect("release down");
        run.join().expect("run thread")
    });

    for stage in ["up", "down"] {
        assert!(ran(&results, stage), "{results:?}");
    }
    let (up_fp, down_fp) = (fingerprint(&results, "up"), fingerprint(&results, "down"));

    let store = Store::open(ws).expect("reopen");
    let up = store
        .record(&up_fp)
        .expect("read up")
        .expect("up's record survived gc");
    let up_text = store.output_path(&up, "text").expect("up's output");
    assert_eq!(
        std::fs::read_to_string(&up_text).expect("up's output file"),
        "upstream-bytes\n"
    );
    let down = store
        .record(&down_fp)
        .expect("read down")
        .expect("down's record");
    let copy = store.output_path(&down, "copy").expect("down's output");
    assert_eq!(
        std::fs::read_to_string(copy).expect("down's output file"),
        "upstream-bytes\n"
    );
    assert!(
        store.verify().expect("verify").is_clean(),
        "objects of up were removed"
    );

    // The run has ended, so its lease is released: the same gc now collects both.
    let report = store.gc(&BTreeSet::new()).expect("gc after the run");
    assert_eq!(report.records_removed, 2, "{report:?}");
    assert!(store.record(&up_fp).expect("read up").is_none());
}
