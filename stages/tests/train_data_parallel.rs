//! Data-parallel training on CPU ranks (issue 23), through the real launcher: `mpirun`
//! runs this test binary's ignored `rank_entry` (from `train_support`) as each rank.
//!
//! - 2 ranks x 1 thread reach the parameters of 1 process x 1 thread with the same
//!   global batch (8) and micro-batch (2) exactly (the issue asks for 1e-6), for CPT
//!   and SFT masks, with
//!   gradient accumulation (2 micro-batches per rank) and clipping active; frozen and
//!   trainable tensors are bit-identical on both ranks; only rank 0 writes outputs; the
//!   ranks together read every sequence of every batch exactly once.
//! - A rank killed mid-run fails the run with mpirun's account of it; the next run
//!   resumes from the last checkpoint, with 2 ranks or with 1, to the parameters of an
//!   uninterrupted run.
//! - A launcher whose world size differs from `ranks`, processes that are not one MPI
//!   job, and a rank that never joins are clear errors within seconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod train_support;
use train_support::{as_f32, data_dir, job, model_dir, params, tensors, this_binary};

use slayer_engine::stage::{Stage, Typed};
use slayer_stages::train::ranks::{JOIN_TIMEOUT_ENV, RANK_JOB_ENV, RankJob, RankReport, mpirun};
use slayer_stages::train::{
    Mode, TrainError, TrainJob, TrainParams, TrainStage, Trainable, run_training,
};

fn dp_job(root: &Path, name: &str, p: TrainParams) -> TrainJob {
    let mut j = job(root, name, p);
    j.rank_program = this_binary();
    j
}

/// `run_training` on a rayon pool of `threads` (2 ranks then get 1 thread each).
fn train(j: &TrainJob, threads: usize) -> Result<slayer_stages::train::TrainSummary, TrainError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| run_training(j, &mut |_| std::ops::ControlFlow::Continue(())))
}

fn dp_params(mode: Mode, ranks: usize) -> TrainParams {
    let mut p = params(mode, Trainable::Expanded);
    p.batch_size = 8;
    p.micro_batch = Some(2);
    p.ranks = ranks;
    p.grad_clip = Some(0.5);
    p
}

/// Largest |a - b| over every tensor of two saved models (same names required).
fn max_diff(a: &Path, b: &Path) -> f32 {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    ta.iter()
        .map(|(k, va)| {
            as_f32(va)
                .iter()
                .zip(as_f32(&tb[k]))
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        })
        .fold(0f32, f32::max)
}

fn model_file(j: &TrainJob) -> PathBuf {
    j.out_dir.join("model/model.safetensors")
}

fn grad_norms(j: &TrainJob) -> Vec<f64> {
    let csv = std::fs::read_to_string(j.out_dir.join("log.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn two_ranks_match_one_rank_for_cpt_and_sft() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let input = model_dir(root);
    data_dir(root);
    for mode in [Mode::Cpt, Mode::Sft] {
        let one = dp_job(root, &format!("{mode:?}-1"), dp_params(mode, 1));
        let s1 = train(&one, 1).unwrap();
        let two = dp_job(root, &format!("{mode:?}-2"), dp_params(mode, 2));
        let s2 = train(&two, 2).unwrap();
        assert_eq!((s1.steps, s2.steps), (10, 10));
        assert_eq!((s1.ranks, s2.ranks), (1, 2));
        assert!(
            grad_norms(&one).iter().any(|&g| g > 0.5),
            "clipping must be active: {:?}",
            grad_norms(&one)
        );
        let diff = max_diff(&model_file(&one), &model_file(&two));
        eprintln!("{mode:?}: 2 ranks vs 1, max |diff| {diff:e}");
        // The issue asks for 1e-6; f64 gradient sums make it exact (with f32 sums the
        // grouping (g1 + g2) + (g3 + g4) moved parameters by ~1.5e-7 here).
        assert_eq!(diff, 0.0, "{mode:?}: 2 ranks differ from 1 by {diff}");
        // The model card's recipe leaves the placement parameters out, so the two
        // model directories do not differ by them.
        let card = std::fs::read_to_string(model_file(&two).with_file_name("README.md")).unwrap();
        assert!(card.contains("batch_size"), "{card}");
        for key in ["ranks", "recompute", "hang_timeout_s"] {
            assert!(!card.contains(key), "the card names `{key}`:\n{card}");
        }
        // The trainable tensors moved; the frozen ones are the input's bytes.
        let (before, after) = (
            tensors(&input.join("model.safetensors")),
            tensors(&model_file(&two)),
        );
        assert!(
            after["model.layers.1.mlp.up_proj.weight"]
                != before["model.layers.1.mlp.up_proj.weight"]
        );
        for name in [
            "model.layers.0.mlp.up_proj.weight",
            "model.embed_tokens.weight",
            "lm_head.weight",
        ] {
            assert_eq!(after[name], before[name], "{name} is frozen");
        }
        let reports = RankReport::load_all(&two.scratch_dir, 2).unwrap();
        assert_eq!(reports[0].frozen_digest, reports[1].frozen_digest);
        assert_eq!(reports[0].trainable_digest, reports[1].trainable_digest);
        assert_eq!(
            reports.iter().map(|r| r.wrote_outputs).collect::<Vec<_>>(),
            [true, false]
        );
        // 10 steps x 8 sequences, half each; the per-step check of the shards (their
        // count and index sum against the global batch) ran inside the ranks.
        assert_eq!(
            reports.iter().map(|r| r.sequences).collect::<Vec<_>>(),
            [40, 40]
        );
        assert_ne!(reports[0].pid, reports[1].pid);
        assert_eq!(
            reports.iter().map(|r| r.threads).collect::<Vec<_>>(),
            [1, 1],
            "2 ranks split the 2 threads"
        );
    }
}

/// A thread that waits (at most 120 s) for the run in `scratch` to have checkpointed
/// step 10 with rank 1 running, then sends rank 1 `signal`; it returns rank 1's pid.
fn signal_rank_1_after_step_10(scratch: PathBuf, signal: i32) -> std::thread::JoinHandle<i32> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let ckpt = scratch.join("checkpoints/step-00000010");
        let pid = scratch.join("ranks/rank-1.pid");
        while !(ckpt.is_dir() && pid.is_file()) {
            assert!(Instant::now() < deadline, "no checkpoint at step 10");
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid: i32 = std::fs::read_to_string(&pid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
        pid
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Steps of the killed run: long enough to be killed mid-way.
const LONG: u64 = 150;

#[test]
fn killed_rank_fails_clearly_and_resumes_with_two_or_one_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    model_dir(root);
    data_dir(root);
    let long = |ranks| {
        let mut p = dp_params(Mode::Sft, ranks);
        p.max_steps = Some(LONG);
        p.checkpoint_every = 5;
        p
    };
    let reference = dp_job(root, "reference", long(1));
    train(&reference, 1).unwrap();

    let run = dp_job(root, "killed", long(2));
    let killer = signal_rank_1_after_step_10(run.scratch_dir.clone(), libc::SIGKILL);
    let err = train(&run, 2).unwrap_err();
    killer.join().unwrap();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, TrainError::RanksFailed { .. }), "{msg}");
    assert!(msg.contains("rank 1") && msg.contains("signal 9"), "{msg}");
    assert!(msg.contains("resumes from the last checkpoint"), "{msg}");
    assert!(!model_file(&run).exists(), "a failed run writes no model");

    // Resume with 1 rank from a copy of the checkpoints, and with 2 from the original.
    let solo = dp_job(root, "resumed-1", long(1));
    copy_dir(
        &run.scratch_dir.join("checkpoints"),
        &solo.scratch_dir.join("checkpoints"),
    );
    let s1 = train(&solo, 1).unwrap();
    let s2 = train(&run, 2).unwrap();
    for (s, j) in [(&s1, &solo), (&s2, &run)] {
        let from = s.resumed_from.expect("resumed");
        assert!((10..LONG).contains(&from), "resumed from {from}");
        assert_eq!(s.steps, LONG);
        let diff = max_diff(&model_file(&reference), &model_file(j));
        eprintln!(
            "resumed at {from} with {} rank(s): max |diff| {diff:e}",
            s.ranks
        );
        assert_eq!(
            diff, 0.0,
            "resumed with {} rank(s): differs by {diff}",
            s.ranks
        );
    }
}

/// A rank that stops (SIGSTOP: alive, but never reaching the next all-reduce) leaves
/// the others waiting forever; the watchdog stops every rank once none has finished a
/// step for `hang_timeout_s`, naming each rank's last step, and the next run resumes.
#[test]
fn a_hung_rank_is_stopped_by_the_watchdog_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    model_dir(root);
    data_dir(root);
    let mut p = dp_params(Mode::Cpt, 2);
    p.max_steps = Some(LONG);
    p.checkpoint_every = 5;
    p.hang_timeout_s = 3.0;
    let run = dp_job(root, "hung", p);
    let stopper = signal_rank_1_after_step_10(run.scratch_dir.clone(), libc::SIGSTOP);
    let t0 = Instant::now();
    let err = train(&run, 2).unwrap_err();
    let stopped = stopper.join().unwrap();
    let msg = err.to_string();
    eprintln!("{msg} ({:.1} s)", t0.elapsed().as_secs_f64());
    assert!(matches!(err, TrainError::Ranks(_)), "{msg}");
    assert!(
        msg.contains("the ranks hung") && msg.contains("hang_timeout_s: 3"),
        "{msg}"
    );
    assert!(
        msg.contains("rank 0: ") && msg.contains("rank 1: "),
        "{msg}"
    );
    assert!(!model_file(&run).exists(), "a failed run writes no model");
    let gone = !Path::new(&format!("/proc/{stopped}")).exists()
        || std::fs::read_to_string(format!("/proc/{stopped}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        });
    assert!(gone, "the stopped rank {stopped} was not killed");
    let resumed = train(&run, 2).unwrap();
    let from = resumed.resumed_from.expect("resumed");
    assert!((10..LONG).contains(&from), "resumed from {from}");
    assert_eq!(resumed.steps, LONG);
}

/// `ranks`, `recompute` (also bit-identical) and `hang_timeout_s` are placement parameters:
/// changing them keeps the fingerprint, hence the scratch dir and its checkpoints, so a
/// stage resumes with another world size.
#[test]
fn ranks_is_a_placement_parameter_of_the_stage() {
    assert_eq!(
        Typed(TrainStage).placement_params(),
        ["ranks", "recompute", "hang_timeout_s"]
    );
}

/// A rank job file for the error tests.
fn rank_job(root: &Path, ranks: usize) -> PathBuf {
    model_dir(root);
    data_dir(root);
    let j = job(root, "job", dp_params(Mode::Cpt, ranks));
    let spec = RankJob {
        params: j.params.clone(),
        model_dir: j.model_dir.clone(),
        data: j.data.clone(),
        eval_data: Vec::new(),
        out_dir: j.out_dir.clone(),
        scratch_dir: j.scratch_dir.clone(),
        device: "cpu".into(),
        log: None,
        provenance: Default::default(),
    };
    let path = root.join("job.json");
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    path
}

/// Run `cmd` with a deadline; (success, stdout + stderr, seconds).
fn run_bounded(mut cmd: Command, limit: Duration) -> (bool, String, f64) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text, t0.elapsed().as_secs_f64())
}

fn rank_command(spec: &Path) -> Command {
    let p = this_binary();
    let mut cmd = Command::new(&p.program);
    cmd.args(&p.args).env(RANK_JOB_ENV, spec);
    for var in [
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "RANK",
        "WORLD_SIZE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn launcher_world_size_must_match_ranks_and_be_one_mpi_job() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = rank_job(tmp.path(), 2);
    let mut cmd = rank_command(&spec);
    cmd.env("SLURM_PROCID", "0").env("SLURM_NTASKS", "3");
    let (ok, text, _) = run_bounded(cmd, Duration::from_secs(60));
    assert!(!ok);
    assert!(
        text.contains("srun started 3 processes but the stage has `ranks: 2`"),
        "{text}"
    );
    // torchrun's variables with the right world size, but no MPI job behind them.
    let mut cmd = rank_command(&spec);
    cmd.env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1");
    let (ok, text, _) = run_bounded(cmd, Duration::from_secs(60));
    assert!(!ok);
    assert!(
        text.contains("torchrun announced rank 0 of 2, but MPI sees rank 0 of 1"),
        "{text}"
    );
}

#[test]
fn a_rank_that_never_joins_fails_within_the_join_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = rank_job(tmp.path(), 2);
    let p = this_binary();
    // Rank 0 is a real rank; "rank 1" never starts MPI.
    let mut cmd = mpirun(1, 1, &spec).unwrap();
    cmd.env(JOIN_TIMEOUT_ENV, "2")
        .arg(&p.program)
        .args(&p.args)
        .args([":", "-np", "1", "sleep", "60"]);
    let (ok, text, secs) = run_bounded(cmd, Duration::from_secs(50));
    assert!(!ok, "{text}");
    assert!(text.contains("not every rank joined within 2 s"), "{text}");
    assert!(secs < 30.0, "took {secs} s");
}
