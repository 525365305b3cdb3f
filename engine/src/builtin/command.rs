//! `command`: runs a shell command as a stage, for external tools.
//!
//! Inputs are exposed as `SLAYER_IN_<NAME>` (upper-cased, other characters `_`), the
//! output directory as `SLAYER_OUT`. An input of several paths (a glob, a gathered grid)
//! is joined by spaces in `SLAYER_IN_<NAME>` and also listed one per line in the file
//! named by `SLAYER_IN_<NAME>_LIST`. The environment of a process is limited (one
//! variable at most 128 KiB on Linux, all of them and the arguments ~2 MiB), so when the
//! joined paths exceed 64 KiB, or all inputs' together 512 KiB, `SLAYER_IN_<NAME>` is
//! left unset (a script under `set -u` stops there) and only `SLAYER_IN_<NAME>_LIST` is
//! given: read it with `xargs -a "$SLAYER_IN_X_LIST"` or
//! `while read -r f; do ...; done < "$SLAYER_IN_X_LIST"`, which works for any count.
//! The stage log says which variables were left out.
//!
//! The command runs under `sh -c` in the manifest's directory with stdin empty
//! (`/dev/null`); its stdout and stderr go to the stage log. `params` is free-form and
//! only enters the fingerprint.

use std::collections::BTreeMap;
use std::process::Command as Process;

use serde::{Deserialize, Serialize};

use crate::stage::{
    InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

/// The longest `SLAYER_IN_<NAME>` value put in the environment (Linux refuses a single
/// variable over 128 KiB with "Argument list too long").
pub const MAX_INPUT_VAR_BYTES: usize = 64 << 10;

/// The most bytes of `SLAYER_IN_<NAME>` values put in the environment in all.
pub const MAX_INPUT_VARS_BYTES: usize = 512 << 10;

/// The `command` stage kind.
pub struct Command;

/// Parameters of `command`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// The shell command (run with `sh -c`, stdin empty). An input is `$SLAYER_IN_<NAME>`;
    /// several paths are joined by spaces and also listed one per line in the file
    /// `$SLAYER_IN_<NAME>_LIST`. Paths over 64 KiB joined (512 KiB for all inputs) are
    /// too many for the environment: the variable is then unset and only the list is
    /// given (e.g. `xargs -a "$SLAYER_IN_DOCS_LIST" cat`).
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
            if let Some(problem) = output_path_problem(path) {
                return Err(ParamError {
                    path: vec![
                        crate::yaml::PathSegment::Key("outputs".into()),
                        crate::yaml::PathSegment::Key(name.clone()),
                    ],
                    message: format!(
                        "output path `{path}` {problem}; expected a file or directory \
                         name relative to $SLAYER_OUT, such as `{name}` or `dir/{name}.txt`"
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
        let mut env_bytes = 0;
        for (name, input) in &ctx.inputs {
            let var = format!("SLAYER_IN_{}", env_name(name));
            let paths: Vec<String> = input
                .paths()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if paths.len() > 1 {
                let list = ctx.scratch_dir.join(format!("{var}_LIST"));
                std::fs::write(&list, paths.join("\n") + "\n")
                    .map_err(|e| StageError::io(&list, e))?;
                cmd.env(format!("{var}_LIST"), &list);
            }
            let joined = paths.join(" ");
            if joined.len() > MAX_INPUT_VAR_BYTES || env_bytes + joined.len() > MAX_INPUT_VARS_BYTES
            {
                ctx.log.line(format!(
                    "{var} is not set: its {} paths take {} bytes, more than the environment \
                     holds safely; read them from ${var}_LIST (one path per line)",
                    paths.len(),
                    joined.len()
                ));
                cmd.env_remove(&var);
            } else {
                env_bytes += joined.len();
                cmd.env(var, joined);
            }
        }
        ctx.log.line(format!("$ {}", p.run));
        let status = cmd
            .stdin(std::process::Stdio::null())
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

/// Why an output path cannot name something inside `$SLAYER_OUT`, if it cannot: empty,
/// absolute, with a `..` component, or naming `$SLAYER_OUT` itself (`.`, `./`).
fn output_path_problem(path: &str) -> Option<&'static str> {
    use std::path::Component;
    let p = std::path::Path::new(path);
    if path.is_empty() {
        Some("is empty")
    } else if p.has_root() {
        Some("is absolute")
    } else if p.components().any(|c| c == Component::ParentDir) {
        Some("has a `..` component")
    } else if !p.components().any(|c| matches!(c, Component::Normal(_))) {
        Some("names $SLAYER_OUT itself")
    } else {
        None
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
