//! The paper's manifests validate and plan without any weights present:
//! `slayer run --dry-run manifests/paper/table3.yaml` lists exactly the paper's Table 3
//! (14 expansion layouts and the unexpanded base model) over one shared import and one
//! tokenized corpus per source, and the committed reference values are the paper's
//! (`../shared/paper/method.md`, section 6).

mod common;

use std::path::{Path, PathBuf};

use common::Workspace;

/// Table 3's expansion layouts in the paper's row order, in slayer's notation.
const PAPER_LAYOUTS: [&str; 14] = [
    "(4+1)x8",
    "(2+1)x3 (4+1)x3 (7+1)x2",
    "(2+1)x3 (7+1)x2 (4+1)x3",
    "(4+1)x3 (2+1)x3 (7+1)x2",
    "(4+1)x3 (7+1)x2 (2+1)x3",
    "(7+1)x2 (4+1)x3 (2+1)x3",
    "(7+1)x2 (2+1)x3 (4+1)x3",
    "16|(2+1)x8",
    "(2+1)x8|16",
    "(2+1)x8|16◇",
    "(2+1)x6|17|1◇",
    "(2+1)x8|11|1◇",
    "(2+1)x8|12|1◇",
    "(2+1)x8|13|1◇",
];

fn paper_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/paper")
}

/// Instance names of the dry run's plan, in order.
fn planned(manifest: &str) -> Vec<String> {
    let ws = Workspace::new();
    let path = paper_dir().join(manifest);
    let run = ws.slayer(&["run", "--dry-run", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("(dry run: nothing was executed)"),
        "{}",
        run.stdout
    );
    // Plan lines: `  NAME   KIND   would run: …`; names hold single spaces at most.
    run.stdout
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains("would run"))
        .map(|l| l.trim_start().split("  ").next().unwrap().to_string())
        .collect()
}

fn layouts_of(names: &[String], stage: &str) -> Vec<String> {
    let prefix = format!("{stage}[layout=");
    names
        .iter()
        .filter_map(|n| n.strip_prefix(&prefix)?.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

#[test]
fn table3_plans_exactly_the_papers_rows_over_one_shared_upstream() {
    let names = planned("table3.yaml");
    for stage in ["expand", "cpt", "eval"] {
        assert_eq!(
            layouts_of(&names, stage),
            PAPER_LAYOUTS,
            "{stage}: {names:#?}"
        );
    }
    let count = |name: &str| names.iter().filter(|n| *n == name).count();
    // The base row: the imported model evaluated as it is.
    for shared in ["base", "eval_base", "cpt_data", "report"] {
        assert_eq!(count(shared), 1, "{shared}: {names:#?}");
    }
    let kinds: Vec<&String> = names.iter().filter(|n| n.starts_with("tok[")).collect();
    assert_eq!(
        kinds,
        ["tok[source=code]", "tok[source=math]"],
        "one tokenized corpus per source"
    );
    assert_eq!(names.len(), 1 + 2 + 2 + 1 + 3 * 14 + 1 + 1, "{names:#?}");
}

#[test]
fn table3_extra_lists_the_papers_layouts_first_then_its_own() {
    let names = planned("table3_extra.yaml");
    let layouts = layouts_of(&names, "expand");
    assert_eq!(layouts[..14], PAPER_LAYOUTS);
    assert_eq!(layouts.len(), 20);
    assert!(
        layouts[14..]
            .iter()
            .all(|l| !PAPER_LAYOUTS.contains(&l.as_str()))
    );
}

/// The reference CSV's rows and numbers are the paper's Table 3 as transcribed in
/// `../shared/paper/method.md` (section 6), row by row.
#[test]
fn table3_reference_is_the_papers_table() {
    let method = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/paper/method.md");
    let method = std::fs::read_to_string(&method).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the repo)",
            method.display()
        )
    });
    let table = method
        .split("Table 3 (Llama-2-7B")
        .nth(1)
        .expect("method.md has Table 3");
    let paper: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| layout"))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(paper.len(), 15, "{paper:?}");
    let csv = std::fs::read_to_string(paper_dir().join("table3_reference.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "row,arc_challenge,hellaswag,mmlu,truthfulqa_mc2,winogrande,gsm8k,humaneval,average"
    );
    let ours: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(ours.len(), 15);
    assert_eq!(ours[0][0], "LLaMA2-7B");
    assert!(
        paper[0][0].starts_with("LLaMA2-7B (base"),
        "{}",
        paper[0][0]
    );
    for (i, (p, o)) in paper.iter().zip(&ours).enumerate().skip(1) {
        // The paper writes `(2+1)x8 13 1◇ (delete 2, …)`; slayer `(2+1)x8|13|1◇`: drop
        // the remark, then a space next to a bare block count is a `|`.
        let label = match p[0].find(" (") {
            Some(at) if p[0][at + 2..].starts_with(char::is_alphabetic) => &p[0][..at],
            _ => p[0].as_str(),
        };
        let parts: Vec<&str> = label.split(' ').collect();
        let mut label = parts[0].to_string();
        for w in parts.windows(2) {
            let groups = w[0].starts_with('(') && w[1].starts_with('(');
            label.push(if groups { ' ' } else { '|' });
            label.push_str(w[1]);
        }
        assert_eq!(o[0], label, "row {i}");
        assert_eq!(o[0], PAPER_LAYOUTS[i - 1], "row {i}");
    }
    for (p, o) in paper.iter().zip(&ours) {
        assert_eq!(p[1..], o[1..], "numbers of {}", o[0]);
    }
}

#[test]
fn main_plans_table2s_models_and_its_reference_is_the_papers() {
    let names = planned("main.yaml");
    for stage in ["expand", "cpt", "sft", "eval_cpt", "eval"] {
        let methods: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(&format!("{stage}[method=")))
            .collect();
        assert_eq!(
            methods,
            [
                &format!("{stage}[method=llama_pro]"),
                &format!("{stage}[method=slayer]")
            ],
            "{stage}: {names:#?}"
        );
    }
    assert_eq!(names.iter().filter(|n| *n == "eval_base").count(), 1);
    let manifest = std::fs::read_to_string(paper_dir().join("main.yaml")).unwrap();
    assert!(manifest.contains("{name: llama_pro, layout: \"(4+1)x8\"}"));
    assert!(manifest.contains("{name: slayer, layout: \"(2+1)x8|13|1◇\"}"));
    // Every reference row's eight numbers appear, in order, in method.md's Table 2.
    let method = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/paper/method.md");
    let method = std::fs::read_to_string(&method).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the repo)",
            method.display()
        )
    });
    let table2 = method
        .split("Table 2 (30B-token CPT")
        .nth(1)
        .expect("method.md has Table 2");
    let table2 = table2
        .split("Table 4")
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let csv = std::fs::read_to_string(paper_dir().join("table2_reference.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 5);
    for row in rows {
        let cells: Vec<&str> = row.split(',').collect();
        let numbers = cells[1..].join(" / ");
        // The label, perhaps with a remark (`LLaMA Pro (8.3B, …)`), then the numbers.
        let at = table2
            .find(&numbers)
            .unwrap_or_else(|| panic!("{row}\n{table2}"));
        let before = table2[..at].rsplit(['—', ';']).next().unwrap().trim();
        assert!(
            before == cells[0] || before.starts_with(&format!("{} (", cells[0])),
            "{row}: `{before}`"
        );
    }
}

#[test]
fn law_plans_both_models_both_methods_and_their_bases() {
    let names = planned("law.yaml");
    let evals: Vec<&str> = names
        .iter()
        .filter(|n| n.starts_with("eval"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        evals,
        [
            "eval_base[model=llama2]",
            "eval_base[model=mistral]",
            "eval[model=llama2,method=slayer]",
            "eval[model=llama2,method=llama_pro]",
            "eval[model=mistral,method=slayer]",
            "eval[model=mistral,method=llama_pro]",
        ]
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("law_docs")).count(),
        1,
        "one corpus"
    );
    let manifest = std::fs::read_to_string(paper_dir().join("law.yaml")).unwrap();
    assert!(manifest.contains("tasks/unfair_tos.yaml"));
    assert!(manifest.contains("betas: [0.9, 0.95]"));
}
