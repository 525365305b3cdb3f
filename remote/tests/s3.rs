//! The S3 remote cache against a real (moto) S3 server: round trips, idempotent pushes,
//! damaged objects, metrics-only pulls, concurrent pushes and multipart uploads.

mod common;

use std::fs;

use common::{Moto, MotoRemote, publish, put_raw, snapshot};
use slayer_cache::{OutputState, RemoteCache, Store, Transfer};
use slayer_remote::{S3Error, S3Options};

fn small_parts() -> S3Options {
    S3Options {
        multipart_threshold: 6 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..S3Options::default()
    }
}

#[test]
fn push_then_pull_into_a_fresh_store_gives_identical_outputs_and_record() {
    let moto = Moto::start();
    let remote = moto.remote("team/cache", S3Options::default());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (
        Store::open(a.path()).unwrap(),
        Store::open(b.path()).unwrap(),
    );
    let record = publish(&src, "fp-round", 0);

    assert!(!remote.contains("fp-round").unwrap());
    assert!(remote.pull(&dst, "fp-round").unwrap().is_none());
    let pushed = remote.push_counted(&src, &record).unwrap();
    // weights.bin, config.json (= copy.json), run.sh, metrics.json.
    assert_eq!((pushed.objects, pushed.skipped), (4, 0), "{pushed:?}");
    assert_eq!(pushed.bytes, 300_000 + 14 + 18 + 21);
    assert!(remote.contains("fp-round").unwrap());

    let (pulled, moved) = remote.pull_counted(&dst, "fp-round").unwrap().unwrap();
    assert_eq!(pulled, record);
    assert_eq!(dst.record("fp-round").unwrap(), Some(record.clone()));
    assert_eq!(moved.objects, 4);
    assert_eq!(moved.bytes, pushed.bytes);
    assert_eq!(dst.check_outputs(&pulled).unwrap(), OutputState::Intact);
    let (from, to) = (src.output_dir("fp-round"), dst.output_dir("fp-round"));
    let snap = snapshot(&to);
    assert_eq!(snapshot(&from), snap);
    assert!(snap.iter().any(|(p, _, _)| p == "model/empty/"), "{snap:?}");
    assert!(snap.iter().any(|(p, _, exec)| p == "model/run.sh" && *exec));
    // Nothing left behind in the store's temp dir.
    assert_eq!(fs::read_dir(dst.root().join("tmp")).unwrap().count(), 0);

    // Pushing again uploads nothing; pulling again downloads nothing.
    let again = remote.push_counted(&src, &record).unwrap();
    assert_eq!(
        again,
        Transfer {
            objects: 0,
            skipped: 4,
            bytes: 0
        }
    );
    let (_, moved) = remote.pull_counted(&dst, "fp-round").unwrap().unwrap();
    assert_eq!(moved, Transfer::default());
}

#[test]
fn a_pull_reuses_objects_the_store_already_has() {
    let moto = Moto::start();
    let remote = moto.remote("p", S3Options::default());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (
        Store::open(a.path()).unwrap(),
        Store::open(b.path()).unwrap(),
    );
    let record = publish(&src, "fp-one", 0);
    remote.push(&src, &record).unwrap();
    // Same files published under another fingerprint in the destination.
    publish(&dst, "fp-other", 0);
    let (_, moved) = remote.pull_counted(&dst, "fp-one").unwrap().unwrap();
    assert_eq!(
        moved,
        Transfer {
            objects: 0,
            skipped: 4,
            bytes: 0
        }
    );
    assert_eq!(
        snapshot(&src.output_dir("fp-one")),
        snapshot(&dst.output_dir("fp-one"))
    );
}

fn corrupt_object_then_pull(truncate: bool) {
    let moto = Moto::start();
    let remote = moto.remote("p", S3Options::default());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (
        Store::open(a.path()).unwrap(),
        Store::open(b.path()).unwrap(),
    );
    let record = publish(&src, "fp-bad", 0);
    remote.push(&src, &record).unwrap();

    let listing = src.listings(&record).unwrap();
    let weights = listing["model"]
        .files
        .iter()
        .find(|f| f.path == "weights.bin")
        .unwrap()
        .clone();
    let key = remote.object_key(&weights.hash);
    let mut data = fs::read(src.output_dir("fp-bad").join("model/weights.bin")).unwrap();
    if truncate {
        data.truncate(100_000);
    } else {
        data[1234] ^= 0xff; // same length, other bytes
    }
    put_raw(&remote, &key, data);

    let err = remote.pull_result(&dst, "fp-bad").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, S3Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains(&format!("s3://slayer-test/p/objects/{}", weights.hash)),
        "{msg}"
    );
    assert!(msg.contains(weights.hash.as_str()), "{msg}");
    let expected_len = if truncate {
        "100000 bytes"
    } else {
        "300000 bytes hashing"
    };
    assert!(msg.contains(expected_len), "{msg}");
    // Nothing installed, nothing left over.
    assert_eq!(dst.record("fp-bad").unwrap(), None);
    assert!(!dst.output_dir("fp-bad").exists());
    assert_eq!(fs::read_dir(dst.root().join("tmp")).unwrap().count(), 0);
    // Through the trait too (the executor's view): an error, not a missing result.
    assert!(remote.pull(&dst, "fp-bad").is_err());
    // A push repairs a truncated object (wrong size), after which the pull succeeds.
    if truncate {
        remote.push(&src, &record).unwrap();
        assert_eq!(remote.pull(&dst, "fp-bad").unwrap(), Some(record));
    }
}

#[test]
fn an_object_overwritten_in_the_bucket_is_detected_on_pull() {
    corrupt_object_then_pull(false);
}

#[test]
fn a_truncated_object_is_detected_on_pull_and_a_push_repairs_it() {
    corrupt_object_then_pull(true);
}

#[test]
fn a_metrics_only_pull_reads_no_object_and_is_not_a_cached_result() {
    let moto = Moto::start();
    let remote = moto.remote("m", S3Options::default());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (
        Store::open(a.path()).unwrap(),
        Store::open(b.path()).unwrap(),
    );
    let record = publish(&src, "fp-metrics", 0);
    remote.push(&src, &record).unwrap();
    let gets_before = moto
        .requests()
        .matches("\"GET /slayer-test/m/objects/")
        .count();

    let got = remote.pull_record_only(&dst, "fp-metrics").unwrap();
    assert_eq!(got.as_ref(), Some(&record));
    let log = moto.requests();
    assert_eq!(
        log.matches("\"GET /slayer-test/m/objects/").count(),
        gets_before,
        "{log}"
    );
    assert_eq!(
        log.matches("\"GET /slayer-test/m/runs/fp-metrics.json")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        fs::read_dir(dst.root().join("cache/objects"))
            .unwrap()
            .count(),
        0
    );
    // Readable for reports, invisible as a result.
    assert_eq!(dst.record_only("fp-metrics").unwrap(), Some(record.clone()));
    assert_eq!(dst.record("fp-metrics").unwrap(), None);
    assert_eq!(dst.records().unwrap(), vec![]);
    assert_eq!(
        dst.record_for_metrics("fp-metrics").unwrap(),
        Some((record.clone(), true))
    );
    assert_eq!(dst.records_only().unwrap().len(), 1);
    // A later full pull installs the result and drops the metrics-only record.
    remote.pull(&dst, "fp-metrics").unwrap().unwrap();
    assert_eq!(dst.record_only("fp-metrics").unwrap(), None);
    assert_eq!(
        dst.record_for_metrics("fp-metrics").unwrap(),
        Some((record, false))
    );
}

#[test]
fn two_machines_pushing_the_same_result_at_once_both_succeed() {
    let moto = Moto::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let stores: Vec<Store> = dirs
        .iter()
        .map(|d| Store::open(d.path()).unwrap())
        .collect();
    let records: Vec<_> = stores.iter().map(|s| publish(s, "fp-race", 0)).collect();
    assert_eq!(records[0].outputs, records[1].outputs);
    let remotes = [
        moto.remote("r", S3Options::default()),
        moto.remote("r", S3Options::default()),
    ];
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (remote, store, record) = (&remotes[i], &stores[i], &records[i]);
                scope.spawn(move || {
                    remote
                        .push_counted(store, record)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(r.is_ok(), "{results:?}");
    }
    let c = tempfile::tempdir().unwrap();
    let dst = Store::open(c.path()).unwrap();
    let pulled = remotes[0].pull(&dst, "fp-race").unwrap().unwrap();
    assert_eq!(pulled.outputs, records[0].outputs);
    assert_eq!(
        snapshot(&stores[0].output_dir("fp-race")),
        snapshot(&dst.output_dir("fp-race"))
    );
}

#[test]
fn a_file_above_the_multipart_threshold_round_trips_in_parts() {
    let moto = Moto::start();
    let remote = moto.remote("big", small_parts());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (
        Store::open(a.path()).unwrap(),
        Store::open(b.path()).unwrap(),
    );
    let record = publish(&src, "fp-big", 20_000_000);
    let pushed = remote.push_counted(&src, &record).unwrap();
    assert_eq!(pushed.objects, 5);
    let log = moto.requests();
    // One multipart upload of 4 parts (5 MiB, 5 MiB, 5 MiB, the rest).
    assert_eq!(log.matches("?uploads").count(), 1, "{log}");
    assert_eq!(log.matches("partNumber=").count(), 4, "{log}");
    remote.pull(&dst, "fp-big").unwrap().unwrap();
    let big = |s: &Store| fs::read(s.output_dir("fp-big").join("model/big.bin")).unwrap();
    assert!(big(&src) == big(&dst));
    assert_eq!(
        snapshot(&src.output_dir("fp-big")).len(),
        snapshot(&dst.output_dir("fp-big")).len()
    );
}

#[test]
fn a_record_whose_listing_does_not_match_its_outputs_is_refused() {
    let moto = Moto::start();
    let remote = moto.remote("l", S3Options::default());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (
        Store::open(a.path()).unwrap(),
        Store::open(b.path()).unwrap(),
    );
    let record = publish(&src, "fp-list", 0);
    remote.push(&src, &record).unwrap();
    let mut run = remote.fetch_record("fp-list").unwrap().unwrap();
    // A listing that climbs out of the out dir.
    run.listings.get_mut("model").unwrap().files[0].path = "../../evil".into();
    let key = remote.record_key("fp-list");
    put_raw(&remote, &key, serde_json::to_vec(&run).unwrap());
    let msg = remote.pull_result(&dst, "fp-list").unwrap_err().to_string();
    assert!(
        msg.contains("s3://slayer-test/l/runs/fp-list.json"),
        "{msg}"
    );
    assert!(msg.contains("../../evil"), "{msg}");
    assert_eq!(dst.record("fp-list").unwrap(), None);
}
