//! The results table: rows x tasks with an average column, rendered as Markdown, HTML
//! and CSV; optionally scaled, with display names for the tasks and a reference's
//! values (e.g. the paper's) beside the measured ones, in the reference's row order.

use std::collections::BTreeMap;

use serde_json::Value;

use super::reference::{Reference, ReferenceRow};

/// One row: a label (grid combination), where its numbers come from, and its metrics
/// (`{"task": {"metric": number, …}, …}`). A row aggregated over seeds holds the mean in
/// `metrics`, the sample standard deviation in `spread` (same shape) and the labels of the
/// rows it averages in `members`.
#[derive(Clone, Debug, Default)]
pub struct ReportRow {
    pub label: String,
    /// Run-record fingerprint (or path) of the metrics.
    pub source: String,
    pub metrics: Value,
    pub spread: Value,
    pub members: Vec<String>,
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

/// How a table is laid out beyond its rows.
#[derive(Clone, Debug, Default)]
pub struct TableLayout {
    /// Metric shown per task (others: [`primary_metric`]).
    pub metric: BTreeMap<String, String>,
    /// Column title per task (default `task (metric)`).
    pub headers: BTreeMap<String, String>,
    /// Factor applied to every value (100: fractions as percentages); 1 when 0.
    pub scale: f64,
    /// Values to print beside the measured ones; gives the row and column order.
    pub reference: Option<Reference>,
}

/// A built table.
#[derive(Clone, Debug)]
pub struct ResultsTable {
    pub title: String,
    /// (task, metric) per column.
    pub columns: Vec<(String, String)>,
    pub rows: Vec<(ReportRow, Vec<Option<f64>>, Option<f64>)>,
    /// Column titles, aligned with `columns`.
    pub titles: Vec<String>,
    /// The factor applied to every value.
    pub scale: f64,
    /// The reference row of each row, when there is a reference.
    references: Option<Vec<Option<Shown>>>,
}

/// Values aligned with a table's columns, and their average.
type Shown = (Vec<Option<f64>>, Option<f64>);

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
    pub fn build(title: &str, rows: Vec<ReportRow>, layout: &TableLayout) -> Self {
        let chosen = &layout.metric;
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
        let mut rows = rows;
        if let Some(reference) = &layout.reference {
            order_by_reference(&mut columns, &mut rows, reference, chosen);
        }
        let scale = if layout.scale == 0.0 {
            1.0
        } else {
            layout.scale
        };
        let rows: Vec<_> = rows
            .into_iter()
            .map(|row| {
                let values: Vec<Option<f64>> = columns
                    .iter()
                    .map(|(task, metric)| {
                        Some(row.metrics.get(task)?.get(metric)?.as_f64()? * scale)
                    })
                    .collect();
                let avg = higher_is_better_mean(&columns, &values);
                (row, values, avg)
            })
            .collect();
        let references = layout.reference.as_ref().map(|reference| {
            rows.iter()
                .map(|(row, _, _)| {
                    let r = reference.row_for(&row.label)?;
                    let values = aligned(reference, r, &columns);
                    let avg = r
                        .average
                        .or_else(|| higher_is_better_mean(&columns, &values));
                    Some((values, avg))
                })
                .collect()
        });
        let titles = columns
            .iter()
            .map(|(t, m)| {
                let bare = t.rsplit('/').next().unwrap_or(t);
                layout
                    .headers
                    .get(t)
                    .or_else(|| layout.headers.get(bare))
                    .cloned()
                    .unwrap_or_else(|| format!("{t} ({m})"))
            })
            .collect();
        ResultsTable {
            title: title.to_string(),
            columns,
            rows,
            titles,
            scale,
            references,
        }
    }

    fn header(&self) -> Vec<String> {
        let mut h = vec!["run".to_string()];
        h.extend(self.titles.iter().cloned());
        h.push("average".into());
        h.push("record".into());
        h
    }

    /// The standard deviation of column `j` of an aggregated `row` (scaled like its
    /// values), when it averages more than one run.
    fn spread_of(&self, row: &ReportRow, j: usize) -> Option<f64> {
        if row.members.len() < 2 {
            return None;
        }
        let (task, metric) = &self.columns[j];
        Some(row.spread.get(task)?.get(metric)?.as_f64()? * self.scale)
    }

    /// The reference values of row `i`, when a reference has that row.
    fn reference_of(&self, i: usize) -> Option<&Shown> {
        self.references.as_ref()?.get(i)?.as_ref()
    }

    fn cells(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, (row, values, avg))| {
                let reference = self.reference_of(i);
                let shown = |v: Option<f64>, r: Option<f64>| match (reference, r) {
                    (Some(_), Some(r)) => format!("{} ({})", fmt(v), fmt(Some(r))),
                    _ => fmt(v),
                };
                let mut c = vec![row.label.clone()];
                c.extend(values.iter().enumerate().map(|(j, v)| {
                    let text = shown(*v, reference.and_then(|(r, _)| r[j]));
                    match self.spread_of(row, j) {
                        Some(sd) => format!("{text} ± {}", fmt(Some(sd))),
                        None => text,
                    }
                }));
                c.push(shown(*avg, reference.and_then(|(_, a)| *a)));
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
        if self.references.is_some() {
            out.push_str("\nIn parentheses: the reference's value.");
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
        let num = |v: &Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let mut header = self.header();
        if self.references.is_some() {
            header.extend(self.titles.iter().map(|t| format!("{t} (reference)")));
            header.push("average (reference)".into());
        }
        let mut out = header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(",") + "\n";
        for (i, (row, values, avg)) in self.rows.iter().enumerate() {
            let mut c = vec![esc(&row.label)];
            c.extend(values.iter().map(num));
            c.push(num(avg));
            c.push(esc(&row.source));
            if self.references.is_some() {
                match self.reference_of(i) {
                    Some((r, a)) => {
                        c.extend(r.iter().map(num));
                        c.push(num(a));
                    }
                    None => c.extend(std::iter::repeat_n(String::new(), values.len() + 1)),
                }
            }
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

/// Puts `columns` in the reference's task order (tasks it lacks after them, in their
/// order; tasks only it has get a column too) and `rows` in its row order, adding an
/// empty row for each reference row not measured yet.
fn order_by_reference(
    columns: &mut Vec<(String, String)>,
    rows: &mut Vec<ReportRow>,
    reference: &Reference,
    chosen: &BTreeMap<String, String>,
) {
    let mut ordered: Vec<(String, String)> = Vec::new();
    for task in &reference.tasks {
        match columns.iter().position(|(t, _)| t == task) {
            Some(i) => ordered.push(columns.remove(i)),
            None => ordered.push((task.clone(), chosen.get(task).cloned().unwrap_or_default())),
        }
    }
    ordered.append(columns);
    *columns = ordered;
    let mut sorted: Vec<ReportRow> = Vec::new();
    for r in &reference.rows {
        match rows
            .iter()
            .position(|row| super::reference::matches(&r.label, &row.label))
        {
            Some(i) => sorted.push(rows.remove(i)),
            None => sorted.push(ReportRow {
                label: r.label.clone(),
                metrics: Value::Object(Default::default()),
                ..ReportRow::default()
            }),
        }
    }
    sorted.append(rows);
    *rows = sorted;
}

/// The reference's values of `r` for each column (by task name).
fn aligned(
    reference: &Reference,
    r: &ReferenceRow,
    columns: &[(String, String)],
) -> Vec<Option<f64>> {
    columns
        .iter()
        .map(|(task, _)| {
            let at = reference.tasks.iter().position(|t| t == task)?;
            r.values[at]
        })
        .collect()
}

/// Mean of the values of higher-is-better columns (none: `None`).
fn higher_is_better_mean(columns: &[(String, String)], values: &[Option<f64>]) -> Option<f64> {
    let kept: Vec<f64> = columns
        .iter()
        .zip(values)
        .filter(|((_, m), _)| !LOWER_IS_BETTER.contains(&m.as_str()))
        .filter_map(|(_, v)| *v)
        .collect();
    (!kept.is_empty()).then(|| kept.iter().sum::<f64>() / kept.len() as f64)
}

/// A table cell's number.
pub fn fmt(v: Option<f64>) -> String {
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
                ..ReportRow::default()
            },
            ReportRow {
                label: "base".into(),
                source: "ffff".into(),
                metrics: json!({"arc": {"acc": 0.4, "acc_norm": 0.2}}),
                ..ReportRow::default()
            },
        ];
        let t = ResultsTable::build("T", rows, &TableLayout::default());
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

    #[test]
    fn a_reference_orders_rows_and_columns_and_is_shown_beside_the_values() {
        let row = |label: &str, arc: f64, mmlu: f64| ReportRow {
            label: label.into(),
            source: format!("fp-{label}"),
            metrics: json!({"mmlu": {"acc": mmlu}, "arc_challenge": {"acc": 0.0, "acc_norm": arc}}),
            ..ReportRow::default()
        };
        let rows = vec![
            row("layout=(2+1)x8|16", 0.5, 0.25),
            row("extra", 0.1, 0.1),
            row("base", 0.5, 0.5),
        ];
        let reference = Reference::parse(
            "row,arc_challenge,mmlu,average\nbase,54.18,45.87,45.34\n(4+1)x8,51.37,44.36,45.25\n(2+1)x8|16,53.05,44.52,\n",
        )
        .unwrap();
        let layout = TableLayout {
            headers: [("arc_challenge".to_string(), "ARC".to_string())].into(),
            scale: 100.0,
            reference: Some(reference),
            ..TableLayout::default()
        };
        let t = ResultsTable::build("T", rows, &layout);
        let labels: Vec<&str> = t.rows.iter().map(|(r, _, _)| r.label.as_str()).collect();
        // The reference's order, a not-yet-measured reference row, then the rest.
        assert_eq!(labels, ["base", "(4+1)x8", "layout=(2+1)x8|16", "extra"]);
        assert_eq!(t.columns[0], ("arc_challenge".into(), "acc_norm".into()));
        assert_eq!(t.columns[1].0, "mmlu");
        let md = t.markdown();
        assert!(
            md.contains("| run | ARC | mmlu (acc) | average | record |"),
            "{md}"
        );
        // Reference average given: shown as is; absent: the mean of its tasks.
        assert!(
            md.contains("| base | 50.0000 (54.1800) | 50.0000 (45.8700) | 50.0000 (45.3400) |"),
            "{md}"
        );
        assert!(
            md.contains("| (4+1)x8 | – (51.3700) | – (44.3600) | – (45.2500) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| layout=(2+1)x8|16 | 50.0000 (53.0500) | 25.0000 (44.5200) | 37.5000 (48.7850) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| extra | 10.0000 | 10.0000 | 10.0000 |"),
            "{md}"
        );
        let csv = t.csv();
        assert!(csv.starts_with("run,ARC,mmlu (acc),average,record,ARC (reference),mmlu (acc) (reference),average (reference)\n"), "{csv}");
        assert!(csv.contains("\nextra,10,10,10,fp-extra,,,\n"), "{csv}");
    }
}
