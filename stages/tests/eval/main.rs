//! The evaluation tests, one test binary: task definitions and prompts (`tasks`),
//! log-likelihood scoring (`scoring`), GSM8K answer extraction (`gsm8k`), HumanEval's
//! sandboxed execution (`humaneval`), the `eval` stage end to end (`stage`) and the
//! `slayer exec eval` stand-in (`exec`, ignored unless asked for:
//! `cargo test -p slayer-stages --test eval exec:: -- --ignored`).

mod support;

mod exec;
mod gsm8k;
mod humaneval;
mod scoring;
mod stage;
mod tasks;
