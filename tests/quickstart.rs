//! The quickstart manifest end to end, shrunk (fewer people, one epoch, two seeds) so it
//! runs in seconds: every stage kind it uses works together, the report merges the seeds
//! into mean ± sd, a rerun is a no-op, and changing one strategy's learning rate reruns
//! exactly that branch (under every seed) and the report.

mod common;

use common::{Workspace, set, shrunk_quickstart};

#[test]
fn quickstart_runs_and_one_strategy_edit_reruns_only_its_branch() {
    let ws = Workspace::new();
    let manifest = shrunk_quickstart();
    ws.write("quickstart.yaml", &manifest);
    let first = ws.slayer(&["run", "quickstart.yaml"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(first.ran().contains("report"), "{}", first.stdout);
    assert_eq!(first.ran().len(), 51, "{}", first.stdout);

    let show = ws.slayer(&["show", "quickstart.yaml", "report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let table = std::fs::read_to_string(v["output_paths"]["markdown"].as_str().unwrap()).unwrap();
    for row in [
        "pretrained (before injection)",
        "strategy=full_ft",
        "strategy=s_strategy",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    // The seeds are merged (`aggregate: [seed]`): one row per strategy, mean ± sd.
    assert!(!table.contains("seed="), "{table}");
    for row in [
        "| pretrained (before injection) | ",
        "| strategy=s_strategy | ",
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("{row}\n{table}"));
        assert!(line.contains(" ± "), "{line}");
    }
    assert!(
        table.contains("injection/synthetic (recall_greedy)"),
        "{table}"
    );
    // Every row compared with the S strategy over the same questions (compare_to).
    let diffs = table
        .split("### Differences from `strategy=s_strategy`")
        .nth(1)
        .unwrap_or_else(|| panic!("no comparison section in\n{table}"));
    for row in [
        "| pretrained (before injection) | ",
        "| strategy=llama_pro | ",
    ] {
        let line = diffs
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("{row}\n{diffs}"));
        assert!(line.contains("(n=") && line.contains(", p="), "{line}");
    }
    assert!(!diffs.contains("| strategy=s_strategy |"), "{diffs}");
    // `slayer run` ends by printing the report stage's table.
    assert!(first.stdout.contains(table.trim_end()), "{}", first.stdout);

    let report = ws.slayer(&["report", "quickstart.yaml"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert!(
        report
            .stdout
            .contains("| recall_b[seed=1,strategy=s_strategy] |"),
        "{}",
        report.stdout
    );
    assert!(
        !report.stdout.contains("Not in the table"),
        "{}",
        report.stdout
    );

    let again = ws.slayer(&["run", "quickstart.yaml"]);
    assert!(again.ran().is_empty(), "{}", again.stdout);

    let edited = manifest.replacen(
        "trainable: expanded, lr: 3.0e-3}  # shallow half",
        "trainable: expanded, lr: 1.0e-3}  # shallow half",
        1,
    );
    assert_ne!(edited, manifest);
    ws.write("quickstart.yaml", &edited);
    let why = ws.slayer(&[
        "why",
        "quickstart.yaml",
        "inject[seed=0,strategy=s_strategy]",
    ]);
    assert!(
        why.stdout.contains("param lr changed 0.003 -> 0.001"),
        "{}",
        why.stdout
    );
    let third = ws.slayer(&["run", "quickstart.yaml"]);
    assert_eq!(
        third.ran(),
        set(&[
            "inject[seed=0,strategy=s_strategy]",
            "inject[seed=1,strategy=s_strategy]",
            "recall_a[seed=0,strategy=s_strategy]",
            "recall_a[seed=1,strategy=s_strategy]",
            "recall_b[seed=0,strategy=s_strategy]",
            "recall_b[seed=1,strategy=s_strategy]",
            "report",
        ]),
        "{}",
        third.stdout
    );
}
