//! Helpers shared by the data tests (`tests/data/`, and `tokenize_memory`): run a data
//! stage kind ad hoc (as `slayer exec` does, without the cache) and read Parquet shards
//! back.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use slayer_engine::{Metrics, Registry, StageContext, StageError, StageInput};

/// A registry with the data kinds only.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    slayer_stages::data::register(&mut r);
    r
}

/// Runs `kind` with `params` on `inputs` (name, paths), writing under `out`.
pub fn run(
    kind: &str,
    params: Value,
    inputs: &[(&str, &[&Path])],
    out: &Path,
    threads: usize,
) -> Result<Metrics, StageError> {
    let r = registry();
    let stage = r.get(kind).unwrap_or_else(|| panic!("no kind {kind}"));
    let params = stage
        .check_params(&params)
        .map_err(|e| StageError::msg(format!("params: {}", e.message)))?;
    std::fs::create_dir_all(out).unwrap();
    let scratch = out.join(".scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut map = BTreeMap::new();
    for (name, paths) in inputs {
        map.insert(
            name.to_string(),
            StageInput {
                items: paths
                    .iter()
                    .map(|p| (label_of(p), p.to_path_buf()))
                    .collect(),
            },
        );
    }
    let ctx = StageContext {
        inputs: map,
        scratch_dir: scratch,
        threads,
        ..StageContext::local(kind, out)
    };
    stage.run(&params, &ctx)
}

fn label_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A metric as u64.
pub fn metric(m: &Metrics, key: &str) -> u64 {
    m.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("metric {key} missing in {m:?}"))
}

/// Sorted `*.parquet` files of a directory.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

/// Every batch of a Parquet file, with its key-value metadata.
pub fn read_parquet(path: &Path) -> (Vec<RecordBatch>, BTreeMap<String, String>) {
    let meta = slayer_stages::data::shard::file_metadata(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let batches = builder.build().unwrap().map(|b| b.unwrap()).collect();
    (batches, meta)
}

/// Column `name` of `batch` as rows of u32 lists.
pub fn u32_lists(batch: &RecordBatch, name: &str) -> Vec<Vec<u32>> {
    let col = batch.column_by_name(name).unwrap().as_list::<i32>();
    (0..col.len())
        .map(|i| col.value(i).as_primitive::<UInt32Type>().values().to_vec())
        .collect()
}

/// Column `name` of `batch` as rows of bool lists.
pub fn bool_lists(batch: &RecordBatch, name: &str) -> Vec<Vec<bool>> {
    let col = batch.column_by_name(name).unwrap().as_list::<i32>();
    (0..col.len())
        .map(|i| {
            let v = col.value(i);
            let b = v.as_boolean();
            (0..b.len()).map(|j| b.value(j)).collect()
        })
        .collect()
}

/// Column `name` of `batch` as strings.
pub fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let col = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..col.len()).map(|i| col.value(i).to_string()).collect()
}

/// blake3 of every file under `dir` (sorted relative path -> hash), hidden entries skipped.
pub fn tree_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(
                    rel,
                    blake3::hash(&std::fs::read(&p).unwrap())
                        .to_hex()
                        .to_string(),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Writes `lines` as a file.
pub fn write(path: &Path, text: &str) -> PathBuf {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}
