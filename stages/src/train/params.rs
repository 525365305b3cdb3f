//! [`TrainParams`]: the `with:` map of a `train` stage, with the paper's CPT recipe as
//! defaults (AdamW, lr 2e-4, cosine, 2% warmup, weight decay 0.1, clip 1.0).
//!
//! The training length is the smallest of `epochs`, `max_steps` and `max_tokens` that
//! are given (one epoch when none is); see [`TrainParams::total_steps`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use slayer_engine::stage::ParamError;

/// What the loss is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Continued pre-training: every next token is a target (`loss_mask` is ignored).
    Cpt,
    /// Supervised fine-tuning: only tokens whose `loss_mask` is true are targets.
    Sft,
}

/// Which parameters train; everything else is frozen (no gradient, no optimiser state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trainable {
    /// The blocks listed in the input model's `trainable.json` (written by `expand` /
    /// `prune`), each with its norms.
    Expanded,
    /// Every parameter: embeddings, all blocks, final norm, `lm_head` (full fine-tuning).
    All,
    /// Only the last block (with its norms).
    Final,
    /// These block indices (0-based, with their norms), e.g. `{blocks: [2, 5, 8]}`.
    Blocks(Vec<usize>),
}

/// Shape of the learning rate after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Half-cosine from `lr` down to `min_lr` at the last step.
    #[default]
    Cosine,
    /// Straight line from `lr` down to `min_lr` at the last step.
    Linear,
    /// `lr` throughout (after warmup).
    Constant,
}

/// Numeric precision of the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere (the only choice on the CPU).
    #[default]
    F32,
    /// bfloat16 weights and activations with f32 master weights and optimiser state
    /// (CUDA only).
    Bf16,
}

/// What the backward pass keeps from the forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// Every activation the backward needs is kept from the forward.
    #[default]
    None,
    /// Only each block's input is kept; each block's forward runs again under autodiff
    /// when the backward reaches it (one more forward of the trained blocks, activation
    /// memory of one block instead of all).
    Blocks,
}

/// Parameters of the `train` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// `cpt` (loss on every token) or `sft` (loss only where `loss_mask` is true).
    pub mode: Mode,
    /// Which parameters train: `expanded` (the blocks in `trainable.json`), `all`,
    /// `final` (last block) or `{blocks: [i, ...]}`.
    #[serde(default = "default_trainable")]
    pub trainable: Trainable,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Learning-rate decay after warmup: `cosine`, `linear` or `constant`.
    #[serde(default)]
    pub schedule: Schedule,
    /// Fraction of the optimizer steps spent warming up linearly from 0 to `lr`.
    #[serde(default = "default_warmup")]
    pub warmup: f64,
    /// Learning rate at the last step (cosine and linear schedules).
    #[serde(default)]
    pub min_lr: f64,
    /// AdamW's (beta1, beta2).
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// AdamW's epsilon (added to the root of the second moment).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay; not applied to norms and biases.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Clip the global gradient norm (over all trainable parameters) to this value;
    /// `null` turns clipping off.
    #[serde(default = "default_grad_clip")]
    pub grad_clip: Option<f64>,
    /// Sequences per optimizer step (the global batch).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Sequences per forward/backward pass; gradients of `batch_size / micro_batch`
    /// passes are accumulated. Default: `batch_size` (no accumulation).
    #[serde(default)]
    pub micro_batch: Option<usize>,
    /// Passes over the data (fractions allowed). One epoch when no budget is given.
    #[serde(default)]
    pub epochs: Option<f64>,
    /// Stop after this many optimizer steps.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Stop once this many tokens (sequences x seq_len) have been consumed.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Seed of the data order.
    #[serde(default)]
    pub seed: u64,
    /// Reshuffle the sequences every epoch (seeded); `false` keeps the file order.
    #[serde(default = "default_true")]
    pub shuffle: bool,
    /// `f32`, or `bf16` (CUDA only: bf16 compute, f32 master weights and moments).
    #[serde(default)]
    pub precision: Precision,
    /// Evaluate the loss on `eval_data` every this many steps (and at the end); 0 = only
    /// at the end.
    #[serde(default)]
    pub eval_every: u64,
    /// At most this many micro-batches of `eval_data` per evaluation (default: all).
    #[serde(default)]
    pub eval_batches: Option<usize>,
    /// Write a resumable checkpoint every this many steps; 0 = never.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Data-parallel processes (on the CPU they split the stage's threads; on CUDA each
    /// trains on its own GPU, `cuda:(i + local rank)`). Each reads `batch_size / ranks`
    /// sequences of every step; gradients are summed across ranks once per step. Under
    /// `srun`/`mpirun` it must equal the number of tasks.
    #[serde(default = "default_ranks")]
    pub ranks: usize,
    /// `none` keeps all activations for the backward; `blocks` keeps only each block's
    /// input and recomputes the block during the backward (same gradients, bit for bit;
    /// less memory, one more forward).
    #[serde(default)]
    pub recompute: Recompute,
    /// Data parallel: seconds without any rank finishing an optimizer step (or, before
    /// the first, since the ranks started) after which they count as hung and are
    /// stopped, failing the stage (it resumes from its last checkpoint).
    #[serde(default = "default_hang_timeout_s")]
    pub hang_timeout_s: f64,
}

/// The parameters that say where and how the run computes, not what it computes: kept
/// out of the fingerprint and of the model card's recipe (`TrainStage`).
pub const PLACEMENT_PARAMS: [&str; 3] = ["ranks", "recompute", "hang_timeout_s"];

// Not part of the fingerprint: a placement parameter of the stage (`TrainStage`).
fn default_hang_timeout_s() -> f64 {
    1800.0
}

// Not part of the fingerprint: a placement parameter of the stage (`TrainStage`).
fn default_ranks() -> usize {
    1
}

fn default_trainable() -> Trainable {
    Trainable::Expanded
}
fn default_lr() -> f64 {
    2e-4
}
fn default_warmup() -> f64 {
    0.02
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.95]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_grad_clip() -> Option<f64> {
    Some(1.0)
}
fn default_batch_size() -> usize {
    8
}
fn default_true() -> bool {
    true
}
fn default_checkpoint_every() -> u64 {
    100
}

impl TrainParams {
    /// Defaults for `mode` (what a manifest gets with only `mode:` set).
    pub fn new(mode: Mode) -> Self {
        TrainParams {
            mode,
            trainable: default_trainable(),
            lr: default_lr(),
            schedule: Schedule::default(),
            warmup: default_warmup(),
            min_lr: 0.0,
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
            grad_clip: default_grad_clip(),
            batch_size: default_batch_size(),
            micro_batch: None,
            epochs: None,
            max_steps: None,
            max_tokens: None,
            seed: 0,
            shuffle: true,
            precision: Precision::default(),
            eval_every: 0,
            eval_batches: None,
            checkpoint_every: default_checkpoint_every(),
            ranks: default_ranks(),
            recompute: Recompute::default(),
            hang_timeout_s: default_hang_timeout_s(),
        }
    }

    /// Sequences per forward/backward pass (default: a rank's whole share of the batch).
    pub fn micro_batch(&self) -> usize {
        self.micro_batch
            .unwrap_or(self.batch_size / self.ranks.max(1))
    }

    /// Micro-batches each rank accumulates per optimizer step.
    pub fn accumulation(&self) -> usize {
        self.batch_size / (self.micro_batch().max(1) * self.ranks.max(1))
    }

    /// Optimizer steps for a corpus of `sequences` rows of `seq_len` tokens: the
    /// smallest budget that is given (a partial last batch counts as a step).
    pub fn total_steps(&self, sequences: usize, seq_len: usize) -> u64 {
        let per_step = self.batch_size.max(1) as u64;
        let mut budgets = Vec::new();
        if let Some(s) = self.max_steps {
            budgets.push(s);
        }
        if let Some(t) = self.max_tokens {
            budgets.push(t.div_ceil(per_step * seq_len.max(1) as u64));
        }
        if self.epochs.is_some() || budgets.is_empty() {
            let epochs = self.epochs.unwrap_or(1.0);
            let seqs = (epochs * sequences as f64).ceil() as u64;
            budgets.push(seqs.div_ceil(per_step));
        }
        budgets.into_iter().min().unwrap_or(0).max(1)
    }

    /// Range and consistency checks (types are checked by serde).
    pub fn validate(&self) -> Result<(), ParamError> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ParamError::new(key, format!("must be > 0, got {v}")))
            }
        };
        positive("lr", self.lr)?;
        positive("hang_timeout_s", self.hang_timeout_s)?;
        positive("eps", self.eps)?;
        if !(0.0..1.0).contains(&self.warmup) {
            return Err(ParamError::new(
                "warmup",
                format!("is a fraction of the steps in [0, 1), got {}", self.warmup),
            ));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(ParamError::new(
                "min_lr",
                format!("must lie in [0, lr = {}], got {}", self.lr, self.min_lr),
            ));
        }
        for (i, b) in self.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(ParamError::new(
                    "betas",
                    format!("beta{} must lie in [0, 1), got {b}", i + 1),
                ));
            }
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(ParamError::new("weight_decay", "must be >= 0"));
        }
        if let Some(c) = self.grad_clip {
            positive("grad_clip", c)?;
        }
        ParamError::at_least_one("batch_size", Some(self.batch_size))?;
        ParamError::at_least_one("ranks", Some(self.ranks))?;
        if !self.batch_size.is_multiple_of(self.ranks) {
            return Err(ParamError::new(
                "ranks",
                format!(
                    "must divide batch_size = {} (got {}): every rank reads the same \
                     number of sequences per step",
                    self.batch_size, self.ranks
                ),
            ));
        }
        let micro = self.micro_batch();
        let share = self.batch_size / self.ranks;
        if micro == 0 || !share.is_multiple_of(micro) {
            return Err(ParamError::new(
                "micro_batch",
                format!(
                    "must divide batch_size / ranks = {share} (got {micro}); accumulation \
                     runs batch_size / (micro_batch x ranks) passes per step on each rank"
                ),
            ));
        }
        if let Some(e) = self.epochs {
            positive("epochs", e)?;
        }
        ParamError::at_least_one("max_steps", self.max_steps)?;
        ParamError::at_least_one("max_tokens", self.max_tokens)?;
        if let Trainable::Blocks(b) = &self.trainable
            && b.is_empty()
        {
            return Err(ParamError::new("trainable", "`blocks` lists no block"));
        }
        ParamError::at_least_one("eval_batches", self.eval_batches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<TrainParams, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn trainable_spellings() {
        let p = parse(serde_json::json!({"mode": "cpt", "trainable": "all"})).unwrap();
        assert_eq!(p.trainable, Trainable::All);
        let p = parse(serde_json::json!({"mode": "sft", "trainable": {"blocks": [1, 3]}})).unwrap();
        assert_eq!(p.trainable, Trainable::Blocks(vec![1, 3]));
        assert_eq!(p.trainable, Trainable::Blocks(vec![1, 3]));
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["trainable"], serde_json::json!({"blocks": [1, 3]}));
        assert!(parse(serde_json::json!({"mode": "cpt", "lr_": 1})).is_err());
    }

    #[test]
    fn budgets_take_the_smallest() {
        let mut p = TrainParams::new(Mode::Cpt);
        p.batch_size = 4;
        assert_eq!(p.total_steps(10, 16), 3);
        p.max_steps = Some(2);
        assert_eq!(p.total_steps(10, 16), 2);
        p.max_steps = None;
        p.max_tokens = Some(64 * 5);
        assert_eq!(p.total_steps(10, 16), 5);
        p.epochs = Some(1.0);
        assert_eq!(p.total_steps(10, 16), 3);
    }

    #[test]
    fn micro_batch_must_divide() {
        let mut p = TrainParams::new(Mode::Cpt);
        p.batch_size = 8;
        p.micro_batch = Some(3);
        assert!(p.validate().is_err());
        p.micro_batch = Some(2);
        p.validate().unwrap();
        assert_eq!(p.accumulation(), 4);
        p.ranks = 2;
        p.validate().unwrap();
        assert_eq!(p.accumulation(), 2);
        p.ranks = 3;
        assert!(
            p.validate()
                .unwrap_err()
                .message
                .contains("must divide batch_size = 8 (got 3)")
        );
        p.ranks = 8;
        assert!(p.validate().is_err(), "a share of 1 is not a multiple of 2");
        p.micro_batch = None;
        p.validate().unwrap();
        assert_eq!((p.micro_batch(), p.accumulation()), (1, 1));
    }

    #[test]
    fn ranks_defaults_to_one() {
        let p = parse(serde_json::json!({"mode": "cpt"})).unwrap();
        assert_eq!(p.ranks, 1);
        let p = parse(serde_json::json!({"mode": "cpt", "ranks": 2})).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap()["ranks"], 2);
        assert!(parse(serde_json::json!({"mode": "cpt", "ranks": -1})).is_err());
    }
}
