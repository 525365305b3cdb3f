//! `slayer diff A B`: two run records side by side — what differs in their parameters,
//! inputs (content hashes and sources), environment and metrics, one line per leaf
//! (`params.lr  0.0002 -> 0.0001`). The records are two instances of a manifest (grid
//! neighbours), or one instance's current record and an earlier run's (by fingerprint).

use std::collections::BTreeMap;

use serde_json::Value;
use slayer_cache::RunRecord;

/// Flattens a JSON value into `path -> leaf` (objects by key, arrays by index).
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

/// The compared parts of a record as flat paths.
fn leaves(record: &RunRecord) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert("kind".into(), Value::String(record.kind.clone()));
    out.insert("stage_version".into(), Value::from(record.stage_version));
    flatten("params", &record.params, &mut out);
    for (name, input) in &record.inputs {
        out.insert(
            format!("inputs.{name}"),
            Value::String(format!("{} ({})", input.hash.short(), input.source)),
        );
    }
    for (k, v) in &record.env {
        out.insert(format!("env.{k}"), Value::String(v.clone()));
    }
    flatten("metrics", &record.metrics, &mut out);
    for (name, output) in &record.outputs {
        out.insert(
            format!("outputs.{name}"),
            Value::String(output.hash.short().to_string()),
        );
    }
    out
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The differing leaves of `a` and `b` as aligned lines (`path  a -> b`); `all` also
/// lists the equal ones (`path  value`).
pub fn render(a: &RunRecord, b: &RunRecord, all: bool) -> String {
    let (la, lb) = (leaves(a), leaves(b));
    let mut keys: Vec<&String> = la.keys().chain(lb.keys()).collect();
    keys.sort();
    keys.dedup();
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    let mut out = format!(
        "--- {} ({})\n+++ {} ({})\n",
        a.stage,
        &a.fingerprint[..a.fingerprint.len().min(12)],
        b.stage,
        &b.fingerprint[..b.fingerprint.len().min(12)]
    );
    let mut differing = 0;
    for k in keys {
        let (x, y) = (la.get(k), lb.get(k));
        if x != y {
            differing += 1;
            out.push_str(&format!("{k:<width$}  {} -> {}\n", show(x), show(y)));
        } else if all {
            out.push_str(&format!("{k:<width$}  {}\n", show(x)));
        }
    }
    if differing == 0 {
        out.push_str("(no differences in params, inputs, env, metrics or outputs)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_params_and_metrics_are_compared_leaf_by_leaf() {
        let mut out = BTreeMap::new();
        flatten(
            "params",
            &serde_json::json!({"lr": 1e-4, "sched": {"warmup": [1, 2]}, "empty": {}}),
            &mut out,
        );
        assert_eq!(out["params.lr"], serde_json::json!(1e-4));
        assert_eq!(out["params.sched.warmup[1]"], serde_json::json!(2));
        assert_eq!(out["params.empty"], serde_json::json!({}));
        assert_eq!(out.len(), 4);
    }
}
