//! The `report` stage with a `reference` input (a paper's table as CSV): rows in the
//! reference's order, display headers, values scaled to percentages with the
//! reference's beside them; a bad reference names its file and line.

mod common;

use common::Workspace;

const MANIFEST: &str = r#"
grid:
  layout: ["(2+1)x8|16", "mine"]
stages:
  eval:
    kind: command
    with:
      run: "if [ '${grid.layout}' = mine ]; then v=0.1; else v=0.5; fi; echo \"{\\\"arc\\\": {\\\"acc_norm\\\": $v}}\" > $SLAYER_OUT/metrics.json"
      outputs: {metrics: metrics.json}
  eval_base:
    kind: command
    with:
      run: "echo '{\"arc\": {\"acc_norm\": 0.25}}' > $SLAYER_OUT/metrics.json"
      outputs: {metrics: metrics.json}
  report:
    kind: report
    inputs:
      metrics: "eval[*].metrics"
      base: eval_base.metrics
      reference: paper.csv
    with:
      scale: 100
      rows: {eval_base: base}
      headers: {arc: ARC}
"#;

#[test]
fn the_report_follows_the_reference_and_prints_it_beside_the_measured_values() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", MANIFEST);
    ws.write(
        "paper.csv",
        "row,arc,average\nbase,54.18,\n(2+1)x8|16,53.05,\n(4+1)x8,51.37,\n",
    );
    let run = ws.slayer(&["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let show = ws.slayer(&["show", "report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let md = std::fs::read_to_string(v["output_paths"]["markdown"].as_str().unwrap()).unwrap();
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| run"))
        .collect();
    assert!(md.contains("| run | ARC | average | record |"), "{md}");
    assert!(
        rows[0].starts_with("| base | 25.0000 (54.1800) | 25.0000 (54.1800) |"),
        "{md}"
    );
    assert!(
        rows[1].starts_with("| layout=(2+1)x8|16 | 50.0000 (53.0500) |"),
        "{md}"
    );
    assert!(rows[2].starts_with("| (4+1)x8 | – (51.3700) |"), "{md}");
    assert!(
        rows[3].starts_with("| layout=mine | 10.0000 | 10.0000 |"),
        "{md}"
    );
    assert_eq!(rows.len(), 4, "{md}");
    // `slayer run` ends with the table, too.
    assert!(
        run.stdout.contains("| base | 25.0000 (54.1800)"),
        "{}",
        run.stdout
    );

    ws.write("paper.csv", "row,arc\nbase,fifty\n");
    let bad = ws.slayer(&["run"]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    let all = format!("{}{}", bad.stdout, bad.stderr);
    assert!(
        all.contains("paper.csv: reference CSV: line 2, column `arc`: `fifty` is not a number"),
        "{all}"
    );
}
