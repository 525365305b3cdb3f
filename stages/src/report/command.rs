//! `slayer report [MANIFEST]`: the results table of a manifest's evaluations, read from
//! their run records (nothing runs), printed as Markdown; and, after `slayer run`, the
//! tables that the manifest's own `report` stages wrote.

use std::collections::BTreeSet;
use std::path::Path;

use slayer_engine::{EngineError, Registry, State, commands, plan};

use super::{ReportRow, ResultsTable, TableLayout};

/// Prints the table of the named stages (default: every `eval` instance) that have a
/// current result; stale or missing ones are listed below it.
pub fn print(manifest: &Path, registry: &Registry, stages: &[String]) -> Result<(), EngineError> {
    let (pipeline, store) = commands::open(manifest, registry)?;
    let selected: BTreeSet<usize> = if stages.is_empty() {
        (0..pipeline.instances.len())
            .filter(|&i| pipeline.instances[i].kind.kind() == "eval")
            .collect()
    } else {
        commands::select(&pipeline, stages)?.into_iter().collect()
    };
    // Metrics-only records (`slayer pull --metrics-only`) count: a table needs no outputs.
    let records = plan::records_for_metrics(&pipeline, &store)?;
    let mut statuses = None;
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for i in selected {
        match &records[i] {
            Some(r) => rows.push(ReportRow {
                label: pipeline.instances[i].name.clone(),
                source: r.fingerprint.clone(),
                metrics: r.metrics.clone(),
                ..ReportRow::default()
            }),
            None => {
                let statuses = match &statuses {
                    Some(s) => s,
                    None => statuses.insert(plan::plan(&pipeline, &store, &BTreeSet::new())?),
                };
                let s = &statuses[i];
                missing.push(format!("{} ({}: {})", s.stage, s.state, s.reason));
            }
        }
    }
    let title = format!("{}: results", pipeline.manifest.name);
    print!(
        "{}",
        ResultsTable::build(&title, rows, &TableLayout::default()).markdown()
    );
    if !missing.is_empty() {
        println!("\nNot in the table (run `slayer run` first):");
        for m in missing {
            println!("- {m}");
        }
    }
    Ok(())
}

/// After a run: prints the `report.md` of every `report` stage of the manifest that has
/// a current result, so that `slayer run` ends with the experiment's results table.
pub fn print_stage_reports(manifest: &Path, registry: &Registry) -> Result<(), EngineError> {
    let (pipeline, store) = commands::open(manifest, registry)?;
    let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    for (inst, s) in pipeline.instances.iter().zip(&statuses) {
        if inst.kind.kind() != "report" {
            continue;
        }
        let path = match (&s.state, &s.record) {
            (State::Cached, Some(r)) => store.output_path(r, "markdown"),
            _ => None,
        };
        if let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) {
            println!("\n{}", text.trim_end());
        }
    }
    Ok(())
}
