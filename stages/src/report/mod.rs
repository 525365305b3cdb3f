//! Results tables: the `report` stage kind and the table behind `slayer report`.
//!
//! Rows are stage instances (grid combinations), columns are tasks (each task's primary
//! metric) plus their average, like the paper's Table 3. Every row names the run record
//! (fingerprint) its numbers come from, so a number in a paper draft can be traced with
//! `slayer lineage` / `slayer show`.

pub mod command;
pub mod compare;
pub mod items;
pub mod page;
pub mod reference;
pub mod stats;
mod svg;
mod table;

pub use table::{ReportRow, ResultsTable, TableLayout, primary_metric};

use std::path::Path;

use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpecs, Metrics, OutputSpec, Registry, StageContext, StageError, TypedStage,
};

pub fn register(r: &mut Registry) {
    r.add_typed(Report);
}

/// The `report` stage kind.
pub struct Report;

/// Parameters of `report`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// Title of the table.
    #[serde(default = "default_title")]
    pub title: String,
    /// Metric per task to show (task -> metric); other tasks use their primary metric
    /// (acc_norm, else acc, else exact_match / pass@1 / recall, else the first number).
    #[serde(default)]
    pub metric: std::collections::BTreeMap<String, String>,
    /// Row label per stage instance, e.g. `{eval_base_b: base}`; a grid instance is
    /// labelled by its grid values (`strategy=s`) unless renamed here. Instances with the
    /// same label share a row.
    #[serde(default)]
    pub rows: std::collections::BTreeMap<String, String>,
    /// Column prefix per input when prefixes are needed (default: the input's name),
    /// e.g. `{base_b: injection}` puts a baseline's numbers under the same columns.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, String>,
    /// Column title per task, e.g. `{arc_challenge: ARC}` (default: `task (metric)`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Factor applied to every value shown: `100` prints fractions as percentages, as
    /// the paper's tables do.
    #[serde(default = "one")]
    pub scale: f64,
    /// Grid axes averaged over, e.g. `[seed]`: rows that differ only in them become one
    /// row of means ± sample standard deviations.
    #[serde(default)]
    pub aggregate: Vec<String>,
    /// A row label (after `rows` renaming and aggregation) every other row is compared
    /// with: mean difference per column with a paired bootstrap interval over the items
    /// both were scored on, and McNemar's exact test for right/wrong metrics. Needs the
    /// items: an input `X_items` (e.g. `recall_b[*].items`) beside each metrics input
    /// `X` (`items` beside `metrics`). The numbers, unrounded, are also the stage's
    /// `comparison` metric (`slayer show --json`, `slayer exec` prints it).
    #[serde(default)]
    pub compare_to: Option<String>,
    /// Bootstrap resamples of `compare_to`'s intervals.
    #[serde(default = "default_resamples")]
    pub bootstrap: usize,
    /// Confidence level of `compare_to`'s intervals.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
}

fn default_resamples() -> usize {
    10_000
}

fn default_confidence() -> f64 {
    0.95
}

fn one() -> f64 {
    1.0
}

fn default_title() -> String {
    "Results".into()
}

impl TypedStage for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    // 2: the comparison's numbers are recorded as the `comparison` metric.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "Collect metrics.json files (e.g. `eval[*].metrics`) into a Markdown/HTML/CSV table and an SVG chart";

    /// Any input names: each is a set of metrics.json files (usually gathered:
    /// `eval[*].metrics`). Rows with the same label merge; when two inputs report the
    /// same task for one row, columns are prefixed by the input name
    /// (`injection/synthetic`, `forgetting/synthetic`). An input named `reference` is
    /// instead a CSV of values to print beside the measured ones (e.g. a paper's table;
    /// header `row,<task>,…[,average]`, rows labelled like the report's rows or by a grid
    /// value such as a layout), whose order the rows and columns then follow.
    fn inputs() -> InputSpecs {
        InputSpecs::Any
    }

    fn outputs(_: &ReportParams) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("markdown", "report.md"),
            OutputSpec::new("html", "report.html"),
            OutputSpec::new("csv", "report.csv"),
            OutputSpec::new("svg", "report.svg"),
        ]
    }

    fn run(&self, p: ReportParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        if ctx.inputs.is_empty() {
            return Err(StageError::msg(
                "report needs at least one input of metrics.json files, e.g. `metrics: eval[*].metrics`",
            ));
        }
        let reference = match ctx.inputs.get(REFERENCE) {
            Some(files) => match files.items.as_slice() {
                [(_, path)] => Some(reference::Reference::read(path)?),
                items => {
                    return Err(StageError::msg(format!(
                        "input `{REFERENCE}`: expected one CSV file, got {}",
                        items.len()
                    )));
                }
            },
            None => None,
        };
        let item_sets = read_item_sets(&p, ctx)?;
        let (rows, prefix) = metric_rows(&p, ctx)?;
        let layout = TableLayout {
            metric: p.metric,
            headers: p.headers,
            scale: p.scale,
            reference,
        };
        let rows = if p.aggregate.is_empty() {
            rows
        } else {
            compare::aggregate(rows, &p.aggregate)
        };
        let table = ResultsTable::build(&p.title, rows, &layout);
        let comparison = match &p.compare_to {
            Some(baseline) => {
                if item_sets.is_empty() {
                    return Err(StageError::msg(
                        "compare_to needs the items: add an input `X_items` (e.g. `recall_b[*].items`) beside each metrics input `X`",
                    ));
                }
                let settings = compare::CompareSettings {
                    baseline,
                    over: &p.aggregate,
                    resamples: p.bootstrap,
                    level: p.confidence,
                    seed: 0,
                    prefixed: prefix,
                };
                Some(
                    compare::Comparison::build(&table, &item_sets, &settings)
                        .map_err(StageError::msg)?,
                )
            }
            None => None,
        };
        let (mut markdown, mut html) = (table.markdown(), table.html());
        if let Some(c) = &comparison {
            markdown.push_str(&c.markdown(&table));
            html.push_str(&c.html(&table));
        }
        write(&ctx.out("report.md"), &markdown)?;
        write(&ctx.out("report.html"), &html)?;
        write(&ctx.out("report.csv"), &table.csv())?;
        write(&ctx.out("report.svg"), &svg::bar_chart(&table))?;
        ctx.log.line(&markdown);
        let mut m = Metrics::new();
        m.insert("rows".into(), table.rows.len().into());
        m.insert("tasks".into(), table.columns.len().into());
        if let Some(c) = &comparison {
            m.insert("comparison".into(), c.to_json(&table));
        }
        Ok(m)
    }
}

/// The row label of a stage instance: its entry in `rows`; else, for a grid instance
/// (`base_b[seed=1]`) of a stage renamed in `rows`, the new name followed by the grid
/// values (`pretrained,seed=1`, so `aggregate: [seed]` merges them); else its grid
/// values (`strategy=s,seed=1`).
/// The per-item outcomes of every `X_items` input, by (column group, row label).
fn read_item_sets(p: &ReportParams, ctx: &StageContext) -> Result<compare::ItemsByRow, StageError> {
    let mut item_sets = compare::ItemsByRow::new();
    for (input, files) in ctx.inputs.iter() {
        let Some(metrics_input) = items_input_of(input) else {
            continue;
        };
        let group = p
            .columns
            .get(&metrics_input)
            .unwrap_or(&metrics_input)
            .clone();
        for (label, path) in &files.items {
            let outcomes = items::read(path)?;
            let entry = item_sets
                .entry((group.clone(), row_label(&p.rows, label)))
                .or_default();
            entry.extend(outcomes);
        }
    }
    Ok(item_sets)
}

/// One row per row label from every metrics file of the inputs (rows of the same label
/// merged), and whether columns carry their input's name: only when two inputs report
/// the same task for the same row (e.g. `injection/synthetic` and
/// `forgetting/synthetic`).
fn metric_rows(p: &ReportParams, ctx: &StageContext) -> Result<(Vec<ReportRow>, bool), StageError> {
    // (input, row label, source, metrics) for every file.
    let mut found = Vec::new();
    for (input, files) in ctx
        .inputs
        .iter()
        .filter(|(name, _)| *name != REFERENCE && items_input_of(name).is_none())
    {
        for (label, path) in &files.items {
            let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
            let metrics: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                StageError::msg(format!("{}: not a metrics JSON file: {e}", path.display()))
            })?;
            let label = row_label(&p.rows, label);
            let source = fingerprint_of(path).unwrap_or_else(|| path.display().to_string());
            let group = p.columns.get(input).unwrap_or(input).clone();
            found.push((group, label, source, metrics));
        }
    }
    let tasks = |m: &serde_json::Value| -> Vec<String> {
        m.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let prefix = found.iter().enumerate().any(|(i, (inp, label, _, m))| {
        found[..i].iter().any(|(inp2, label2, _, m2)| {
            inp != inp2 && label == label2 && tasks(m).iter().any(|t| tasks(m2).contains(t))
        })
    });
    let mut rows: Vec<ReportRow> = Vec::new();
    for (input, label, source, metrics) in found {
        let metrics = match (prefix, metrics) {
            (true, serde_json::Value::Object(m)) => serde_json::Value::Object(
                m.into_iter()
                    .map(|(k, v)| (format!("{input}/{k}"), v))
                    .collect(),
            ),
            (_, other) => other,
        };
        match rows.iter_mut().find(|r| r.label == label) {
            Some(row) => row.merge(metrics, &source),
            None => rows.push(ReportRow {
                label,
                source,
                metrics,
                ..ReportRow::default()
            }),
        }
    }
    Ok((rows, prefix))
}

fn row_label(rows: &std::collections::BTreeMap<String, String>, instance: &str) -> String {
    if let Some(renamed) = rows.get(instance) {
        return renamed.clone();
    }
    let grid = table::row_label(instance);
    match instance.split_once('[') {
        Some((stage, _)) if grid != instance => match rows.get(stage) {
            Some(renamed) => format!("{renamed},{grid}"),
            None => grid,
        },
        _ => grid,
    }
}

/// The input that holds reference values instead of metrics.
const REFERENCE: &str = "reference";

/// For an input of items.parquet files (`X_items`, or `items`), the metrics input it
/// belongs to (`X`, or `metrics`).
fn items_input_of(name: &str) -> Option<String> {
    if name == "items" {
        return Some("metrics".into());
    }
    name.strip_suffix("_items").map(str::to_string)
}

fn write(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| StageError::io(path, e))
}

/// The fingerprint of a stored output path (`…/.slayer/out/<fingerprint>/…`).
pub fn fingerprint_of(path: &Path) -> Option<String> {
    let comps: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    comps
        .windows(3)
        .find(|w| w[0] == ".slayer" && w[1] == "out")
        .map(|w| w[2].clone())
}

#[cfg(test)]
mod tests {
    use super::row_label;

    #[test]
    fn renamed_grid_instances_keep_their_grid_values() {
        let rows = [
            ("base_b".to_string(), "pretrained".to_string()),
            ("base_a[seed=2]".to_string(), "seed two".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(row_label(&rows, "base_b"), "pretrained");
        assert_eq!(row_label(&rows, "base_b[seed=1]"), "pretrained,seed=1");
        assert_eq!(row_label(&rows, "base_a[seed=2]"), "seed two");
        assert_eq!(
            row_label(&rows, "recall_b[strategy=s,seed=1]"),
            "strategy=s,seed=1"
        );
        assert_eq!(row_label(&rows, "other"), "other");
    }
}
