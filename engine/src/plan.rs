//! Planning: which instances are cached, stale or missing, and why — a pure reading of
//! the pipeline against the store; nothing is run or written (beyond the stat cache).
//!
//! An instance is `cached` when a run record exists for its fingerprint and its outputs
//! are intact on disk. Otherwise it is `stale` (an earlier run of the same instance
//! exists, and [`StaleReason`]s say what differs, like cargo's dirty reasons) or
//! `missing` (never run). When an upstream will rerun, the consumer's input hashes are
//! not known yet: it is stale "because upstream X will rerun", and may still turn out
//! cached after the run thanks to early cutoff.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;
use slayer_cache::{CacheError, ContentHash, OutputState, RunRecord, Store};

use crate::error::EngineError;
use crate::fingerprint::{self, FingerprintInputs};
use crate::pipeline::{InputRef, Instance, Pipeline};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Cached,
    Stale,
    Missing,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Cached => "cached",
            State::Stale => "stale",
            State::Missing => "missing",
        })
    }
}

/// Why an instance must run; each renders as one sentence.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleReason {
    NeverRun,
    Forced,
    ParamChanged {
        key: String,
        old: Value,
        new: Value,
    },
    InputChanged {
        name: String,
        old: String,
        new: String,
    },
    InputAdded {
        name: String,
    },
    InputRemoved {
        name: String,
    },
    UpstreamStale {
        input: String,
        stage: String,
    },
    InputMissing {
        input: String,
        path: String,
    },
    StageVersionChanged {
        old: u32,
        new: u32,
    },
    EnvChanged {
        key: String,
        old: String,
        new: String,
    },
    OutputMissing {
        output: String,
        path: String,
    },
    OutputModified {
        output: String,
        path: String,
    },
    /// The record file of this fingerprint is unreadable; treated as missing.
    RecordCorrupt {
        path: String,
        problem: String,
    },
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(unset)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::NeverRun => write!(f, "no record: never run"),
            StaleReason::Forced => write!(f, "forced with --force"),
            StaleReason::ParamChanged { key, old, new } => {
                write!(f, "param {key} changed {} -> {}", show(old), show(new))
            }
            StaleReason::InputChanged { name, old, new } => write!(
                f,
                "input {name} changed (hash {} -> {})",
                short(old),
                short(new)
            ),
            StaleReason::InputAdded { name } => write!(f, "input {name} added"),
            StaleReason::InputRemoved { name } => write!(f, "input {name} removed"),
            StaleReason::UpstreamStale { input, stage } => {
                write!(f, "input {input} comes from {stage}, which will rerun")
            }
            StaleReason::InputMissing { input, path } => {
                write!(f, "input {input} ({path}) does not exist yet")
            }
            StaleReason::StageVersionChanged { old, new } => {
                write!(f, "stage implementation changed (version {old} -> {new})")
            }
            StaleReason::EnvChanged { key, old, new } => {
                write!(f, "environment {key} changed {old} -> {new}")
            }
            StaleReason::OutputMissing { output, path } => {
                write!(f, "output {output} missing on disk ({path})")
            }
            StaleReason::OutputModified { output, path } => {
                write!(f, "output {output} modified on disk ({path})")
            }
            StaleReason::RecordCorrupt { path, problem } => write!(
                f,
                "run record {path} is corrupt ({problem}); treated as missing (`slayer verify --repair` removes it)"
            ),
        }
    }
}

/// The status of one instance.
#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub state: State,
    /// The first reason in one sentence (empty when cached).
    pub reason: String,
    pub reasons: Vec<StaleReason>,
    pub fingerprint: Option<String>,
    /// Not cached here but held by the remote cache (`status --remote`): a run pulls it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    #[serde(skip)]
    pub record: Option<RunRecord>,
}

/// Input hashes of an instance, when every upstream result is known.
pub enum InputHashes {
    Known(BTreeMap<String, ContentHash>),
    /// Why some input hashes are unknown: upstreams without a usable result, or raw
    /// inputs that do not exist yet (only accepted by `--dry-run`).
    Waiting(Vec<StaleReason>),
}

/// Hashes an instance's inputs: raw paths from disk (stat-cached), upstream outputs
/// from their records. `upstream(i)` gives the record of instance `i` when it has one.
pub fn input_hashes(
    pipeline: &Pipeline,
    inst: &Instance,
    store: &Store,
    upstream: &dyn Fn(usize) -> Option<RunRecord>,
) -> Result<InputHashes, EngineError> {
    let mut known = BTreeMap::new();
    let mut waiting = Vec::new();
    for (name, input) in &inst.inputs {
        match input {
            InputRef::Paths { source, items, .. } if items.is_empty() => {
                waiting.push(StaleReason::InputMissing {
                    input: name.clone(),
                    path: source.clone(),
                });
            }
            InputRef::Paths {
                pattern: false,
                items,
                ..
            } => {
                known.insert(name.clone(), store.hash_path(&items[0].1)?);
            }
            InputRef::Paths { items, .. } => {
                known.insert(name.clone(), store.hash_set(items)?);
            }
            InputRef::Upstream { items, gather, .. } => {
                let mut parts = Vec::new();
                for (u, output) in items {
                    let up = &pipeline.instances[*u];
                    match upstream(*u).and_then(|r| r.outputs.get(output).map(|o| o.hash.clone())) {
                        Some(h) => parts.push((up.name.clone(), h)),
                        None => waiting.push(StaleReason::UpstreamStale {
                            input: name.clone(),
                            stage: up.name.clone(),
                        }),
                    }
                }
                if parts.len() == items.len() {
                    let hash = if *gather {
                        fingerprint::combine(&parts)
                    } else {
                        parts.remove(0).1
                    };
                    known.insert(name.clone(), hash);
                }
            }
        }
    }
    Ok(if waiting.is_empty() {
        InputHashes::Known(known)
    } else {
        InputHashes::Waiting(waiting)
    })
}

/// The fingerprint of an instance for given input hashes.
pub fn fingerprint_of(inst: &Instance, inputs: &BTreeMap<String, ContentHash>) -> String {
    let params = result_params(inst.kind.placement_params(), &inst.params);
    FingerprintInputs::new(
        inst.kind.kind(),
        inst.kind.version(),
        &params,
        inputs,
        &inst.env,
    )
    .fingerprint()
}

/// `params` without the kind's placement parameters
/// ([`Stage::placement_params`](crate::stage::Stage::placement_params)).
fn result_params(placement: &[&str], params: &Value) -> Value {
    let mut params = params.clone();
    if let Value::Object(map) = &mut params {
        for key in placement {
            map.remove(*key);
        }
    }
    params
}

/// The record of `fingerprint`, or why its file cannot be used (a corrupt record is
/// treated as missing: the stage reruns and its publish replaces the file).
pub fn read_record(
    store: &Store,
    fingerprint: &str,
) -> Result<Result<Option<RunRecord>, StaleReason>, EngineError> {
    match store.record(fingerprint) {
        Ok(record) => Ok(Ok(record)),
        Err(CacheError::CorruptRecord { path, problem }) => Ok(Err(StaleReason::RecordCorrupt {
            path: path.display().to_string(),
            problem,
        })),
        Err(e) => Err(e.into()),
    }
}

/// Is this record usable as the result (outputs intact)? Returns the reason if not.
pub fn check_record(store: &Store, record: &RunRecord) -> Result<Option<StaleReason>, EngineError> {
    Ok(match store.check_outputs(record)? {
        OutputState::Intact => None,
        OutputState::Missing { output, path } => Some(StaleReason::OutputMissing {
            output,
            path: path.display().to_string(),
        }),
        OutputState::Modified { output, path, .. } => Some(StaleReason::OutputModified {
            output,
            path: path.display().to_string(),
        }),
    })
}

/// The run record of each instance's current fingerprint, for reading metrics: a local
/// record or a metrics-only one (pulled without its outputs, see `slayer pull
/// --metrics-only`), upstream records supplying the input hashes downstream. Outputs on
/// disk are not checked (metrics do not need them); `None` where there is no record or
/// an upstream has none.
pub fn records_for_metrics(
    pipeline: &Pipeline,
    store: &Store,
) -> Result<Vec<Option<RunRecord>>, EngineError> {
    let mut records: Vec<Option<RunRecord>> = Vec::with_capacity(pipeline.instances.len());
    for inst in &pipeline.instances {
        let hashes = input_hashes(pipeline, inst, store, &|u| {
            records.get(u).cloned().flatten()
        })?;
        let record = match hashes {
            InputHashes::Known(inputs) => store
                .record_for_metrics(&fingerprint_of(inst, &inputs))
                .ok()
                .flatten()
                .map(|(record, _)| record),
            _ => None,
        };
        records.push(record);
    }
    Ok(records)
}

/// Plans every instance of `pipeline` (or those in `only`, with their upstreams).
pub fn plan(
    pipeline: &Pipeline,
    store: &Store,
    forced: &BTreeSet<usize>,
) -> Result<Vec<StageStatus>, EngineError> {
    let mut statuses: Vec<StageStatus> = Vec::with_capacity(pipeline.instances.len());
    let mut previous: Option<BTreeMap<String, RunRecord>> = None;
    for (i, inst) in pipeline.instances.iter().enumerate() {
        let usable = |u: usize| -> Option<RunRecord> {
            let s: &StageStatus = statuses.get(u)?;
            (s.state == State::Cached)
                .then(|| s.record.clone())
                .flatten()
        };
        let hashes = input_hashes(pipeline, inst, store, &usable)?;
        let mut status = StageStatus {
            stage: inst.name.clone(),
            state: State::Stale,
            reason: String::new(),
            reasons: Vec::new(),
            fingerprint: None,
            remote: false,
            record: None,
        };
        let mut known_inputs = None;
        match hashes {
            InputHashes::Known(inputs) => {
                let fp = fingerprint_of(inst, &inputs);
                status.fingerprint = Some(fp.clone());
                match read_record(store, &fp)? {
                    Ok(Some(record)) => {
                        match check_record(store, &record)? {
                            None if !forced.contains(&i) => status.state = State::Cached,
                            None => status.reasons.push(StaleReason::Forced),
                            Some(r) => status.reasons.push(r),
                        }
                        status.record = Some(record);
                    }
                    Ok(None) => {}
                    Err(corrupt) => status.reasons.push(corrupt),
                }
                known_inputs = Some(inputs);
            }
            InputHashes::Waiting(list) => status.reasons.extend(list),
        }
        if status.state != State::Cached {
            if forced.contains(&i) && !status.reasons.contains(&StaleReason::Forced) {
                status.reasons.insert(0, StaleReason::Forced);
            }
            if status.record.is_none() {
                let prev =
                    previous.get_or_insert_with(|| latest_records(store, &pipeline.manifest.name));
                match prev.get(&inst.name) {
                    Some(old) => {
                        let diff = diff_record(inst, known_inputs.as_ref(), old);
                        // Keep "upstream will rerun" after the concrete differences.
                        let mut reasons = diff;
                        reasons.append(&mut status.reasons);
                        status.reasons = reasons;
                    }
                    None => {
                        status.state = State::Missing;
                        let corrupt = status
                            .reasons
                            .iter()
                            .any(|r| matches!(r, StaleReason::RecordCorrupt { .. }));
                        if !corrupt {
                            status.reasons.insert(0, StaleReason::NeverRun);
                        }
                    }
                }
            }
        }
        status.reason = status
            .reasons
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        statuses.push(status);
    }
    Ok(statuses)
}

/// The most recent record of each instance name among the runs of manifest `manifest`
/// (and records that predate the `manifest` field), so that two manifests in one
/// workspace with a stage of the same name are never compared with each other.
pub fn latest_records(store: &Store, manifest: &str) -> BTreeMap<String, RunRecord> {
    let mut latest: BTreeMap<String, RunRecord> = BTreeMap::new();
    let records = store.records().unwrap_or_default();
    for r in records
        .into_iter()
        .filter(|r| r.manifest.as_deref().is_none_or(|m| m == manifest))
    {
        let newer = latest
            .get(&r.stage)
            .is_none_or(|old| old.finished_at < r.finished_at);
        if newer {
            latest.insert(r.stage.clone(), r);
        }
    }
    latest
}

/// What differs between an instance now and its last recorded run.
pub fn diff_record(
    inst: &Instance,
    inputs: Option<&BTreeMap<String, ContentHash>>,
    old: &RunRecord,
) -> Vec<StaleReason> {
    let mut reasons = Vec::new();
    if old.stage_version != inst.kind.version() || old.kind != inst.kind.kind() {
        reasons.push(StaleReason::StageVersionChanged {
            old: old.stage_version,
            new: inst.kind.version(),
        });
    }
    let mut old_flat = BTreeMap::new();
    let mut new_flat = BTreeMap::new();
    let placement = inst.kind.placement_params();
    flatten("", &result_params(placement, &old.params), &mut old_flat);
    flatten("", &result_params(placement, &inst.params), &mut new_flat);
    let keys: BTreeSet<&String> = old_flat.keys().chain(new_flat.keys()).collect();
    for key in keys {
        let (o, n) = (old_flat.get(key), new_flat.get(key));
        if o != n {
            reasons.push(StaleReason::ParamChanged {
                key: key.clone(),
                old: o.cloned().unwrap_or(Value::Null),
                new: n.cloned().unwrap_or(Value::Null),
            });
        }
    }
    for (k, v) in &inst.env {
        let old_v = old.env.get(k).cloned().unwrap_or_default();
        if &old_v != v {
            reasons.push(StaleReason::EnvChanged {
                key: k.clone(),
                old: old_v,
                new: v.clone(),
            });
        }
    }
    for name in inst.inputs.keys() {
        if !old.inputs.contains_key(name) {
            reasons.push(StaleReason::InputAdded { name: name.clone() });
        }
    }
    for name in old.inputs.keys() {
        if !inst.inputs.contains_key(name) {
            reasons.push(StaleReason::InputRemoved { name: name.clone() });
        }
    }
    if let Some(inputs) = inputs {
        for (name, hash) in inputs {
            if let Some(o) = old.inputs.get(name)
                && &o.hash != hash
            {
                reasons.push(StaleReason::InputChanged {
                    name: format!("{name} ({})", inst.inputs[name].source()),
                    old: o.hash.0.clone(),
                    new: hash.0.clone(),
                });
            }
        }
    }
    reasons
}

/// Flattens nested params to dotted keys (`optimizer.lr`).
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_params_leave_the_result_params() {
        let p = serde_json::json!({"lr": 1e-3, "ranks": 2, "nested": {"ranks": 3}});
        assert_eq!(
            result_params(&["ranks"], &p),
            serde_json::json!({"lr": 1e-3, "nested": {"ranks": 3}})
        );
        assert_eq!(result_params(&[], &p), p);
    }
}
