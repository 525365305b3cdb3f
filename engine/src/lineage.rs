//! Provenance: walking run records back from an artifact to the raw files it came from.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use slayer_cache::{RunRecord, Store};

use crate::error::EngineError;

/// Finds the record that produced `path`: a path inside `.slayer/out/<fingerprint>/`, or
/// any file whose content hash equals a recorded output.
pub fn record_for_path(store: &Store, path: &Path) -> Result<Option<RunRecord>, EngineError> {
    let abs = std::path::absolute(path).map_err(|e| EngineError::io(path, e))?;
    let out_root = store.root().join("out");
    if let Ok(rest) = abs.strip_prefix(&out_root)
        && let Some(fp) = rest.components().next()
    {
        let fp = fp.as_os_str().to_string_lossy();
        // A corrupt record is looked for by content below, like a file outside the store.
        if let Ok(Some(r)) = crate::plan::read_record(store, &fp)? {
            return Ok(Some(r));
        }
    }
    if !abs.exists() {
        return Ok(None);
    }
    let hash = store.hash_path(&abs)?;
    Ok(store
        .records()?
        .into_iter()
        .find(|r| r.outputs.values().any(|o| o.hash == hash)))
}

/// Renders the provenance tree of `record` (inputs, recursively, down to raw files).
pub fn render(store: &Store, record: &RunRecord) -> Result<String, EngineError> {
    let mut out = String::new();
    let mut seen = BTreeSet::new();
    walk(store, record, 0, &mut seen, &mut out)?;
    Ok(out)
}

fn walk(
    store: &Store,
    record: &RunRecord,
    depth: usize,
    seen: &mut BTreeSet<String>,
    out: &mut String,
) -> Result<(), EngineError> {
    let pad = "  ".repeat(depth);
    let outputs: Vec<String> = record
        .outputs
        .iter()
        .map(|(name, o)| format!("{name}={}", o.hash.short()))
        .collect();
    let _ = writeln!(
        out,
        "{pad}{} ({}, v{}) fingerprint {} ran {} [{}]",
        record.stage,
        record.kind,
        record.stage_version,
        &record.fingerprint[..12.min(record.fingerprint.len())],
        record.finished_at,
        outputs.join(" ")
    );
    if !seen.insert(record.fingerprint.clone()) {
        let _ = writeln!(out, "{pad}  (shown above)");
        return Ok(());
    }
    for (name, input) in &record.inputs {
        let producers: Vec<&str> = input
            .producer
            .as_deref()
            .map(|p| p.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if producers.is_empty() {
            let _ = writeln!(
                out,
                "{pad}  <- {name}: file {} (hash {})",
                input.source,
                input.hash.short()
            );
            continue;
        }
        let _ = writeln!(out, "{pad}  <- {name}: {}", input.source);
        for fp in producers {
            match crate::plan::read_record(store, fp)? {
                Ok(Some(r)) => walk(store, &r, depth + 2, seen, out)?,
                Ok(None) => {
                    let _ = writeln!(out, "{pad}    (record {fp} no longer in the store)");
                }
                Err(corrupt) => {
                    let _ = writeln!(out, "{pad}    ({corrupt})");
                }
            }
        }
    }
    Ok(())
}
