//! Running a pipeline: instances in dependency order, several at once within `--jobs`
//! and the machine's threads and GPUs, each either reused from the store or run in a
//! private staging dir and published atomically.
//!
//! Per instance: hash inputs (upstream outputs from their records, raw files through
//! the stat cache) -> fingerprint -> lease it (a concurrent gc then keeps it until the
//! run ends, see [`slayer_cache::Lease`]) -> reuse if a record exists and its outputs are
//! intact -> otherwise take the fingerprint's lock (a concurrent `slayer run` producing
//! the same result is waited for, then reused) -> run -> publish (the record is written
//! last: a killed run leaves no record). A failure skips the instance's descendants and,
//! without `--keep-going`, stops launching new instances.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use slayer_cache::{InputRecord, Lease, RunRecord, Store};

use crate::error::EngineError;
use crate::failure::Failure;
use crate::gpus::GpuPool;
use crate::job::{self, JobSpec};
use crate::pipeline::{InputRef, Pipeline};
use crate::plan::{self, InputHashes};
use crate::progress::Ui;
use crate::stage::{Logger, Progress};

/// How to run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Most instances at once (0 = number of cores).
    pub jobs: usize,
    pub keep_going: bool,
    pub force: BTreeSet<usize>,
    /// Run only these instances and their upstreams.
    pub only: Option<Vec<usize>>,
    /// GPUs available to the scheduler.
    pub gpus: usize,
    /// Memory available to the scheduler in bytes (`None`: not limited): instances
    /// declaring `resources.memory` start only when it is free.
    pub memory: Option<u64>,
    pub quiet: bool,
    pub isolation: Isolation,
    /// A shared cache: results missing locally are pulled from it instead of run, and
    /// every result run here is pushed to it.
    pub remote: Option<std::sync::Arc<dyn slayer_cache::RemoteCache>>,
}

/// Where an attempt at an instance runs.
#[derive(Clone, Debug, Default)]
pub enum Isolation {
    /// As a thread of this process (the engine's own tests, `--executor inline`).
    #[default]
    InProcess,
    /// In a child process of its own, `program __instance SPEC` (see [`crate::child`]).
    ChildProcess { program: PathBuf },
    /// As a Slurm job running `program __instance SPEC` on a node (see [`crate::slurm`]);
    /// `--jobs` is then the most jobs in the queue at once.
    Slurm {
        program: PathBuf,
        config: crate::slurm::SlurmConfig,
    },
}

impl Isolation {
    /// Whether a stage runs in a process of its own on this machine, which can be given
    /// GPUs of its own (`CUDA_VISIBLE_DEVICES`).
    fn names_gpus(&self) -> bool {
        matches!(self, Isolation::ChildProcess { .. })
    }

    fn is_batch(&self) -> bool {
        matches!(self, Isolation::Slurm { .. })
    }
}

/// What happened to one instance.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Cached,
    /// Another process was producing the same result; reused once it finished.
    Waited,
    /// Downloaded from the remote cache (verified) instead of run.
    Pulled,
    Ran {
        seconds: f64,
    },
    Failed(Failure),
    Skipped(String),
}

#[derive(Clone, Debug)]
pub struct StageResult {
    pub stage: String,
    pub outcome: Outcome,
    pub fingerprint: Option<String>,
}

impl StageResult {
    /// The one-line summary printed when the instance finishes.
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Cached => format!("cached   {}", self.stage),
            Outcome::Waited => format!("cached   {} (waited for another run)", self.stage),
            Outcome::Pulled => format!("cached   {} (remote)", self.stage),
            Outcome::Ran { seconds } => format!("ran      {} in {}", self.stage, human(*seconds)),
            Outcome::Failed(m) => format!("FAILED   {}: {m}", self.stage),
            Outcome::Skipped(m) => format!("skipped  {}: {m}", self.stage),
        }
    }
}

fn human(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        format!(
            "{}m{:02}s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    }
}

/// Facts recorded with every run.
struct RunFacts {
    host: String,
    git_revision: Option<String>,
    cores: usize,
}

fn run_facts(pipeline: &Pipeline) -> RunFacts {
    let host = slayer_cache::host_name();
    let git_revision = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&pipeline.manifest.dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    RunFacts {
        host,
        git_revision,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

enum Slot {
    Pending,
    Running,
    Done(Box<RunRecord>),
    Failed,
}

/// Runs the pipeline; returns one result per selected instance, in completion order.
pub fn execute(
    pipeline: &Pipeline,
    store: &Store,
    opts: &RunOptions,
) -> Result<Vec<StageResult>, EngineError> {
    let n = pipeline.instances.len();
    let selected: BTreeSet<usize> = match &opts.only {
        Some(targets) => pipeline.with_ancestors(targets),
        None => (0..n).collect(),
    };
    let facts = run_facts(pipeline);
    let lease = store.lease()?;
    let batch = opts.isolation.is_batch();
    let jobs = match opts.jobs {
        // A cluster queue is not bounded by this machine's cores.
        0 if batch => 256,
        0 => facts.cores,
        n => n,
    };
    let tracker = crate::slurm::Tracker::new(match &opts.isolation {
        Isolation::Slurm { config, .. } => {
            std::time::Duration::from_millis(config.poll_ms.unwrap_or(500).max(50))
        }
        _ => std::time::Duration::from_millis(500),
    });
    let ui = Ui::new(opts.quiet);
    let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Pending).collect();
    let mut results = Vec::new();
    let mut stop = false;
    let (tx, rx) = mpsc::channel::<(usize, StageResult, Option<RunRecord>)>();

    let ctx = RunContext {
        pipeline,
        store,
        lease: &lease,
        ui: &ui,
        facts: &facts,
        isolation: &opts.isolation,
        tracker: &tracker,
        remote: opts.remote.as_deref(),
    };
    std::thread::scope(|scope| {
        let mut running = 0usize;
        let mut machine = Machine::new(opts, facts.cores);
        loop {
            if crate::interrupt::requested() {
                stop = true;
            }
            // Launch what is ready and fits.
            if !stop {
                for i in selected.iter().copied() {
                    if !matches!(slots[i], Slot::Pending) || running >= jobs {
                        continue;
                    }
                    let inst = &pipeline.instances[i];
                    if inst
                        .deps
                        .iter()
                        .any(|d| !matches!(slots[*d], Slot::Done(_)))
                    {
                        continue;
                    }
                    if !(running == 0 || batch || machine.fits(inst)) {
                        continue;
                    }
                    let upstream: BTreeMap<usize, RunRecord> = inst
                        .deps
                        .iter()
                        .filter_map(|d| match &slots[*d] {
                            Slot::Done(r) => Some((*d, (**r).clone())),
                            _ => None,
                        })
                        .collect();
                    slots[i] = Slot::Running;
                    running += 1;
                    let want = threads_for(inst.threads, facts.cores);
                    let assigned = machine.take(i, inst);
                    let tx = tx.clone();
                    let ctx = &ctx;
                    let forced = opts.force.contains(&i);
                    scope.spawn(move || {
                        let (result, record) =
                            run_instance(ctx, i, &upstream, forced, want, assigned);
                        let _ = tx.send((i, result, record));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, result, record)) = rx.recv() else {
                break;
            };
            let inst = &pipeline.instances[i];
            running -= 1;
            machine.release(i, inst);
            match (&result.outcome, record) {
                (Outcome::Failed(_), _) | (_, None) => {
                    slots[i] = Slot::Failed;
                    if !opts.keep_going {
                        stop = true;
                    }
                    for d in descendants(pipeline, i, &selected) {
                        if matches!(slots[d], Slot::Pending) {
                            slots[d] = Slot::Failed;
                            let skipped = StageResult {
                                stage: pipeline.instances[d].name.clone(),
                                outcome: Outcome::Skipped(format!("upstream {} failed", inst.name)),
                                fingerprint: None,
                            };
                            ui.line(&skipped.line());
                            results.push(skipped);
                        }
                    }
                }
                (_, Some(rec)) => slots[i] = Slot::Done(Box::new(rec)),
            }
            results.push(result);
        }
    });
    store.save_stat_cache()?;
    let not_run: Vec<usize> = selected
        .iter()
        .copied()
        .filter(|&i| matches!(slots[i], Slot::Pending))
        .collect();
    for i in not_run {
        let r = StageResult {
            stage: pipeline.instances[i].name.clone(),
            outcome: Outcome::Skipped(
                "not started: an earlier stage failed (use --keep-going to run the rest)".into(),
            ),
            fingerprint: None,
        };
        ui.line(&r.line());
        results.push(r);
    }
    Ok(results)
}

/// What the running stages hold of this machine: cores, GPUs and memory.
struct Machine {
    cores: usize,
    threads_used: usize,
    /// GPUs the scheduler may hand out (`--gpus`).
    gpus: usize,
    /// Counted apart from the pool: a stage started alone holds its GPUs in the count
    /// even when fewer exist, so nothing starts beside it.
    gpus_used: usize,
    /// The local executor hands out GPUs by name; Slurm and the inline executor only
    /// count them (Slurm's --gres picks them, threads cannot be given their own).
    names_gpus: bool,
    /// The GPUs not named to a running stage, and those named to each.
    pool: GpuPool,
    held: BTreeMap<usize, Vec<String>>,
    memory: u64,
    memory_used: u64,
}

impl Machine {
    fn new(opts: &RunOptions, cores: usize) -> Machine {
        Machine {
            cores,
            threads_used: 0,
            gpus: opts.gpus,
            gpus_used: 0,
            pool: GpuPool::new(opts.gpus),
            names_gpus: opts.isolation.names_gpus(),
            held: BTreeMap::new(),
            memory: opts.memory.unwrap_or(u64::MAX),
            memory_used: 0,
        }
    }

    /// Whether `inst`'s threads, GPUs and memory are free.
    fn fits(&self, inst: &crate::pipeline::Instance) -> bool {
        self.threads_used + threads_for(inst.threads, self.cores) <= self.cores
            && self.gpus_used + inst.gpus <= self.gpus
            && self.memory_used.saturating_add(inst.memory) <= self.memory
    }

    /// Hold `inst`'s resources for instance `i`; the names of the GPUs its process is
    /// to see (none where the executor cannot name them, or where a stage started alone
    /// wants more than there are: it sees what this process sees).
    fn take(&mut self, i: usize, inst: &crate::pipeline::Instance) -> Vec<String> {
        self.threads_used += threads_for(inst.threads, self.cores);
        self.gpus_used += inst.gpus;
        self.memory_used += inst.memory;
        if !self.names_gpus {
            return Vec::new();
        }
        let named = self.pool.take(inst.gpus).unwrap_or_default();
        self.held.insert(i, named.clone());
        named
    }

    /// Give back what [`Machine::take`] held for instance `i`.
    fn release(&mut self, i: usize, inst: &crate::pipeline::Instance) {
        self.threads_used -= threads_for(inst.threads, self.cores);
        self.gpus_used -= inst.gpus;
        self.memory_used -= inst.memory;
        if let Some(ids) = self.held.remove(&i) {
            self.pool.give_back(ids);
        }
    }
}

fn threads_for(wanted: usize, cores: usize) -> usize {
    if wanted == 0 {
        cores
    } else {
        wanted.min(cores)
    }
}

fn descendants(pipeline: &Pipeline, root: usize, selected: &BTreeSet<usize>) -> Vec<usize> {
    let mut out = BTreeSet::new();
    let mut changed = true;
    while changed {
        changed = false;
        for &i in selected {
            let inst = &pipeline.instances[i];
            if !out.contains(&i) && inst.deps.iter().any(|d| *d == root || out.contains(d)) {
                out.insert(i);
                changed = true;
            }
        }
    }
    out.into_iter().collect()
}

/// What every instance of one run shares.
struct RunContext<'a> {
    pipeline: &'a Pipeline,
    store: &'a Store,
    lease: &'a Lease,
    ui: &'a Ui,
    facts: &'a RunFacts,
    isolation: &'a Isolation,
    tracker: &'a crate::slurm::Tracker,
    remote: Option<&'a dyn slayer_cache::RemoteCache>,
}

fn run_instance(
    ctx: &RunContext,
    i: usize,
    upstream: &BTreeMap<usize, RunRecord>,
    forced: bool,
    threads: usize,
    gpus: Vec<String>,
) -> (StageResult, Option<RunRecord>) {
    let RunContext {
        pipeline,
        store,
        lease,
        ui,
        remote,
        ..
    } = *ctx;
    let inst = &pipeline.instances[i];
    let mut result = StageResult {
        stage: inst.name.clone(),
        outcome: Outcome::Cached,
        fingerprint: None,
    };
    let (bar_progress, bar) = ui.start(&inst.name);
    let attempt = || -> Result<(Outcome, RunRecord, String), Failure> {
        let hashes = plan::input_hashes(pipeline, inst, store, &|u| upstream.get(&u).cloned())
            .map_err(Failure::store)?;
        let InputHashes::Known(inputs) = hashes else {
            return Err(Failure::Store("internal: upstream results missing".into()));
        };
        let fp = plan::fingerprint_of(inst, &inputs);
        // Before the record is looked at: from here on no gc deletes this result.
        lease.add(&fp).map_err(Failure::store)?;
        let reusable = |store: &Store| -> Result<Option<RunRecord>, Failure> {
            // A corrupt record counts as none: the run's publish replaces it.
            match plan::read_record(store, &fp).map_err(Failure::store)? {
                Ok(Some(r))
                    if plan::check_record(store, &r)
                        .map_err(Failure::store)?
                        .is_none() =>
                {
                    Ok(Some(r))
                }
                _ => Ok(None),
            }
        };
        if !forced && let Some(r) = reusable(store)? {
            return Ok((Outcome::Cached, r, fp));
        }
        let (_lock, waited) = store
            .lock_stage_reporting(&fp, &mut |holder| {
                let who = holder.map_or_else(|| "another run".to_string(), |h| h.to_string());
                ui.line(&format!(
                    "waiting  {}: {who} is producing the same result (fingerprint {})",
                    inst.name,
                    &fp[..fp.len().min(12)]
                ));
            })
            .map_err(Failure::store)?;
        if (waited || !forced)
            && let Some(r) = reusable(store)?
        {
            return Ok((Outcome::Waited, r, fp));
        }
        if !forced && let Some(remote) = remote {
            match remote.pull(store, &fp) {
                Ok(Some(r)) => return Ok((Outcome::Pulled, r, fp)),
                Ok(None) => {}
                // A damaged or unreachable remote costs a rerun, never a wrong result.
                Err(e) => ui.line(&format!(
                    "warning  {}: remote cache {}: {e}; running the stage",
                    inst.name,
                    remote.location()
                )),
            }
        }
        let spec = job_spec(ctx, inst, upstream, &inputs, &fp, threads, gpus.clone())?;
        let t0 = Instant::now();
        let record = launch(ctx, inst, &spec, &fp, &bar_progress)?;
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(remote) = remote
            && let Err(e) = remote.push(store, &record)
        {
            ui.line(&format!(
                "warning  {}: cannot push to the remote cache {}: {e}",
                inst.name,
                remote.location()
            ));
        }
        Ok((Outcome::Ran { seconds }, record, fp))
    };
    let (outcome, record) = match attempt() {
        Ok((outcome, record, fp)) => {
            result.fingerprint = Some(fp);
            (outcome, Some(record))
        }
        Err(failure) => (Outcome::Failed(failure), None),
    };
    result.outcome = outcome;
    ui.finish(bar, &result.line());
    (result, record)
}

/// The job of one attempt at `inst` with fingerprint `fp`: where it writes (a fresh
/// staging dir, the fingerprint's scratch dir, a fresh log) and its record but for what
/// only the run knows.
fn job_spec(
    ctx: &RunContext,
    inst: &crate::pipeline::Instance,
    upstream: &BTreeMap<usize, RunRecord>,
    inputs: &BTreeMap<String, slayer_cache::ContentHash>,
    fp: &str,
    threads: usize,
    gpus: Vec<String>,
) -> Result<JobSpec, Failure> {
    let RunContext {
        pipeline,
        store,
        facts,
        ..
    } = *ctx;
    let staging = store.staging_dir(fp).map_err(Failure::store)?;
    let scratch = store.scratch_dir(fp).map_err(Failure::store)?;
    let log_path = store.log_path(fp);
    if let Some(parent) = log_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::remove_file(&log_path);
    let log = Logger::to_file(&log_path).unwrap_or_else(|_| Logger::discard());
    log.line(format!(
        "# {} ({}) fingerprint {fp}",
        inst.name,
        inst.kind.kind()
    ));
    Ok(JobSpec {
        workspace: store.root().parent().unwrap_or(store.root()).to_path_buf(),
        inputs: stage_inputs(pipeline, inst, store, upstream),
        outputs: inst
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.path.clone()))
            .collect(),
        staging,
        scratch,
        work_dir: pipeline.manifest.dir.clone(),
        log: log_path.clone(),
        device: inst.device.clone(),
        threads,
        gpus,
        verify_inputs: !store.trusts_stat_cache(),
        record: RunRecord {
            fingerprint: fp.to_string(),
            stage: inst.name.clone(),
            manifest: Some(pipeline.manifest.name.clone()),
            kind: inst.kind.kind().to_string(),
            stage_version: inst.kind.version(),
            params: inst.params.clone(),
            inputs: input_records(inst, inputs, upstream),
            env: inst.env.clone(),
            outputs: BTreeMap::new(),
            metrics: serde_json::Value::Null,
            started_at: String::new(),
            finished_at: String::new(),
            duration_s: 0.0,
            host: facts.host.clone(),
            slayer_version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: facts.git_revision.clone(),
            log: log_path
                .strip_prefix(store.root())
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            job: BTreeMap::new(),
            usage: BTreeMap::new(),
        },
    })
}

/// Run `spec` where the run's isolation says, to its published record.
fn launch(
    ctx: &RunContext,
    inst: &crate::pipeline::Instance,
    spec: &JobSpec,
    fp: &str,
    progress: &Progress,
) -> Result<RunRecord, Failure> {
    let RunContext {
        store,
        isolation,
        tracker,
        ..
    } = *ctx;
    match isolation {
        Isolation::InProcess => {
            job::run_job(inst.kind.as_ref(), spec, store, progress.clone(), false)
        }
        Isolation::ChildProcess { program } => {
            let job_dir = store.staging_dir(fp).map_err(Failure::store)?;
            let result = crate::child::run(program, &job_dir, spec, progress);
            let _ = std::fs::remove_dir_all(&job_dir);
            result
        }
        Isolation::Slurm { program, config } => {
            let job_dir = store.staging_dir(fp).map_err(Failure::store)?;
            let fresh = || store.staging_dir(fp).map_err(|e| e.to_string());
            let result = crate::slurm::run(
                config,
                tracker,
                program,
                &job_dir,
                spec,
                &inst.resources,
                progress,
                &fresh,
            );
            let _ = std::fs::remove_dir_all(&job_dir);
            result
        }
    }
}

fn stage_inputs(
    pipeline: &Pipeline,
    inst: &crate::pipeline::Instance,
    store: &Store,
    upstream: &BTreeMap<usize, RunRecord>,
) -> BTreeMap<String, Vec<(String, PathBuf)>> {
    inst.inputs
        .iter()
        .map(|(name, input)| {
            let items = match input {
                InputRef::Paths { items, .. } => items.clone(),
                InputRef::Upstream { items, .. } => items
                    .iter()
                    .filter_map(|(u, output)| {
                        let rec = upstream.get(u)?;
                        Some((
                            pipeline.instances[*u].name.clone(),
                            store.output_path(rec, output)?,
                        ))
                    })
                    .collect(),
            };
            (name.clone(), items)
        })
        .collect()
}

fn input_records(
    inst: &crate::pipeline::Instance,
    hashes: &BTreeMap<String, slayer_cache::ContentHash>,
    upstream: &BTreeMap<usize, RunRecord>,
) -> BTreeMap<String, InputRecord> {
    inst.inputs
        .iter()
        .filter_map(|(name, input)| {
            let hash = hashes.get(name)?.clone();
            // Fingerprints of the producing records (several for a gathered input).
            let producer = match input {
                InputRef::Upstream { items, .. } => Some(
                    items
                        .iter()
                        .filter_map(|(u, _)| upstream.get(u).map(|r| r.fingerprint.clone()))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                InputRef::Paths { .. } => None,
            };
            let source = input.source().to_string();
            Some((
                name.clone(),
                InputRecord {
                    hash,
                    source,
                    producer,
                },
            ))
        })
        .collect()
}
