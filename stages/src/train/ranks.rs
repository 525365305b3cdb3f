//! Data-parallel ranks: who this process is ([`RankEnv`]), which part of a global batch
//! it reads ([`shard_range`]), and how slayer starts the ranks itself ([`launch_local`],
//! [`run_rank_from_env`]).
//!
//! A run with `ranks: N` is N processes that each hold the whole model, read a disjoint
//! slice of every global batch, and sum their gradients once per optimizer step (see
//! `trainer.rs`). They are started one of two ways:
//!
//! - **by slayer**, when the stage runs outside any launcher: the stage process starts
//!   `mpirun -np N` (OpenMPI, local shared-memory transport only) on a rank program —
//!   `slayer train-rank` for the binary — and waits for it. Each rank gets
//!   `threads / N` CPU threads. The job is written to `<scratch>/ranks/job.json` and
//!   named by `SLAYER_TRAIN_RANK_JOB`; rank 0 writes `summary.json` there when done.
//! - **by a launcher**: under `srun` (or `mpirun`) every task runs the stage itself and
//!   is already a rank. Rank, world size and local rank come from `OMPI_COMM_WORLD_*`
//!   (mpirun), `SLURM_PROCID` / `SLURM_NTASKS` / `SLURM_LOCALID` (srun) or torchrun's
//!   `RANK` / `WORLD_SIZE` / `LOCAL_RANK`, and are checked against MPI's own view and
//!   against `ranks`. The processes must form one MPI job (srun with PMIx, or mpirun):
//!   torchrun's `MASTER_ADDR` rendezvous is not an MPI bootstrap, so a torchrun launch
//!   fails with a message saying so instead of training N copies side by side.
//!
//! Joining is bounded: a rank waits at most `SLAYER_RANK_JOIN_TIMEOUT_S` seconds
//! (default 120) for the others, then exits with a message; a rank that dies later makes
//! `mpirun` end the job, and the stage fails with `mpirun`'s account of it. Every rank
//! leaves `<scratch>/ranks/rank-R.pid` while it runs and `rank-R.json` (a
//! [`RankReport`]) when it finishes.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use slayer_engine::stage::{Logger, Progress};

use super::error::TrainError;
use super::params::TrainParams;
use super::trainer::{TrainJob, TrainSummary, run_training};
use crate::model::{DeviceSpec, Llama};
use crate::model_card::Provenance;

/// Names the rank job file for a rank program.
pub const RANK_JOB_ENV: &str = "SLAYER_TRAIN_RANK_JOB";
/// Seconds a rank waits for the others to join.
pub const JOIN_TIMEOUT_ENV: &str = "SLAYER_RANK_JOIN_TIMEOUT_S";
const DEFAULT_JOIN_TIMEOUT_S: f64 = 120.0;

/// Where the ranks' files live under the scratch dir.
pub fn ranks_dir(scratch: &Path) -> PathBuf {
    scratch.join("ranks")
}

/// This process's place in a data-parallel run, as its launcher announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankEnv {
    /// Global rank.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// Rank among the processes on this machine.
    pub local_rank: usize,
    /// Which launcher's variables were read.
    pub launcher: &'static str,
}

/// (launcher, rank, world size, local rank) variables, in the order they are tried.
const LAUNCHER_VARS: [(&str, &str, &str, &str); 3] = [
    (
        "mpirun",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
    ),
    ("srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
];

impl RankEnv {
    /// Read the first launcher whose rank and world-size variables are both set
    /// (`get` is `std::env::var` in a real process).
    pub fn detect(get: impl Fn(&str) -> Option<String>) -> Result<Option<RankEnv>, TrainError> {
        for (launcher, rank_var, world_var, local_var) in LAUNCHER_VARS {
            let (Some(rank), Some(world)) = (get(rank_var), get(world_var)) else {
                continue;
            };
            let parse = |var: &str, v: &str| {
                v.trim().parse::<usize>().map_err(|_| {
                    TrainError::Ranks(format!("{var}={v:?} is not a non-negative integer"))
                })
            };
            let rank = parse(rank_var, &rank)?;
            let world = parse(world_var, &world)?;
            let local_rank = match get(local_var) {
                Some(v) => parse(local_var, &v)?,
                None => 0,
            };
            if world == 0 || rank >= world {
                return Err(TrainError::Ranks(format!(
                    "{rank_var}={rank} is not a rank of {world_var}={world}"
                )));
            }
            return Ok(Some(RankEnv {
                rank,
                world,
                local_rank,
                launcher,
            }));
        }
        Ok(None)
    }
}

/// The device rank `env` trains on when the stage's device is `stage`: one GPU per rank
/// of a machine, `cuda:(i + local rank)` for a stage on `cuda:i` (so `cuda` with four
/// ranks per node uses GPUs 0-3 on each), checked against the driver's GPU count (not
/// initialised: bf16 training must set the device's dtypes first); the CPU for CPU ranks.
pub fn rank_device(stage: DeviceSpec, env: &RankEnv) -> Result<DeviceSpec, TrainError> {
    let DeviceSpec::Cuda(first) = stage else {
        return Ok(stage);
    };
    let index = first + env.local_rank;
    #[cfg(feature = "cuda")]
    {
        let count = crate::model::device::cuda_device_count()?;
        if index >= count {
            return Err(TrainError::Ranks(format!(
                "rank {} (local rank {} under {}) trains on cuda:{index}, one GPU per rank \
                 counted from the stage's {stage}, but the driver reports {count} GPU(s) \
                 on this machine",
                env.rank, env.local_rank, env.launcher
            )));
        }
    }
    Ok(DeviceSpec::Cuda(index))
}

/// The positions of a global batch of `batch` sequences that `rank` of `world` reads:
/// contiguous, disjoint, and together covering `0..batch`.
pub fn shard_range(batch: usize, rank: usize, world: usize) -> Range<usize> {
    let world = world.max(1);
    batch * rank / world..batch * (rank + 1) / world
}

/// The program that runs one rank: it must call [`run_rank_from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankProgram {
    /// Executable.
    pub program: PathBuf,
    /// Arguments before nothing else (the job comes through [`RANK_JOB_ENV`]).
    pub args: Vec<String>,
}

impl RankProgram {
    /// `slayer train-rank`, the running binary.
    pub fn slayer() -> Self {
        RankProgram {
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("slayer")),
            args: vec!["train-rank".into()],
        }
    }
}

/// What every rank is told to do (`<scratch>/ranks/job.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankJob {
    /// Hyper-parameters (`ranks` included).
    pub params: TrainParams,
    /// Input model.
    pub model_dir: PathBuf,
    /// Training data.
    pub data: Vec<PathBuf>,
    /// Held-out data.
    pub eval_data: Vec<PathBuf>,
    /// Outputs (written by rank 0 only).
    pub out_dir: PathBuf,
    /// Checkpoints and the ranks' files.
    pub scratch_dir: PathBuf,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The stage's log file (rank 0 appends to it).
    pub log: Option<PathBuf>,
    /// For the model card rank 0 writes.
    #[serde(default)]
    pub provenance: Provenance,
}

/// What one rank reports when it finishes (`<scratch>/ranks/rank-R.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankReport {
    /// Its rank.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// Its process id.
    pub pid: u32,
    /// CPU threads it computed with (its rayon pool).
    pub threads: usize,
    /// Sequences it ran forward and backward in this attempt.
    pub sequences: u64,
    /// blake3 of every frozen tensor's bytes, in the model's order.
    pub frozen_digest: String,
    /// blake3 of every trainable tensor's bytes.
    pub trainable_digest: String,
    /// Whether it wrote the outputs (model, log, curve).
    pub wrote_outputs: bool,
}

impl RankReport {
    /// The report of rank `rank` of `world` that trained `model` on `sequences`
    /// sequences (rank 0 writes the outputs).
    pub fn of<B: AutodiffBackend>(
        model: &Llama<B>,
        rank: usize,
        world: usize,
        sequences: u64,
    ) -> RankReport {
        let (frozen_digest, trainable_digest) = param_digests(model);
        RankReport {
            rank,
            world,
            pid: std::process::id(),
            threads: rayon::current_num_threads(),
            sequences,
            frozen_digest,
            trainable_digest,
            wrote_outputs: rank == 0,
        }
    }

    /// Write it for `rank` under `scratch`.
    pub fn save(&self, scratch: &Path) -> Result<(), TrainError> {
        write_json(&rank_file(&ranks_dir(scratch), self.rank, "json"), self)
    }

    /// Every report under `scratch`, by rank.
    pub fn load_all(scratch: &Path, world: usize) -> Result<Vec<RankReport>, TrainError> {
        (0..world)
            .map(|r| read_json(&rank_file(&ranks_dir(scratch), r, "json")))
            .collect()
    }
}

struct Digests {
    frozen: blake3::Hasher,
    trainable: blake3::Hasher,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Digests {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let data = param.val().inner().into_data();
        let h = if param.is_require_grad() {
            &mut self.trainable
        } else {
            &mut self.frozen
        };
        h.update(data.as_bytes());
    }
}

/// blake3 of the bytes of every frozen and of every trainable tensor of `model`, in the
/// model's order (for [`RankReport`]: equal digests on every rank mean equal models).
pub fn param_digests<B: AutodiffBackend>(model: &Llama<B>) -> (String, String) {
    let mut d = Digests {
        frozen: blake3::Hasher::new(),
        trainable: blake3::Hasher::new(),
    };
    model.visit(&mut d);
    (
        d.frozen.finalize().to_hex().to_string(),
        d.trainable.finalize().to_hex().to_string(),
    )
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| TrainError::io(path, std::io::Error::other(e)))?;
    std::fs::write(path, bytes).map_err(|e| TrainError::io(path, e))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::data(path, e.to_string()))
}

/// How long a rank waits for the others ([`JOIN_TIMEOUT_ENV`], default 120 s).
pub fn join_timeout() -> Result<Duration, TrainError> {
    match std::env::var(JOIN_TIMEOUT_ENV) {
        Err(_) => Ok(Duration::from_secs_f64(DEFAULT_JOIN_TIMEOUT_S)),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| {
                TrainError::Ranks(format!("{JOIN_TIMEOUT_ENV}={v:?} is not a positive number"))
            }),
    }
}

/// Write where rank `rank` runs (`rank-R.pid`), for whoever watches the run.
pub fn write_pid(scratch: &Path, rank: usize) -> Result<(), TrainError> {
    let dir = ranks_dir(scratch);
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let path = rank_file(&dir, rank, "pid");
    std::fs::write(&path, std::process::id().to_string()).map_err(|e| TrainError::io(&path, e))
}

/// `rank-R.EXT` in the ranks directory `dir`: rank `R`'s pid (`pid`), last finished
/// step (`step`) and final report (`json`).
fn rank_file(dir: &Path, rank: usize, ext: &str) -> PathBuf {
    dir.join(format!("rank-{rank}.{ext}"))
}

/// Record that `rank` finished optimizer step `step` (`rank-R.step`): the heartbeat
/// [`launch_local`]'s watchdog reads.
pub fn beat(scratch: &Path, rank: usize, step: u64) -> Result<(), TrainError> {
    let path = rank_file(&ranks_dir(scratch), rank, "step");
    std::fs::write(&path, step.to_string()).map_err(|e| TrainError::io(&path, e))
}

/// When a rank last showed life in `dir`: the newest of its pid files (written on start)
/// and step files ([`beat`]), `started` if none is there yet.
fn last_activity(dir: &Path, ranks: usize, started: SystemTime) -> SystemTime {
    (0..ranks)
        .flat_map(|r| [rank_file(dir, r, "pid"), rank_file(dir, r, "step")])
        .filter_map(|path| std::fs::metadata(path).ok()?.modified().ok())
        .fold(started, SystemTime::max)
}

/// Each rank's last finished step, e.g. `rank 0: 12, rank 1: none`.
fn last_steps(dir: &Path, ranks: usize) -> String {
    (0..ranks)
        .map(|r| {
            let step = std::fs::read_to_string(rank_file(dir, r, "step"));
            format!("rank {r}: {}", step.as_deref().map_or("none", str::trim))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// SIGKILL every rank that wrote a pid file (a stopped or deadlocked one too), then
/// `mpirun` itself, and wait (at most 10 s) until the ranks are gone: their memory (and a
/// GPU's) is free when the stage reports the failure.
fn stop_ranks(dir: &Path, ranks: usize, mpirun: &mut std::process::Child) {
    let pids: Vec<libc::pid_t> = (0..ranks)
        .filter_map(|r| {
            let pid = std::fs::read_to_string(rank_file(dir, r, "pid")).ok()?;
            pid.trim().parse().ok()
        })
        .collect();
    for &pid in &pids {
        // SAFETY: plain syscall; a rank already gone is ESRCH, ignored.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let _ = mpirun.kill();
    let _ = mpirun.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| is_running(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` exists and is not a zombie (dead, waiting to be reaped).
fn is_running(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Rank 0's summary of a finished run, read back by [`launch_local`].
pub fn save_summary(scratch: &Path, summary: &TrainSummary) -> Result<(), TrainError> {
    write_json(&ranks_dir(scratch).join("summary.json"), summary)
}

/// Run `job` as `ranks` local processes under `mpirun` and wait for them; the summary is
/// rank 0's. The stage's threads (this rayon pool) are split evenly over the ranks. A
/// watchdog stops them all when none finishes a step for `hang_timeout_s` (a rank
/// stopped or deadlocked while the others wait for it in the all-reduce).
pub fn launch_local(job: &TrainJob, ranks: usize) -> Result<TrainSummary, TrainError> {
    let dir = ranks_dir(&job.scratch_dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let spec = RankJob {
        params: job.params.clone(),
        model_dir: job.model_dir.clone(),
        data: job.data.clone(),
        eval_data: job.eval_data.clone(),
        out_dir: job.out_dir.clone(),
        scratch_dir: job.scratch_dir.clone(),
        device: job.device.to_string(),
        log: job.log.path().map(Path::to_path_buf),
        provenance: job.provenance.clone(),
    };
    let spec_path = dir.join("job.json");
    write_json(&spec_path, &spec)?;
    let threads = (rayon::current_num_threads() / ranks).max(1);
    let mpirun_log = dir.join("mpirun.log");
    let out = std::fs::File::create(&mpirun_log).map_err(|e| TrainError::io(&mpirun_log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| TrainError::io(&mpirun_log, e))?;
    let mut cmd = mpirun(ranks, threads, &spec_path)?;
    cmd.arg(&job.rank_program.program)
        .args(&job.rank_program.args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    job.log.line(format!(
        "data parallel: {ranks} ranks x {threads} threads under mpirun ({})",
        mpirun_log.display()
    ));
    let started = Instant::now();
    let started_at = SystemTime::now();
    // Any finite positive value: one too large for a Duration means "never".
    let hang = Duration::try_from_secs_f64(job.params.hang_timeout_s).unwrap_or(Duration::MAX);
    let mut mpirun = cmd.spawn().map_err(|e| {
        TrainError::Ranks(format!(
            "cannot start `mpirun` ({e}); install OpenMPI (openmpi-bin)"
        ))
    })?;
    let status = loop {
        if let Some(status) = mpirun
            .try_wait()
            .map_err(|e| TrainError::io(&mpirun_log, e))?
        {
            break status;
        }
        let quiet = last_activity(&dir, ranks, started_at)
            .elapsed()
            .unwrap_or_default();
        if quiet > hang {
            let steps = last_steps(&dir, ranks);
            stop_ranks(&dir, ranks, &mut mpirun);
            return Err(TrainError::Ranks(format!(
                "the ranks hung: none finished an optimizer step for {:.0} s \
                 (`hang_timeout_s: {}`); last finished steps: {steps}; every rank was \
                 stopped; the next run resumes from the last checkpoint; mpirun's log: {}",
                quiet.as_secs_f64(),
                job.params.hang_timeout_s,
                mpirun_log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        return Err(TrainError::RanksFailed {
            status: status.to_string(),
            log: mpirun_log.clone(),
            tail: tail(&mpirun_log, 2000),
        });
    }
    job.log.line(format!(
        "data parallel: ranks finished in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    read_json(&dir.join("summary.json"))
}

/// `mpirun -np RANKS` with slayer's options for local ranks, before the program: one
/// machine, shared memory between the ranks and no network transport, no launch through
/// a resource manager, no pinning (threads are split by count: `threads` each), the job
/// file `spec` and the join timeout passed on, and root allowed (containers and CI run
/// as root; OpenMPI refuses it unless told twice).
pub fn mpirun(ranks: usize, threads: usize, spec: &Path) -> Result<Command, TrainError> {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &ranks.to_string()])
        .args(["--bind-to", "none", "--oversubscribe"])
        .args(["--mca", "btl", "self,vader", "--mca", "plm", "isolated"])
        .args([
            "-x",
            "RAYON_NUM_THREADS",
            "-x",
            RANK_JOB_ENV,
            "-x",
            JOIN_TIMEOUT_ENV,
        ])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env(RANK_JOB_ENV, spec)
        .env(JOIN_TIMEOUT_ENV, join_timeout()?.as_secs_f64().to_string());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    Ok(cmd)
}

/// The last `max` bytes of a file (lossy UTF-8), for error messages.
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// The body of a rank program: read the job named by [`RANK_JOB_ENV`] and train it as
/// this rank.
pub fn run_rank_from_env() -> Result<(), TrainError> {
    let path = std::env::var_os(RANK_JOB_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| {
            TrainError::Ranks(format!(
                "{RANK_JOB_ENV} is not set: `train-rank` is started by the train stage"
            ))
        })?;
    let spec: RankJob = read_json(&path)?;
    let log = match &spec.log {
        Some(p) => Logger::to_file(p).map_err(|e| TrainError::io(p, e))?,
        None => Logger::discard(),
    };
    let job = TrainJob {
        params: spec.params,
        model_dir: spec.model_dir,
        data: spec.data,
        eval_data: spec.eval_data,
        out_dir: spec.out_dir,
        scratch_dir: spec.scratch_dir,
        device: spec.device.parse()?,
        progress: Progress::hidden(),
        log,
        rank_program: RankProgram::slayer(),
        provenance: spec.provenance,
    };
    run_training(&job, &mut |_| std::ops::ControlFlow::Continue(())).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_the_batch() {
        for batch in 1..40 {
            for world in 1..=batch.min(9) {
                let mut seen = vec![0u32; batch];
                for rank in 0..world {
                    let r = shard_range(batch, rank, world);
                    assert!(!r.is_empty(), "batch {batch} world {world} rank {rank}");
                    for i in r {
                        seen[i] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "batch {batch} world {world}");
            }
        }
    }

    #[test]
    fn each_local_rank_trains_on_its_own_gpu() {
        let env = |rank, local_rank| RankEnv {
            rank,
            world: 8,
            local_rank,
            launcher: "srun",
        };
        assert_eq!(
            rank_device(DeviceSpec::Cpu, &env(5, 1)).unwrap(),
            DeviceSpec::Cpu
        );
        // Without the cuda feature the index is mapped and the failure left to training.
        #[cfg(not(feature = "cuda"))]
        {
            assert_eq!(
                rank_device(DeviceSpec::Cuda(0), &env(5, 1)).unwrap(),
                DeviceSpec::Cuda(1)
            );
            assert_eq!(
                rank_device(DeviceSpec::Cuda(2), &env(7, 3)).unwrap(),
                DeviceSpec::Cuda(5)
            );
        }
    }

    #[test]
    fn launcher_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        assert_eq!(RankEnv::detect(env(&[])).unwrap(), None);
        let slurm = RankEnv::detect(env(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((slurm.rank, slurm.world, slurm.local_rank), (3, 4, 1));
        assert_eq!(slurm.launcher, "srun");
        // mpirun's variables win over Slurm's (mpirun inside an allocation).
        let both = RankEnv::detect(env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((both.rank, both.world, both.launcher), (1, 2, "mpirun"));
        let torch = RankEnv::detect(env(&[("RANK", "0"), ("WORLD_SIZE", "2")]))
            .unwrap()
            .unwrap();
        assert_eq!((torch.world, torch.launcher), (2, "torchrun"));
        let bad = RankEnv::detect(env(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(
            bad.to_string()
                .contains("RANK=2 is not a rank of WORLD_SIZE=2"),
            "{bad}"
        );
        let bad =
            RankEnv::detect(env(&[("SLURM_PROCID", "x"), ("SLURM_NTASKS", "2")])).unwrap_err();
        assert!(bad.to_string().contains("SLURM_PROCID=\"x\""), "{bad}");
    }
}
