//! `command`: runs a shell command as a stage, for external tools.
//!
//! Inputs are exposed as `SLAYER_IN_<NAME>` (upper-cased; several paths are joined by
//! spaces and also listed one per line in the file `SLAYER_IN_<NAME>_LIST`), the output
//! directory as `SLAYER_OUT`. The command runs under `sh -c` in the manifest's directory,
//! its stdout and stderr go to the stage log. `params` is free-form and only enters the
//! fingerprint.

use std::collections::BTreeMap;
use std::process::Command as Process;

use serde::{Deserialize, Serialize};

use crate::stage::{
    InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

/// The `command` stage kind.
pub struct Command;

/// Parameters of `command`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// The shell command (run with `sh -c`).
    pub run: String,
    /// Output name -> path relative to `$SLAYER_OUT` (a file or a directory).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Free-form values that enter the fingerprint (e.g. a tool's version).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl TypedStage for Command {
    type Params = CommandParams;
    const KIND: &'static str = "command";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Run a shell command; inputs as $SLAYER_IN_<NAME>, outputs under $SLAYER_OUT";

    fn inputs() -> InputSpecs {
        InputSpecs::Any
    }

    fn outputs(p: &CommandParams) -> Vec<OutputSpec> {
        p.outputs
            .iter()
            .map(|(name, path)| OutputSpec::new(name, path))
            .collect()
    }

    fn validate(p: &CommandParams) -> Result<(), ParamError> {
        if p.run.trim().is_empty() {
            return Err(ParamError::new("run", "the command is empty"));
        }
        for (name, path) in &p.outputs {
            let bad = path.is_empty()
                || std::path::Path::new(path).is_absolute()
                || path.split('/').any(|c| c == "..");
            if bad {
                return Err(ParamError {
                    path: vec![
                        crate::yaml::PathSegment::Key("outputs".into()),
                        crate::yaml::PathSegment::Key(name.clone()),
                    ],
                    message: format!(
                        "output path `{path}` must be relative to $SLAYER_OUT and stay inside it"
                    ),
                });
            }
        }
        Ok(())
    }

    fn run(&self, p: CommandParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let mut cmd = Process::new("sh");
        cmd.arg("-c").arg(&p.run).current_dir(&ctx.work_dir);
        cmd.env("SLAYER_OUT", &ctx.out_dir);
        cmd.env("SLAYER_STAGE", &ctx.stage);
        for (name, input) in &ctx.inputs {
            let var = format!("SLAYER_IN_{}", env_name(name));
            let joined: Vec<String> = input
                .paths()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if joined.len() > 1 {
                let list = ctx.scratch_dir.join(format!("{var}_LIST"));
                std::fs::write(&list, joined.join("\n") + "\n")
                    .map_err(|e| StageError::io(&list, e))?;
                cmd.env(format!("{var}_LIST"), &list);
            }
            cmd.env(var, joined.join(" "));
        }
        ctx.log.line(format!("$ {}", p.run));
        let status = cmd
            .stdout(ctx.log.stdio())
            .stderr(ctx.log.stdio())
            .status()
            .map_err(|e| StageError::msg(format!("cannot start `sh`: {e}")))?;
        if !status.success() {
            let tail = ctx
                .log
                .path()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| {
                    let lines: Vec<&str> = t.lines().collect();
                    lines[lines.len().saturating_sub(5)..].join("\n")
                })
                .unwrap_or_default();
            let code = status
                .code()
                .map_or("a signal".to_string(), |c| format!("status {c}"));
            return Err(StageError::msg(format!(
                "command exited with {code}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; last log lines:\n{tail}")
                }
            )));
        }
        Ok(Metrics::new())
    }
}

/// `model-dir` -> `MODEL_DIR`.
fn env_name(input: &str) -> String {
    input
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
