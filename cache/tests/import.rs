//! The store's side of a remote cache, without a network: listings of a published
//! result, their verification against the record, installing downloaded files as a
//! result, and metrics-only records.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use slayer_cache::{
    CacheError, ContentHash, OutputListing, OutputState, RunRecord, Store, download_path,
    verify_listings,
};

fn record(fingerprint: &str) -> RunRecord {
    RunRecord {
        manifest: None,
        fingerprint: fingerprint.to_string(),
        stage: "s".into(),
        kind: "command".into(),
        stage_version: 1,
        params: serde_json::json!({}),
        inputs: BTreeMap::new(),
        env: BTreeMap::new(),
        outputs: BTreeMap::new(),
        metrics: serde_json::json!({"acc": 0.5}),
        started_at: slayer_cache::now_rfc3339(),
        finished_at: slayer_cache::now_rfc3339(),
        duration_s: 1.0,
        host: "test".into(),
        slayer_version: "0.1.0".into(),
        git_revision: None,
        log: None,
        job: Default::default(),
        usage: Default::default(),
    }
}

/// A result with a directory output (a nested file, an empty dir) and a file output.
fn publish(store: &Store, fp: &str) -> RunRecord {
    let staging = store.staging_dir(fp).unwrap();
    fs::create_dir_all(staging.join("d/sub")).unwrap();
    fs::create_dir_all(staging.join("d/empty")).unwrap();
    fs::write(staging.join("d/sub/a.txt"), b"alpha\n").unwrap();
    fs::write(staging.join("d/b.txt"), b"beta\n").unwrap();
    fs::write(staging.join("m.json"), b"{}\n").unwrap();
    let outputs = BTreeMap::from([
        ("dir".to_string(), "d".to_string()),
        ("metrics".to_string(), "m.json".to_string()),
    ]);
    store.publish(&staging, &outputs, record(fp)).unwrap()
}

/// Copies every listed file of `record` from `from` into a download dir of `to`.
fn stage_downloads(
    from: &Store,
    to: &Store,
    record: &RunRecord,
    listings: &BTreeMap<String, OutputListing>,
) -> std::path::PathBuf {
    let staging = to.download_dir(&record.fingerprint).unwrap();
    for (output, listing) in listings {
        for file in &listing.files {
            let src = from.listed_file_path(record, output, file).unwrap();
            fs::copy(src, download_path(&staging, file)).unwrap();
        }
    }
    staging
}

fn stores() -> (tempfile::TempDir, Store, tempfile::TempDir, Store) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, sb) = (
        Store::open(a.path()).unwrap(),
        Store::open(b.path()).unwrap(),
    );
    (a, sa, b, sb)
}

#[test]
fn listings_describe_a_result_and_install_rebuilds_it_elsewhere() {
    let (_a, src, _b, dst) = stores();
    let record = publish(&src, "fp1");
    let listings = src.listings(&record).unwrap();
    assert!(listings["dir"].dir && !listings["metrics"].dir);
    assert_eq!(listings["dir"].dirs, ["empty", "sub"]);
    let paths: Vec<_> = listings["dir"]
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(paths, ["b.txt", "sub/a.txt"]);
    assert_eq!(listings["metrics"].files[0].path, "");
    verify_listings(&record, &listings).unwrap();

    let staging = stage_downloads(&src, &dst, &record, &listings);
    let installed = dst
        .install_remote(&staging, record.clone(), &listings)
        .unwrap();
    assert_eq!(installed, record);
    assert_eq!(dst.record("fp1").unwrap(), Some(record.clone()));
    assert_eq!(dst.check_outputs(&record).unwrap(), OutputState::Intact);
    assert!(dst.output_dir("fp1").join("d/empty").is_dir());
    assert!(!staging.exists());
    assert!(dst.verify().unwrap().is_clean());
}

#[test]
fn listings_that_do_not_match_their_record_are_refused() {
    let (_a, src, _b, _dst) = stores();
    let record = publish(&src, "fp2");
    let good = src.listings(&record).unwrap();
    let refused = |edit: &dyn Fn(&mut BTreeMap<String, OutputListing>), needle: &str| {
        let mut l = good.clone();
        edit(&mut l);
        let err = verify_listings(&record, &l).unwrap_err();
        assert!(matches!(err, CacheError::InvalidListing { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("fp2") && msg.contains(needle), "{msg}");
    };
    refused(
        &|l| l.get_mut("dir").unwrap().files[0].hash = ContentHash("0".repeat(64)),
        "hash to",
    );
    refused(
        &|l| l.get_mut("dir").unwrap().files[0].hash = ContentHash("../x".into()),
        "../x",
    );
    refused(
        &|l| l.get_mut("dir").unwrap().files[1].path = "../../etc/x".into(),
        "../../etc/x",
    );
    refused(
        &|l| l.get_mut("dir").unwrap().files[1].path = "/abs".into(),
        "/abs",
    );
    refused(&|l| l.get_mut("dir").unwrap().dirs.clear(), "hash to");
    refused(
        &|l| l.get_mut("dir").unwrap().files[0].executable = true,
        "hash to",
    );
    refused(
        &|l| l.get_mut("metrics").unwrap().files[0].bytes += 1,
        "bytes",
    );
    refused(
        &|l| l.get_mut("metrics").unwrap().dir = true,
        "plain relative path",
    );
    refused(&|l| drop(l.remove("metrics")), "no listing");
    refused(
        &|l| drop(l.insert("extra".into(), good["dir"].clone())),
        "no such output",
    );
    let mut dup = good.clone();
    let first = dup["dir"].files[0].clone();
    dup.get_mut("dir").unwrap().files.push(first);
    assert!(
        verify_listings(&record, &dup)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
}

#[test]
fn install_refuses_missing_or_wrong_sized_downloads_and_commits_nothing() {
    let (_a, src, _b, dst) = stores();
    let record = publish(&src, "fp3");
    let listings = src.listings(&record).unwrap();
    let staging = stage_downloads(&src, &dst, &record, &listings);
    let file = &listings["dir"].files[0];
    fs::write(
        download_path(&staging, file),
        b"much longer than the real file",
    )
    .unwrap();
    let err = dst
        .install_remote(&staging, record.clone(), &listings)
        .unwrap_err();
    assert!(err.to_string().contains("bytes, the listing says"), "{err}");
    fs::remove_file(download_path(&staging, file)).unwrap();
    let err = dst
        .install_remote(&staging, record.clone(), &listings)
        .unwrap_err();
    assert!(matches!(err, CacheError::NotFound { .. }), "{err}");
    assert_eq!(dst.record("fp3").unwrap(), None);
}

#[cfg(unix)]
#[test]
fn a_result_edited_after_publishing_has_no_listing() {
    use std::os::unix::fs::PermissionsExt;
    let (_a, src, _b, _dst) = stores();
    let record = publish(&src, "fp4");
    let path = src.output_dir("fp4").join("d/b.txt");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"edited\n").unwrap();
    let err = src.listings(&record).unwrap_err();
    assert!(matches!(err, CacheError::OutputChanged { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&Path::new("d").display().to_string()),
        "{err}"
    );
}

#[test]
fn metrics_only_records_are_kept_apart_from_results() {
    let (_a, src, _b, dst) = stores();
    let record = publish(&src, "fp5");
    dst.install_record_only(&record).unwrap();
    assert_eq!(dst.record("fp5").unwrap(), None);
    assert!(dst.records().unwrap().is_empty());
    assert_eq!(dst.record_only("fp5").unwrap(), Some(record.clone()));
    assert_eq!(dst.records_only().unwrap(), vec![record.clone()]);
    assert_eq!(
        dst.record_for_metrics("fp5").unwrap(),
        Some((record.clone(), true))
    );
    assert!(dst.verify().unwrap().is_clean());
    // Installing the full result replaces it.
    let listings = src.listings(&record).unwrap();
    let staging = stage_downloads(&src, &dst, &record, &listings);
    dst.install_remote(&staging, record.clone(), &listings)
        .unwrap();
    assert_eq!(dst.record_only("fp5").unwrap(), None);
    assert_eq!(
        dst.record_for_metrics("fp5").unwrap(),
        Some((record, false))
    );
}
