//! [`Failure`]: why an attempt at an instance failed, typed by where it happened, kept
//! from the failing call through the executor to the summary line and across the
//! process boundary (a child process or a Slurm job writes it into its `result.json`).

use serde::{Deserialize, Serialize};

/// Why an instance failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum Failure {
    /// The stage's own run returned an error (bad input data, a failing command, ...).
    #[error("{0}")]
    Stage(String),
    /// The stage panicked: a bug in slayer or its stage kind.
    #[error("panicked: {0}")]
    Panic(String),
    /// The store could not hash the inputs, lock, stage or publish the result.
    #[error("{0}")]
    Store(String),
    /// The stage's process could not start, or died without a result (a signal, the
    /// kernel's out-of-memory killer, a binary that does not know the kind).
    #[error("{0}")]
    Process(String),
    /// The batch scheduler refused the job or ended it (sbatch errors, TIMEOUT,
    /// OUT_OF_MEMORY, NODE_FAIL, CANCELLED).
    #[error("{0}")]
    Scheduler(String),
    /// Stopped by an interrupt of this run (SIGINT/SIGTERM): nothing was published.
    #[error("{0}")]
    Interrupted(String),
}

impl Failure {
    /// The kind as a word (`stage`, `panic`, `store`, `process`, `scheduler`,
    /// `interrupted`), as `result.json` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Stage(_) => "stage",
            Failure::Panic(_) => "panic",
            Failure::Store(_) => "store",
            Failure::Process(_) => "process",
            Failure::Scheduler(_) => "scheduler",
            Failure::Interrupted(_) => "interrupted",
        }
    }

    /// A store failure from any error.
    pub fn store(e: impl std::fmt::Display) -> Failure {
        Failure::Store(e.to_string())
    }

    /// The same failure with `context` in front of its message (e.g. the Slurm job).
    pub fn context(self, context: &str) -> Failure {
        let with = |m: String| format!("{context}: {m}");
        match self {
            Failure::Stage(m) => Failure::Stage(with(m)),
            Failure::Panic(m) => Failure::Panic(with(m)),
            Failure::Store(m) => Failure::Store(with(m)),
            Failure::Process(m) => Failure::Process(with(m)),
            Failure::Scheduler(m) => Failure::Scheduler(with(m)),
            Failure::Interrupted(m) => Failure::Interrupted(with(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crosses_the_process_boundary_as_tagged_json() {
        let f = Failure::Panic("index out of bounds".into());
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"kind":"panic","message":"index out of bounds"}"#);
        assert_eq!(serde_json::from_str::<Failure>(&json).unwrap(), f);
        assert_eq!(f.to_string(), "panicked: index out of bounds");
        assert_eq!(f.kind(), "panic");
        let c = Failure::Stage("no such file".into()).context("Slurm job 7 FAILED");
        assert_eq!(c, Failure::Stage("Slurm job 7 FAILED: no such file".into()));
    }
}
