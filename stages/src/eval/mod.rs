//! The `eval` stage: benchmarks scored the way lm-evaluation-harness (and, for HumanEval,
//! bigcode-evaluation-harness) scores them, with every item kept for auditing.
//!
//! - [`task`]: task definitions as data ([`TaskDef`], YAML/JSON; built-ins in
//!   `eval/tasks/*.yaml`), name resolution (`mmlu`, `mmlu_<subject>`, task files).
//! - [`data`]: reading JSONL / JSON / CSV / plain-text records ([`Doc`]), errors with file and line.
//! - [`template`]: the `{field|filter}` prompt templates.
//! - [`prompt`]: items and n-shot contexts as lm-eval assembles them.
//! - [`lm`]: batched log-likelihood scoring with shared context computation.
//! - [`perplexity`]: whole-document log-likelihood in rolling windows (word/byte/token
//!   perplexity, bits per byte), from text records or Parquet token shards.
//! - [`generate`]: greedy generation until stop strings.
//! - [`extract`]: GSM8K answer extraction and `exact_match` normalisation.
//! - [`execute`]: sandboxed execution of HumanEval programs, pass@k.
//! - [`metrics`], [`output`]: aggregates with standard errors, `items.parquet`.
//! - [`run`]: the backend-generic, engine-free [`evaluate`]; [`stage`]: the [`Eval`] kind.
//! - [`error`]: the [`EvalError`] type.

pub mod data;
pub mod error;
pub mod execute;
pub mod extract;
pub mod generate;
pub mod lm;
pub mod metrics;
pub mod output;
pub mod perplexity;
pub mod prompt;
pub mod run;
pub mod stage;
pub mod task;
pub mod template;

pub use data::Doc;
pub use error::EvalError;
pub use run::{RunConfig, TaskResult, evaluate};
pub use stage::{Eval, EvalParams};
pub use task::TaskDef;

use slayer_engine::Registry;

/// Add the `eval` kind to `registry`.
pub fn register(registry: &mut Registry) {
    registry.add_typed(Eval);
}
