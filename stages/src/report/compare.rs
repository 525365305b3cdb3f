//! Seeds and significance: rows that differ only in aggregated grid axes (e.g. `seed`)
//! are merged into one row of means and standard deviations ([`aggregate`]), and each
//! row is compared with a chosen row over the items both were scored on
//! ([`Comparison::build`]): the mean difference with a paired bootstrap confidence
//! interval (per item, each row's value averaged over its seeds) and McNemar's test
//! (pairs of the same item under the same seed) for right/wrong metrics.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::items::Outcomes;
use super::stats::{self, Interval, McNemar};
use super::table::{ReportRow, ResultsTable, fmt};

/// `axis=value` pairs of a row label (`strategy=s,seed=1`); a part that is not one (a
/// renamed row, `pretrained,seed=1`) is a pair with an empty axis.
fn axes(label: &str) -> Vec<(String, String)> {
    label
        .split(',')
        .map(|p| match p.split_once('=') {
            Some((a, v)) => (a.to_string(), v.to_string()),
            None => (String::new(), p.to_string()),
        })
        .collect()
}

/// The label without the `over` axes (`strategy=s`), and those axes' part (`seed=1`).
fn split_label(label: &str, over: &[String]) -> (String, String) {
    let (kept, dropped): (Vec<_>, Vec<_>) = axes(label)
        .into_iter()
        .partition(|(a, _)| !over.contains(a));
    let join = |v: Vec<(String, String)>| {
        v.into_iter()
            .map(|(a, val)| {
                if a.is_empty() {
                    val
                } else {
                    format!("{a}={val}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    (join(kept), join(dropped))
}

/// The keys of `maps`, each once, in order of first appearance.
fn unique_keys<'a>(maps: impl Iterator<Item = &'a Map<String, Value>>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for k in maps.flat_map(|m| m.keys()) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys
}

/// Merges rows whose labels differ only in the `over` axes: each number becomes the mean
/// over the merged rows (`spread`: the sample standard deviation), `members` lists the
/// merged labels. Row order: first appearance.
pub fn aggregate(rows: Vec<ReportRow>, over: &[String]) -> Vec<ReportRow> {
    let mut groups: Vec<(String, Vec<ReportRow>)> = Vec::new();
    for row in rows {
        let (key, _) = split_label(&row.label, over);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    groups
        .into_iter()
        .map(|(label, members)| {
            let mut mean = Map::new();
            let mut spread = Map::new();
            let tasks = unique_keys(members.iter().filter_map(|r| r.metrics.as_object()));
            for task in tasks {
                let mut m_mean = Map::new();
                let mut m_sd = Map::new();
                let metrics = unique_keys(
                    members
                        .iter()
                        .filter_map(|r| r.metrics.get(&task)?.as_object()),
                );
                for metric in metrics {
                    let values: Vec<f64> = members
                        .iter()
                        .filter_map(|r| r.metrics.get(&task)?.get(&metric)?.as_f64())
                        .collect();
                    if values.len() == members.len() {
                        let (m, sd) = stats::mean_sd(&values);
                        m_mean.insert(metric.clone(), m.into());
                        m_sd.insert(metric, sd.into());
                    }
                }
                mean.insert(task.clone(), Value::Object(m_mean));
                spread.insert(task, Value::Object(m_sd));
            }
            let source = members
                .iter()
                .map(|r| r.source.as_str())
                .collect::<Vec<_>>()
                .join(",");
            ReportRow {
                label,
                source,
                metrics: Value::Object(mean),
                spread: Value::Object(spread),
                members: members.into_iter().map(|r| r.label).collect(),
            }
        })
        .collect()
}

/// Per-item outcomes of one stage instance: `(input group, row label before
/// aggregation)` -> outcomes by task and item.
pub type ItemsByRow = BTreeMap<(String, String), Outcomes>;

/// One cell of the comparison: a row minus the reference row in one column.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Items paired.
    pub items: usize,
    pub interval: Interval,
    /// For 0/1 metrics.
    pub mcnemar: Option<McNemar>,
}

/// Every row compared with one of them.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The row the others are compared with.
    pub baseline: String,
    /// Confidence level of the intervals.
    pub level: f64,
    pub resamples: usize,
    /// (row label, one cell per table column) for every other row.
    pub rows: Vec<(String, Vec<Option<Difference>>)>,
}

/// How a comparison is computed.
pub struct CompareSettings<'a> {
    pub baseline: &'a str,
    pub over: &'a [String],
    pub resamples: usize,
    pub level: f64,
    pub seed: u64,
    /// Whether column tasks carry an `input/` prefix.
    pub prefixed: bool,
}

impl Comparison {
    /// Compares every row of `table` with `settings.baseline` using `items`; errors
    /// name a baseline that is not a row.
    pub fn build(
        table: &ResultsTable,
        items: &ItemsByRow,
        settings: &CompareSettings,
    ) -> Result<Comparison, String> {
        let base = table
            .rows
            .iter()
            .find(|(r, _, _)| r.label == settings.baseline)
            .map(|(r, _, _)| r)
            .ok_or_else(|| {
                let labels: Vec<&str> = table
                    .rows
                    .iter()
                    .map(|(r, _, _)| r.label.as_str())
                    .collect();
                format!(
                    "compare_to: no row `{}` (rows: {})",
                    settings.baseline,
                    labels.join(", ")
                )
            })?;
        let rows = table
            .rows
            .iter()
            .filter(|(r, _, _)| r.label != base.label)
            .map(|(r, _, _)| {
                let cells = table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(j, (task, metric))| {
                        difference(r, base, task, metric, items, settings, j as u64)
                    })
                    .collect();
                (r.label.clone(), cells)
            })
            .collect();
        Ok(Comparison {
            baseline: base.label.clone(),
            level: settings.level,
            resamples: settings.resamples,
            rows,
        })
    }

    /// The comparison as a Markdown section; values scaled like `table`'s.
    pub fn markdown(&self, table: &ResultsTable) -> String {
        let mut out = format!(
            "\n### Differences from `{}`\n\nMean difference over the shared items, [{:.0}% paired bootstrap interval, {} resamples]; McNemar exact p for right/wrong metrics.\n\n| run | {} |\n|{}\n",
            self.baseline,
            self.level * 100.0,
            self.resamples,
            table.titles.join(" | "),
            "---|".repeat(table.titles.len() + 1)
        );
        for (label, cells) in &self.rows {
            let shown: Vec<String> = cells
                .iter()
                .map(|c| cell(c.as_ref(), table.scale))
                .collect();
            out.push_str(&format!("| {label} | {} |\n", shown.join(" | ")));
        }
        out
    }

    /// The comparison at full precision, unscaled, for scripts (the `report` stage's
    /// `comparison` metric): one entry per compared cell with its row, task and metric,
    /// items paired, mean difference and interval, and McNemar's discordant counts and
    /// p-values for right/wrong metrics.
    pub fn to_json(&self, table: &ResultsTable) -> Value {
        let mut cells = Vec::new();
        for (label, row) in &self.rows {
            for ((task, metric), d) in table.columns.iter().zip(row) {
                let Some(d) = d else { continue };
                let mut cell = serde_json::json!({
                    "row": label,
                    "task": task,
                    "metric": metric,
                    "items": d.items,
                    "mean": d.interval.mean,
                    "lo": d.interval.lo,
                    "hi": d.interval.hi,
                });
                if let Some(m) = d.mcnemar {
                    cell["mcnemar"] = serde_json::json!({
                        "a_only": m.a_only,
                        "b_only": m.b_only,
                        "p_exact": m.p_exact,
                        "chi2": m.chi2,
                        "p_chi2": m.p_chi2,
                    });
                }
                cells.push(cell);
            }
        }
        serde_json::json!({
            "baseline": self.baseline,
            "level": self.level,
            "resamples": self.resamples,
            "cells": cells,
        })
    }

    /// The comparison as an HTML table (after the results table).
    pub fn html(&self, table: &ResultsTable) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut out = format!(
            "<h3>Differences from <code>{}</code></h3>\n<p>Mean difference over the shared items, [{:.0}% paired bootstrap interval, {} resamples]; McNemar exact p for right/wrong metrics.</p>\n<table class=\"ci\"><tr><th>run</th>",
            esc(&self.baseline),
            self.level * 100.0,
            self.resamples
        );
        for t in &table.titles {
            out.push_str(&format!("<th>{}</th>", esc(t)));
        }
        out.push_str("</tr>\n");
        for (label, cells) in &self.rows {
            out.push_str(&format!("<tr><td>{}</td>", esc(label)));
            for c in cells {
                out.push_str(&format!("<td>{}</td>", esc(&cell(c.as_ref(), table.scale))));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
        out
    }
}

fn cell(d: Option<&Difference>, scale: f64) -> String {
    let Some(d) = d else { return "–".into() };
    let signed = |x: f64| {
        let s = fmt(Some(x * scale));
        if x >= 0.0 { format!("+{s}") } else { s }
    };
    let mut text = format!(
        "{} [{}, {}] (n={})",
        signed(d.interval.mean),
        signed(d.interval.lo),
        signed(d.interval.hi),
        d.items
    );
    if let Some(m) = d.mcnemar {
        text.push_str(&format!(", p={:.3}", m.p_exact));
    }
    text
}

/// The task of a column as stored in items (without an `input/` prefix) and the input
/// group it belongs to, if prefixed.
fn split_task(task: &str, prefixed: bool) -> (Option<&str>, &str) {
    match (prefixed, task.split_once('/')) {
        (true, Some((group, t))) => (Some(group), t),
        _ => (None, task),
    }
}

/// Outcomes of `label`'s `task` in `group` (any group when `None`).
fn outcomes_of<'a>(
    items: &'a ItemsByRow,
    group: Option<&str>,
    label: &str,
    task: &str,
) -> Option<&'a BTreeMap<String, super::items::Outcome>> {
    items
        .iter()
        .filter(|((g, l), _)| l == label && group.is_none_or(|want| want == g))
        .find_map(|(_, o)| o.get(task))
}

/// Row `r` minus row `base` in column (`task`, `metric`).
fn difference(
    r: &ReportRow,
    base: &ReportRow,
    task: &str,
    metric: &str,
    items: &ItemsByRow,
    s: &CompareSettings,
    column: u64,
) -> Option<Difference> {
    let (group, task) = split_task(task, s.prefixed);
    let members = |row: &ReportRow| -> Vec<String> {
        if row.members.is_empty() {
            vec![row.label.clone()]
        } else {
            row.members.clone()
        }
    };
    let (ra, rb) = (members(r), members(base));
    let per_member = |labels: &[String]| -> Option<Vec<(String, &BTreeMap<String, _>)>> {
        labels
            .iter()
            .map(|l| {
                Some((
                    split_label(l, s.over).1,
                    outcomes_of(items, group, l, task)?,
                ))
            })
            .collect()
    };
    let (a, b) = (per_member(&ra)?, per_member(&rb)?);
    // Items every member of both rows was scored on.
    let shared: Vec<&String> = a[0]
        .1
        .keys()
        .filter(|id| a.iter().chain(&b).all(|(_, o)| o.contains_key(*id)))
        .collect();
    if shared.is_empty() {
        return None;
    }
    let mean_of = |rows: &[(String, &BTreeMap<String, super::items::Outcome>)], id: &str| {
        rows.iter().map(|(_, o)| o[id].value(metric)).sum::<f64>() / rows.len() as f64
    };
    let diffs: Vec<f64> = shared
        .iter()
        .map(|id| mean_of(&a, id) - mean_of(&b, id))
        .collect();
    let interval = stats::paired_bootstrap(&diffs, s.resamples, s.level, s.seed ^ column);
    let binary = shared.iter().all(|id| {
        a.iter()
            .chain(&b)
            .all(|(_, o)| matches!(o[*id].value(metric), x if x == 0.0 || x == 1.0))
    });
    let mcnemar = binary.then(|| {
        // Same item under the same seed (or the only run of each row).
        let single = a.len() == 1 && b.len() == 1;
        let mut pairs = Vec::new();
        for (seed_a, oa) in &a {
            for (seed_b, ob) in &b {
                if seed_a == seed_b || single {
                    pairs.extend(
                        shared
                            .iter()
                            .map(|id| (oa[*id].right(metric), ob[*id].right(metric))),
                    );
                }
            }
        }
        stats::mcnemar(pairs)
    });
    Some(Difference {
        items: shared.len(),
        interval,
        mcnemar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(label: &str, recall: f64) -> ReportRow {
        ReportRow {
            label: label.into(),
            source: format!("fp-{label}"),
            metrics: json!({"synthetic": {"recall": recall, "n": 4}}),
            ..ReportRow::default()
        }
    }

    #[test]
    fn rows_differing_only_in_the_seed_merge_into_mean_and_sd() {
        let rows = vec![
            row("strategy=a,seed=0", 0.5),
            row("strategy=b,seed=0", 0.25),
            row("strategy=a,seed=1", 0.75),
            row("strategy=b,seed=1", 0.25),
            row("base", 0.1),
        ];
        let merged = aggregate(rows, &["seed".to_string()]);
        let labels: Vec<&str> = merged.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["strategy=a", "strategy=b", "base"]);
        assert_eq!(merged[0].metrics["synthetic"]["recall"], 0.625);
        let sd = merged[0].spread["synthetic"]["recall"].as_f64().unwrap();
        assert!((sd - 0.125f64.hypot(0.125) / 1.0).abs() < 1e-12, "{sd}");
        assert_eq!(
            merged[0].members,
            ["strategy=a,seed=0", "strategy=a,seed=1"]
        );
        assert_eq!(
            merged[0].source,
            "fp-strategy=a,seed=0,fp-strategy=a,seed=1"
        );
        assert_eq!(merged[2].members, ["base"]);
        assert_eq!(
            split_label("strategy=a,seed=1", &["seed".into()]),
            ("strategy=a".into(), "seed=1".into())
        );
    }

    #[test]
    fn a_renamed_row_with_seeds_merges_under_its_name() {
        let rows = vec![row("pretrained,seed=0", 0.5), row("pretrained,seed=1", 0.7)];
        let merged = aggregate(rows, &["seed".to_string()]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].label, "pretrained");
        assert!((merged[0].metrics["synthetic"]["recall"].as_f64().unwrap() - 0.6).abs() < 1e-12);
    }
}
