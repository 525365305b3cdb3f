//! One attempt at one instance as a self-contained job: [`JobSpec`] holds everything the
//! attempt needs (serialisable, so another process or a Slurm node can run it from a
//! file), and [`run_job`] is the single entry point that runs the stage and publishes
//! its result. The in-process executor calls it directly; `slayer __instance SPEC` (the
//! local child-process executor and every Slurm job) reaches it through [`run_job_file`].
//!
//! A job's files live in its own private dir of the store (`.slayer/tmp/<fp>-<pid>-<n>/`,
//! removed like any attempt's temp dir): `spec.json`, written by the engine, and
//! `result.json`, written by the job last ([`JobResult`]). A job killed before it writes
//! `result.json` has published nothing: the record is the commit point.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use slayer_cache::{RunRecord, Store};

use crate::failure::Failure;
use crate::stage::{Logger, Metrics, Progress, Registry, Stage, StageContext, StageInput};

/// File names inside a job dir.
pub const SPEC_FILE: &str = "spec.json";
pub const RESULT_FILE: &str = "result.json";

/// Everything one attempt at one instance needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    /// The workspace whose `.slayer/` store receives the result.
    pub workspace: PathBuf,
    /// Resolved inputs: name -> (label, absolute path) items.
    pub inputs: BTreeMap<String, Vec<(String, PathBuf)>>,
    /// Declared outputs: name -> path relative to `staging`.
    pub outputs: BTreeMap<String, String>,
    /// The attempt's private output dir (published on success).
    pub staging: PathBuf,
    pub scratch: PathBuf,
    /// The manifest's directory.
    pub work_dir: PathBuf,
    pub log: PathBuf,
    pub device: String,
    pub threads: usize,
    /// The GPUs the local executor gave this job (`resources.gpus` of them, named as
    /// `CUDA_VISIBLE_DEVICES` names them): its process sees only these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// `run --verify-inputs`: the job's store re-hashes objects instead of trusting the
    /// stat cache (a rotted object is replaced, not reused, when the result is published).
    #[serde(default)]
    pub verify_inputs: bool,
    /// The record to publish, complete but for what only the run knows (metrics,
    /// times, host, outputs). Its `kind` and `params` say what to run.
    pub record: RunRecord,
}

/// What a job left in `result.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Published(Box<RunRecord>),
    Failed(Failure),
}

/// Runs the stage `kind` of `spec` in a pool of `spec.threads` threads (panics become
/// failures) and publishes its outputs with the completed record. On failure the
/// staging dir is removed and the message returned. `own_process`: this process runs
/// only this job, so its resource usage is the job's and goes into the record.
pub fn run_job(
    kind: &dyn Stage,
    spec: &JobSpec,
    store: &Store,
    progress: Progress,
    own_process: bool,
) -> Result<RunRecord, Failure> {
    let log = Logger::to_file(&spec.log).unwrap_or_else(|_| Logger::discard());
    let ctx = StageContext {
        stage: spec.record.stage.clone(),
        inputs: spec
            .inputs
            .iter()
            .map(|(name, items)| {
                (
                    name.clone(),
                    StageInput {
                        items: items.clone(),
                    },
                )
            })
            .collect(),
        out_dir: spec.staging.clone(),
        work_dir: spec.work_dir.clone(),
        scratch_dir: spec.scratch.clone(),
        device: spec.device.clone(),
        threads: spec.threads,
        progress,
        log: log.clone(),
    };
    let started_at = slayer_cache::now_rfc3339();
    let t0 = Instant::now();
    let metrics = run_in_pool(spec.threads, || kind.run(&spec.record.params, &ctx));
    let seconds = t0.elapsed().as_secs_f64();
    let metrics = match metrics {
        Ok(m) => m,
        Err(failure) => {
            log.line(format!("# failed: {failure}"));
            let _ = std::fs::remove_dir_all(&spec.staging);
            return Err(failure);
        }
    };
    let mut record = spec.record.clone();
    record.metrics = serde_json::Value::Object(metrics);
    record.started_at = started_at;
    record.finished_at = slayer_cache::now_rfc3339();
    record.duration_s = seconds;
    record.host = slayer_cache::host_name();
    record.job = batch_job();
    if !spec.gpus.is_empty() {
        record.job.insert("gpus".into(), spec.gpus.join(","));
    }
    if own_process {
        record.usage = process_usage();
    }
    store
        .publish(&spec.staging, &spec.outputs, record)
        .map_err(Failure::store)
}

/// The Slurm job this process runs in, from the variables Slurm sets (empty outside one).
fn batch_job() -> BTreeMap<String, String> {
    let mut job = BTreeMap::new();
    if let Ok(id) = std::env::var("SLURM_JOB_ID") {
        job.insert("scheduler".into(), "slurm".into());
        job.insert("job_id".into(), id);
        for (key, var) in [
            ("node", "SLURMD_NODENAME"),
            ("partition", "SLURM_JOB_PARTITION"),
            ("gpus", "CUDA_VISIBLE_DEVICES"),
        ] {
            if let Ok(v) = std::env::var(var) {
                job.insert(key.into(), v);
            }
        }
    }
    job
}

/// CPU time and peak RSS of this process and of the children it has waited for.
fn process_usage() -> BTreeMap<String, f64> {
    let get = |who| {
        // SAFETY: a zeroed rusage is valid; getrusage fills it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall writing into `u`.
        let ok = unsafe { libc::getrusage(who, &mut u) } == 0;
        ok.then_some(u)
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let mut usage = BTreeMap::new();
    if let (Some(me), Some(kids)) = (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN)) {
        usage.insert("cpu_user_s".into(), secs(me.ru_utime) + secs(kids.ru_utime));
        usage.insert(
            "cpu_system_s".into(),
            secs(me.ru_stime) + secs(kids.ru_stime),
        );
        // Linux reports KiB.
        let peak = me.ru_maxrss.max(kids.ru_maxrss) as f64 * 1024.0;
        usage.insert("peak_rss_bytes".into(), peak);
    }
    usage
}

/// Runs a stage inside a rayon pool of `threads` (so parallel kernels respect the
/// scheduler's budget), turning panics into failures.
fn run_in_pool(
    threads: usize,
    f: impl FnOnce() -> Result<Metrics, crate::stage::StageError> + Send,
) -> Result<Metrics, Failure> {
    let guarded = move || {
        std::panic::catch_unwind(AssertUnwindSafe(f))
            .map_err(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Failure::Panic(msg)
            })?
            .map_err(|e| Failure::Stage(e.to_string()))
    };
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(pool) => pool.install(guarded),
        Err(_) => guarded(),
    }
}

/// Writes `spec` as the job dir's `spec.json`; returns its path.
pub fn write_spec(job_dir: &Path, spec: &JobSpec) -> Result<PathBuf, String> {
    let path = job_dir.join(SPEC_FILE);
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| e.to_string())?;
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Reads what a job left in its dir; `None` when it wrote no result (it was killed, or
/// never started).
pub fn read_result(job_dir: &Path) -> Option<JobResult> {
    let bytes = std::fs::read(job_dir.join(RESULT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The body of `slayer __instance SPEC`: reads the spec, runs the job against its
/// workspace's store and writes `result.json` beside the spec. Returns the process exit
/// code (0 published, 1 failed, 2 unusable spec).
pub fn run_job_file(registry: &Registry, spec_path: &Path, progress: Progress) -> i32 {
    let dir = spec_path.parent().unwrap_or(Path::new("."));
    let finish = |result: JobResult| {
        let code = match &result {
            JobResult::Published(_) => 0,
            JobResult::Failed(failure) => {
                eprintln!("{failure}");
                1
            }
        };
        let written = serde_json::to_vec(&result)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                slayer_cache::atomic_write(&dir.join(RESULT_FILE), &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            eprintln!("cannot write the job result: {e}");
            return 2;
        }
        code
    };
    let spec: JobSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: not a job spec: {e}", spec_path.display());
            return 2;
        }
    };
    let Some(kind) = registry.get(&spec.record.kind) else {
        return finish(JobResult::Failed(Failure::Process(format!(
            "stage kind `{}` is unknown to this slayer binary ({})",
            spec.record.kind,
            env!("CARGO_PKG_VERSION")
        ))));
    };
    let store = match Store::open(&spec.workspace) {
        Ok(s) => s,
        Err(e) => return finish(JobResult::Failed(Failure::store(e))),
    };
    if spec.verify_inputs {
        store.distrust_stat_cache();
    }
    match run_job(kind.as_ref(), &spec, &store, progress, true) {
        Ok(record) => finish(JobResult::Published(Box::new(record))),
        Err(failure) => finish(JobResult::Failed(failure)),
    }
}
