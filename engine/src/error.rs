//! Errors of the engine: manifest diagnostics that point into the YAML source, and the
//! failures of planning and running a pipeline.
//!
//! A [`Diagnostic`] renders like a compiler error: the message, `--> file:line:col`, the
//! source line with a caret under the offending token, and an optional `help:` line
//! ("did you mean `inputs`?"). [`ManifestErrors`] carries every diagnostic found in one
//! validation pass, so a user fixes a manifest in one round trip.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::Span;

/// One problem in a manifest, with its position when known.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<Span>,
    /// A file named without a position (e.g. an unreadable manifest).
    pub file: Option<PathBuf>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(span: &Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span: Some(span.clone()),
            file: None,
            help: None,
        }
    }

    pub fn in_file(path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span: None,
            file: Some(path.to_path_buf()),
            help: None,
        }
    }

    pub fn with_help(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }

    /// `file:line:col` (or just the file) for one-line summaries.
    pub fn location(&self) -> String {
        match (&self.span, &self.file) {
            (Some(s), _) => format!("{}:{}:{}", s.file.path.display(), s.line, s.col),
            (None, Some(f)) => f.display().to_string(),
            (None, None) => String::new(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if let Some(span) = &self.span {
            let line_no = span.line.to_string();
            let pad = " ".repeat(line_no.len());
            writeln!(f, "{pad}--> {}", self.location())?;
            if let Some(line) = span.file.text.lines().nth(span.line.saturating_sub(1)) {
                writeln!(f, "{pad} |")?;
                writeln!(f, "{line_no} | {line}")?;
                let start = span.col.saturating_sub(1);
                let width = token_width(line, start);
                let lead: String = line
                    .chars()
                    .take(start)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                writeln!(f, "{pad} | {lead}{}", "^".repeat(width))?;
            }
        } else if !self.location().is_empty() {
            writeln!(f, "  --> {}", self.location())?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// Width of the token starting at char `start`: up to whitespace or YAML punctuation.
fn token_width(line: &str, start: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(start).collect();
    let quoted = matches!(rest.first(), Some('"') | Some('\''));
    let width = if quoted {
        let q = rest[0];
        rest.iter()
            .skip(1)
            .position(|&c| c == q)
            .map_or(rest.len(), |p| p + 2)
    } else {
        rest.iter()
            .position(|&c| c.is_whitespace() || matches!(c, ':' | ',' | '}' | ']' | '#'))
            .unwrap_or(rest.len())
    };
    width.max(1)
}

/// Every diagnostic of one validation pass.
#[derive(Debug, Clone)]
pub struct ManifestErrors(pub Vec<Diagnostic>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "manifest rejected: {n} error{}; nothing was run",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ManifestErrors {}

impl From<Diagnostic> for ManifestErrors {
    fn from(d: Diagnostic) -> Self {
        ManifestErrors(vec![d])
    }
}

/// Failures of the engine outside manifest validation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Manifest(#[from] ManifestErrors),
    #[error(transparent)]
    Cache(#[from] slayer_cache::CacheError),
    #[error("unknown stage `{name}`{}", suggestion_suffix(.suggestion))]
    UnknownStage {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown stage kind `{kind}`{}", suggestion_suffix(.suggestion))]
    UnknownKind {
        kind: String,
        suggestion: Option<String>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// A command that failed while doing its work (exit code 1).
    #[error("error: {0}")]
    Failed(String),
    #[error("{failed} stage(s) failed")]
    StagesFailed { failed: usize },
    /// Stopped by SIGINT/SIGTERM: running stages were killed, nothing half-done published.
    #[error("interrupted: running stages were stopped; no unfinished result was recorded")]
    Interrupted,
}

fn suggestion_suffix(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl EngineError {
    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> EngineError {
        EngineError::Io {
            context: path.display().to_string(),
            source,
        }
    }

    /// The process exit code: 2 for a rejected manifest or bad usage, 1 for failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Manifest(_)
            | EngineError::UnknownStage { .. }
            | EngineError::UnknownKind { .. }
            | EngineError::Invalid(_) => 2,
            EngineError::Interrupted => 130,
            _ => 1,
        }
    }
}
