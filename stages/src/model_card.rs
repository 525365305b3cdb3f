//! Model cards: the `README.md` that every model directory written by `model.import`,
//! `expand`, `prune`, `train` and `model.export` carries, in the Hugging Face model-card format, so that a
//! model copied out of `.slayer/` (or pushed to a hub) explains itself.
//!
//! A card is YAML front matter between `---` lines followed by Markdown:
//!
//! ```text
//! ---
//! base_model: "SmolLM2-135M"
//! tags: ["slayer", "layer-expansion", "continued-pretraining"]
//! library_name: "transformers"
//! slayer:
//!   base_model_from: "config"
//!   steps:
//!     - kind: "expand"
//!       stage: "expand_s"
//!       layout: "(2+1)x8|13|1◇"
//!       ...
//! ---
//! # SmolLM2-135M: expand, train
//! ...
//! ```
//!
//! [`ModelCard`] is the front matter as a typed struct; its `slayer` key ([`Lineage`]) is
//! the list of [`Step`]s from the base model to this one. Lineage accumulates: a stage
//! reads its input model's card ([`ModelCard::read`]) and appends its own step
//! ([`ModelCard::after`]), so a trained model's card still names the expansion before it
//! and the model it started from. `base_model` is, in order: the input card's
//! `base_model` when slayer wrote that card; the input's `config.json` `_name_or_path`;
//! the input's label (the upstream instance name) when the input is a stored output;
//! else the input directory's name. A card slayer did not write (a model's own hub card)
//! is not carried over: its `base_model`, if any, names the input's parent, not the input.
//!
//! The YAML is written by hand ([`to_yaml`]): strings double-quoted with every character
//! YAML would not keep as written escaped, floats always with a `.` and a signed exponent
//! (so YAML 1.1 readers such as PyYAML, which `huggingface_hub` uses, read them as
//! floats). Cards are read back with the engine's YAML reader, bounded against hostile
//! input. Writing a card reads only small JSON and Markdown files: surgery stays streaming.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slayer_engine::StageContext;
use slayer_engine::stage::Logger;

use crate::surgery::plan::{BlockSource, LayerPlan};
use crate::train::{Mode, TrainParams, Trainable};

/// The card's file name inside a model directory.
pub const CARD_FILE: &str = "README.md";

/// What can go wrong reading or writing a card.
#[derive(Debug, thiserror::Error)]
pub enum ModelCardError {
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Front matter that is not YAML, or not a card slayer can read.
    #[error("{}: model card front matter: {message}", path.display())]
    FrontMatter {
        /// The card.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

type Result<T> = std::result::Result<T, ModelCardError>;

/// Who writes a model: the stage instance and the labels of its inputs (upstream
/// instance names, or paths as given).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The stage instance, e.g. `expand[layout=(2+1)x8|16]`.
    pub stage: String,
    /// Input name -> labels of its paths.
    pub inputs: BTreeMap<String, Vec<String>>,
}

impl Provenance {
    /// The provenance of `ctx`'s stage.
    pub fn of(ctx: &StageContext) -> Provenance {
        Provenance {
            stage: ctx.stage.clone(),
            inputs: ctx
                .inputs
                .iter()
                .map(|(name, input)| {
                    let labels = input.items.iter().map(|(l, _)| l.clone()).collect();
                    (name.clone(), labels)
                })
                .collect(),
        }
    }

    /// The label of the `model` input (its first path).
    pub fn model_label(&self) -> Option<&str> {
        self.inputs.get("model")?.first().map(String::as_str)
    }

    /// The labels of every input but `model`.
    fn data_inputs(&self) -> BTreeMap<String, Vec<String>> {
        self.inputs
            .iter()
            .filter(|(name, _)| *name != "model")
            .map(|(n, l)| (n.clone(), l.clone()))
            .collect()
    }
}

/// One step of a model's lineage: a stage that wrote a model from another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    /// The stage kind (`expand`, `prune`, `train`, `model.export`).
    pub kind: String,
    /// The stage instance.
    pub stage: String,
    /// The label of the input model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The canonical layout (`expand`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Blocks of the input model (surgery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_blocks: Option<usize>,
    /// Blocks of the output model (surgery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<usize>,
    /// Output positions of the inserted blocks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_blocks: Vec<usize>,
    /// How the inserted blocks were initialised (`copy`, `average`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Whether the inserted blocks' `o_proj`/`down_proj` started at zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zeroed: Option<bool>,
    /// Output positions of blocks re-initialised as the mean of deleted blocks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_blocks: Vec<usize>,
    /// Input blocks deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<usize>,
    /// Output blocks marked trainable (`trainable.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trainable: Option<Vec<usize>>,
    /// The surgery plan's hash (as in `trainable.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    /// The training recipe: the `train` stage's parameters, defaults filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<Value>,
    /// The other inputs of the stage (training data), by name: their labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, Vec<String>>,
    /// What an import read (`model.import`): `gguf` or `hf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_format: Option<String>,
    /// Storage dtype of the written weights (`model.export`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Numbers known when the model was written (steps, tokens, losses).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub results: BTreeMap<String, f64>,
}

impl Step {
    fn new(kind: &str, prov: &Provenance) -> Step {
        Step {
            kind: kind.into(),
            stage: prov.stage.clone(),
            input: prov.model_label().map(str::to_string),
            data: prov.data_inputs(),
            ..Step::default()
        }
    }

    /// The step of a surgery (`expand` or `prune`) by `plan`, with the output's
    /// `trainable` blocks.
    pub fn surgery(prov: &Provenance, plan: &LayerPlan, trainable: &[usize]) -> Step {
        let mut new_blocks = Vec::new();
        let mut merged_blocks = Vec::new();
        let mut init = None;
        let mut zeroed = None;
        for (i, b) in plan.blocks.iter().enumerate() {
            match b.source {
                BlockSource::Copy { .. } | BlockSource::Average { .. } => {
                    new_blocks.push(i);
                    let this = if matches!(b.source, BlockSource::Average { .. }) {
                        "average"
                    } else {
                        "copy"
                    };
                    // A plan mixes the two only where an average had no block after it.
                    if init != Some("average") {
                        init = Some(this);
                    }
                    zeroed = Some(zeroed.unwrap_or(false) || b.zeroed);
                }
                BlockSource::Merge { .. } => merged_blocks.push(i),
                BlockSource::Original { .. } => {}
            }
        }
        Step {
            layout: plan.layout.clone(),
            source_blocks: Some(plan.source_blocks),
            blocks: Some(plan.len()),
            new_blocks,
            init: init.map(str::to_string),
            zeroed,
            merged_blocks,
            deleted: plan.deleted.clone(),
            trainable: Some(trainable.to_vec()),
            plan_hash: Some(plan.hash()),
            ..Step::new(&plan.operation, prov)
        }
    }

    /// The step of a `train` run with `params` (its placement parameters left out: they
    /// do not change the model), ending with `results`.
    pub fn training(prov: &Provenance, params: &TrainParams, results: &[(&str, f64)]) -> Step {
        let mut recipe = serde_json::to_value(params).ok();
        if let Some(Value::Object(map)) = &mut recipe {
            for key in crate::train::params::PLACEMENT_PARAMS {
                map.remove(key);
            }
        }
        Step {
            training: recipe,
            results: results
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            ..Step::new("train", prov)
        }
    }

    /// The step of a `model.import` of `source` (a GGUF file or an HF directory, named by
    /// its file name), read as `format` (`gguf`, `hf`).
    pub fn import(prov: &Provenance, source: &Path, format: &str) -> Step {
        Step {
            input: source.file_name().map(|n| n.to_string_lossy().into_owned()),
            source_format: Some(format.into()),
            ..Step::new("model.import", prov)
        }
    }

    /// The step of a `model.export` at `dtype`.
    pub fn export(prov: &Provenance, dtype: &str) -> Step {
        Step {
            dtype: Some(dtype.into()),
            ..Step::new("model.export", prov)
        }
    }

    /// The HF tag of this step's kind, if it has one.
    fn tag(&self) -> Option<&'static str> {
        match self.kind.as_str() {
            "expand" => Some("layer-expansion"),
            "prune" => Some("layer-pruning"),
            "train" => match self.training_mode() {
                Some(Mode::Sft) => Some("fine-tuning"),
                _ => Some("continued-pretraining"),
            },
            _ => None,
        }
    }

    fn training_mode(&self) -> Option<Mode> {
        serde_json::from_value(self.training.as_ref()?.get("mode")?.clone()).ok()
    }

    /// One Markdown sentence saying what the step did.
    pub fn describe(&self) -> String {
        let from = self
            .input
            .as_deref()
            .map(|l| format!(" `{}`", code(l)))
            .unwrap_or_default();
        let list = |v: &[usize]| {
            v.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = match self.kind.as_str() {
            "expand" | "prune" => {
                let verb = if self.kind == "expand" {
                    "Expanded"
                } else {
                    "Pruned"
                };
                let mut s = format!(
                    "{verb}{from} from {} to {} blocks",
                    opt(self.source_blocks),
                    opt(self.blocks)
                );
                if let Some(l) = &self.layout {
                    let _ = write!(s, " with layout `{}`", code(l));
                }
                if !self.new_blocks.is_empty() {
                    let how = match self.init.as_deref() {
                        Some("average") => "initialised by averaging their neighbours",
                        _ => "initialised as copies of the block before",
                    };
                    let _ = write!(
                        s,
                        ": {} new blocks at positions {}, {how}",
                        self.new_blocks.len(),
                        list(&self.new_blocks)
                    );
                    if self.zeroed == Some(true) {
                        s.push_str(", with `o_proj`/`down_proj` zeroed (function-preserving)");
                    }
                }
                if !self.deleted.is_empty() {
                    let _ = write!(s, "; deleted blocks {}", list(&self.deleted));
                }
                if !self.merged_blocks.is_empty() {
                    let _ = write!(
                        s,
                        "; block {} re-initialised as the mean of deleted blocks",
                        list(&self.merged_blocks)
                    );
                }
                match self.trainable.as_deref() {
                    Some([]) | None => {}
                    Some(t) => {
                        let _ = write!(
                            s,
                            "; only blocks {} are trainable (`trainable.json`)",
                            list(t)
                        );
                    }
                }
                s
            }
            "train" => self.describe_training(&from),
            "model.export" => format!(
                "Exported{from} with {} weights",
                self.dtype.as_deref().unwrap_or("?")
            ),
            "model.import" => format!(
                "Imported{from} ({}) as a Hugging Face checkpoint",
                match self.source_format.as_deref() {
                    Some("gguf") => "GGUF, dequantised to f32",
                    _ => "HF directory, tensors copied as stored",
                }
            ),
            other => format!("`{}`{from}", code(other)),
        };
        s.push('.');
        s
    }

    fn describe_training(&self, from: &str) -> String {
        let p = self.training.as_ref();
        let what = match self.training_mode() {
            Some(Mode::Sft) => "Fine-tuned (SFT)",
            _ => "Continued pre-training of",
        };
        let trainable: Option<Trainable> = p
            .and_then(|p| p.get("trainable"))
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        let set = match trainable {
            Some(Trainable::Expanded) => "the blocks in `trainable.json`".to_string(),
            Some(Trainable::All) => "every parameter".to_string(),
            Some(Trainable::Final) => "the last block".to_string(),
            Some(Trainable::Blocks(b)) => format!(
                "blocks {}",
                b.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "its trainable parameters".to_string(),
        };
        let mut s = match self.training_mode() {
            Some(Mode::Sft) => format!("{what}{from}, training {set}"),
            _ => format!("{what} {set} of{from}"),
        };
        if let Some(lr) = p.and_then(|p| p.get("lr")).and_then(Value::as_f64) {
            let _ = write!(s, ", peak lr {}", yaml_float(lr));
        }
        if let Some(steps) = self.results.get("steps") {
            let _ = write!(s, ", {steps} steps");
        }
        if let Some(tokens) = self.results.get("tokens") {
            let _ = write!(s, " ({tokens} tokens)");
        }
        if let Some(data) = self.data.get("data") {
            let names: Vec<String> = data.iter().map(|d| format!("`{}`", code(d))).collect();
            let _ = write!(s, " on {}", names.join(", "));
        }
        if let Some(l) = self.results.get("final_loss") {
            let _ = write!(s, "; final loss {l:.4}");
        }
        if let Some(l) = self.results.get("eval_loss") {
            let _ = write!(s, ", held-out loss {l:.4}");
        }
        s
    }
}

fn opt(v: Option<usize>) -> String {
    v.map_or("?".into(), |n| n.to_string())
}

/// Text to put between single backticks: a backtick would end the span early.
fn code(s: &str) -> String {
    s.replace('`', "'")
}

/// The lineage of a model: where its base name came from and every step since.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lineage {
    /// Where `base_model` was found: `card`, `config` (`_name_or_path`), `label` (the
    /// upstream instance name) or `directory`.
    pub base_model_from: String,
    /// The fingerprint of the stored output the base model was read from, if it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_fingerprint: Option<String>,
    /// Steps from the base model to this one, oldest first.
    pub steps: Vec<Step>,
}

/// A model card's front matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model everything started from.
    pub base_model: String,
    /// HF tags: `slayer` and one per kind of step.
    pub tags: Vec<String>,
    /// The library that loads the model.
    pub library_name: String,
    /// slayer's own record of the lineage.
    pub slayer: Lineage,
}

impl ModelCard {
    /// The card of `dir`, if it has one that slayer wrote (a `slayer` key); `None`
    /// without a `README.md` or for a card of another origin.
    pub fn read(dir: &Path) -> Result<Option<ModelCard>> {
        let path = dir.join(CARD_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelCardError::Io {
            path: path.clone(),
            source: e,
        })?;
        let Some(front) = front_matter(&text) else {
            return Ok(None);
        };
        let bad = |message: String| ModelCardError::FrontMatter {
            path: path.clone(),
            message,
        };
        let node = slayer_engine::yaml::parse(Arc::new(slayer_engine::yaml::SourceFile {
            path: path.clone(),
            text: front.to_string(),
        }))
        .map_err(|d| bad(d.to_string()))?;
        let value = node.to_json();
        if value.get("slayer").is_none() {
            return Ok(None);
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    /// The card of a model made from the model directory `input` by `step`: the input's
    /// lineage followed by `step`. An input card that cannot be read is passed over
    /// (named in `log`): it must not stop the stage.
    pub fn after(input: &Path, step: Step, log: &Logger) -> ModelCard {
        let inherited = ModelCard::read(input).unwrap_or_else(|e| {
            log.line(format!("# model card of the input not used: {e}"));
            None
        });
        let (base_model, mut lineage) = match inherited {
            Some(card) => (
                card.base_model,
                Lineage {
                    base_model_from: card.slayer.base_model_from,
                    base_fingerprint: card.slayer.base_fingerprint,
                    steps: card.slayer.steps,
                },
            ),
            None => base_of(input, step.input.as_deref()),
        };
        lineage.steps.push(step);
        let mut tags = vec!["slayer".to_string()];
        for t in lineage.steps.iter().filter_map(Step::tag) {
            if !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        }
        ModelCard {
            base_model,
            tags,
            library_name: "transformers".into(),
            slayer: lineage,
        }
    }

    /// The whole `README.md`: front matter and Markdown body.
    pub fn render(&self) -> String {
        // Serialising plain data with derived impls cannot fail.
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut out = String::from("---\n");
        out.push_str(&to_yaml(&value));
        out.push_str("---\n\n");
        let kinds: Vec<&str> = self.slayer.steps.iter().map(|s| s.kind.as_str()).collect();
        let _ = writeln!(
            out,
            "# {}: {}\n",
            markdown_text(&self.base_model),
            kinds.join(", ")
        );
        let _ = writeln!(
            out,
            "Made by slayer from `{}` (the base model), in {} step{}:\n",
            code(&self.base_model),
            kinds.len(),
            if kinds.len() == 1 { "" } else { "s" }
        );
        for (i, step) in self.slayer.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}. **{}** (stage `{}`): {}",
                i + 1,
                markdown_text(&step.kind),
                code(&step.stage),
                step.describe()
            );
        }
        out.push_str(
            "\nThe `slayer` entry of the front matter holds the same lineage as data (layouts, \
             plan hashes, training recipes). Load the model with transformers' \
             `AutoModelForCausalLM.from_pretrained` on this directory.\n",
        );
        out
    }

    /// Writes the card to `dir/README.md`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CARD_FILE);
        std::fs::write(&path, self.render()).map_err(|e| ModelCardError::Io { path, source: e })
    }
}

/// The base model of an input without a slayer card, and the start of its lineage.
fn base_of(input: &Path, label: Option<&str>) -> (String, Lineage) {
    let fingerprint = crate::report::fingerprint_of(input);
    let lineage = |from: &str| Lineage {
        base_model_from: from.into(),
        base_fingerprint: fingerprint.clone(),
        steps: Vec::new(),
    };
    if let Some(name) = name_or_path(input) {
        return (name, lineage("config"));
    }
    if let (Some(label), Some(_)) = (label, &fingerprint) {
        return (label.to_string(), lineage("label"));
    }
    let dir = std::path::absolute(input).unwrap_or_else(|_| input.to_path_buf());
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    (name, lineage("directory"))
}

/// `_name_or_path` of `dir/config.json`, when it is a non-empty string.
fn name_or_path(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: Value = serde_json::from_str(&text).ok()?;
    let name = config.get("_name_or_path")?.as_str()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Markdown text outside code spans: characters that would start markup escaped.
fn markdown_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\`*_[]<>#|".contains(c) {
            out.push('\\');
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// The YAML between a card's `---` lines, as `huggingface_hub` finds it (the file starts
/// with `---`, the front matter ends at the next line that is `---`).
pub fn front_matter(text: &str) -> Option<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text.trim_start().strip_prefix("---")?;
    let rest = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    let mut at = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']) == "---" {
            return Some(&rest[..at]);
        }
        at += line.len();
    }
    None
}

/// `value` (a JSON object) as block-style YAML: mappings and lists of mappings as
/// blocks, lists of scalars in flow style, every string double-quoted.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) => yaml_map(map, 0, &mut out),
        other => {
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in map {
        let key = yaml_key(k);
        match v {
            Value::Object(m) if !m.is_empty() => {
                let _ = writeln!(out, "{pad}{key}:");
                yaml_map(m, indent + 2, out);
            }
            Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                let _ = writeln!(out, "{pad}{key}:");
                yaml_list(items, indent + 2, out);
            }
            other => {
                let _ = writeln!(out, "{pad}{key}: {}", yaml_flow(other));
            }
        }
    }
}

fn yaml_list(items: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The mapping indented under the dash, its first line sharing the dash's.
                let mut block = String::new();
                yaml_map(m, indent + 2, &mut block);
                let _ = write!(out, "{pad}- {}", &block[indent + 2..]);
            }
            other => {
                let _ = writeln!(out, "{pad}- {}", yaml_flow(other));
            }
        }
    }
}

/// A value on one line: scalars, `{}`, and lists/mappings in flow style.
fn yaml_flow(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(yaml_flow).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", yaml_key(k), yaml_flow(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        scalar => yaml_scalar(scalar),
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => yaml_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => yaml_string(s),
        other => yaml_flow(other),
    }
}

/// A float both YAML 1.1 and 1.2 read back as the same float: a `.` in the mantissa,
/// a signed exponent.
pub fn yaml_float(x: f64) -> String {
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    // Debug is the shortest text that parses back to `x`: `0.0002`, `2.0`, `1e-5`, `1e20`.
    let s = format!("{x:?}");
    match s.split_once('e') {
        Some((m, e)) => {
            let m = if m.contains('.') {
                m.to_string()
            } else {
                format!("{m}.0")
            };
            let e = if e.starts_with('-') {
                e.to_string()
            } else {
                format!("+{e}")
            };
            format!("{m}e{e}")
        }
        None => s,
    }
}

/// A mapping key: plain when it is a word no YAML reader types (`base_model`), quoted
/// otherwise (`on`, `a: b`, `1`).
fn yaml_key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let reserved = matches!(
        k.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    if plain && !reserved {
        k.to_string()
    } else {
        yaml_string(k)
    }
}

/// `s` as a YAML double-quoted scalar. Escaped: quotes, backslashes, control
/// characters, and what YAML 1.1 takes for line breaks (NEL, U+2028, U+2029) or drops
/// (BOM, non-characters); everything else as written (UTF-8).
pub fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn needs_escape(c: char) -> bool {
    let u = c as u32;
    u < 0x20 || (0x7f..0xa0).contains(&u) || matches!(u, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff)
}

/// Writes the card of the model in `out`, made from `input` by `step`; the stage fails
/// only when the card cannot be written.
pub fn write_card(input: &Path, step: Step, out: &Path, log: &Logger) -> Result<ModelCard> {
    let card = ModelCard::after(input, step, log);
    card.write(out)?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        slayer_engine::yaml::parse(Arc::new(slayer_engine::yaml::SourceFile {
            path: "card".into(),
            text: text.into(),
        }))
        .unwrap()
        .to_json()
    }

    #[test]
    fn strings_floats_and_keys_read_back_as_written() {
        let value = serde_json::json!({
            "base_model": "a \"quoted\" name: with # and \\ and \n and \u{2028} and ◇",
            "on": "yes",
            "odd key: x": 1,
            "lr": 0.0002, "eps": 1e-8, "big": 1e20, "two": 2.0, "n": 7, "neg": -3,
            "list": [1, "b", 0.5], "empty": [], "nothing": {}, "none": null,
            "steps": [{"kind": "expand", "new_blocks": [1, 3]}, {"kind": "train", "results": {"loss": 1.5}}],
        });
        let yaml = to_yaml(&value);
        let back = parse(&yaml);
        assert_eq!(back, value, "{yaml}");
        assert!(
            yaml.contains("eps: 1.0e-8\n") && yaml.contains("big: 1.0e+20\n"),
            "{yaml}"
        );
        assert!(yaml.contains("\"on\": \"yes\"\n"), "{yaml}");
    }

    #[test]
    fn front_matter_is_found_between_the_dashes() {
        assert_eq!(front_matter("---\na: 1\n---\n# x\n"), Some("a: 1\n"));
        assert_eq!(
            front_matter("\u{feff}---\r\na: 1\r\n---\r\n"),
            Some("a: 1\r\n")
        );
        assert_eq!(front_matter("# no front matter\n"), None);
        assert_eq!(front_matter("---\na: 1\n"), None);
    }

    #[test]
    fn a_foreign_card_is_not_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CARD_FILE),
            "---\nbase_model: parent/of-the-input\nlicense: mit\n---\n# hi\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"_name_or_path": "org/the-input"}"#,
        )
        .unwrap();
        assert!(ModelCard::read(dir.path()).unwrap().is_none());
        let card = ModelCard::after(dir.path(), Step::default(), &Logger::discard());
        assert_eq!(card.base_model, "org/the-input");
        assert_eq!(card.slayer.base_model_from, "config");
    }

    #[test]
    fn a_broken_card_is_passed_over_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CARD_FILE), "---\nslayer: [unclosed\n---\n").unwrap();
        assert!(ModelCard::read(dir.path()).is_err());
        let card = ModelCard::after(dir.path(), Step::default(), &Logger::discard());
        assert_eq!(card.slayer.base_model_from, "directory");
        assert_eq!(card.slayer.steps.len(), 1);
    }
}
