//! `slayer diff`: two grid instances, or a stage's record before and after an edit,
//! side by side — only what differs, leaf by leaf.

mod common;

use common::{GRID, Workspace};

#[test]
fn two_grid_instances_differ_in_their_command_and_output_only() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", GRID);
    assert_eq!(ws.slayer(&["run"]).code, 0);
    let d = ws.slayer(&["diff", "cell[a=1,b=x]", "cell[a=2,b=x]"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let lines: Vec<&str> = d.stdout.lines().collect();
    assert!(lines[0].starts_with("--- cell[a=1,b=x] ("), "{}", d.stdout);
    assert!(lines[1].starts_with("+++ cell[a=2,b=x] ("), "{}", d.stdout);
    let changed: Vec<&str> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(changed, ["outputs.c", "params.run"], "{}", d.stdout);
    assert!(
        d.stdout
            .contains("echo 1-x > $SLAYER_OUT/c -> echo 2-x > $SLAYER_OUT/c"),
        "{}",
        d.stdout
    );
    // --all lists the shared input too.
    let all = ws.slayer(&["diff", "--all", "cell[a=1,b=x]", "cell[a=2,b=x]"]);
    assert!(all.stdout.contains("inputs.s "), "{}", all.stdout);
    // A grid stage name alone is ambiguous.
    let bad = ws.slayer(&["diff", "cell", "shared"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("names 15 instances"), "{}", bad.stderr);
}

#[test]
fn an_earlier_run_is_found_by_its_fingerprint() {
    let ws = Workspace::new();
    ws.write("slayer.yaml", GRID);
    assert_eq!(ws.slayer(&["run"]).code, 0);
    let show = ws.slayer(&["show", "shared", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let old = v["fingerprint"].as_str().unwrap()[..10].to_string();
    ws.write("slayer.yaml", &GRID.replace("echo base", "echo BASE"));
    assert_eq!(ws.slayer(&["run", "--only", "shared"]).code, 0);
    let d = ws.slayer(&["diff", &old, "shared"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert!(d.stdout.contains("params.run"), "{}", d.stdout);
    assert!(d.stdout.contains("outputs.s"), "{}", d.stdout);
    let missing = ws.slayer(&["diff", "0000000000", "shared"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("neither a stage"),
        "{}",
        missing.stderr
    );
}
