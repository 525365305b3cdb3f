//! The quickstart manifest end to end, shrunk (fewer people, one epoch, two seeds) so it
//! runs in seconds: every stage kind it uses works together, the report merges the seeds
//! into mean ± sd, a rerun is a no-op, and changing one strategy's learning rate reruns
//! exactly that branch (under every seed) and the report; the experiment page
//! (`slayer report --html`) holds up in a real browser.

mod common;

use std::collections::BTreeSet;

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

    check_html_page(&ws, 51);

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

/// The experiment page (`slayer report --html`) rendered by headless Chromium (`.ci/run`
/// installs it; this fails, not skips, without it): read back from the DOM after its
/// script ran, the DAG has one node per instance, every results cell links to a record
/// on the page, the paired-comparison table and the stages' plots are there, and the
/// console shows no error.
/// A screenshot lands beside the page.
fn check_html_page(ws: &Workspace, instances: usize) {
    let dir = ws.path().join("page");
    let page = ws.slayer(&["report", "quickstart.yaml", "--html", dir.to_str().unwrap()]);
    assert_eq!(page.code, 0, "{}{}", page.stdout, page.stderr);
    let index = dir.join("index.html");
    assert!(index.is_file(), "{}", page.stdout);
    let url = format!("file://{}", index.display());
    let chromium = |extra: &[&str]| {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium (Debian `chromium`, installed by .ci/run) must be on PATH")
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let html = String::from_utf8(dom.stdout).unwrap();
    let console = String::from_utf8_lossy(&dom.stderr);
    // The script ran to its end (it marks the body), and nothing was logged as an error.
    assert!(
        html.contains("data-ready=\"1\""),
        "the page's script did not finish"
    );
    for bad in ["Uncaught", "ERROR:CONSOLE", "console.error"] {
        assert!(!console.contains(bad), "console: {console}");
    }
    assert_eq!(
        html.matches("class=\"dag-node\"").count(),
        instances,
        "DAG nodes"
    );
    let ids: BTreeSet<&str> = html
        .split("id=\"rec-")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    let results = html
        .split("<table class=\"results\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("results table");
    let mut cells = 0;
    for row in results.split("<tr>").skip(2) {
        for cell in row.split("<td>").skip(2) {
            let target = cell
                .split("href=\"#rec-")
                .nth(1)
                .map(|s| &s[..s.find('"').unwrap()])
                .unwrap_or_else(|| panic!("a results cell without a record link: {cell}"));
            assert!(
                ids.contains(target),
                "link to a record not on the page: {target}"
            );
            cells += 1;
        }
    }
    // 2 seeds x (4 strategies x 2 evals + 2 base evals), one task each.
    assert_eq!(cells, 20, "{results}");
    assert!(html.contains("class=\"ci\""), "no paired-comparison table");
    assert!(
        html.contains("paired bootstrap interval"),
        "no confidence intervals"
    );
    assert!(
        html.contains("<svg") && html.contains("class=\"timeline\""),
        "no timeline"
    );
    // The stages' own plots: a loss curve per training run, the importance figures and
    // the report's chart (2 seeds x (1 pretrain + 4 injections) + 2 + 1).
    let plots = html.matches("src=\"data:image/svg+xml;base64,").count();
    assert_eq!(plots, 13, "plots on the page");
    let shot = dir.join("page.png");
    let out = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,2400",
        "--hide-scrollbars",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false)
    );
}
