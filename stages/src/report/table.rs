//! The results table: rows x tasks with an average column, rendered as Markdown, HTML
//! and CSV.

use std::collections::BTreeMap;

use serde_json::Value;

/// One row: a label (grid combination), where its numbers come from, and its metrics
/// (`{"task": {"metric": number, …}, …}`).
#[derive(Clone, Debug)]
pub struct ReportRow {
    pub label: String,
    /// Run-record fingerprint (or path) of the metrics.
    pub source: String,
    pub metrics: Value,
}

impl ReportRow {
    /// Adds another metrics file's tasks to this row (several sources are listed).
    pub fn merge(&mut self, metrics: Value, source: &str) {
        if let (Some(mine), Value::Object(other)) = (self.metrics.as_object_mut(), metrics) {
            mine.extend(other);
        }
        if !self.source.split(',').any(|s| s == source) {
            self.source = format!("{},{source}", self.source);
        }
    }
}

/// A built table.
#[derive(Clone, Debug)]
pub struct ResultsTable {
    pub title: String,
    /// (task, metric) per column.
    pub columns: Vec<(String, String)>,
    pub rows: Vec<(ReportRow, Vec<Option<f64>>, Option<f64>)>,
}

/// Metrics where lower is better; they are shown but left out of the average.
const LOWER_IS_BETTER: &[&str] = &["ppl", "perplexity", "nll", "bits_per_byte", "loss"];

/// The metric shown for a task when none is chosen.
pub fn primary_metric(task_metrics: &serde_json::Map<String, Value>) -> Option<String> {
    const ORDER: &[&str] = &[
        "acc_norm",
        "acc",
        "mc2",
        "exact_match",
        "pass@1",
        "recall",
        "ppl",
    ];
    ORDER
        .iter()
        .find(|m| task_metrics.get(**m).is_some_and(Value::is_number))
        .map(|m| m.to_string())
        .or_else(|| {
            task_metrics
                .iter()
                .find(|(k, v)| v.is_number() && k.as_str() != "n" && !k.ends_with("_stderr"))
                .map(|(k, _)| k.clone())
        })
}

/// `eval[layout=(2+1)x8|16]` -> `layout=(2+1)x8|16`; plain names stay.
pub fn row_label(instance: &str) -> String {
    match (instance.find('['), instance.ends_with(']')) {
        (Some(i), true) => instance[i + 1..instance.len() - 1].to_string(),
        _ => instance.to_string(),
    }
}

impl ResultsTable {
    pub fn build(title: &str, rows: Vec<ReportRow>, chosen: &BTreeMap<String, String>) -> Self {
        let mut columns: Vec<(String, String)> = Vec::new();
        for row in &rows {
            let Some(tasks) = row.metrics.as_object() else {
                continue;
            };
            for (task, m) in tasks {
                let Some(m) = m.as_object() else { continue };
                // A chosen metric may name the task with or without its input prefix.
                let bare = task.rsplit('/').next().unwrap_or(task);
                let metric = chosen
                    .get(task)
                    .or_else(|| chosen.get(bare))
                    .cloned()
                    .or_else(|| primary_metric(m));
                if let Some(metric) = metric
                    && !columns.iter().any(|(t, _)| t == task)
                {
                    columns.push((task.clone(), metric));
                }
            }
        }
        let rows = rows
            .into_iter()
            .map(|row| {
                let values: Vec<Option<f64>> = columns
                    .iter()
                    .map(|(task, metric)| row.metrics.get(task)?.get(metric)?.as_f64())
                    .collect();
                let averaged: Vec<f64> = columns
                    .iter()
                    .zip(&values)
                    .filter(|((_, m), _)| !LOWER_IS_BETTER.contains(&m.as_str()))
                    .filter_map(|(_, v)| *v)
                    .collect();
                let avg = (!averaged.is_empty())
                    .then(|| averaged.iter().sum::<f64>() / averaged.len() as f64);
                (row, values, avg)
            })
            .collect();
        ResultsTable {
            title: title.to_string(),
            columns,
            rows,
        }
    }

    fn header(&self) -> Vec<String> {
        let mut h = vec!["run".to_string()];
        h.extend(self.columns.iter().map(|(t, m)| format!("{t} ({m})")));
        h.push("average".into());
        h.push("record".into());
        h
    }

    fn cells(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|(row, values, avg)| {
                let mut c = vec![row.label.clone()];
                c.extend(values.iter().map(|v| fmt(*v)));
                c.push(fmt(*avg));
                let short: Vec<String> = row
                    .source
                    .split(',')
                    .map(|s| s.chars().take(12).collect())
                    .collect();
                c.push(short.join(" "));
                c
            })
            .collect()
    }

    pub fn markdown(&self) -> String {
        let header = self.header();
        let mut out = format!(
            "## {}\n\n| {} |\n|{}\n",
            self.title,
            header.join(" | "),
            "---|".repeat(header.len())
        );
        for c in self.cells() {
            out.push_str(&format!("| {} |\n", c.join(" | ")));
        }
        out.push_str("\nAverage over higher-is-better metrics. `record` is the run-record fingerprint prefix: `slayer show` / `slayer lineage` trace it.\n");
        out
    }

    pub fn csv(&self) -> String {
        let esc = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = self
            .header()
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(",")
            + "\n";
        for (row, values, avg) in &self.rows {
            let mut c = vec![esc(&row.label)];
            c.extend(
                values
                    .iter()
                    .map(|v| v.map(|x| x.to_string()).unwrap_or_default()),
            );
            c.push(avg.map(|x| x.to_string()).unwrap_or_default());
            c.push(esc(&row.source));
            out.push_str(&(c.join(",") + "\n"));
        }
        out
    }

    pub fn html(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut out = format!(
            "<!doctype html><meta charset=\"utf-8\"><title>{t}</title>\n<style>table{{border-collapse:collapse;font-family:sans-serif}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style>\n<h2>{t}</h2>\n<table><tr>",
            t = esc(&self.title)
        );
        for h in self.header() {
            out.push_str(&format!("<th>{}</th>", esc(&h)));
        }
        out.push_str("</tr>\n");
        for ((row, _, _), cells) in self.rows.iter().zip(self.cells()) {
            out.push_str("<tr>");
            let n = cells.len();
            for (i, c) in cells.into_iter().enumerate() {
                if i + 1 == n {
                    out.push_str(&format!(
                        "<td title=\"{}\"><code>{}</code></td>",
                        esc(&row.source),
                        esc(&c)
                    ));
                } else {
                    out.push_str(&format!("<td>{}</td>", esc(&c)));
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
        out
    }
}

fn fmt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_primary_metrics_and_averages_higher_is_better() {
        let rows = vec![
            ReportRow {
                label: row_label("eval[layout=(2+1)x8|16]"),
                source: "abcdef0123456789".into(),
                metrics: json!({"arc": {"acc": 0.5, "acc_norm": 0.6, "n": 10}, "wiki": {"ppl": 12.0}}),
            },
            ReportRow {
                label: "base".into(),
                source: "ffff".into(),
                metrics: json!({"arc": {"acc": 0.4, "acc_norm": 0.2}}),
            },
        ];
        let t = ResultsTable::build("T", rows, &BTreeMap::new());
        assert_eq!(
            t.columns,
            vec![
                ("arc".into(), "acc_norm".into()),
                ("wiki".into(), "ppl".into())
            ]
        );
        assert_eq!(t.rows[0].2, Some(0.6), "ppl is not averaged");
        assert_eq!(t.rows[1].1[1], None);
        let md = t.markdown();
        assert!(
            md.contains("| layout=(2+1)x8|16 | 0.6000 | 12.0000 | 0.6000 | abcdef012345 |"),
            "{md}"
        );
        assert!(t.csv().contains("base,0.2,,0.2,ffff"));
    }
}
