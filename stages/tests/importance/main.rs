//! The importance tests, one test binary: the measurement by perplexity and angular
//! distance with prefix reuse (`sweep`) and by the eval stage's scorer (`eval`).

#[path = "../eval/support/mod.rs"]
mod eval_support;

mod eval;
mod sweep;
