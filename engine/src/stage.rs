//! The [`Stage`] trait every stage kind implements, the [`Registry`] of kinds, and the
//! [`StageContext`] a running stage sees.
//!
//! Most kinds implement [`TypedStage`]: a serde parameter struct (defaults via serde,
//! unknown keys rejected, JSON Schema via schemars) plus a `run` function. Wrapping it
//! in [`Typed`] gives the object-safe [`Stage`] the engine works with. The engine owns
//! caching, so a stage only reads `ctx.inputs`, writes its declared outputs under
//! `ctx.out_dir` and returns metrics; it never decides whether it should run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Metrics a stage reports; stored in its run record.
pub type Metrics = serde_json::Map<String, Value>;

/// A failure inside a stage's `run`.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Failed(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("input `{name}`: {message}")]
    Input { name: String, message: String },
    #[error("stage kind `{0}` is declared but not implemented yet")]
    NotImplemented(String),
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

impl StageError {
    pub fn msg(message: impl Into<String>) -> StageError {
        StageError::Failed(message.into())
    }
    pub fn io(path: &Path, source: std::io::Error) -> StageError {
        StageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
        StageError::Other(Box::new(e))
    }
}

/// A parameter problem: `path` is the JSON path below `with` (empty = the whole map).
#[derive(Debug, Clone)]
pub struct ParamError {
    pub path: Vec<crate::yaml::PathSegment>,
    pub message: String,
}

impl ParamError {
    pub fn new(key: &str, message: impl Into<String>) -> ParamError {
        ParamError {
            path: if key.is_empty() {
                Vec::new()
            } else {
                vec![crate::yaml::PathSegment::Key(key.to_string())]
            },
            message: message.into(),
        }
    }

    /// Checks a count that must be positive: `Err` ("must be at least 1") naming `key`
    /// when `value` is `Some(0)`; `None` (an optional count left unset) passes.
    pub fn at_least_one<T: Default + PartialEq>(
        key: &str,
        value: Option<T>,
    ) -> Result<(), ParamError> {
        match value {
            Some(v) if v == T::default() => Err(ParamError::new(key, "must be at least 1")),
            _ => Ok(()),
        }
    }
}

/// What inputs a kind accepts.
#[derive(Clone, Debug)]
pub enum InputSpecs {
    /// Exactly these names (required or optional).
    Fixed(Vec<InputSpec>),
    /// Any names (e.g. `command`, which exposes each as an environment variable).
    Any,
}

#[derive(Clone, Debug)]
pub struct InputSpec {
    pub name: &'static str,
    pub required: bool,
    pub doc: &'static str,
}

impl InputSpec {
    pub const fn required(name: &'static str, doc: &'static str) -> InputSpec {
        InputSpec {
            name,
            required: true,
            doc,
        }
    }
    pub const fn optional(name: &'static str, doc: &'static str) -> InputSpec {
        InputSpec {
            name,
            required: false,
            doc,
        }
    }
}

/// One declared output: its name (as referenced by `stage.name`) and its path relative
/// to the stage's output directory (a file or a directory).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputSpec {
    pub name: String,
    pub path: String,
}

impl OutputSpec {
    pub fn new(name: &str, path: &str) -> OutputSpec {
        OutputSpec {
            name: name.to_string(),
            path: path.to_string(),
        }
    }
}

/// Resources a stage instance needs while it runs; the executor never runs more at
/// once than the machine has.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU threads (default: 1 for light stages, all cores for model stages).
    pub threads: Option<usize>,
    /// GPU devices.
    #[serde(default)]
    pub gpus: usize,
    /// Memory, e.g. "4GiB": the local scheduler starts the stage only when that much of
    /// its memory budget is free (`slayer run --memory`, default the machine's); `--mem`
    /// on Slurm.
    pub memory: Option<String>,
    /// Slurm: resubmissions after a job hits TIMEOUT or is PREEMPTED (a train stage
    /// resumes from its checkpoint).
    #[serde(default)]
    pub retries: u32,
    /// Slurm settings for this stage, over the workspace's `[executor.slurm]`.
    pub slurm: Option<crate::slurm::SlurmSettings>,
}

impl Resources {
    /// The declared memory in bytes (0 when none is declared or it does not parse;
    /// the manifest loader has refused the latter).
    pub fn memory_bytes(&self) -> u64 {
        self.memory
            .as_deref()
            .and_then(|m| memory_bytes(m).ok())
            .unwrap_or(0)
    }
}

/// Bytes of a memory size (`16GiB`, `512MB`, `2G`, `1.5T`; units are powers of 1024,
/// none means MiB as Slurm reads it).
pub fn memory_bytes(memory: &str) -> Result<u64, String> {
    let s = memory.trim();
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("memory `{memory}`: expected a size such as `16GiB`"))?;
    let unit_bytes: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "" | "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("memory `{memory}`: unknown unit `{other}`")),
    };
    Ok((value * unit_bytes).ceil() as u64)
}

/// An object-safe stage kind.
pub trait Stage: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Bumped when the implementation changes results; enters the fingerprint.
    fn version(&self) -> u32;
    fn summary(&self) -> &'static str;
    fn inputs(&self) -> InputSpecs;
    /// JSON Schema of `with`.
    fn params_schema(&self) -> Value;
    /// Validates `with` and returns it canonical, with every default filled in.
    fn check_params(&self, raw: &Value) -> Result<Value, ParamError>;
    /// Declared outputs for canonical params.
    fn outputs(&self, params: &Value) -> Vec<OutputSpec>;
    /// Does this kind compute on a device (so `device` enters its fingerprint)?
    fn uses_device(&self) -> bool {
        false
    }
    /// Threads when the manifest does not say (1 = light; 0 = all cores).
    fn default_threads(&self) -> usize {
        1
    }
    /// Parameters that say how the work is spread, not what it computes (like
    /// `resources.threads`): recorded, but left out of the fingerprint and of `why`, so
    /// changing one neither reruns the stage nor loses its checkpoints.
    fn placement_params(&self) -> &'static [&'static str] {
        &[]
    }
    fn run(&self, params: &Value, ctx: &StageContext) -> Result<Metrics, StageError>;
}

/// A stage kind with a typed parameter struct.
pub trait TypedStage: Send + Sync + 'static {
    type Params: Serialize + DeserializeOwned + schemars::JsonSchema;
    const KIND: &'static str;
    const VERSION: u32;
    const SUMMARY: &'static str;
    fn inputs() -> InputSpecs;
    fn outputs(params: &Self::Params) -> Vec<OutputSpec>;
    /// Checks beyond types (ranges, parseable strings).
    fn validate(_params: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }
    fn uses_device() -> bool {
        false
    }
    fn default_threads() -> usize {
        1
    }
    /// See [`Stage::placement_params`].
    const PLACEMENT_PARAMS: &'static [&'static str] = &[];
    fn run(&self, params: Self::Params, ctx: &StageContext) -> Result<Metrics, StageError>;
}

/// Adapts a [`TypedStage`] to [`Stage`].
pub struct Typed<T>(pub T);

impl<T: TypedStage> Typed<T> {
    fn parse(raw: &Value) -> Result<T::Params, ParamError> {
        let raw = if raw.is_null() {
            Value::Object(Default::default())
        } else {
            raw.clone()
        };
        serde_path_to_error::deserialize::<_, T::Params>(raw).map_err(|e| {
            let path = e
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => {
                        Some(crate::yaml::PathSegment::Key(key.clone()))
                    }
                    serde_path_to_error::Segment::Seq { index } => {
                        Some(crate::yaml::PathSegment::Index(*index))
                    }
                    _ => None,
                })
                .collect();
            ParamError {
                path,
                message: e.into_inner().to_string(),
            }
        })
    }
}

impl<T: TypedStage> Stage for Typed<T> {
    fn kind(&self) -> &'static str {
        T::KIND
    }
    fn version(&self) -> u32 {
        T::VERSION
    }
    fn summary(&self) -> &'static str {
        T::SUMMARY
    }
    fn inputs(&self) -> InputSpecs {
        T::inputs()
    }
    fn params_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(T::Params)).unwrap_or(Value::Null)
    }
    fn check_params(&self, raw: &Value) -> Result<Value, ParamError> {
        let params = Self::parse(raw)?;
        T::validate(&params)?;
        serde_json::to_value(&params).map_err(|e| ParamError::new("", e.to_string()))
    }
    fn outputs(&self, params: &Value) -> Vec<OutputSpec> {
        Self::parse(params)
            .map(|p| T::outputs(&p))
            .unwrap_or_default()
    }
    fn uses_device(&self) -> bool {
        T::uses_device()
    }
    fn default_threads(&self) -> usize {
        T::default_threads()
    }
    fn placement_params(&self) -> &'static [&'static str] {
        T::PLACEMENT_PARAMS
    }
    fn run(&self, params: &Value, ctx: &StageContext) -> Result<Metrics, StageError> {
        let params = Self::parse(params).map_err(|e| StageError::msg(e.message))?;
        self.0.run(params, ctx)
    }
}

/// What a device string means to the stages that compute on one: the environment facts
/// that enter their fingerprints (`device`, `backend`), or why it names no device. The
/// crate that owns the backends supplies it ([`Registry::set_device_facts`]); to the
/// engine a device is an opaque string.
pub type DeviceFacts = fn(&str) -> Result<BTreeMap<String, String>, String>;

/// The stage kinds known to a binary, and what its devices mean.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
    device_facts: Option<DeviceFacts>,
}

impl Registry {
    /// A registry with the engine's built-in kinds (`files`, `command`).
    pub fn with_builtins() -> Registry {
        let mut r = Registry::default();
        crate::builtin::register(&mut r);
        r
    }
    /// Who validates device strings and says what they mean for fingerprints.
    pub fn set_device_facts(&mut self, facts: DeviceFacts) {
        self.device_facts = Some(facts);
    }
    /// The facts of `device` for a stage that computes on it (the engine's own reading,
    /// [`crate::fingerprint::default_device_facts`], when no owner was set).
    pub fn device_facts(&self, device: &str) -> Result<BTreeMap<String, String>, String> {
        self.device_facts
            .unwrap_or(crate::fingerprint::default_device_facts)(device)
    }
    pub fn add(&mut self, stage: impl Stage + 'static) {
        self.kinds.insert(stage.kind(), Arc::new(stage));
    }
    pub fn add_typed<T: TypedStage>(&mut self, stage: T) {
        self.add(Typed(stage));
    }
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Stage>> {
        self.kinds.get(kind)
    }
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn Stage>> {
        self.kinds.values()
    }
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

/// An input as the stage sees it: one or more paths, each with a label (the upstream
/// instance name or the path relative to the manifest directory).
#[derive(Clone, Debug)]
pub struct StageInput {
    pub items: Vec<(String, PathBuf)>,
}

impl StageInput {
    /// The single path of this input, or an error when it matched several (or none).
    pub fn single(&self, name: &str) -> Result<&Path, StageError> {
        match self.items.as_slice() {
            [(_, p)] => Ok(p),
            items => Err(StageError::Input {
                name: name.to_string(),
                message: format!("expected exactly one path, found {}", items.len()),
            }),
        }
    }
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.items.iter().map(|(_, p)| p.as_path())
    }
}

/// Progress reporting for a running stage (drives its progress bar).
#[derive(Clone)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }
    pub fn from_bar(bar: indicatif::ProgressBar) -> Progress {
        Progress { bar: Some(bar) }
    }
    /// Sets the number of work units (switches the spinner to a bar with an ETA).
    pub fn set_total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(crate::progress::bar_style());
        }
    }
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }
    /// `done` more units out of `total`; `(0, total)` announces the total (the shape of
    /// the streamed checkpoint writers' callback).
    pub fn advance(&self, done: u64, total: u64) {
        if done == 0 {
            self.set_total(total);
        } else {
            self.inc(done);
        }
    }
    pub fn set_message(&self, msg: impl Into<String>) {
        if let Some(b) = &self.bar {
            b.set_message(msg.into());
        }
    }
}

/// Everything a running stage may use.
pub struct StageContext {
    /// Instance name, e.g. `expand[layout=(2+1)x8|16]`.
    pub stage: String,
    pub inputs: BTreeMap<String, StageInput>,
    /// Where declared outputs must be written (a private temp dir until publish).
    pub out_dir: PathBuf,
    /// The manifest's directory (working dir of commands, base of relative paths).
    pub work_dir: PathBuf,
    /// Survives failed attempts of the same fingerprint (checkpoints); removed on success.
    pub scratch_dir: PathBuf,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub threads: usize,
    pub progress: Progress,
    pub log: Logger,
}

impl StageContext {
    /// A context for running a stage by hand (tests, benchmarks): no inputs; `out_dir`
    /// also the working and scratch dir; the CPU, one thread, no progress bar, no log.
    /// Change what differs with struct update syntax and [`StageContext::with_input`].
    pub fn local(stage: &str, out_dir: &Path) -> StageContext {
        StageContext {
            stage: stage.to_string(),
            inputs: BTreeMap::new(),
            out_dir: out_dir.to_path_buf(),
            work_dir: out_dir.to_path_buf(),
            scratch_dir: out_dir.to_path_buf(),
            device: "cpu".into(),
            threads: 1,
            progress: Progress::hidden(),
            log: Logger::discard(),
        }
    }

    /// This context with input `name` given as the one item `path`, labelled `label`.
    pub fn with_input(mut self, name: &str, label: &str, path: &Path) -> StageContext {
        let items = vec![(label.to_string(), path.to_path_buf())];
        self.inputs.insert(name.to_string(), StageInput { items });
        self
    }

    /// The input `name`, or an error naming it.
    pub fn input(&self, name: &str) -> Result<&StageInput, StageError> {
        self.inputs.get(name).ok_or_else(|| StageError::Input {
            name: name.to_string(),
            message: "not given".to_string(),
        })
    }
    /// Path of the declared output `path` inside the output dir.
    pub fn out(&self, path: &str) -> PathBuf {
        self.out_dir.join(path)
    }
}

/// A stage's log file (also where `command` stages send stdout and stderr).
#[derive(Clone)]
pub struct Logger {
    file: Option<Arc<Mutex<std::fs::File>>>,
    path: Option<PathBuf>,
}

impl Logger {
    pub fn to_file(path: &Path) -> std::io::Result<Logger> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Logger {
            file: Some(Arc::new(Mutex::new(file))),
            path: Some(path.to_path_buf()),
        })
    }
    pub fn discard() -> Logger {
        Logger {
            file: None,
            path: None,
        }
    }
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
    /// Appends one line.
    pub fn line(&self, msg: impl AsRef<str>) {
        if let Some(f) = &self.file
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "{}", msg.as_ref());
        }
    }
    /// A handle for a child process's stdout/stderr.
    pub fn stdio(&self) -> std::process::Stdio {
        match self
            .file
            .as_ref()
            .and_then(|f| f.lock().ok()?.try_clone().ok())
        {
            Some(f) => f.into(),
            None => std::process::Stdio::null(),
        }
    }
}
