//! The Slurm executor: each attempt at an instance becomes one `sbatch --parsable` job
//! whose script runs `slayer __instance SPEC` on a node against the same store (on
//! shared storage), as Snakemake's and Nextflow's Slurm executors do.
//!
//! - Resources map to `--cpus-per-task` (threads; 0 = the workspace's `cpus`),
//!   `--mem` (`memory`), `--gres=gpu:N` (`gpus`) and `--time`; the workspace's
//!   `[executor.slurm]` settings ([`SlurmConfig`], read with
//!   [`crate::workspace_config`]) hold partition, account, qos, default
//!   time and extra flags, and a stage's `resources: {slurm: {...}}`
//!   ([`SlurmSettings`]) overrides them.
//! - Jobs are tracked with one `squeue -t all` call for every job of the run at a time
//!   ([`Tracker`]), then `sacct`, then `scontrol show job` for a job squeue no longer
//!   lists. The stage's bar shows `PENDING (reason)` / `RUNNING on NODE`.
//! - Terminal states other than COMPLETED are failures named as Slurm names them, with
//!   the exit code and the job's own output; TIMEOUT and PREEMPTED are resubmitted up to
//!   the stage's `retries` (a train stage resumes from the checkpoints in its scratch
//!   dir). Jobs are submitted with `--no-requeue`: the engine decides about reruns.
//! - On an interrupt the run's jobs are cancelled (`scancel`) and waited for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use slayer_cache::RunRecord;

use crate::failure::Failure;
use crate::job::{self, JobResult, JobSpec};
use crate::stage::{Progress, Resources};

/// The workspace's Slurm settings (`[executor.slurm]` in `slayer.toml`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Default `--time`, e.g. `"04:00:00"` or `"30"` (minutes).
    pub time: Option<String>,
    /// `--cpus-per-task` for stages that want all cores (`threads: 0`); default 1.
    pub cpus: Option<usize>,
    /// Further sbatch flags, verbatim (e.g. `["--constraint=a100"]`).
    #[serde(default)]
    pub extra: Vec<String>,
    /// The slayer binary as the nodes see it (default: this binary's path).
    pub slayer: Option<PathBuf>,
    /// How often job states are polled, in milliseconds (default 500).
    pub poll_ms: Option<u64>,
}

/// Per-stage overrides: `resources: {slurm: {...}}` in the manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time` for this stage, e.g. `"1"` (minutes) or `"2-00:00:00"`.
    pub time: Option<String>,
    /// Further sbatch flags for this stage.
    #[serde(default)]
    pub extra: Vec<String>,
}

/// Quotes a string for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `--mem` from a resources memory string (`4GiB`, `512MB`, `2G`): whole MiB, rounded up.
pub fn slurm_mem(memory: &str) -> Result<String, String> {
    let bytes = crate::stage::memory_bytes(memory)?;
    Ok(format!("{}M", bytes.div_ceil(1024 * 1024).max(1)))
}

/// The batch script of one attempt.
pub struct JobScript<'a> {
    pub config: &'a SlurmConfig,
    pub resources: &'a Resources,
    pub stage: &'a str,
    pub program: &'a Path,
    pub spec: &'a Path,
    pub log: &'a Path,
    /// Where Slurm writes the job's own output (`--output`).
    pub slurm_out: &'a Path,
    pub work_dir: &'a Path,
}

impl JobScript<'_> {
    /// The `#SBATCH` lines and the command; Err for an unusable `memory`.
    pub fn render(&self) -> Result<String, String> {
        let c = self.config;
        let o = self.resources.slurm.clone().unwrap_or_default();
        let name: String = self
            .stage
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || "-_.".contains(ch) {
                    ch
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let cpus = match self.resources.threads {
            Some(0) | None => c.cpus.unwrap_or(1),
            Some(n) => n,
        };
        let mut flags = vec![
            format!("--job-name=slayer-{name}"),
            format!("--output={}", self.slurm_out.display()),
            format!("--chdir={}", self.work_dir.display()),
            format!("--cpus-per-task={cpus}"),
            "--ntasks=1".to_string(),
            "--nodes=1".to_string(),
            "--no-requeue".to_string(),
        ];
        if let Some(m) = &self.resources.memory {
            flags.push(format!("--mem={}", slurm_mem(m)?));
        }
        if self.resources.gpus > 0 {
            flags.push(format!("--gres=gpu:{}", self.resources.gpus));
        }
        for (flag, value) in [
            ("partition", o.partition.as_ref().or(c.partition.as_ref())),
            ("account", o.account.as_ref().or(c.account.as_ref())),
            ("qos", o.qos.as_ref().or(c.qos.as_ref())),
            ("time", o.time.as_ref().or(c.time.as_ref())),
        ] {
            if let Some(v) = value {
                flags.push(format!("--{flag}={v}"));
            }
        }
        flags.extend(c.extra.iter().cloned());
        flags.extend(o.extra.iter().cloned());
        let mut script = String::from("#!/bin/sh\n");
        for f in &flags {
            script.push_str(&format!("#SBATCH {f}\n"));
        }
        script.push_str(&format!(
            "# slayer stage {}\nexec {} __instance {} >/dev/null 2>>{}\n",
            self.stage,
            sh_quote(&self.program.to_string_lossy()),
            sh_quote(&self.spec.to_string_lossy()),
            sh_quote(&self.log.to_string_lossy()),
        ));
        Ok(script)
    }
}

/// What Slurm says about one job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobState {
    /// PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED, ...
    pub state: String,
    pub reason: String,
    pub node: String,
    /// `code:signal`, when known.
    pub exit_code: String,
}

impl JobState {
    fn is_terminal(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | ""
        )
    }
    /// The bar's message while the job is not finished.
    fn progress_message(&self) -> String {
        match self.state.as_str() {
            "PENDING" if !self.reason.is_empty() && self.reason != "None" => {
                format!("PENDING ({})", self.reason)
            }
            "RUNNING" | "COMPLETING" if !self.node.is_empty() => {
                format!("{} on {}", self.state, self.node)
            }
            s => s.to_string(),
        }
    }
}

fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program}` (is Slurm installed here?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Submits a batch script; returns the job id.
pub fn submit(script: &Path) -> Result<String, String> {
    let out = run_tool("sbatch", &["--parsable", &script.to_string_lossy()])?;
    // `--parsable` prints `id` or `id;cluster`.
    let id = out.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("sbatch printed `{}`, not a job id", out.trim()));
    }
    Ok(id)
}

/// Cancels jobs (errors ignored: they may have ended meanwhile).
pub fn cancel(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let mut args: Vec<&str> = vec!["--quiet"];
    args.extend(ids.iter().map(String::as_str));
    let _ = run_tool("scancel", &args);
}

/// The states of every job of a run, refreshed by one `squeue` call for all of them at
/// most once per poll interval, whichever instance thread asks first.
pub struct Tracker {
    interval: Duration,
    inner: Mutex<TrackerState>,
}

struct TrackerState {
    jobs: HashMap<String, JobState>,
    refreshed: Option<Instant>,
}

impl Tracker {
    pub fn new(interval: Duration) -> Tracker {
        Tracker {
            interval,
            inner: Mutex::new(TrackerState {
                jobs: HashMap::new(),
                refreshed: None,
            }),
        }
    }

    /// Starts tracking a submitted job.
    pub fn watch(&self, id: &str) {
        if let Ok(mut s) = self.inner.lock() {
            s.jobs.insert(id.to_string(), JobState::default());
        }
    }

    /// Stops tracking it.
    pub fn forget(&self, id: &str) {
        if let Ok(mut s) = self.inner.lock() {
            s.jobs.remove(id);
        }
    }

    /// The ids of every job being tracked.
    pub fn ids(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|s| s.jobs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The latest known state of `id`, refreshing all jobs if the last poll is old.
    pub fn state(&self, id: &str) -> Result<JobState, String> {
        let mut s = self.inner.lock().map_err(|_| "job tracker poisoned")?;
        if s.refreshed.is_none_or(|t| t.elapsed() >= self.interval) {
            let ids: Vec<String> = s.jobs.keys().cloned().collect();
            let mut fresh = squeue(&ids)?;
            for id in &ids {
                if !fresh.contains_key(id) {
                    // squeue has forgotten it (MinJobAge): ask accounting, then scontrol.
                    if let Some(st) = sacct(id).or_else(|| scontrol(id)) {
                        fresh.insert(id.clone(), st);
                    }
                }
            }
            for (id, st) in fresh {
                s.jobs.insert(id, st);
            }
            s.refreshed = Some(Instant::now());
        }
        Ok(s.jobs.get(id).cloned().unwrap_or_default())
    }
}

/// `squeue -t all` for these jobs: id -> state (without exit codes).
fn squeue(ids: &[String]) -> Result<HashMap<String, JobState>, String> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = ids.join(",");
    // A job id squeue no longer knows makes it fail: then ask job by job below.
    let out = match run_tool(
        "squeue",
        &["-h", "-t", "all", "-j", &list, "-o", "%i|%T|%r|%N"],
    ) {
        Ok(o) => o,
        Err(_) if ids.len() > 1 => {
            let mut all = HashMap::new();
            for id in ids {
                if let Ok(one) = squeue(std::slice::from_ref(id)) {
                    all.extend(one);
                }
            }
            return Ok(all);
        }
        Err(_) => String::new(),
    };
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut f = line.split('|');
            let id = f.next()?.trim().to_string();
            Some((
                id,
                JobState {
                    state: f.next()?.trim().to_string(),
                    reason: f.next().unwrap_or("").trim().to_string(),
                    node: f.next().unwrap_or("").trim().to_string(),
                    exit_code: String::new(),
                },
            ))
        })
        .collect())
}

/// `sacct` for one job (None when accounting is off or it does not know the job).
fn sacct(id: &str) -> Option<JobState> {
    let out = run_tool(
        "sacct",
        &[
            "-n",
            "-P",
            "-X",
            "-j",
            id,
            "-o",
            "State,ExitCode,NodeList,Reason",
        ],
    )
    .ok()?;
    let line = out.lines().next()?;
    let mut f = line.split('|');
    Some(JobState {
        // `CANCELLED by 0` -> CANCELLED
        state: f.next()?.split_whitespace().next()?.to_string(),
        exit_code: f.next().unwrap_or("").to_string(),
        node: f.next().unwrap_or("").to_string(),
        reason: f.next().unwrap_or("").to_string(),
    })
}

/// `scontrol show job -o` for one job.
fn scontrol(id: &str) -> Option<JobState> {
    let out = run_tool("scontrol", &["show", "job", "-o", id]).ok()?;
    let field = |key: &str| {
        out.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    let state = field("JobState");
    if state.is_empty() {
        return None;
    }
    Some(JobState {
        state,
        reason: field("Reason"),
        node: field("NodeList"),
        exit_code: field("ExitCode"),
    })
}

/// The full state of a finished job: squeue lists no exit code, so ask again.
fn final_state(id: &str, seen: JobState) -> JobState {
    let detailed = sacct(id).or_else(|| scontrol(id));
    match detailed {
        Some(d) if d.is_terminal() => JobState {
            node: if d.node.is_empty() { seen.node } else { d.node },
            ..d
        },
        _ => seen,
    }
}

/// Runs one attempt as Slurm jobs (resubmitting after TIMEOUT/PREEMPTED up to
/// `resources.retries` times) and waits for it; the published record, or why not.
#[allow(clippy::too_many_arguments)]
pub fn run(
    config: &SlurmConfig,
    tracker: &Tracker,
    program: &Path,
    job_dir: &Path,
    spec: &JobSpec,
    resources: &Resources,
    progress: &Progress,
    fresh_staging: &dyn Fn() -> Result<PathBuf, String>,
) -> Result<RunRecord, Failure> {
    let mut spec = spec.clone();
    let poll = Duration::from_millis(config.poll_ms.unwrap_or(500).max(50));
    let mut attempt = 0;
    loop {
        let outcome = run_once(
            config, tracker, program, job_dir, &spec, resources, progress, poll,
        );
        match outcome {
            Err(JobEnd::Retryable(msg)) if attempt < resources.retries => {
                attempt += 1;
                spec.log_line(&format!(
                    "# {msg}; resubmitting (retry {attempt} of {})",
                    resources.retries
                ));
                let _ = std::fs::remove_dir_all(&spec.staging);
                spec.staging = fresh_staging().map_err(Failure::Store)?;
                let _ = std::fs::remove_file(job_dir.join(job::RESULT_FILE));
            }
            Err(JobEnd::Retryable(failure) | JobEnd::Final(failure)) => {
                let _ = std::fs::remove_dir_all(&spec.staging);
                return Err(failure);
            }
            Ok(record) => return Ok(record),
        }
    }
}

enum JobEnd {
    Retryable(Failure),
    Final(Failure),
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    config: &SlurmConfig,
    tracker: &Tracker,
    program: &Path,
    job_dir: &Path,
    spec: &JobSpec,
    resources: &Resources,
    progress: &Progress,
    poll: Duration,
) -> Result<RunRecord, JobEnd> {
    let scheduler = |m: String| JobEnd::Final(Failure::Scheduler(m));
    let spec_path = job::write_spec(job_dir, spec).map_err(|m| JobEnd::Final(Failure::Store(m)))?;
    let slurm_out = job_dir.join("slurm.out");
    let script = JobScript {
        config,
        resources,
        stage: &spec.record.stage,
        program,
        spec: &spec_path,
        log: &spec.log,
        slurm_out: &slurm_out,
        work_dir: &spec.work_dir,
    }
    .render()
    .map_err(scheduler)?;
    let script_path = job_dir.join("job.sh");
    std::fs::write(&script_path, script)
        .map_err(|e| JobEnd::Final(Failure::Store(format!("{}: {e}", script_path.display()))))?;
    let id = submit(&script_path).map_err(scheduler)?;
    spec.log_line(&format!("# submitted as Slurm job {id}"));
    tracker.watch(&id);
    let result = wait(tracker, &id, progress, poll);
    tracker.forget(&id);
    let state = match result {
        Ok(state) => state,
        Err(failure) => return Err(JobEnd::Final(failure)),
    };
    // Slurm's own messages (time limit, OOM) belong in the stage log.
    if let Ok(text) = std::fs::read_to_string(&slurm_out)
        && !text.trim().is_empty()
    {
        spec.log_line(text.trim_end());
    }
    let on = if state.node.is_empty() {
        String::new()
    } else {
        format!(" on {}", state.node)
    };
    match (state.state.as_str(), job::read_result(job_dir)) {
        (_, Some(JobResult::Published(record))) => Ok(*record),
        (_, Some(JobResult::Failed(failure))) => Err(JobEnd::Final(
            failure.context(&format!("Slurm job {id} FAILED{on}")),
        )),
        (s @ ("TIMEOUT" | "PREEMPTED"), None) => {
            Err(JobEnd::Retryable(Failure::Scheduler(format!(
                "Slurm job {id} {s}{on}{}",
                if s == "TIMEOUT" {
                    " (it ran past its time limit)"
                } else {
                    ""
                }
            ))))
        }
        (s, None) => Err(scheduler(format!(
            "Slurm job {id} {s}{on}{}{}",
            if state.exit_code.is_empty() || state.exit_code == "0:0" {
                String::new()
            } else {
                format!(" with exit code {}", state.exit_code)
            },
            match s {
                "OUT_OF_MEMORY" => " (raise `resources.memory`)",
                "NODE_FAIL" => " (the node failed; rerun to retry)",
                _ => "",
            }
        ))),
    }
}

/// Polls until the job is finished; Err after cancelling it on an interrupt.
fn wait(
    tracker: &Tracker,
    id: &str,
    progress: &Progress,
    poll: Duration,
) -> Result<JobState, Failure> {
    let mut shown = String::new();
    loop {
        if crate::interrupt::requested() {
            cancel(&[id.to_string()]);
            // Wait (bounded) for it to be gone, so nothing it does races our exit.
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if tracker.state(id).map(|s| s.is_terminal()).unwrap_or(true) {
                    break;
                }
                std::thread::sleep(poll);
            }
            return Err(Failure::Interrupted(format!(
                "interrupted; Slurm job {id} cancelled"
            )));
        }
        let state = tracker.state(id).map_err(Failure::Scheduler)?;
        if state.is_terminal() {
            return Ok(final_state(id, state));
        }
        let msg = state.progress_message();
        if msg != shown {
            progress.set_message(format!("Slurm job {id} {msg}"));
            shown = msg;
        }
        std::thread::sleep(poll.min(Duration::from_millis(100)));
    }
}

impl JobSpec {
    /// Appends a line to the stage log (best effort).
    pub(crate) fn log_line(&self, line: &str) {
        crate::stage::Logger::to_file(&self.log)
            .map(|l| l.line(line))
            .unwrap_or(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_maps_to_whole_mebibytes() {
        assert_eq!(slurm_mem("4GiB").unwrap(), "4096M");
        assert_eq!(slurm_mem("512MB").unwrap(), "512M");
        assert_eq!(slurm_mem("1.5G").unwrap(), "1536M");
        assert_eq!(slurm_mem("100").unwrap(), "100M");
        assert!(slurm_mem("lots").is_err());
        assert!(slurm_mem("4PB").is_err());
    }

    #[test]
    fn script_maps_resources_and_overrides() {
        let config = SlurmConfig {
            partition: Some("batch".into()),
            time: Some("60".into()),
            extra: vec!["--constraint=a100".into()],
            ..Default::default()
        };
        let resources = Resources {
            threads: Some(8),
            gpus: 2,
            memory: Some("16GiB".into()),
            retries: 0,
            slurm: Some(SlurmSettings {
                time: Some("1".into()),
                ..Default::default()
            }),
        };
        let script = JobScript {
            config: &config,
            resources: &resources,
            stage: "cpt[layout=(2+1)x8]",
            program: Path::new("/opt/slayer"),
            spec: Path::new("/s/spec.json"),
            log: Path::new("/s/it's.log"),
            slurm_out: Path::new("/s/slurm.out"),
            work_dir: Path::new("/w"),
        }
        .render()
        .unwrap();
        for line in [
            "#SBATCH --job-name=slayer-cpt_layout__2_1_x8_",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --mem=16384M",
            "#SBATCH --gres=gpu:2",
            "#SBATCH --partition=batch",
            "#SBATCH --time=1",
            "#SBATCH --constraint=a100",
            "#SBATCH --no-requeue",
            "exec '/opt/slayer' __instance '/s/spec.json' >/dev/null 2>>'/s/it'\\''s.log'",
        ] {
            assert!(script.contains(line), "missing `{line}` in:\n{script}");
        }
        assert!(!script.contains("--time=60"), "{script}");
    }
}
