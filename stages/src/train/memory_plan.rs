//! [`MemoryPlan`]: what a training run holds, by category, in bytes — recorded in the
//! train stage's metrics (`memory_*_bytes`) and used by docs/benchmarks.md ("Models larger
//! than memory") for the paper's runs on one GPU.
//!
//! | category            | bytes                                                        |
//! |---------------------|--------------------------------------------------------------|
//! | `frozen_weights`    | frozen parameters x their width: the compute width, or the checkpoint's (bf16: 2) where frozen blocks stay as stored (CPU f32 training) |
//! | `trainable_weights` | trainable parameters x compute width                         |
//! | `master_weights`    | trainable x 4 when computing in bf16 (f32 masters), else 0   |
//! | `gradients`         | trainable x compute width (frozen tensors get none)          |
//! | `optimizer_state`   | trainable x 8 (AdamW's two f32 moments)                      |
//! | `activations_estimate` | saved for backward: blocks from the first trainable one on, per token and block `8h + q + 2kv + 4i + 2·heads·seq` values (norm inputs and outputs, q/k/v, attention scores and probabilities — the naive attention of burn 0.21 keeps both —, attention and MLP outputs, gate, up, their product and activation), plus `2·vocab` per token for the logits and their gradient, x micro-batch x seq x compute width |
//! | — with `recompute: blocks` | the input of each block from the first trainable one on (`h` per token and block), one block's activations (the figure above for one block) and the logits, x micro-batch x seq x compute width |
//!
//! The first five are exact for this implementation; the activation figure is an
//! estimate (allocator slack and transient buffers are not in it), good to tell whether a
//! run fits, not to budget the last gigabyte.

use crate::model::LlamaConfig;

/// Bytes held by a training run, by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryPlan {
    /// Frozen parameters (no gradient, no optimizer state).
    pub frozen_weights: u64,
    /// Trainable parameters in the compute dtype.
    pub trainable_weights: u64,
    /// f32 master copies of the trainable parameters (bf16 compute only).
    pub master_weights: u64,
    /// Gradients of the trainable parameters.
    pub gradients: u64,
    /// AdamW's first and second moments (f32).
    pub optimizer_state: u64,
    /// Activations saved for the backward pass (an estimate, see the module doc).
    pub activations_estimate: u64,
}

/// What [`MemoryPlan::new`] needs to know about a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// Scalars in the model.
    pub total_params: u64,
    /// Scalars that train.
    pub trainable_params: u64,
    /// The first block that trains (0 when the embedding trains); `None`: no block.
    pub first_trainable_block: Option<usize>,
    /// Bytes per value of the compute dtype (4 for f32, 2 for bf16).
    pub compute_bytes: u64,
    /// Bytes per frozen parameter as held (the compute width, or the stored one).
    pub frozen_bytes: u64,
    /// Sequences per forward/backward pass.
    pub micro_batch: u64,
    /// Tokens per sequence.
    pub seq_len: u64,
    /// Per-block recomputation (`recompute: blocks`): only block inputs are kept.
    pub recompute: bool,
}

impl MemoryPlan {
    /// The plan of a run of `shape` on a model of `config`.
    pub fn new(config: &LlamaConfig, shape: RunShape) -> MemoryPlan {
        let w = shape.compute_bytes;
        let trainable = shape.trainable_params;
        let frozen = shape.total_params.saturating_sub(trainable);
        let h = config.hidden_size as u64;
        let q = (config.num_attention_heads * config.head_dim()) as u64;
        let kv = (config.num_key_value_heads() * config.head_dim()) as u64;
        let inter = config.intermediate_size as u64;
        let heads = config.num_attention_heads as u64;
        let per_token_block = 8 * h + q + 2 * kv + 4 * inter + 2 * heads * shape.seq_len;
        let blocks = shape
            .first_trainable_block
            .map_or(0, |first| config.num_hidden_layers.saturating_sub(first))
            as u64;
        let tokens = shape.micro_batch * shape.seq_len;
        let head = 2 * config.vocab_size as u64;
        let saved = if shape.recompute {
            blocks * h + blocks.min(1) * per_token_block
        } else {
            blocks * per_token_block
        };
        MemoryPlan {
            frozen_weights: frozen * shape.frozen_bytes,
            trainable_weights: trainable * w,
            master_weights: if w < 4 { trainable * 4 } else { 0 },
            gradients: trainable * w,
            optimizer_state: trainable * 8,
            activations_estimate: (saved + head) * tokens * w,
        }
    }

    /// Every category, in bytes.
    pub fn total(&self) -> u64 {
        self.frozen_weights
            + self.trainable_weights
            + self.master_weights
            + self.gradients
            + self.optimizer_state
            + self.activations_estimate
    }

    /// `(metric name, bytes)` for the stage's metrics.
    pub fn metrics(&self) -> [(&'static str, u64); 7] {
        [
            ("memory_frozen_weights_bytes", self.frozen_weights),
            ("memory_trainable_weights_bytes", self.trainable_weights),
            ("memory_master_weights_bytes", self.master_weights),
            ("memory_gradients_bytes", self.gradients),
            ("memory_optimizer_state_bytes", self.optimizer_state),
            (
                "memory_activations_estimate_bytes",
                self.activations_estimate,
            ),
            ("memory_total_estimate_bytes", self.total()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn llama2_7b(blocks: usize) -> LlamaConfig {
        let text = serde_json::json!({
            "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": blocks,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
        })
        .to_string();
        LlamaConfig::from_json_str(&text, Path::new("config.json")).unwrap()
    }

    /// The numbers docs/benchmarks.md quotes for `(2+1)x8|13|1◇` on Llama-2-7B: 38
    /// blocks, the 8 new ones and the final one train, bf16 compute, one sequence.
    #[test]
    fn s_strategy_on_llama2_7b_in_bf16() {
        let config = llama2_7b(38);
        let block = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096u64;
        let total = 38 * block + 2 * 32000 * 4096 + 4096;
        let trainable = 9 * block;
        let gb = |b: u64| (b as f64 / 1e9 * 10.0).round() / 10.0;
        let plan = |seq_len, recompute| {
            MemoryPlan::new(
                &config,
                RunShape {
                    total_params: total,
                    trainable_params: trainable,
                    first_trainable_block: Some(2),
                    compute_bytes: 2,
                    frozen_bytes: 2,
                    micro_batch: 1,
                    seq_len,
                    recompute,
                },
            )
        };
        let p = plan(4096, false);
        assert_eq!(
            [
                p.frozen_weights,
                p.trainable_weights,
                p.master_weights,
                p.gradients
            ]
            .map(gb),
            [12.3, 3.6, 7.3, 3.6]
        );
        assert_eq!(gb(p.optimizer_state), 14.6);
        assert_eq!(gb(p.activations_estimate), 104.1);
        assert_eq!(gb(p.total()), 145.5);
        let p = plan(2048, false);
        assert_eq!(gb(p.activations_estimate), 32.7);
        assert_eq!(gb(p.total()), 74.1);
        // Recomputing blocks keeps the 36 block inputs and one block's activations.
        let p = plan(4096, true);
        assert_eq!(gb(p.activations_estimate), 4.6);
        assert_eq!(gb(p.total()), 46.0);
        // In f32 (the CPU path) every weight and gradient is 4 bytes and there are no
        // separate masters.
        let f32_plan = MemoryPlan::new(
            &config,
            RunShape {
                total_params: total,
                trainable_params: trainable,
                first_trainable_block: Some(2),
                compute_bytes: 4,
                frozen_bytes: 4,
                micro_batch: 1,
                seq_len: 256,
                recompute: false,
            },
        );
        assert_eq!(f32_plan.master_weights, 0);
        assert_eq!(f32_plan.frozen_weights, (total - trainable) * 4);
    }
}
