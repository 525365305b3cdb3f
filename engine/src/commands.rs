//! The CLI's subcommands as library functions (the binary only parses flags): run,
//! status, why, show, lineage, gc, verify, schema, exec. Each prints to stdout and
//! returns an error that carries its exit code (2 for a rejected manifest).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use slayer_cache::Store;

use crate::error::EngineError;
use crate::executor::{self, Isolation, Outcome, RunOptions};
use crate::pipeline::Pipeline;
use crate::plan::{self, State};
use crate::stage::{Registry, Stage, StageContext, StageInput};
use crate::suggest;

/// The store for a manifest: the nearest ancestor of its directory that already has a
/// `.slayer/` or is a git checkout's root, else the manifest's directory.
pub fn workspace_for(manifest: &Path) -> PathBuf {
    let dir = std::path::absolute(manifest)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut cur = Some(dir.as_path());
    while let Some(d) = cur {
        if d.join(".slayer").is_dir() || d.join(".git").exists() {
            return d.to_path_buf();
        }
        cur = d.parent();
    }
    dir
}

/// Loads a manifest and opens its store.
pub fn open(manifest: &Path, registry: &Registry) -> Result<(Pipeline, Store), EngineError> {
    open_with(manifest, registry, false)
}

/// [`open`], optionally accepting raw inputs that do not exist yet (dry runs).
pub fn open_with(
    manifest: &Path,
    registry: &Registry,
    missing_ok: bool,
) -> Result<(Pipeline, Store), EngineError> {
    if !manifest.exists() {
        return Err(EngineError::Invalid(format!(
            "manifest {} not found (pass a path, or run where slayer.yaml is)",
            manifest.display()
        )));
    }
    let pipeline = if missing_ok {
        Pipeline::load_for_plan(manifest, registry)?
    } else {
        Pipeline::load(manifest, registry)?
    };
    let store = Store::open(&workspace_for(manifest))?;
    Ok((pipeline, store))
}

/// Instance indices for stage names given on the command line.
pub fn select(pipeline: &Pipeline, names: &[String]) -> Result<Vec<usize>, EngineError> {
    let mut out = Vec::new();
    for name in names {
        let found = pipeline.select(name);
        if found.is_empty() {
            return Err(EngineError::UnknownStage {
                name: name.clone(),
                suggestion: suggest::did_you_mean(name, pipeline.names()),
            });
        }
        out.extend(found);
    }
    Ok(out)
}

/// Options of `slayer run`.
pub struct RunArgs {
    pub jobs: usize,
    pub only: Vec<String>,
    pub force: Vec<String>,
    pub keep_going: bool,
    pub dry_run: bool,
    pub quiet: bool,
    /// `local`, `slurm` or `inline`; `None`: the workspace's `[executor] kind`, else local.
    pub executor: Option<String>,
    /// The slayer binary that child processes and jobs run.
    pub program: PathBuf,
    pub remote: Option<std::sync::Arc<dyn slayer_cache::RemoteCache>>,
    /// GPUs the scheduler may hand out; `None`: [`crate::gpus::detected`].
    pub gpus: Option<usize>,
    /// Memory the scheduler may hand out, in bytes; `None`: [`detected_memory`].
    pub memory: Option<u64>,
    /// Hash every input and reused output again instead of trusting the stat cache.
    pub verify_inputs: bool,
}

/// Memory this process may use: the machine's (`MemTotal` of /proc/meminfo), or its
/// cgroup's limit (`memory.max`) where that is lower; `None` when neither is readable.
pub fn detected_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
        let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|m| m.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// How `slayer run` runs its stages, from `--executor` and the workspace's config.
fn isolation(manifest: &Path, args: &RunArgs) -> Result<Isolation, EngineError> {
    let workspace = workspace_for(manifest);
    let section = crate::workspace_config::WorkspaceConfig::load(&workspace)?.executor;
    let kind = args
        .executor
        .clone()
        .or(section.kind.clone())
        .unwrap_or_else(|| "local".into());
    Ok(match kind.as_str() {
        "local" => Isolation::ChildProcess {
            program: args.program.clone(),
        },
        "inline" => Isolation::InProcess,
        "slurm" => {
            let config = section.slurm.unwrap_or_default();
            Isolation::Slurm {
                program: config
                    .slayer
                    .clone()
                    .unwrap_or_else(|| args.program.clone()),
                config,
            }
        }
        other => {
            return Err(EngineError::Invalid(format!(
                "unknown executor `{other}`: expected `local`, `slurm` or `inline`"
            )));
        }
    })
}

/// `slayer run`: plan or execute; Err when a stage failed.
pub fn run(manifest: &Path, registry: &Registry, args: &RunArgs) -> Result<(), EngineError> {
    let (pipeline, store) = open_with(manifest, registry, args.dry_run)?;
    if args.verify_inputs {
        store.distrust_stat_cache();
    }
    let force: BTreeSet<usize> = select(&pipeline, &args.force)?.into_iter().collect();
    let only = if args.only.is_empty() {
        None
    } else {
        Some(select(&pipeline, &args.only)?)
    };
    if args.dry_run {
        return dry_run(
            &pipeline,
            &store,
            &force,
            only.as_deref(),
            &isolation(manifest, args)?,
        );
    }
    let opts = RunOptions {
        jobs: args.jobs,
        keep_going: args.keep_going,
        force,
        only,
        gpus: args.gpus.unwrap_or_else(crate::gpus::detected),
        memory: args.memory.or_else(detected_memory),
        quiet: args.quiet,
        isolation: isolation(manifest, args)?,
        remote: args.remote.clone(),
    };
    let results = executor::execute(&pipeline, &store, &opts)?;
    let failed = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    let ran = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Ran { .. }))
        .count();
    let cached = results
        .iter()
        .filter(|r| {
            matches!(
                r.outcome,
                Outcome::Cached | Outcome::Waited | Outcome::Pulled
            )
        })
        .count();
    if !args.quiet {
        println!("{ran} ran, {cached} cached, {failed} failed");
    }
    if crate::interrupt::requested() {
        return Err(EngineError::Interrupted);
    }
    if failed > 0 {
        return Err(EngineError::StagesFailed { failed });
    }
    Ok(())
}

fn dry_run(
    pipeline: &Pipeline,
    store: &Store,
    force: &BTreeSet<usize>,
    only: Option<&[usize]>,
    isolation: &Isolation,
) -> Result<(), EngineError> {
    let statuses = plan::plan(pipeline, store, force)?;
    let keep: BTreeSet<usize> = match only {
        Some(t) => pipeline.with_ancestors(t),
        None => (0..pipeline.instances.len()).collect(),
    };
    println!(
        "manifest {} ({}): {} stages, {} instances",
        pipeline.manifest.name,
        pipeline.manifest.path.display(),
        pipeline.manifest.stages.len(),
        pipeline.instances.len()
    );
    let mut would_run = 0;
    for i in keep {
        let (inst, s) = (&pipeline.instances[i], &statuses[i]);
        let deps: Vec<&str> = inst
            .deps
            .iter()
            .map(|d| pipeline.instances[*d].name.as_str())
            .collect();
        let runs = s.state != State::Cached;
        let action = if runs {
            would_run += 1;
            format!("would run: {}", s.reason)
        } else {
            "cached".to_string()
        };
        println!(
            "  {:<40} {:<16} {}{}",
            inst.name,
            inst.kind.kind(),
            action,
            if deps.is_empty() {
                String::new()
            } else {
                format!("  <- {}", deps.join(", "))
            }
        );
        if runs && let Isolation::Slurm { program, config } = isolation {
            print_job_script(pipeline, store, inst, s, program, config)?;
        }
    }
    println!("{would_run} would run (dry run: nothing was executed)");
    Ok(())
}

/// The batch script a Slurm run would submit for `inst` (paths of the attempt's private
/// dir shown as `<fingerprint>-<attempt>`, which only the run creates).
fn print_job_script(
    pipeline: &Pipeline,
    store: &Store,
    inst: &crate::pipeline::Instance,
    status: &plan::StageStatus,
    program: &Path,
    config: &crate::slurm::SlurmConfig,
) -> Result<(), EngineError> {
    let fp = status
        .fingerprint
        .clone()
        .unwrap_or_else(|| "FINGERPRINT".into());
    let job_dir = store.root().join("tmp").join(format!("{fp}-<attempt>"));
    let script = crate::slurm::JobScript {
        config,
        resources: &inst.resources,
        stage: &inst.name,
        program,
        spec: &job_dir.join(crate::job::SPEC_FILE),
        log: &store.log_path(&fp),
        slurm_out: &job_dir.join("slurm.out"),
        work_dir: &pipeline.manifest.dir,
    }
    .render()
    .map_err(|e| EngineError::Invalid(format!("stage `{}`: {e}", inst.name)))?;
    for line in script.lines() {
        println!("      | {line}");
    }
    Ok(())
}

/// `slayer status`.
pub fn status(
    manifest: &Path,
    registry: &Registry,
    as_json: bool,
    remote: Option<&dyn slayer_cache::RemoteCache>,
) -> Result<(), EngineError> {
    let (pipeline, store) = open(manifest, registry)?;
    let mut statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    store.save_stat_cache()?;
    if let Some(remote) = remote {
        for s in statuses.iter_mut().filter(|s| s.state != State::Cached) {
            if let Some(fp) = &s.fingerprint {
                s.remote = remote.contains(fp).map_err(|e| {
                    EngineError::Failed(format!("remote cache {}: {e}", remote.location()))
                })?;
            }
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&statuses).unwrap_or_default()
        );
        return Ok(());
    }
    let width = statuses.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    for s in &statuses {
        if s.remote {
            println!("{:<7} {:<width$}  cached (remote)", "remote", s.stage);
        } else {
            println!(
                "{:<7} {:<width$}  {}",
                s.state.to_string(),
                s.stage,
                s.reason
            );
        }
    }
    Ok(())
}

/// `slayer dag`: the manifest's graph with each instance's state.
pub fn dag(
    manifest: &Path,
    registry: &Registry,
    format: crate::dag::DagFormat,
) -> Result<(), EngineError> {
    let (pipeline, store) = open(manifest, registry)?;
    let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    store.save_stat_cache()?;
    print!("{}", crate::dag::render(&pipeline, &statuses, format));
    Ok(())
}

/// `slayer diff A B`: each of A and B is an instance of the manifest (its current
/// record, else its latest run's) or a fingerprint (or a unique prefix of one, at least
/// 8 characters) of any record in the store.
pub fn diff(
    manifest: &Path,
    registry: &Registry,
    a: &str,
    b: &str,
    all: bool,
) -> Result<(), EngineError> {
    let (pipeline, store) = open(manifest, registry)?;
    let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    store.save_stat_cache()?;
    let resolve = |name: &str| -> Result<slayer_cache::RunRecord, EngineError> {
        let found = pipeline.select(name);
        if let [i] = found.as_slice() {
            let s = &statuses[*i];
            return s
                .record
                .clone()
                .or_else(|| plan::latest_records(&store, &pipeline.manifest.name).remove(&s.stage))
                .ok_or_else(|| {
                    EngineError::Invalid(format!("{} has no run record yet (never run)", s.stage))
                });
        }
        if !found.is_empty() {
            return Err(EngineError::Invalid(format!(
                "`{name}` names {} instances; name one, e.g. `{}`",
                found.len(),
                pipeline.instances[found[0]].name
            )));
        }
        let matching: Vec<slayer_cache::RunRecord> = if name.len() >= 8 {
            store
                .records()?
                .into_iter()
                .filter(|r| r.fingerprint.starts_with(name))
                .collect()
        } else {
            Vec::new()
        };
        match <[_; 1]>::try_from(matching) {
            Ok([r]) => Ok(r),
            Err(m) if m.len() > 1 => Err(EngineError::Invalid(format!(
                "fingerprint prefix `{name}` matches {} records; give more characters",
                m.len()
            ))),
            Err(_) => Err(EngineError::Invalid(format!(
                "`{name}` is neither a stage of {} nor the fingerprint (8+ characters) of a record",
                pipeline.manifest.path.display()
            ))),
        }
    };
    let (ra, rb) = (resolve(a)?, resolve(b)?);
    print!("{}", crate::diff::render(&ra, &rb, all));
    Ok(())
}

/// `slayer why STAGE`: every reason, and the chain through upstreams that will rerun.
pub fn why(manifest: &Path, registry: &Registry, stage: &str) -> Result<(), EngineError> {
    let (pipeline, store) = open(manifest, registry)?;
    let targets = select(&pipeline, &[stage.to_string()])?;
    let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    store.save_stat_cache()?;
    for t in targets {
        explain(&pipeline, &statuses, t, 0, &mut BTreeSet::new());
    }
    Ok(())
}

fn explain(
    pipeline: &Pipeline,
    statuses: &[plan::StageStatus],
    i: usize,
    depth: usize,
    seen: &mut BTreeSet<usize>,
) {
    let s = &statuses[i];
    let pad = "  ".repeat(depth);
    if s.state == State::Cached {
        println!("{pad}{} is cached", s.stage);
        return;
    }
    println!("{pad}{} is {} because:", s.stage, s.state);
    for r in &s.reasons {
        println!("{pad}  - {r}");
    }
    if !seen.insert(i) {
        return;
    }
    for r in &s.reasons {
        if let plan::StaleReason::UpstreamStale { stage, .. } = r
            && let Some(u) = pipeline.instance(stage)
        {
            explain(pipeline, statuses, u, depth + 1, seen);
        }
    }
}

/// `slayer show STAGE`: the run record, with absolute output paths.
pub fn show(
    manifest: &Path,
    registry: &Registry,
    stage: &str,
    as_json: bool,
) -> Result<(), EngineError> {
    let (pipeline, store) = open(manifest, registry)?;
    let targets = select(&pipeline, &[stage.to_string()])?;
    let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    let mut shown = Vec::new();
    for t in targets {
        let s = &statuses[t];
        let record = match &s.record {
            Some(r) => Some(r.clone()),
            None => plan::latest_records(&store, &pipeline.manifest.name).remove(&s.stage),
        };
        let Some(record) = record else {
            return Err(EngineError::Invalid(format!(
                "{} has no run record yet (never run)",
                s.stage
            )));
        };
        let mut v = serde_json::to_value(&record).unwrap_or(Value::Null);
        let paths: serde_json::Map<String, Value> = record
            .outputs
            .keys()
            .filter_map(|o| {
                store
                    .output_path(&record, o)
                    .map(|p| (o.clone(), json!(p.display().to_string())))
            })
            .collect();
        v["output_paths"] = Value::Object(paths);
        v["state"] = json!(s.state);
        if s.state != State::Cached {
            v["note"] = json!(format!(
                "this record is from an earlier run; now {}: {}",
                s.state, s.reason
            ));
        }
        shown.push(v);
    }
    if as_json {
        let out = if shown.len() == 1 {
            shown.remove(0)
        } else {
            Value::Array(shown)
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for v in shown {
            print_record(&v);
        }
    }
    Ok(())
}

fn print_record(v: &Value) {
    let s = |k: &str| {
        v.get(k)
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    println!("stage        {}", s("stage"));
    println!("kind         {} (v{})", s("kind"), s("stage_version"));
    println!("state        {}", s("state"));
    println!("fingerprint  {}", s("fingerprint"));
    println!(
        "ran          {} -> {} ({:.1} s) on {}",
        s("started_at"),
        s("finished_at"),
        v["duration_s"].as_f64().unwrap_or(0.0),
        s("host")
    );
    println!(
        "slayer       {} (git {})",
        s("slayer_version"),
        s("git_revision")
    );
    println!("params       {}", v["params"]);
    if let Some(inputs) = v["inputs"].as_object() {
        for (name, i) in inputs {
            println!(
                "input        {name} = {} (hash {})",
                i["source"].as_str().unwrap_or(""),
                i["hash"].as_str().unwrap_or("").get(..12).unwrap_or("")
            );
        }
    }
    if let Some(outputs) = v["output_paths"].as_object() {
        for (name, p) in outputs {
            println!("output       {name} = {}", p.as_str().unwrap_or(""));
        }
    }
    println!("metrics      {}", v["metrics"]);
    if let Some(log) = v.get("log").and_then(Value::as_str) {
        println!("log          .slayer/{log}");
    }
    if let Some(note) = v.get("note").and_then(Value::as_str) {
        println!("note         {note}");
    }
}

/// `slayer lineage PATH|STAGE`.
pub fn lineage(manifest: &Path, registry: &Registry, target: &str) -> Result<(), EngineError> {
    let as_path = Path::new(target);
    let (record, store) = if as_path.exists() {
        let abs = std::path::absolute(as_path).unwrap_or_else(|_| as_path.to_path_buf());
        let store = Store::open(&workspace_for(&abs))?;
        (crate::lineage::record_for_path(&store, as_path)?, store)
    } else {
        let (pipeline, store) = open(manifest, registry)?;
        let targets = select(&pipeline, &[target.to_string()])?;
        let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
        let rec = targets
            .first()
            .and_then(|t| statuses[*t].record.clone())
            .or_else(|| plan::latest_records(&store, &pipeline.manifest.name).remove(target));
        (rec, store)
    };
    match record {
        Some(r) => {
            print!("{}", crate::lineage::render(&store, &r)?);
            Ok(())
        }
        None => Err(EngineError::Invalid(format!(
            "no run record produced {target}"
        ))),
    }
}

/// `slayer gc`: keep what the given manifests reach (their current fingerprints).
pub fn gc(manifests: &[PathBuf], registry: &Registry) -> Result<(), EngineError> {
    let mut keep = BTreeSet::new();
    let mut store = None;
    for m in manifests {
        let (pipeline, s) = open(m, registry)?;
        for st in plan::plan(&pipeline, &s, &BTreeSet::new())? {
            if let Some(fp) = st.fingerprint {
                keep.insert(fp);
            }
        }
        store = Some(s);
    }
    let Some(store) = store else {
        return Err(EngineError::Invalid(
            "gc needs at least one manifest to know what to keep".into(),
        ));
    };
    let report = store.gc(&keep)?;
    println!(
        "gc: kept {} results, removed {} records and {} objects, freed {}",
        keep.len(),
        report.records_removed,
        report.objects_removed,
        bytes(report.bytes_freed)
    );
    Ok(())
}

/// `slayer verify [--repair]`: re-hash every object and output, read every record;
/// prints each problem, and with `repair` removes what is damaged (the affected stages
/// rerun next time). Non-zero exit if anything was found, repaired or not.
pub fn verify(workspace: &Path, repair: bool) -> Result<(), EngineError> {
    let store = Store::open(workspace)?;
    let report = store.verify()?;
    for (path, expected, actual) in &report.corrupted {
        println!(
            "CORRUPT object {} (expected {}, content is {})",
            path.display(),
            expected.short(),
            actual.short()
        );
    }
    for (path, problem) in &report.corrupt_records {
        println!("CORRUPT record {}: {problem}", path.display());
    }
    for fp in &report.records_with_missing_outputs {
        println!("MISSING outputs of record {fp}");
    }
    for fp in &report.records_with_modified_outputs {
        println!("MODIFIED outputs of record {fp} (edited or replaced on disk)");
    }
    for (fp, path) in &report.dangling_outputs {
        println!(
            "DANGLING output {} of record {fp}: its object is gone from the store",
            path.display()
        );
    }
    println!(
        "verify: {} objects checked, {} corrupted, {} corrupt records, {} records with missing outputs, {} with modified outputs, {} with dangling outputs",
        report.objects_checked,
        report.corrupted.len(),
        report.corrupt_records.len(),
        report.records_with_missing_outputs.len(),
        report.records_with_modified_outputs.len(),
        report.dangling_outputs.len()
    );
    if report.is_clean() {
        return Ok(());
    }
    if !repair {
        return Err(EngineError::Invalid(
            "the store has problems (see above); `slayer verify --repair` removes the damaged entries (their stages rerun)".into(),
        ));
    }
    let repaired = store.repair(&report)?;
    for fp in &repaired.skipped_in_use {
        println!("in use by a running `slayer run`, not repaired: {fp}");
    }
    println!(
        "repair: removed {} corrupt records, {} damaged results and {} corrupted objects; the affected stages rerun on the next `slayer run`",
        repaired.corrupt_records_removed, repaired.results_removed, repaired.objects_removed
    );
    Err(EngineError::Invalid(
        "the store had problems (see above); repaired".into(),
    ))
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `slayer exec KIND --in NAME=PATH --set KEY=VALUE --out DIR`: one stage, no manifest,
/// no cache. Prints the metrics as JSON.
pub fn exec(
    registry: &Registry,
    kind: &str,
    inputs: &[(String, PathBuf)],
    sets: &[(String, String)],
    out: &Path,
    device: &str,
) -> Result<Value, EngineError> {
    let stage = registry.get(kind).ok_or_else(|| EngineError::UnknownKind {
        kind: kind.to_string(),
        suggestion: suggest::did_you_mean(kind, registry.names()),
    })?;
    let params = exec_params(stage.as_ref(), sets)?;
    let ctx_inputs = exec_inputs(stage.as_ref(), kind, inputs)?;
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !out.join(EXEC_MARKER).exists() {
            return Err(EngineError::Invalid(format!(
                "--out {} exists and was not written by `slayer exec`; choose a new directory",
                out.display()
            )));
        }
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
    let staging = beside(out, parent, "partial");
    let scratch = staging.join(".scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| EngineError::io(&staging, e))?;
    let ctx = StageContext {
        inputs: ctx_inputs,
        work_dir: std::env::current_dir().unwrap_or_default(),
        device: device.to_string(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        scratch_dir: scratch.clone(),
        ..StageContext::local(kind, &staging)
    };
    let result = stage.run(&params, &ctx);
    let _ = std::fs::remove_dir_all(&scratch);
    let metrics = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            // The stage failed at its work (exit 1), unlike bad flags (exit 2).
            return Err(EngineError::Failed(format!("{kind} failed: {e}")));
        }
    };
    let outputs = stage.outputs(&params);
    for o in &outputs {
        if !staging.join(&o.path).exists() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(EngineError::Failed(format!(
                "{kind} did not write its output `{}` ({})",
                o.name, o.path
            )));
        }
    }
    // A kind whose only output is a directory (a model) gets it as --out itself.
    let staging = match outputs.as_slice() {
        [only] if staging.join(&only.path).is_dir() => {
            let inner = staging.join(&only.path);
            let lifted = beside(out, parent, "lifted");
            std::fs::rename(&inner, &lifted).map_err(|e| EngineError::io(&inner, e))?;
            let _ = std::fs::remove_dir_all(&staging);
            lifted
        }
        _ => staging,
    };
    let _ = std::fs::write(staging.join(EXEC_MARKER), "written by slayer exec\n");
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    }
    std::fs::rename(&staging, out).map_err(|e| EngineError::io(out, e))?;
    Ok(Value::Object(metrics))
}

/// The file in an output directory that says `slayer exec` wrote it (and may replace it).
const EXEC_MARKER: &str = ".slayer-exec";

/// A private directory beside `out` in `parent`, e.g. `.model.partial-1234`.
fn beside(out: &Path, parent: &Path, what: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent.join(format!(".{name}.{what}-{}", std::process::id()))
}

/// `slayer exec`'s `--set KEY=VALUE` flags (each VALUE read as YAML, else a string;
/// dotted keys nest) checked by the stage kind.
fn exec_params(stage: &dyn Stage, sets: &[(String, String)]) -> Result<Value, EngineError> {
    let mut params = serde_json::Map::new();
    for (key, value) in sets {
        let parsed = crate::yaml::parse(std::sync::Arc::new(crate::yaml::SourceFile {
            path: PathBuf::from(format!("--set {key}")),
            text: value.clone(),
        }))
        .map(|n| n.to_json())
        .unwrap_or_else(|_| Value::String(value.clone()));
        insert_dotted(&mut params, key, parsed);
    }
    stage.check_params(&Value::Object(params)).map_err(|e| {
        let key: Vec<String> = e.path.iter().map(|s| format!("{s:?}")).collect();
        EngineError::Invalid(format!("--set {}: {}", key.join("."), e.message))
    })
}

/// `slayer exec`'s `--in NAME=PATH` flags as the stage's inputs: names the kind has, every
/// required one given, every path there (absolute, labelled as given).
fn exec_inputs(
    stage: &dyn Stage,
    kind: &str,
    inputs: &[(String, PathBuf)],
) -> Result<std::collections::BTreeMap<String, StageInput>, EngineError> {
    if let crate::stage::InputSpecs::Fixed(specs) = stage.inputs() {
        for (name, _) in inputs {
            if !specs.iter().any(|s| s.name == name) {
                return Err(EngineError::Invalid(format!(
                    "stage kind `{kind}` has no input `{name}`{}",
                    suggest::help(name, specs.iter().map(|s| s.name))
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                )));
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !inputs.iter().any(|(n, _)| n == spec.name) {
                return Err(EngineError::Invalid(format!(
                    "stage kind `{kind}` needs --in {}=PATH ({})",
                    spec.name, spec.doc
                )));
            }
        }
    }
    let mut ctx_inputs = std::collections::BTreeMap::new();
    for (name, path) in inputs {
        if !path.exists() {
            return Err(EngineError::Invalid(format!(
                "--in {name}={}: no such file or directory",
                path.display()
            )));
        }
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        ctx_inputs
            .entry(name.clone())
            .or_insert_with(|| StageInput { items: Vec::new() })
            .items
            .push((path.display().to_string(), abs));
    }
    Ok(ctx_inputs)
}

fn insert_dotted(map: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            map.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(inner) = entry {
                insert_dotted(inner, rest, value);
            }
        }
    }
}

/// `slayer kinds`: every stage kind with its inputs, outputs and parameter schema.
pub fn kinds(registry: &Registry) -> String {
    let mut out = String::new();
    for k in registry.kinds() {
        out.push_str(&format!(
            "{} (v{}): {}\n",
            k.kind(),
            k.version(),
            k.summary()
        ));
        match k.inputs() {
            crate::stage::InputSpecs::Any => out.push_str("  inputs: any names\n"),
            crate::stage::InputSpecs::Fixed(specs) => {
                for s in specs {
                    out.push_str(&format!(
                        "  input  {}{}: {}\n",
                        s.name,
                        if s.required { "" } else { " (optional)" },
                        s.doc
                    ));
                }
            }
        }
        let schema = k.params_schema();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                let default = p
                    .get("default")
                    .map(|d| format!(" = {d}"))
                    .unwrap_or_default();
                let doc = p.get("description").and_then(Value::as_str).unwrap_or("");
                out.push_str(&format!("  param  {name}{default}: {doc}\n"));
            }
        }
    }
    out
}

/// The stage catalog as Markdown (docs/stages.md is this output; a test keeps them equal).
pub fn kinds_markdown(registry: &Registry) -> String {
    let mut out = String::from(
        "# Stage catalog\n\nGenerated by `slayer kinds --markdown` from the registered kinds and their parameter\nschemas; `tests/docs.rs` fails when this file and the code disagree.\n",
    );
    for k in registry.kinds() {
        out.push_str(&format!("\n## `{}`\n\n{}\n\n", k.kind(), k.summary()));
        match k.inputs() {
            crate::stage::InputSpecs::Any => out.push_str("Inputs: any names.\n\n"),
            crate::stage::InputSpecs::Fixed(specs) if specs.is_empty() => {
                out.push_str("Inputs: none.\n\n")
            }
            crate::stage::InputSpecs::Fixed(specs) => {
                out.push_str("| input | required | meaning |\n|---|---|---|\n");
                for s in specs {
                    out.push_str(&format!(
                        "| `{}` | {} | {} |\n",
                        s.name,
                        if s.required { "yes" } else { "no" },
                        s.doc.replace('|', "\\|")
                    ));
                }
                out.push('\n');
            }
        }
        let schema = k.params_schema();
        let defaults = k.check_params(&Value::Null).ok();
        let props = schema.get("properties").and_then(Value::as_object);
        match props {
            Some(props) if !props.is_empty() => {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                out.push_str("| parameter | default | meaning |\n|---|---|---|\n");
                for (name, p) in props {
                    let default = if required.contains(&name.as_str()) {
                        "(required)".to_string()
                    } else {
                        p.get("default")
                            .cloned()
                            .or_else(|| defaults.as_ref().and_then(|d| d.get(name).cloned()))
                            .map(|d| format!("`{d}`"))
                            .unwrap_or_else(|| "–".into())
                    };
                    let doc = p
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .replace('\n', " ")
                        .replace('|', "\\|");
                    out.push_str(&format!(
                        "| `{name}` | {} | {doc} |\n",
                        default.replace('|', "\\|")
                    ));
                }
            }
            _ => out.push_str("Parameters: none.\n"),
        }
        let outputs = defaults.as_ref().map(|d| k.outputs(d)).unwrap_or_default();
        if !outputs.is_empty() {
            let list: Vec<String> = outputs
                .iter()
                .map(|o| format!("`{}` (`{}`)", o.name, o.path))
                .collect();
            out.push_str(&format!("\nOutputs: {}.\n", list.join(", ")));
        }
    }
    out
}

/// The remote cache for a manifest's workspace: `flag` (`--remote`), else `remote` in
/// the workspace's `slayer.toml`.
pub fn remote_url(manifest: &Path, flag: Option<&str>) -> Result<String, EngineError> {
    let workspace = workspace_for(manifest);
    configured_remote_url(manifest, flag)?.ok_or_else(|| {
            EngineError::Invalid(format!(
                "no remote cache: pass --remote s3://BUCKET/PREFIX or set `remote = \"s3://BUCKET/PREFIX\"` in {}",
            crate::workspace_config::WorkspaceConfig::path(&workspace).display()
        ))
    })
}

/// [`remote_url`], or `None` when neither names one (`run` and `status` then work
/// without a remote).
pub fn configured_remote_url(
    manifest: &Path,
    flag: Option<&str>,
) -> Result<Option<String>, EngineError> {
    if let Some(url) = flag {
        return Ok(Some(url.to_string()));
    }
    Ok(crate::workspace_config::WorkspaceConfig::load(&workspace_for(manifest))?.remote)
}

/// `N objects, SIZE` of a transfer, with what was already there.
fn transfer_line(t: &slayer_cache::Transfer, there: &str) -> String {
    format!(
        "{} objects, {}{}",
        t.objects,
        bytes(t.bytes),
        if t.skipped > 0 {
            format!(" ({} {there})", t.skipped)
        } else {
            String::new()
        }
    )
}

/// The summary line's `SIZE in T s (RATE/s)`.
fn throughput(total: u64, started: std::time::Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    format!(
        "{} in {secs:.1} s ({}/s)",
        bytes(total),
        bytes((total as f64 / secs.max(1e-9)) as u64)
    )
}

/// `slayer push`: uploads every result of the manifest that is cached locally.
pub fn push(
    manifest: &Path,
    registry: &Registry,
    remote: &dyn slayer_cache::RemoteCache,
) -> Result<(), EngineError> {
    let (pipeline, store) = open(manifest, registry)?;
    let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    store.save_stat_cache()?;
    let started = std::time::Instant::now();
    let mut total = slayer_cache::Transfer::default();
    let (mut pushed, mut not_cached) = (0, 0);
    for s in &statuses {
        let Some(record) = s.record.as_ref().filter(|_| s.state == State::Cached) else {
            not_cached += 1;
            continue;
        };
        let t = remote.push_counted(&store, record).map_err(|e| {
            EngineError::Failed(format!(
                "cannot push {} to {}: {e}",
                s.stage,
                remote.location()
            ))
        })?;
        println!(
            "pushed  {}  {}",
            s.stage,
            transfer_line(&t, "already there")
        );
        pushed += 1;
        total.objects += t.objects;
        total.skipped += t.skipped;
        total.bytes += t.bytes;
    }
    println!(
        "push: {pushed} results to {}, {} objects uploaded ({} already there), {}{}",
        remote.location(),
        total.objects,
        total.skipped,
        throughput(total.bytes, started),
        if not_cached > 0 {
            format!("; {not_cached} not cached locally")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `slayer pull`: downloads the result of every instance the manifest reaches that is
/// missing locally, in topological order (an instance's fingerprint needs its
/// upstreams' output hashes, so each pulled result lets its downstreams be found).
/// With `metrics_only`, only records are fetched (kept as metrics-only records, which
/// also suffice to find the downstream fingerprints).
pub fn pull(
    manifest: &Path,
    registry: &Registry,
    remote: &dyn slayer_cache::RemoteCache,
    metrics_only: bool,
) -> Result<(), EngineError> {
    let (pipeline, store) = open(manifest, registry)?;
    let started = std::time::Instant::now();
    let mut total = slayer_cache::Transfer::default();
    let mut records: Vec<Option<slayer_cache::RunRecord>> = Vec::new();
    let (mut pulled, mut cached, mut absent, mut unknown, mut failed) = (0, 0, 0, 0, 0);
    for inst in &pipeline.instances {
        let hashes = plan::input_hashes(&pipeline, inst, &store, &|u| {
            records.get(u).cloned().flatten()
        })?;
        let plan::InputHashes::Known(inputs) = hashes else {
            unknown += 1;
            records.push(None);
            continue;
        };
        let fp = plan::fingerprint_of(inst, &inputs);
        if let Ok(Some(local)) = plan::read_record(&store, &fp)?
            && plan::check_record(&store, &local)?.is_none()
        {
            cached += 1;
            records.push(Some(local));
            continue;
        }
        if metrics_only && let Some(local) = store.record_only(&fp)? {
            cached += 1;
            records.push(Some(local));
            continue;
        }
        let got = if metrics_only {
            remote
                .pull_record_only(&store, &fp)
                .map(|r| r.map(|r| (r, slayer_cache::Transfer::default())))
        } else {
            remote.pull_counted(&store, &fp)
        };
        match got {
            Ok(Some((record, t))) => {
                if metrics_only {
                    println!("pulled  {}  record only", inst.name);
                } else {
                    println!(
                        "pulled  {}  {}",
                        inst.name,
                        transfer_line(&t, "already here")
                    );
                }
                pulled += 1;
                total.objects += t.objects;
                total.skipped += t.skipped;
                total.bytes += t.bytes;
                records.push(Some(record));
            }
            Ok(None) => {
                println!("absent  {}  not on the remote", inst.name);
                absent += 1;
                records.push(None);
            }
            Err(e) => {
                eprintln!("failed  {}: {e}", inst.name);
                failed += 1;
                records.push(None);
            }
        }
    }
    store.save_stat_cache()?;
    println!(
        "pull: {pulled} results from {}{}, {} objects downloaded ({} already here), {}; \
         {cached} already here, {absent} not on the remote, {unknown} waiting on upstreams",
        remote.location(),
        if metrics_only { " (records only)" } else { "" },
        total.objects,
        total.skipped,
        throughput(total.bytes, started),
    );
    if failed > 0 {
        return Err(EngineError::Failed(format!(
            "{failed} result(s) could not be pulled (see above); they will rerun"
        )));
    }
    Ok(())
}
