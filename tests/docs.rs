//! The docs agree with the code: the stage catalog is generated from the registered
//! kinds, and the manifest reference names every key the parser accepts.

mod common;

use std::path::Path;

#[test]
fn stage_catalog_matches_the_registered_kinds() {
    let ws = common::Workspace::new();
    let run = ws.slayer(&["kinds", "--markdown"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/stages.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == run.stdout,
        "docs/stages.md is out of date: regenerate it with\n  cargo run -- kinds --markdown > docs/stages.md"
    );
}

#[test]
fn manifest_reference_names_every_key() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/manifest.md"))
            .unwrap();
    let ws = common::Workspace::new();
    let schema: serde_json::Value = serde_json::from_str(&ws.slayer(&["schema"]).stdout).unwrap();
    let top = schema["properties"].as_object().unwrap();
    let stage = schema["properties"]["stages"]["additionalProperties"]["properties"]
        .as_object()
        .unwrap();
    for key in top.keys().chain(stage.keys()) {
        assert!(
            text.contains(&format!("`{key}`")),
            "docs/manifest.md does not document `{key}`"
        );
    }
}
