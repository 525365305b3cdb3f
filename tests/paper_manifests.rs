//! The paper's manifests validate and plan without any weights present (issue 8,
//! acceptance 4): `slayer run --dry-run manifests/paper/table3.yaml` lists the 15 layout
//! instances of Table 3 over one shared import / packing upstream.

mod common;

use std::path::Path;

use common::Workspace;

#[test]
fn table3_dry_run_plans_fifteen_layouts_over_one_shared_upstream() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/paper/table3.yaml");
    let ws = Workspace::new();
    let run = ws.slayer(&["run", "--dry-run", manifest.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let count = |prefix: &str| {
        run.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with(prefix))
            .count()
    };
    for per_layout in ["expand[layout=", "cpt[layout=", "eval[layout="] {
        assert_eq!(count(per_layout), 15, "{per_layout}\n{}", run.stdout);
    }
    for shared in ["base ", "cpt_data ", "report "] {
        assert_eq!(count(shared), 1, "{shared}\n{}", run.stdout);
    }
    assert!(
        run.stdout.contains("(dry run: nothing was executed)"),
        "{}",
        run.stdout
    );
}
