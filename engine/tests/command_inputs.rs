//! The `command` stage under inputs too large for the environment: a glob of 2000 files
//! runs (the joined paths are left out of `SLAYER_IN_<NAME>`, the `_LIST` file has them
//! all) instead of failing with "Argument list too long", and a small input beside it
//! is still a variable.

mod common;

use common::{Workspace, result};
use slayer_engine::Outcome;

#[test]
fn a_glob_of_2000_files_runs_through_the_list_file() {
    let ws = Workspace::new("many.yaml", "");
    let docs = ws.path().join("docs");
    std::fs::create_dir(&docs).expect("mkdir");
    // Long names: 2000 joined paths are ~200 KB, over Linux's 128 KiB per variable.
    for i in 0..2000 {
        let name = format!("document-{i:04}-with-a-name-long-enough-to-fill-the-environment.txt");
        std::fs::write(docs.join(name), "x\n").expect("write input");
    }
    std::fs::write(ws.path().join("one.txt"), "one\n").expect("write input");
    ws.write_manifest(
        r#"
name: many
stages:
  count:
    kind: command
    inputs: {docs: "docs/*.txt", one: one.txt}
    with:
      run: >-
        ! env | grep -q '^SLAYER_IN_DOCS=' &&
        test "$(wc -l < "$SLAYER_IN_DOCS_LIST")" -eq 2000 &&
        test "$(xargs -a "$SLAYER_IN_DOCS_LIST" cat | wc -l)" -eq 2000 &&
        test "$(cat "$SLAYER_IN_ONE")" = one &&
        echo ok > $SLAYER_OUT/ok
      outputs: {ok: ok}
"#,
    );
    let results = ws.run();
    let r = result(&results, "count");
    assert!(matches!(r.outcome, Outcome::Ran { .. }), "{:?}", r.outcome);
}
