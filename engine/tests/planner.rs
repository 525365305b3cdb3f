//! The planner and the executor against a registry of one fake stage kind (`note`: writes
//! its `value` to its output; no burn, no processes): `resolve` expands the grid and orders
//! every instance after its dependencies, `plan` finds exactly the instances an edit makes
//! stale (the edited one by its parameter, its descendants by their upstream) and leaves
//! the rest cached, and the executor starts no instance before its dependencies finished,
//! also with several jobs.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Workspace;
use slayer_engine::plan::plan;
use slayer_engine::stage::{InputSpecs, Metrics, OutputSpec, StageContext, StageError, TypedStage};
use slayer_engine::{Outcome, Pipeline, Registry, RunOptions, StaleReason, State, execute};

/// A logical clock shared by every `note` run in this test binary.
static CLOCK: AtomicUsize = AtomicUsize::new(0);

struct Note;

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoteParams {
    value: String,
}

impl TypedStage for Note {
    type Params = NoteParams;
    const KIND: &'static str = "note";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "writes its value (test kind)";
    fn inputs() -> InputSpecs {
        InputSpecs::Any
    }
    fn outputs(_: &NoteParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("o", "o")]
    }
    fn run(&self, p: NoteParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let start = CLOCK.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(15));
        std::fs::write(ctx.out("o"), &p.value).map_err(|e| StageError::io(&ctx.out("o"), e))?;
        let end = CLOCK.fetch_add(1, Ordering::SeqCst);
        let mut m = Metrics::new();
        m.insert("start".into(), start.into());
        m.insert("end".into(), end.into());
        Ok(m)
    }
}

fn registry() -> Registry {
    let mut r = Registry::default();
    r.add_typed(Note);
    r
}

const GRID: &str = r#"
grid:
  x: [1, 2]
  y: [a, b]
stages:
  root: {kind: note, with: {value: r}}
  other: {kind: note, with: {value: o}}
  cell:
    kind: note
    inputs: {up: root.o}
    with: {value: "${grid.x}-${grid.y}"}
  side:
    kind: note
    inputs: {up: other.o}
    with: {value: s}
  gather:
    kind: note
    inputs: {cells: "cell[*].o", side: side.o}
    with: {value: g}
"#;

fn names(p: &Pipeline) -> Vec<String> {
    p.instances.iter().map(|i| i.name.clone()).collect()
}

#[test]
fn resolve_expands_the_grid_and_orders_instances_after_their_dependencies() {
    let ws = Workspace::new("slayer.yaml", GRID);
    let p = Pipeline::load(&ws.manifest, &registry()).expect("load");
    let all: BTreeSet<String> = names(&p).into_iter().collect();
    let want: BTreeSet<String> = [
        "root",
        "other",
        "side",
        "gather",
        "cell[x=1,y=a]",
        "cell[x=1,y=b]",
        "cell[x=2,y=a]",
        "cell[x=2,y=b]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(all, want);
    for (i, inst) in p.instances.iter().enumerate() {
        for &d in &inst.deps {
            assert!(
                d < i,
                "{} comes before its dependency {}",
                inst.name,
                p.instances[d].name
            );
        }
    }
    let gather = p.instances.iter().find(|i| i.name == "gather").unwrap();
    let deps: BTreeSet<&str> = gather
        .deps
        .iter()
        .map(|&d| p.instances[d].name.as_str())
        .collect();
    assert_eq!(deps.len(), 5, "four cells and side: {deps:?}");
    assert!(deps.contains("side") && deps.iter().filter(|d| d.starts_with("cell[")).count() == 4);
}

#[test]
fn an_edit_makes_exactly_its_descendants_stale() {
    let ws = Workspace::new("slayer.yaml", GRID);
    let reg = registry();
    let store = ws.store();
    let p = Pipeline::load(&ws.manifest, &reg).expect("load");
    let before = plan(&p, &store, &BTreeSet::new()).unwrap();
    assert!(
        before.iter().all(|s| s.state == State::Missing),
        "{before:?}"
    );
    let opts = RunOptions {
        jobs: 1,
        quiet: true,
        ..RunOptions::default()
    };
    execute(&p, &store, &opts).expect("execute");
    let after = plan(&p, &store, &BTreeSet::new()).unwrap();
    assert!(after.iter().all(|s| s.state == State::Cached), "{after:?}");

    ws.write_manifest(&GRID.replace(
        "other: {kind: note, with: {value: o}}",
        "other: {kind: note, with: {value: o2}}",
    ));
    let p = Pipeline::load(&ws.manifest, &reg).expect("load");
    let edited = plan(&p, &store, &BTreeSet::new()).unwrap();
    let state = |name: &str| {
        edited
            .iter()
            .find(|s| s.stage == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert!(
        matches!(
            &state("other").reasons[..],
            [StaleReason::ParamChanged { key, .. }] if key == "value"
        ),
        "{:?}",
        state("other").reasons
    );
    for name in ["side", "gather"] {
        assert_eq!(state(name).state, State::Stale, "{name}");
        assert!(
            state(name)
                .reasons
                .iter()
                .any(|r| matches!(r, StaleReason::UpstreamStale { .. })),
            "{name}: {:?}",
            state(name).reasons
        );
    }
    for name in ["root", "cell[x=1,y=a]", "cell[x=2,y=b]"] {
        assert_eq!(state(name).state, State::Cached, "{name}");
    }
}

#[test]
fn the_executor_starts_nothing_before_its_dependencies_finished() {
    let ws = Workspace::new("slayer.yaml", GRID);
    let p = Pipeline::load(&ws.manifest, &registry()).expect("load");
    let store = ws.store();
    let opts = RunOptions {
        jobs: 3,
        quiet: true,
        ..RunOptions::default()
    };
    let results = execute(&p, &store, &opts).expect("execute");
    assert!(
        results
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Ran { .. })),
        "{results:?}"
    );
    let statuses = plan(&p, &store, &BTreeSet::new()).unwrap();
    let clock = |i: usize, key: &str| {
        statuses[i].record.as_ref().unwrap().metrics[key]
            .as_u64()
            .unwrap()
    };
    for (i, inst) in p.instances.iter().enumerate() {
        for &d in &inst.deps {
            assert!(
                clock(i, "start") > clock(d, "end"),
                "{} started before {} ended",
                inst.name,
                p.instances[d].name
            );
        }
    }
}
