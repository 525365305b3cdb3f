//! `slayer dag`: one node per instance with its state, one edge per dependency; the
//! Mermaid output checked line by line against the flowchart syntax it uses, the DOT
//! output rendered by Graphviz (`dot`, installed by `.ci/run`).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{GRID, Workspace};

/// Node ids with their labels, and edges (from, to).
type Graph = (Vec<(usize, String)>, Vec<(usize, usize)>);

/// Parses the subset of Mermaid flowchart syntax `slayer dag` writes. Panics on any
/// other line.
fn parse_mermaid(text: &str) -> Graph {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("flowchart LR"));
    let id = |s: &str| -> usize {
        s.strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad node id `{s}`"))
    };
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    for line in lines {
        let line = line
            .strip_prefix("  ")
            .unwrap_or_else(|| panic!("unindented line `{line}`"));
        if let Some((from, to)) = line.split_once(" --> ") {
            edges.push((id(from), id(to)));
        } else if let Some(rest) = line.strip_prefix("style ") {
            let (node, fill) = rest.split_once(' ').expect("style line");
            id(node);
            assert!(fill.starts_with("fill:#") && fill.len() == 12, "{line}");
        } else {
            let (node, label) = line.split_once("[\"").expect("node line");
            let label = label.strip_suffix("\"]").expect("closed label");
            assert!(!label.contains('"'), "unescaped quote in {line}");
            nodes.push((id(node), label.to_string()));
        }
    }
    let defined: BTreeSet<usize> = nodes.iter().map(|(n, _)| *n).collect();
    for (a, b) in &edges {
        assert!(
            defined.contains(a) && defined.contains(b),
            "edge to an undefined node"
        );
    }
    (nodes, edges)
}

#[test]
fn the_dag_has_a_node_per_instance_and_an_edge_per_dependency() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", GRID);
    let run = ws.slayer(&["run", "--only", "cell[a=1,b=x]"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    let mermaid = ws.slayer(&["dag"]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    let (nodes, edges) = parse_mermaid(&mermaid.stdout);
    assert_eq!(nodes.len(), 17);
    assert_eq!(edges.len(), 30, "15 from shared, 15 into report");
    let label = |name: &str| {
        nodes
            .iter()
            .find(|(_, l)| l.starts_with(&format!("{name}<br/>")))
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| panic!("no node {name}: {nodes:?}"))
    };
    assert!(
        label("shared").contains("command · cached · "),
        "{}",
        label("shared")
    );
    assert!(label("cell[a=1,b=x]").contains("cached"));
    assert!(label("cell[a=3,b=v]").ends_with("command · missing"));
    assert!(label("report").ends_with("command · missing"));

    let dot = ws.slayer(&["dag", "--format", "dot"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    let file = ws.write("dag.dot", &dot.stdout);
    let svg = Command::new("dot")
        .arg("-Tsvg")
        .arg(&file)
        .output()
        .expect("Graphviz `dot` (apt-get install graphviz; .ci/run installs it)");
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    let svg = String::from_utf8_lossy(&svg.stdout);
    assert_eq!(svg.matches("class=\"node\"").count(), 17);
    assert_eq!(svg.matches("class=\"edge\"").count(), 30);
    assert!(svg.contains("cell[a=2,b=z]"));

    // slayer's own drawing: a node per instance, an edge per dependency, the cached
    // ones carrying their record's fingerprint (the HTML page links them).
    let own = ws.slayer(&["dag", "--format", "svg"]);
    assert_eq!(own.code, 0, "{}", own.stderr);
    let svg = own.stdout;
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert_eq!(svg.matches("class=\"dag-node\"").count(), 17);
    assert_eq!(svg.matches("class=\"dag-edge\"").count(), 30);
    assert_eq!(svg.matches("data-state=\"cached\"").count(), 2);
    assert_eq!(svg.matches(" data-record=\"").count(), 2);
    assert!(svg.contains("data-instance=\"cell[a=2,b=z]\""));
}
