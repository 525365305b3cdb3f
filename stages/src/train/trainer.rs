//! The training loop: [`run_training`] picks the backend for the device and precision,
//! then [`train_on`] loads the model, freezes it, resumes from the newest checkpoint,
//! runs the optimizer steps and writes the outputs.
//!
//! One optimizer step: take `batch_size` sequences at the data cursor, split them into
//! `batch_size / micro_batch` micro-batches, run forward + backward on each (loss
//! weights normalised by the step's total target count), sum the gradients, clip by
//! the global norm, AdamW at the scheduled learning rate. Every `checkpoint_every`
//! steps the state goes to the scratch dir; every `eval_every` steps (and at the end)
//! the held-out loss is measured.
//!
//! Data parallel (`ranks: N`, see [`ranks`](super::ranks)): every rank runs this loop on
//! the whole model. Of each global batch rank `r` takes the contiguous slice
//! [`shard_range`] and splits it into micro-batches of `micro_batch`; the loss weights
//! are normalised by the *global* batch's target count (every rank holds the data, so
//! none is exchanged for it). A step with several micro-batches sums gradients in f64
//! ([`GradBuffer::wide`]); [`GradBuffer::reduce`] then sums them over the ranks (one
//! bucketed all-reduce per step, after accumulation, over trainable parameters only,
//! with the loss and a check of the shards riding in the first bucket) and rounds to f32,
//! so the step's gradient is the one a single process computes for the same batch and
//! micro-batch size, and clipping and AdamW are identical on every rank. Rank 0 alone
//! logs, evaluates, checkpoints and writes the outputs.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use slayer_engine::stage::{Logger, Progress};

use super::checkpoint::{self, CheckpointState};
use super::collective::{Collective, Mpi, Solo};
use super::data_loader::{DataOrder, PackedData};
use super::error::TrainError;
use super::loss::{FusedLoss, HostBatch, weighted_cross_entropy};
use super::memory_plan::{MemoryPlan, RunShape};
use super::metrics_log::{self, LogRow};
use super::optimizer::{AdamW, AdamWConfig, GradBuffer, scalar};
use super::params::{Precision, Recompute, TrainParams};
use super::ranks::{self, RankEnv, RankProgram, RankReport, shard_range};
use super::recompute::{self, BackwardReach};
use super::schedule::LrSchedule;
use super::trainable::{self, TrainableSet};
use crate::model::safetensors_io::copy_tokenizer_files;
use crate::model::{
    DeviceSpec, Llama, LlamaConfig, Residency, SaveDtype, load_pretrained_except, save_pretrained,
};
use crate::model_card::{self, Provenance, Step};

/// Called after every step with its log row; `Break` stops the run (it then returns
/// [`TrainError::Stopped`], as a killed process would, minus the kill).
pub type StepControl<'a> = &'a mut dyn FnMut(&LogRow) -> ControlFlow<()>;

/// Everything a training run needs.
#[derive(Clone)]
pub struct TrainJob {
    /// Hyper-parameters.
    pub params: TrainParams,
    /// HF-layout input model (may hold `trainable.json`).
    pub model_dir: PathBuf,
    /// Packed Parquet files or directories.
    pub data: Vec<PathBuf>,
    /// Held-out packed data.
    pub eval_data: Vec<PathBuf>,
    /// Where `model/`, `log.csv`, `log.parquet` and `loss.svg` go.
    pub out_dir: PathBuf,
    /// Where checkpoints go (survives failed attempts).
    pub scratch_dir: PathBuf,
    /// `cpu` or `cuda:N`.
    pub device: DeviceSpec,
    /// Progress bar.
    pub progress: Progress,
    /// Log file.
    pub log: Logger,
    /// What runs one rank when slayer starts `ranks > 1` processes itself.
    pub rank_program: RankProgram,
    /// The stage instance and its inputs' labels, for the model card.
    pub provenance: Provenance,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// Loss of the last step.
    pub final_loss: f64,
    /// Held-out loss at the end (when `eval_data` was given).
    pub eval_loss: Option<f64>,
    /// Optimizer steps (resumed ones included).
    pub steps: u64,
    /// Tokens consumed (resumed ones included).
    pub tokens: u64,
    /// Tokens per second over the steps run in this attempt.
    pub tokens_per_s: f64,
    /// Scalars that train.
    pub trainable_params: usize,
    /// Scalars in the model.
    pub total_params: usize,
    /// Scalars of optimiser state (2x trainable in f32, 3x with bf16 masters).
    pub optimizer_state_params: usize,
    /// The step this attempt resumed from.
    pub resumed_from: Option<u64>,
    /// Peak resident memory seen after a step, MiB.
    pub peak_rss_mb: f64,
    /// Bytes held by category.
    pub memory: MemoryPlan,
    /// Data-parallel ranks.
    pub ranks: usize,
    /// Seconds per step spent summing gradients over the ranks (bucketing, host copies
    /// and the all-reduce; with one rank only the rounding of f64 sums), mean over this
    /// attempt's steps.
    pub allreduce_s_per_step: f64,
}

/// Values per all-reduce bucket: 25 MiB of f64, PyTorch DDP's default bucket size.
pub const BUCKET_LEN: usize = 25 * 1024 * 1024 / 8;

/// Run `job` on its device, calling `control` after each step: as one process, as one
/// rank of a launcher's job (`srun`, `mpirun`), or, for `ranks > 1` outside a launcher,
/// by starting the ranks under `mpirun` ([`ranks::launch_local`]; `control` is not
/// called then: the steps run in the rank processes).
pub fn run_training(job: &TrainJob, control: StepControl<'_>) -> Result<TrainSummary, TrainError> {
    let ranks = job.params.ranks;
    match RankEnv::detect(|k| std::env::var(k).ok())? {
        Some(env) if env.world > 1 => {
            if env.world != ranks {
                return Err(TrainError::Ranks(format!(
                    "{} started {} processes but the stage has `ranks: {ranks}`; set \
                     `ranks` to the number of tasks",
                    env.launcher, env.world
                )));
            }
            ranks::write_pid(&job.scratch_dir, env.rank)?;
            let job = &TrainJob {
                device: ranks::rank_device(job.device, &env)?,
                ..job.clone()
            };
            let comm = Mpi::join(ranks::join_timeout()?)?;
            if (comm.rank(), comm.world()) != (env.rank, env.world) {
                return Err(TrainError::Ranks(format!(
                    "{} announced rank {} of {}, but MPI sees rank {} of {}: the processes \
                     are not one MPI job (start them with srun or mpirun; torchrun's \
                     MASTER_ADDR rendezvous does not start MPI)",
                    env.launcher,
                    env.rank,
                    env.world,
                    comm.rank(),
                    comm.world()
                )));
            }
            let summary = train_on_device(job, &comm, control)?;
            if comm.rank() == 0 {
                ranks::save_summary(&job.scratch_dir, &summary)?;
            }
            Ok(summary)
        }
        _ if ranks > 1 => ranks::launch_local(job, ranks),
        _ => train_on_device(job, &Solo, control),
    }
}

/// [`train_on`] with the backend of the job's device and precision.
fn train_on_device(
    job: &TrainJob,
    comm: &dyn Collective,
    control: StepControl<'_>,
) -> Result<TrainSummary, TrainError> {
    match (job.device, job.params.precision) {
        (DeviceSpec::Cpu, Precision::Bf16) => Err(TrainError::param(
            "precision",
            "bf16 needs a CUDA device; on the CPU use `precision: f32`",
        )),
        (DeviceSpec::Cpu, Precision::F32) => {
            train_on::<burn::backend::Autodiff<crate::model::Cpu>>(
                job,
                Default::default(),
                comm,
                control,
            )
        }
        #[cfg(feature = "cuda")]
        (DeviceSpec::Cuda(index), precision) => {
            use crate::model::device::Cuda;
            let device = burn::backend::cuda::CudaDevice { index };
            if precision == Precision::Bf16 {
                let count = crate::model::device::cuda_device_count()?;
                if index >= count {
                    return Err(TrainError::param(
                        "device",
                        format!("cuda:{index} requested but the driver reports {count} GPU(s)"),
                    ));
                }
                // Must precede any tensor on the device: every float created on it
                // (weights, rotary tables, activations) is then bf16.
                let set = burn::tensor::set_default_dtypes::<Cuda>(
                    &device,
                    burn::tensor::DType::BF16,
                    burn::tensor::DType::I32,
                );
                let current = burn::tensor::get_device_settings::<Cuda>(&device);
                if set.is_err()
                    && burn::tensor::DType::from(current.float_dtype) != burn::tensor::DType::BF16
                {
                    return Err(TrainError::param(
                        "precision",
                        format!(
                            "cuda:{index} was already used in f32 by this process; run the \
                             bf16 training in its own process"
                        ),
                    ));
                }
            } else {
                job.device.check()?;
            }
            train_on::<burn::backend::Autodiff<Cuda>>(job, device, comm, control)
        }
        #[cfg(not(feature = "cuda"))]
        (DeviceSpec::Cuda(_), _) => {
            job.device.check()?;
            Err(TrainError::param(
                "device",
                "CUDA support is not compiled in",
            ))
        }
    }
}

/// The training run on backend `AB`, as rank `comm.rank()` of `comm.world()`.
pub fn train_on<AB: AutodiffBackend + FusedLoss>(
    job: &TrainJob,
    device: AB::Device,
    comm: &dyn Collective,
    control: StepControl<'_>,
) -> Result<TrainSummary, TrainError> {
    let p = &job.params;
    let (rank, world) = (comm.rank(), comm.world());
    let lead = rank == 0;
    // One voice: the other ranks run the same steps and would log the same lines.
    let log = if lead {
        job.log.clone()
    } else {
        Logger::discard()
    };
    let (data, eval) = open_data(job)?;

    // Which blocks train is known from config.json and trainable.json alone; on the CPU
    // in f32 the frozen blocks then stay in the checkpoint's dtype (bf16: half the
    // memory, widened exactly where used) and only the trainable ones are converted.
    // CUDA runs keep their device-wide dtype policy (bf16 compute everywhere).
    let stored_config = LlamaConfig::from_file(&job.model_dir.join("config.json"))?;
    let set = TrainableSet::resolve(
        &p.trainable,
        &job.model_dir,
        stored_config.num_hidden_layers,
    )?;
    let residency = match (job.device, p.precision) {
        (DeviceSpec::Cpu, Precision::F32) if !set.everything => Residency::Stored,
        _ => Residency::F32,
    };
    let model: Llama<AB> = load_pretrained_except(&job.model_dir, &device, residency, &set.blocks)?;
    let config = model.config();
    check_vocabulary(&data, eval.as_ref(), config.vocab_size)?;
    let mut model = trainable::freeze(model, &set);
    let table = trainable::param_table(&model, &set);
    let total_params: usize = table.iter().map(|t| t.numel).sum();
    let trainable_params: usize = table.iter().filter(|t| t.trainable).map(|t| t.numel).sum();
    let reach = BackwardReach {
        lowest_block: set.blocks.first().copied(),
        embedding: set.everything,
    };
    let counts = (total_params, trainable_params);
    let shape = run_shape(p, &set, counts, residency, &stored_config, data.seq_len);
    let memory = MemoryPlan::new(&config, shape);
    let trainable_paths: Vec<String> = table
        .iter()
        .filter(|t| t.trainable)
        .map(|t| t.path.clone())
        .collect();

    let total_steps = p.total_steps(data.len(), data.seq_len);
    let schedule = LrSchedule::new(p.schedule, p.lr, p.min_lr, p.warmup, total_steps);
    let mut opt = AdamW::<AB::InnerBackend>::new(AdamWConfig {
        beta1: p.betas[0],
        beta2: p.betas[1],
        eps: p.eps,
        weight_decay: p.weight_decay,
    });
    // CPU tensors live in host memory: one fused pass per parameter.
    opt.host_update = job.device == DeviceSpec::Cpu;
    let mut order = DataOrder::new(data.len(), p.seed, p.shuffle);
    let (mut step, mut cursor, mut tokens, mut rows) = (0u64, 0u64, 0u64, Vec::<LogRow>::new());
    let mut resumed_from = None;
    if let Some(dir) = checkpoint::latest(&job.scratch_dir)? {
        let mut ckpt = checkpoint::load(&dir)?;
        model = checkpoint::restore(model, &mut ckpt)?;
        opt.load_host(
            ckpt.state.adam_t,
            std::mem::take(&mut ckpt.optimizer),
            &device,
        );
        step = ckpt.state.step;
        cursor = ckpt.state.cursor;
        tokens = ckpt.state.tokens;
        rows = ckpt.state.log;
        resumed_from = Some(step);
        log.line(format!("resumed from {} (step {step})", dir.display()));
    }
    // Every rank has read the checkpoint before rank 0 may write the next (and remove
    // this one).
    comm.barrier();
    log.line(format!(
        "train {:?}: {} sequences x {} tokens, {total_steps} steps of {} sequences \
         ({} x {} accumulated); {trainable_params} of {total_params} parameters train \
         (blocks {:?}{})",
        p.mode,
        data.len(),
        data.seq_len,
        p.batch_size,
        p.accumulation(),
        p.micro_batch(),
        set.blocks,
        if set.everything {
            ", embeddings, norm, head"
        } else {
            ""
        },
    ));
    job.progress.set_total(total_steps);
    job.progress.set_position(step);

    let decays = |path: &[String]| trainable::decays(path);
    let started = Instant::now();
    let tokens_at_start = tokens;
    let mut peak_rss = 0f64;
    let (mut sequences_read, mut allreduce_s, mut steps_run) = (0u64, 0f64, 0u64);
    while step < total_steps {
        let t0 = Instant::now();
        let indices = order.take(cursor, p.batch_size);
        let shard = &indices[shard_range(indices.len(), rank, world)];
        let micro: Vec<HostBatch> = shard
            .chunks(p.micro_batch())
            .map(|c| HostBatch::new(&data, c, p.mode))
            .collect();
        let norm = HostBatch::count_targets(&data, &indices, p.mode);
        let (mut buffer, loss_sum) =
            gradients(&model, &micro, norm, indices.len(), p, reach, &device);
        // The loss and the shard check ride in the first bucket of the all-reduce.
        let mut extras = [
            loss_sum.map_or(0.0, scalar),
            shard.len() as f64,
            shard.iter().sum::<usize>() as f64,
        ];
        let t_reduce = Instant::now();
        buffer.reduce(comm, BUCKET_LEN, &mut extras);
        allreduce_s += t_reduce.elapsed().as_secs_f64();
        sequences_read += shard.len() as u64;
        let loss = extras[0];
        let grad_norm = buffer.global_norm();
        check_step(step + 1, &indices, &extras, grad_norm)?;
        let lr = schedule.at(step);
        if norm > 0 {
            let scale = p
                .grad_clip
                .map_or(1.0, |c| (c / (grad_norm + 1e-6)).min(1.0));
            model = opt.step(model, buffer, lr, scale, &decays);
        } else {
            log.line(format!(
                "step {}: no target token in the batch (all masked); update skipped",
                step + 1
            ));
        }
        step += 1;
        steps_run += 1;
        cursor += indices.len() as u64;
        let step_tokens = (indices.len() * data.seq_len) as u64;
        tokens += step_tokens;
        let dt = t0.elapsed().as_secs_f64();
        let eval_due = lead
            && eval.is_some()
            && ((p.eval_every > 0 && step.is_multiple_of(p.eval_every)) || step == total_steps);
        let eval_loss = match (&eval, eval_due) {
            (Some(e), true) => Some(evaluate(&model.valid(), e, p, &device)),
            _ => None,
        };
        let rss = metrics_log::rss_mb();
        peak_rss = peak_rss.max(rss);
        let row = LogRow {
            step,
            loss,
            lr,
            grad_norm,
            tokens,
            tokens_per_s: step_tokens as f64 / dt.max(1e-9),
            rss_mb: rss,
            eval_loss,
        };
        log.line(format!(
            "step {step}/{total_steps} loss {loss:.4} lr {lr:.3e} grad_norm {grad_norm:.3} \
             {:.0} tok/s{}",
            row.tokens_per_s,
            eval_loss
                .map(|e| format!(" eval {e:.4}"))
                .unwrap_or_default()
        ));
        job.progress.inc(1);
        job.progress.set_message(format!("loss {loss:.4}"));
        if comm.world() > 1 {
            ranks::beat(&job.scratch_dir, comm.rank(), step)?;
        }
        rows.push(row.clone());
        if lead
            && p.checkpoint_every > 0
            && step.is_multiple_of(p.checkpoint_every)
            && step < total_steps
        {
            let state = CheckpointState {
                version: checkpoint::CHECKPOINT_VERSION,
                step,
                cursor,
                tokens,
                adam_t: opt.t,
                trainable: trainable_paths.clone(),
                elapsed_s: started.elapsed().as_secs_f64(),
                log: rows.clone(),
            };
            let dir = checkpoint::save(&job.scratch_dir, &state, &model, &opt.to_host())?;
            log.line(format!("checkpoint {}", dir.display()));
        }
        if control(&row).is_break() {
            return Err(TrainError::Stopped { step });
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if world > 1 {
        RankReport::of(&model, rank, world, sequences_read).save(&job.scratch_dir)?;
    }
    let summary = TrainSummary {
        final_loss: rows.last().map_or(f64::NAN, |r| r.loss),
        eval_loss: rows.iter().rev().find_map(|r| r.eval_loss),
        steps: step,
        tokens,
        tokens_per_s: (tokens - tokens_at_start) as f64 / elapsed.max(1e-9),
        trainable_params,
        total_params,
        optimizer_state_params: opt.state_numel(),
        resumed_from,
        peak_rss_mb: peak_rss,
        memory,
        ranks: world,
        allreduce_s_per_step: allreduce_s / steps_run.max(1) as f64,
    };
    if !lead {
        return Ok(summary);
    }

    write_outputs(job, &model.valid(), &config, &summary, &rows)?;
    Ok(summary)
}

/// The training data and the held-out data (when given), checked to suit the mode.
fn open_data(job: &TrainJob) -> Result<(PackedData, Option<PackedData>), TrainError> {
    let data = PackedData::open(&job.data)?;
    let eval = if job.eval_data.is_empty() {
        None
    } else {
        Some(PackedData::open(&job.eval_data)?)
    };
    if job.params.mode == super::Mode::Sft && !data.has_mask() {
        return Err(TrainError::data(
            data.files.first().map_or(Path::new("."), PathBuf::as_path),
            "`mode: sft` needs a `loss_mask` column (pack the data with an SFT format)",
        ));
    }
    Ok((data, eval))
}

/// Every token id of the data within the model's vocabulary.
fn check_vocabulary(
    data: &PackedData,
    eval: Option<&PackedData>,
    vocab_size: usize,
) -> Result<(), TrainError> {
    for (name, d) in [("data", Some(data)), ("eval_data", eval)] {
        if let Some(d) = d
            && d.max_id() as usize >= vocab_size
        {
            return Err(TrainError::data(
                d.files.first().map_or(Path::new(name), PathBuf::as_path),
                format!(
                    "token id {} is outside the model's vocabulary of {vocab_size} (wrong \
                     tokenizer?)",
                    d.max_id(),
                ),
            ));
        }
    }
    Ok(())
}

/// What the memory plan needs to know of the run: parameter counts `(total,
/// trainable)`, the first trainable block, bytes per compute and per frozen value (the
/// checkpoint's `stored` dtype where frozen tensors stay in it), micro-batch, sequence
/// length, recomputation.
fn run_shape(
    p: &TrainParams,
    set: &TrainableSet,
    (total, trainable): (usize, usize),
    residency: Residency,
    stored: &LlamaConfig,
    seq_len: usize,
) -> RunShape {
    let compute_bytes = match p.precision {
        Precision::Bf16 => 2,
        Precision::F32 => 4,
    };
    RunShape {
        total_params: total as u64,
        trainable_params: trainable as u64,
        first_trainable_block: if set.everything {
            Some(0)
        } else {
            set.blocks.first().copied()
        },
        compute_bytes,
        frozen_bytes: match (residency, SaveDtype::from_config(stored)) {
            (Residency::Stored, SaveDtype::BF16 | SaveDtype::F16) => 2,
            _ => compute_bytes,
        },
        micro_batch: p.micro_batch() as u64,
        seq_len: seq_len as u64,
        recompute: p.recompute == Recompute::Blocks,
    }
}

/// The summed gradients of one rank's micro-batches (f64 sums when there is more than
/// one micro-batch in the global batch of `batch` sequences) and their summed loss.
fn gradients<AB: AutodiffBackend + FusedLoss>(
    model: &Llama<AB>,
    micro: &[HostBatch],
    norm: usize,
    batch: usize,
    p: &TrainParams,
    reach: BackwardReach,
    device: &AB::Device,
) -> (
    GradBuffer<AB::InnerBackend>,
    Option<Tensor<AB::InnerBackend, 1>>,
) {
    let mut buffer = if batch > p.micro_batch() {
        GradBuffer::<AB::InnerBackend>::wide()
    } else {
        GradBuffer::<AB::InnerBackend>::default()
    };
    let mut loss_sum: Option<Tensor<AB::InnerBackend, 1>> = None;
    for mb in micro {
        let (inputs, targets, weights) = mb.tensors::<AB>(norm, device);
        let (detached, mut grads) = match p.recompute {
            Recompute::None => {
                let loss = AB::fused_cross_entropy(model.forward(inputs), targets, weights);
                (loss.clone().inner(), loss.backward())
            }
            Recompute::Blocks => {
                recompute::backward_by_block(model, inputs, targets, weights, reach)
            }
        };
        loss_sum = Some(match loss_sum {
            Some(s) => s + detached,
            None => detached,
        });
        buffer.accumulate(model, &mut grads);
    }
    (buffer, loss_sum)
}

/// After the all-reduce of `step`: the ranks' shards added up to the global batch
/// `indices` (count and index sum ride in `extras[1..3]`), and the loss (`extras[0]`)
/// and the gradient norm are finite.
fn check_step(
    step: u64,
    indices: &[usize],
    extras: &[f64; 3],
    grad_norm: f64,
) -> Result<(), TrainError> {
    let expected_sum = indices.iter().sum::<usize>() as u64;
    let (got, got_sum) = (extras[1] as u64, extras[2] as u64);
    if got != indices.len() as u64 || got_sum != expected_sum {
        return Err(TrainError::Shards {
            step,
            got,
            expected: indices.len() as u64,
            got_sum,
            expected_sum,
        });
    }
    for (what, value) in [("loss", extras[0]), ("grad_norm", grad_norm)] {
        if !value.is_finite() {
            return Err(TrainError::Diverged { step, what, value });
        }
    }
    Ok(())
}

/// Rank 0's outputs: the model in the input's dtype (frozen tensors round-trip
/// bit-exactly) with its tokenizer, trainable.json and model card, the log and the curve.
fn write_outputs<B: Backend>(
    job: &TrainJob,
    inner: &Llama<B>,
    config: &LlamaConfig,
    summary: &TrainSummary,
    rows: &[LogRow],
) -> Result<(), TrainError> {
    let p = &job.params;
    let model_out = job.out_dir.join("model");
    save_pretrained(inner, &model_out, SaveDtype::from_config(config))?;
    copy_tokenizer_files(&job.model_dir, &model_out)?;
    let tj = job.model_dir.join(trainable::TRAINABLE_JSON);
    if tj.is_file() {
        let dst = model_out.join(trainable::TRAINABLE_JSON);
        std::fs::copy(&tj, &dst).map_err(|e| TrainError::io(&dst, e))?;
    }
    let results = [
        ("steps", summary.steps as f64),
        ("tokens", summary.tokens as f64),
        ("final_loss", summary.final_loss),
        ("eval_loss", summary.eval_loss.unwrap_or(f64::NAN)),
    ];
    let step = Step::training(&job.provenance, p, &results);
    model_card::write_card(&job.model_dir, step, &model_out, &job.log)?;
    metrics_log::write_csv(&job.out_dir.join("log.csv"), rows)?;
    metrics_log::write_parquet(&job.out_dir.join("log.parquet"), rows)?;
    let title = format!(
        "{:?} loss, {} of {} parameters trained",
        p.mode,
        human(summary.trainable_params),
        human(summary.total_params)
    );
    let svg = metrics_log::loss_svg(rows, &title);
    let svg_path = job.out_dir.join("loss.svg");
    std::fs::write(&svg_path, svg).map_err(|e| TrainError::io(&svg_path, e))
}

/// Token-mean loss of `model` over (up to `eval_batches` micro-batches of) `data`.
pub fn evaluate<B: Backend>(
    model: &Llama<B>,
    data: &PackedData,
    p: &TrainParams,
    device: &B::Device,
) -> f64 {
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut sum = 0.0;
    let mut count = 0usize;
    let limit = p.eval_batches.unwrap_or(usize::MAX);
    for chunk in indices.chunks(p.micro_batch()).take(limit) {
        let mb = HostBatch::new(data, chunk, p.mode);
        let n = mb.count();
        if n == 0 {
            continue;
        }
        let (inputs, targets, weights) = mb.tensors::<B>(1, device);
        sum += scalar(weighted_cross_entropy(
            model.forward(inputs),
            targets,
            weights,
        ));
        count += n;
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}
