//! The manifest language: reading YAML files (with `include:`) into a [`Manifest`] whose
//! every part remembers its source position.
//!
//! ```yaml
//! name: ablation
//! include: [base.yaml]               # merged first; this file overrides
//! defaults: {device: cpu, seed: 0}   # values for ${defaults.X}; `device` is also the default device
//! grid: {layout: ["(4+1)x8", "(2+1)x8|16"]}
//! exclude: [{layout: "(4+1)x8"}]     # drop grid combinations
//! stages:
//!   expand: {kind: expand, inputs: {model: base.model}, with: {layout: "${grid.layout}"}}
//! ```
//! Structure is checked here (unknown keys, types); references, kinds and parameters are
//! checked when the manifest is resolved into a pipeline (`pipeline.rs`). Includes nest
//! at most [`MAX_INCLUDE_DEPTH`] files deep; merging is linear in the number of entries.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, ManifestErrors};
use crate::suggest;
use crate::yaml::{self, Key, Node, Span, Value};

/// How many files an include chain may hold (the manifest itself included).
pub const MAX_INCLUDE_DEPTH: usize = 64;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "include",
    "defaults",
    "grid",
    "exclude",
    "stages",
];
const STAGE_KEYS: &[&str] = &[
    "kind",
    "description",
    "inputs",
    "with",
    "resources",
    "device",
];

/// A parsed manifest (includes merged).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub path: PathBuf,
    /// Directory the manifest lives in: base of relative paths, commands' working dir.
    pub dir: PathBuf,
    pub name: String,
    pub defaults: Vec<(Key, Node)>,
    pub grid: Vec<Axis>,
    pub exclude: Vec<Node>,
    pub stages: Vec<StageDecl>,
}

/// A named grid axis and its values.
#[derive(Clone, Debug)]
pub struct Axis {
    pub name: Key,
    pub values: Vec<Node>,
}

/// One stage as written.
#[derive(Clone, Debug)]
pub struct StageDecl {
    pub name: Key,
    pub kind: Node,
    pub inputs: Vec<(Key, Node)>,
    pub with: Option<Node>,
    pub resources: Option<Node>,
    pub device: Option<Node>,
    pub description: Option<String>,
}

impl Manifest {
    /// Reads `path` and its includes; every structural error is collected.
    pub fn load(path: &Path) -> Result<Manifest, ManifestErrors> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut errors = Vec::new();
        let mut m = Manifest {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            path: path.clone(),
            name: String::new(),
            defaults: Vec::new(),
            grid: Vec::new(),
            exclude: Vec::new(),
            stages: Vec::new(),
        };
        let mut chain = Vec::new();
        m.merge_file(&path, &mut chain, &mut errors);
        if m.name.is_empty() {
            m.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        if errors.is_empty() {
            Ok(m)
        } else {
            Err(ManifestErrors(errors))
        }
    }

    /// Parses a manifest from text (tests, embedded manifests); `path` names it in errors
    /// and its directory is the working directory.
    pub fn from_str(path: &Path, text: &str) -> Result<Manifest, ManifestErrors> {
        let file = std::sync::Arc::new(yaml::SourceFile {
            path: path.to_path_buf(),
            text: text.to_string(),
        });
        let root = yaml::parse(file)?;
        let mut errors = Vec::new();
        let mut m = Manifest {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            path: path.to_path_buf(),
            name: String::new(),
            defaults: Vec::new(),
            grid: Vec::new(),
            exclude: Vec::new(),
            stages: Vec::new(),
        };
        m.merge_node(&root, path, &mut vec![path.to_path_buf()], &mut errors);
        if errors.is_empty() {
            Ok(m)
        } else {
            Err(ManifestErrors(errors))
        }
    }

    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name.name == name)
    }

    pub fn default_value(&self, name: &str) -> Option<&Node> {
        self.defaults
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    fn merge_file(&mut self, path: &Path, chain: &mut Vec<PathBuf>, errors: &mut Vec<Diagnostic>) {
        let root = match yaml::load_file(path) {
            Ok(root) => root,
            Err(e) => {
                errors.push(e);
                return;
            }
        };
        chain.push(path.to_path_buf());
        self.merge_node(&root, path, chain, errors);
        chain.pop();
    }

    fn merge_node(
        &mut self,
        root: &Node,
        path: &Path,
        chain: &mut Vec<PathBuf>,
        errors: &mut Vec<Diagnostic>,
    ) {
        let Some(entries) = root.as_map() else {
            errors.push(Diagnostic::at(
                &root.span,
                format!(
                    "a manifest must be a mapping with `stages:`, found {}",
                    root.type_name()
                ),
            ));
            return;
        };
        for (key, _) in entries {
            if !TOP_KEYS.contains(&key.name.as_str()) {
                errors.push(unknown_key(key, "at the top level", TOP_KEYS));
            }
        }
        // Includes first, so this file's own entries override them.
        if let Some(inc) = root.get("include") {
            for item in list_of(inc, errors) {
                let Some(rel) = item.as_str() else {
                    errors.push(expected(&item, "a file path"));
                    continue;
                };
                let base = path.parent().unwrap_or(Path::new("."));
                let target = std::path::absolute(base.join(rel)).unwrap_or_else(|_| base.join(rel));
                if chain.len() >= MAX_INCLUDE_DEPTH {
                    errors.push(Diagnostic::at(
                        &item.span,
                        format!(
                            "includes nest more than {MAX_INCLUDE_DEPTH} files deep: {}",
                            describe_chain(chain, &target)
                        ),
                    ));
                } else if chain.contains(&target) {
                    errors.push(Diagnostic::at(
                        &item.span,
                        format!("include cycle: {} includes itself", target.display()),
                    ));
                } else if !target.is_file() {
                    errors.push(Diagnostic::at(
                        &item.span,
                        format!("included file {} does not exist", target.display()),
                    ));
                } else {
                    self.merge_file(&target, chain, errors);
                }
            }
        }
        if let Some(name) = root.get("name") {
            match name.as_str() {
                Some(s) => self.name = s.to_string(),
                None => errors.push(expected(name, "a string")),
            }
        }
        if let Some(d) = root.get("description")
            && d.as_str().is_none()
        {
            errors.push(expected(d, "a string"));
        }
        if let Some(defaults) = root.get("defaults") {
            match defaults.as_map() {
                Some(entries) => {
                    override_by_name(&mut self.defaults, entries.to_vec(), |(k, _)| &k.name)
                }
                None => errors.push(expected(defaults, "a mapping of names to values")),
            }
        }
        if let Some(grid) = root.get("grid") {
            match grid.as_map() {
                Some(entries) => {
                    let mut axes = Vec::new();
                    for (k, v) in entries {
                        let values = match &v.value {
                            Value::Seq(items) if !items.is_empty() => items.clone(),
                            Value::Seq(_) => {
                                errors.push(Diagnostic::at(
                                    &v.span,
                                    format!("grid axis `{}` has no values", k.name),
                                ));
                                continue;
                            }
                            _ => {
                                errors.push(expected(v, "a list of values"));
                                continue;
                            }
                        };
                        check_unique_values(k, &values, errors);
                        axes.push(Axis {
                            name: k.clone(),
                            values,
                        });
                    }
                    override_by_name(&mut self.grid, axes, |a| &a.name.name);
                }
                None => errors.push(expected(grid, "a mapping of axis names to lists")),
            }
        }
        if let Some(ex) = root.get("exclude") {
            for item in list_of(ex, errors) {
                if item.as_map().is_none() {
                    errors.push(expected(&item, "a mapping of axis names to values"));
                } else {
                    self.exclude.push(item);
                }
            }
        }
        match root.get("stages") {
            Some(stages) => match stages.as_map() {
                Some(entries) => {
                    let decls = entries
                        .iter()
                        .filter_map(|(k, v)| parse_stage(k, v, errors))
                        .collect();
                    override_by_name(&mut self.stages, decls, |s| &s.name.name);
                }
                None => errors.push(expected(stages, "a mapping of stage names to stages")),
            },
            None if chain.len() <= 1 && self.stages.is_empty() && errors.is_empty() => {
                errors.push(Diagnostic::at(
                    &Span::file_start(root.span.file.clone()),
                    "the manifest has no `stages:` section",
                ))
            }
            None => {}
        }
    }
}

fn parse_stage(name: &Key, node: &Node, errors: &mut Vec<Diagnostic>) -> Option<StageDecl> {
    if !is_identifier(&name.name) {
        errors.push(Diagnostic::at(
            &name.span,
            format!(
                "invalid stage name `{}`: use letters, digits, `_` and `-`, starting with a letter or `_`",
                name.name
            ),
        ));
    }
    let Some(entries) = node.as_map() else {
        errors.push(Diagnostic::at(
            &node.span,
            format!(
                "stage `{}` must be a mapping with `kind:`, found {}",
                name.name,
                node.type_name()
            ),
        ));
        return None;
    };
    for (k, _) in entries {
        if !STAGE_KEYS.contains(&k.name.as_str()) {
            errors.push(unknown_key(
                k,
                &format!("in stage `{}`", name.name),
                STAGE_KEYS,
            ));
        }
    }
    let Some(kind) = node.get("kind") else {
        errors.push(Diagnostic::at(
            &name.span,
            format!("stage `{}` has no `kind:`", name.name),
        ));
        return None;
    };
    if kind.as_str().is_none() {
        errors.push(expected(kind, "a stage kind name"));
        return None;
    }
    let inputs = match node.get("inputs") {
        None => Vec::new(),
        Some(n) => match n.as_map() {
            Some(entries) => {
                for (k, v) in entries {
                    if !matches!(v.value, Value::Str(_)) {
                        errors.push(Diagnostic::at(
                            &v.span,
                            format!(
                                "input `{}` must be a string: `stage.output`, `stage[*].output` or a path/glob, found {}",
                                k.name,
                                v.type_name()
                            ),
                        ));
                    }
                }
                entries.to_vec()
            }
            None => {
                errors.push(expected(n, "a mapping of input names to references"));
                Vec::new()
            }
        },
    };
    let with = node.get("with").cloned();
    if let Some(w) = &with
        && !matches!(w.value, Value::Map(_) | Value::Null)
    {
        errors.push(expected(w, "a mapping of parameters"));
    }
    let device = node.get("device").cloned();
    if let Some(d) = &device
        && d.as_str().is_none()
    {
        errors.push(expected(d, "a device such as `cpu` or `cuda:0`"));
    }
    let description = node
        .get("description")
        .and_then(|d| d.as_str())
        .map(str::to_string);
    Some(StageDecl {
        name: name.clone(),
        kind: kind.clone(),
        inputs,
        with,
        resources: node.get("resources").cloned(),
        device,
        description,
    })
}

/// Replaces the entries of `list` that `new` names again (an including file overrides
/// what it includes) and appends `new` in order; linear in both lengths. `new` holds
/// each name once (the YAML reader rejects duplicate keys).
fn override_by_name<T>(list: &mut Vec<T>, new: Vec<T>, name: impl Fn(&T) -> &String) {
    let names: HashSet<&String> = new.iter().map(&name).collect();
    list.retain(|old| !names.contains(name(old)));
    list.extend(new);
}

/// `a.yaml -> b.yaml -> … -> target`, eliding the middle of a long chain.
fn describe_chain(chain: &[PathBuf], target: &Path) -> String {
    let names: Vec<String> = chain
        .iter()
        .map(|p| p.display().to_string())
        .chain([target.display().to_string()])
        .collect();
    if names.len() <= 8 {
        return names.join(" -> ");
    }
    format!(
        "{} -> … ({} more) … -> {}",
        names[..3].join(" -> "),
        names.len() - 6,
        names[names.len() - 3..].join(" -> ")
    )
}

fn check_unique_values(axis: &Key, values: &[Node], errors: &mut Vec<Diagnostic>) {
    let mut seen = HashSet::new();
    for v in values {
        if !seen.insert(v.to_json().to_string()) {
            errors.push(Diagnostic::at(
                &v.span,
                format!("grid axis `{}` lists this value twice", axis.name),
            ));
        }
    }
}

/// A stage name or axis name: `[A-Za-z_][A-Za-z0-9_-]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn list_of(node: &Node, errors: &mut Vec<Diagnostic>) -> Vec<Node> {
    match &node.value {
        Value::Seq(items) => items.clone(),
        Value::Str(_) | Value::Map(_) => vec![node.clone()],
        _ => {
            errors.push(expected(node, "a list"));
            Vec::new()
        }
    }
}

pub(crate) fn expected(node: &Node, what: &str) -> Diagnostic {
    Diagnostic::at(
        &node.span,
        format!("expected {what}, found {}", node.type_name()),
    )
}

pub(crate) fn unknown_key(key: &Key, place: &str, known: &[&str]) -> Diagnostic {
    Diagnostic::at(&key.span, format!("unknown key `{}` {place}", key.name))
        .with_help(suggest::help(&key.name, known.iter().copied()))
}
