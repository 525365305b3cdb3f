//! Resolving a [`Manifest`] into a [`Pipeline`]: stage kinds looked up, grid axes fanned
//! out into instances, placeholders substituted, parameters checked and canonicalised,
//! references resolved to upstream instances or files, cycles rejected. Every problem
//! becomes a [`Diagnostic`] at its source position; nothing runs unless all pass.
//!
//! Fan-out: a stage uses the grid axes it names with `${grid.X}` plus the axes of every
//! upstream it references as `stage.output`; it gets one instance per combination
//! (minus `exclude:`), named `stage[a=1,b=x]`. `stage[*].output` gathers every instance
//! of an upstream that agrees with the consumer on shared axes (e.g. a report).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::error::{Diagnostic, ManifestErrors};
use crate::interpolate::{self, Lookup};
use crate::manifest::{Manifest, StageDecl};
use crate::stage::{InputSpecs, OutputSpec, Registry, Resources, Stage};
use crate::suggest;
use crate::yaml::{Node, Span};

/// A manifest resolved into runnable instances, in topological order.
pub struct Pipeline {
    pub manifest: Manifest,
    pub instances: Vec<Instance>,
}

/// One runnable stage instance.
pub struct Instance {
    /// Unique name: the stage name plus its grid binding, e.g. `cpt[layout=(4+1)x8]`.
    pub name: String,
    /// The stage name as declared.
    pub stage: String,
    pub binding: Vec<(String, Json)>,
    pub kind: Arc<dyn Stage>,
    /// Canonical parameters (defaults filled).
    pub params: Json,
    pub inputs: BTreeMap<String, InputRef>,
    pub outputs: Vec<OutputSpec>,
    pub device: String,
    /// The environment facts that enter the fingerprint (the device's, for a stage that
    /// computes on one; see [`crate::stage::DeviceFacts`]).
    pub env: BTreeMap<String, String>,
    /// Threads wanted (0 = all cores).
    pub threads: usize,
    pub gpus: usize,
    /// Memory wanted in bytes (0 = undeclared).
    pub memory: u64,
    /// As declared (Slurm maps them to sbatch flags).
    pub resources: Resources,
    /// Indices of upstream instances.
    pub deps: Vec<usize>,
}

/// A resolved input.
#[derive(Clone, Debug)]
pub enum InputRef {
    /// Outputs of upstream instances: (instance index, output name).
    Upstream {
        source: String,
        items: Vec<(usize, String)>,
        gather: bool,
    },
    /// Files or directories on disk: (label relative to the manifest dir, absolute path).
    Paths {
        source: String,
        pattern: bool,
        items: Vec<(String, PathBuf)>,
    },
}

impl InputRef {
    pub fn source(&self) -> &str {
        match self {
            InputRef::Upstream { source, .. } | InputRef::Paths { source, .. } => source,
        }
    }
}

impl Pipeline {
    pub fn instance(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.name == name)
    }

    /// Instances named exactly `name`, or all instances of stage `name`.
    pub fn select(&self, name: &str) -> Vec<usize> {
        if let Some(i) = self.instance(name) {
            return vec![i];
        }
        (0..self.instances.len())
            .filter(|&i| self.instances[i].stage == name)
            .collect()
    }

    /// Every instance name and stage name (for suggestions).
    pub fn names(&self) -> BTreeSet<&str> {
        self.instances
            .iter()
            .flat_map(|i| [i.name.as_str(), i.stage.as_str()])
            .collect()
    }

    /// `targets` and everything they depend on.
    pub fn with_ancestors(&self, targets: &[usize]) -> BTreeSet<usize> {
        let mut keep = BTreeSet::new();
        let mut stack = targets.to_vec();
        while let Some(i) = stack.pop() {
            if keep.insert(i) {
                stack.extend(&self.instances[i].deps);
            }
        }
        keep
    }

    /// Loads and resolves a manifest file.
    pub fn load(path: &std::path::Path, registry: &Registry) -> Result<Pipeline, ManifestErrors> {
        resolve(Manifest::load(path)?, registry, false)
    }

    /// Like [`Pipeline::load`], but raw inputs that do not exist yet are accepted (for
    /// `--dry-run` of experiments whose data or weights are not on this machine).
    pub fn load_for_plan(
        path: &std::path::Path,
        registry: &Registry,
    ) -> Result<Pipeline, ManifestErrors> {
        resolve(Manifest::load(path)?, registry, true)
    }
}

/// A parsed input reference before resolution.
enum RawRef {
    Upstream {
        stage: usize,
        output: String,
        gather: bool,
    },
    Path,
}

struct DeclInfo {
    kind: Option<Arc<dyn Stage>>,
    /// Errors were reported for this declaration (or an upstream): build no instances.
    broken: bool,
    axes: BTreeSet<String>,
    refs: Vec<(String, Span, RawRef)>,
}

/// Checks everything and builds the pipeline, or returns every problem found.
/// With `missing_ok`, raw input paths that do not exist resolve to no files (the
/// planner reports them) instead of being errors.
pub fn resolve(
    manifest: Manifest,
    registry: &Registry,
    missing_ok: bool,
) -> Result<Pipeline, ManifestErrors> {
    let mut errors = Vec::new();
    let axis_order: Vec<String> = manifest.grid.iter().map(|a| a.name.name.clone()).collect();
    check_excludes(&manifest, &mut errors);
    let decl_names: Vec<&str> = manifest
        .stages
        .iter()
        .map(|s| s.name.name.as_str())
        .collect();
    let mut infos: Vec<DeclInfo> = manifest
        .stages
        .iter()
        .map(|decl| {
            let before = errors.len();
            let mut info = decl_info(&manifest, decl, registry, &decl_names, &mut errors);
            info.broken = errors.len() > before || info.kind.is_none();
            info
        })
        .collect();
    let order = match topo_order(&manifest, &infos) {
        Ok(order) => order,
        Err(d) => {
            errors.push(d);
            return Err(ManifestErrors(errors));
        }
    };
    // Effective axes: own axes plus those of non-gathering upstreams.
    for &d in &order {
        let inherited: Vec<String> = infos[d]
            .refs
            .iter()
            .filter_map(|(_, _, r)| match r {
                RawRef::Upstream {
                    stage,
                    gather: false,
                    ..
                } => Some(infos[*stage].axes.iter().cloned().collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        infos[d].axes.extend(inherited);
        let upstream_broken = infos[d]
            .refs
            .iter()
            .any(|(_, _, r)| matches!(r, RawRef::Upstream { stage, .. } if infos[*stage].broken));
        infos[d].broken |= upstream_broken;
    }
    let mut instances: Vec<Instance> = Vec::new();
    let mut by_decl: HashMap<usize, Vec<usize>> = HashMap::new();
    // Declarations with an instance that failed to build (its error is reported): their
    // consumers are not built either, so they add no "no instance matches" errors.
    let mut failed: HashSet<usize> = HashSet::new();
    for &d in &order {
        let decl = &manifest.stages[d];
        let upstream_failed = infos[d]
            .refs
            .iter()
            .any(|(_, _, r)| matches!(r, RawRef::Upstream { stage, .. } if failed.contains(stage)));
        if upstream_failed {
            failed.insert(d);
            continue;
        }
        let Some(kind) = infos[d].kind.clone().filter(|_| !infos[d].broken) else {
            continue;
        };
        let axes: Vec<&String> = axis_order
            .iter()
            .filter(|a| infos[d].axes.contains(*a))
            .collect();
        for binding in combinations(&manifest, &axes) {
            if excluded(&manifest, &binding) {
                continue;
            }
            let built = build_instance(
                &manifest,
                registry,
                decl,
                &infos[d],
                kind.clone(),
                binding,
                &instances,
                &by_decl,
                missing_ok,
                &mut errors,
            );
            match built {
                Some(inst) => {
                    by_decl.entry(d).or_default().push(instances.len());
                    instances.push(inst);
                }
                None => {
                    failed.insert(d);
                }
            }
        }
    }
    dedup(&mut errors);
    if errors.is_empty() {
        Ok(Pipeline {
            manifest,
            instances,
        })
    } else {
        Err(ManifestErrors(errors))
    }
}

fn decl_info(
    manifest: &Manifest,
    decl: &StageDecl,
    registry: &Registry,
    decl_names: &[&str],
    errors: &mut Vec<Diagnostic>,
) -> DeclInfo {
    let kind_name = decl.kind.as_str().unwrap_or_default();
    let kind = registry.get(kind_name).cloned();
    if kind.is_none() {
        errors.push(
            Diagnostic::at(&decl.kind.span, format!("unknown stage kind `{kind_name}`"))
                .with_help(suggest::help(kind_name, registry.names())),
        );
    }
    // Axes named by placeholders, and placeholder sanity.
    let mut strings = Vec::new();
    for node in [&decl.with, &decl.device, &decl.resources]
        .into_iter()
        .flatten()
    {
        interpolate::strings(node, &mut strings);
    }
    for (_, v) in &decl.inputs {
        interpolate::strings(v, &mut strings);
    }
    let mut axes = BTreeSet::new();
    for (s, span) in &strings {
        match interpolate::placeholders(s) {
            Err(m) => errors.push(Diagnostic::at(span, m)),
            Ok(found) => {
                for p in found {
                    match p.scope {
                        "grid" if grid_axis(manifest, p.name).is_some() => {
                            let (axis, field) = split_field(p.name);
                            if let (Some(a), Some(field)) = (grid_axis(manifest, p.name), field) {
                                for v in &a.values {
                                    if field_of(v, field).is_none() {
                                        errors.push(Diagnostic::at(
                                            &v.span,
                                            format!("`${{grid.{}}}` is used in `{s}`, but this value of axis `{axis}` has no field `{field}`", p.name),
                                        ));
                                    }
                                }
                            }
                            axes.insert(axis.to_string());
                        }
                        "grid" => errors.push(
                            Diagnostic::at(span, format!("unknown grid axis `{}` in `{s}`", p.name))
                                .with_help(suggest::help(
                                    p.name,
                                    manifest.grid.iter().map(|a| a.name.name.as_str()),
                                )),
                        ),
                        "defaults" if manifest.default_value(p.name).is_some() => {}
                        "defaults" => errors.push(
                            Diagnostic::at(span, format!("unknown default `{}` in `{s}`", p.name))
                                .with_help(suggest::help(
                                    p.name,
                                    manifest.defaults.iter().map(|(k, _)| k.name.as_str()),
                                )),
                        ),
                        other => errors.push(Diagnostic::at(
                            span,
                            format!("unknown placeholder scope `{other}` in `{s}`: use `grid` or `defaults`"),
                        )),
                    }
                }
            }
        }
    }
    // Inputs: names against the kind, references parsed.
    if let Some(kind) = &kind
        && let InputSpecs::Fixed(specs) = kind.inputs()
    {
        for (k, _) in &decl.inputs {
            if !specs.iter().any(|s| s.name == k.name) {
                errors.push(
                    Diagnostic::at(
                        &k.span,
                        format!("stage kind `{kind_name}` has no input `{}`", k.name),
                    )
                    .with_help(suggest::help(&k.name, specs.iter().map(|s| s.name))),
                );
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !decl.inputs.iter().any(|(k, _)| k.name == spec.name) {
                errors.push(Diagnostic::at(
                    &decl.name.span,
                    format!(
                        "stage `{}` ({kind_name}) needs input `{}`: {}",
                        decl.name.name, spec.name, spec.doc
                    ),
                ));
            }
        }
    }
    let mut refs = Vec::new();
    for (k, v) in &decl.inputs {
        let Some(text) = v.as_str() else { continue };
        refs.push((k.name.clone(), v.span.clone(), parse_ref(text, decl_names)));
    }
    DeclInfo {
        kind,
        broken: false,
        axes,
        refs,
    }
}

/// `stage.output`, `stage[*].output`, or a path/glob.
fn parse_ref(text: &str, decl_names: &[&str]) -> RawRef {
    if let Some((head, output)) = text.split_once('.') {
        let (name, gather) = match head.strip_suffix("[*]") {
            Some(n) => (n, true),
            None => (head, false),
        };
        if !output.is_empty()
            && !output.contains('/')
            && let Some(stage) = decl_names.iter().position(|d| *d == name)
        {
            return RawRef::Upstream {
                stage,
                output: output.to_string(),
                gather,
            };
        }
    }
    RawRef::Path
}

/// Declarations in dependency order, or the cycle.
fn topo_order(manifest: &Manifest, infos: &[DeclInfo]) -> Result<Vec<usize>, Diagnostic> {
    let n = infos.len();
    let deps: Vec<Vec<usize>> = infos
        .iter()
        .map(|info| {
            info.refs
                .iter()
                .filter_map(|(_, _, r)| match r {
                    RawRef::Upstream { stage, .. } => Some(*stage),
                    RawRef::Path => None,
                })
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut state = vec![0u8; n];
    let mut order = Vec::with_capacity(n);
    let mut path = Vec::new();
    fn visit(
        d: usize,
        deps: &[Vec<usize>],
        state: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match state[d] {
            2 => return Ok(()),
            1 => {
                let start = path.iter().position(|&p| p == d).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(d);
                return Err(cycle);
            }
            _ => {}
        }
        state[d] = 1;
        path.push(d);
        for &u in &deps[d] {
            visit(u, deps, state, order, path)?;
        }
        path.pop();
        state[d] = 2;
        order.push(d);
        Ok(())
    }
    for d in 0..n {
        if let Err(cycle) = visit(d, &deps, &mut state, &mut order, &mut path) {
            // The cycle is consumer -> upstream; print it in data-flow order.
            let names: Vec<&str> = cycle
                .iter()
                .rev()
                .map(|&i| manifest.stages[i].name.name.as_str())
                .collect();
            let first = cycle[0];
            let span = infos[first]
                .refs
                .iter()
                .find(|(_, _, r)| matches!(r, RawRef::Upstream { stage, .. } if cycle.get(1) == Some(stage)))
                .map(|(_, s, _)| s.clone())
                .unwrap_or_else(|| manifest.stages[first].name.span.clone());
            return Err(
                Diagnostic::at(&span, format!("dependency cycle: {}", names.join(" -> ")))
                    .with_help(Some(
                        "a stage cannot consume its own outputs, directly or through others".into(),
                    )),
            );
        }
    }
    Ok(order)
}

type Binding = Vec<(String, Node)>;

fn combinations(manifest: &Manifest, axes: &[&String]) -> Vec<Binding> {
    let mut out: Vec<Binding> = vec![Vec::new()];
    for axis in axes {
        let Some(a) = manifest.grid.iter().find(|a| &&a.name.name == axis) else {
            continue;
        };
        out = out
            .into_iter()
            .flat_map(|b| {
                a.values.iter().map(move |v| {
                    let mut b = b.clone();
                    b.push(((*axis).clone(), v.clone()));
                    b
                })
            })
            .collect();
    }
    out
}

/// An `exclude:` entry applies to bindings that contain all its axes with equal values.
fn excluded(manifest: &Manifest, binding: &Binding) -> bool {
    manifest.exclude.iter().any(|entry| {
        entry.as_map().is_some_and(|pairs| {
            pairs.iter().all(|(k, v)| {
                binding
                    .iter()
                    .any(|(axis, value)| axis == &k.name && value.to_json() == v.to_json())
            })
        })
    })
}

fn check_excludes(manifest: &Manifest, errors: &mut Vec<Diagnostic>) {
    for entry in &manifest.exclude {
        for (k, v) in entry.as_map().unwrap_or_default() {
            match manifest.grid.iter().find(|a| a.name.name == k.name) {
                None => errors.push(
                    Diagnostic::at(
                        &k.span,
                        format!("exclude names unknown grid axis `{}`", k.name),
                    )
                    .with_help(suggest::help(
                        &k.name,
                        manifest.grid.iter().map(|a| a.name.name.as_str()),
                    )),
                ),
                Some(axis) if !axis.values.iter().any(|x| x.to_json() == v.to_json()) => errors
                    .push(Diagnostic::at(
                        &v.span,
                        format!(
                            "exclude: `{}` is not a value of grid axis `{}`",
                            v.to_json(),
                            k.name
                        ),
                    )),
                Some(_) => {}
            }
        }
    }
}

struct Env<'a> {
    manifest: &'a Manifest,
    binding: &'a Binding,
}

impl Lookup for Env<'_> {
    fn lookup(&self, scope: &str, name: &str) -> Option<&Node> {
        match scope {
            "grid" => {
                let (axis, field) = split_field(name);
                let value = self
                    .binding
                    .iter()
                    .find(|(a, _)| a == axis)
                    .map(|(_, v)| v)?;
                match field {
                    Some(f) => field_of(value, f),
                    None => Some(value),
                }
            }
            "defaults" => self.manifest.default_value(name),
            _ => None,
        }
    }
}

/// `axis.field.sub` -> (`axis`, Some(`field.sub`)).
fn split_field(name: &str) -> (&str, Option<&str>) {
    match name.split_once('.') {
        Some((axis, field)) => (axis, Some(field)),
        None => (name, None),
    }
}

/// The grid axis a placeholder name (`axis` or `axis.field`) refers to.
fn grid_axis<'a>(manifest: &'a Manifest, name: &str) -> Option<&'a crate::manifest::Axis> {
    let (axis, _) = split_field(name);
    manifest.grid.iter().find(|a| a.name.name == axis)
}

/// A dotted field inside a mapping value (grid values may be mappings that set several
/// parameters together, e.g. `{name: s, layout: "(2+1)x2|1|1◇", trainable: expanded}`).
fn field_of<'a>(value: &'a Node, path: &str) -> Option<&'a Node> {
    path.split('.').try_fold(value, |node, key| node.get(key))
}

/// Display form of a grid value inside an instance name (a mapping shows its `name`).
fn value_label(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Object(m) if m.get("name").is_some_and(Json::is_string) => {
            m["name"].as_str().unwrap_or_default().to_string()
        }
        other => other.to_string(),
    }
}

pub fn instance_name(stage: &str, binding: &[(String, Json)]) -> String {
    if binding.is_empty() {
        return stage.to_string();
    }
    let parts: Vec<String> = binding
        .iter()
        .map(|(a, v)| format!("{a}={}", value_label(v)))
        .collect();
    format!("{stage}[{}]", parts.join(","))
}

/// An instance's device: its declaration's (interpolated), else the manifest's default,
/// else `cpu`.
fn device_of(
    manifest: &Manifest,
    decl: &StageDecl,
    env: &Env,
    errors: &mut Vec<Diagnostic>,
) -> String {
    match &decl.device {
        Some(d) => interpolate::substitute(d, env)
            .map(|n| n.as_str().unwrap_or("cpu").to_string())
            .unwrap_or_else(|e| {
                errors.push(e);
                String::new()
            }),
        None => manifest
            .default_value("device")
            .and_then(|d| d.as_str())
            .unwrap_or("cpu")
            .to_string(),
    }
}

/// A declaration's `resources`, checked (a memory size Slurm can take); on an error, one
/// thread and nothing else.
fn resources_of(decl: &StageDecl, errors: &mut Vec<Diagnostic>) -> Resources {
    let Some(node) = &decl.resources else {
        return Resources::default();
    };
    match serde_json::from_value::<Resources>(node.to_json()) {
        Ok(r) => {
            if let Some(Err(e)) = r.memory.as_deref().map(crate::slurm::slurm_mem) {
                errors.push(Diagnostic::at(
                    &node.span,
                    format!("invalid resources: {e}"),
                ));
            }
            r
        }
        Err(e) => {
            errors.push(Diagnostic::at(
                &node.span,
                format!("invalid resources: {e}"),
            ));
            Resources {
                threads: Some(1),
                ..Resources::default()
            }
        }
    }
}

/// The instances built so far, as an instance with grid `binding` sees them.
struct Upstream<'a> {
    manifest: &'a Manifest,
    instances: &'a [Instance],
    by_decl: &'a HashMap<usize, Vec<usize>>,
    binding: &'a [(String, Json)],
}

impl Upstream<'_> {
    /// The instances of declaration `stage` that input `input` (of instance `name`) reads
    /// `output` of: those agreeing with the binding, one unless `gather`, with that output.
    fn input(
        &self,
        stage: usize,
        output: &str,
        gather: bool,
        name: &str,
        (input, span): (&str, &Span),
    ) -> Result<Vec<usize>, Diagnostic> {
        let upstream = &self.manifest.stages[stage].name.name;
        let candidates: Vec<usize> = self
            .by_decl
            .get(&stage)
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|&u| agrees(&self.instances[u].binding, self.binding))
            .collect();
        if candidates.is_empty() {
            return Err(Diagnostic::at(
                span,
                format!(
                    "input `{input}` of `{name}`: no instance of `{upstream}` matches this grid combination (excluded?)"
                ),
            ));
        }
        if !gather && candidates.len() > 1 {
            return Err(Diagnostic::at(
                span,
                format!(
                    "input `{input}`: `{upstream}` has {} instances here; use `{upstream}[*].{output}` to gather them",
                    candidates.len()
                ),
            ));
        }
        let outs = &self.instances[candidates[0]].outputs;
        if !outs.iter().any(|o| o.name == output) {
            return Err(Diagnostic::at(
                span,
                format!("stage `{upstream}` has no output `{output}`"),
            )
            .with_help(suggest::help(output, outs.iter().map(|o| o.name.as_str()))));
        }
        Ok(candidates)
    }
}

/// The instance of `decl` for one grid `binding`: its parameters checked by its kind,
/// its device, resources and inputs resolved against the instances built so far; `None`
/// with the reasons in `errors` when any part is wrong.
#[allow(clippy::too_many_arguments)]
fn build_instance(
    manifest: &Manifest,
    registry: &Registry,
    decl: &StageDecl,
    info: &DeclInfo,
    kind: Arc<dyn Stage>,
    binding: Binding,
    instances: &[Instance],
    by_decl: &HashMap<usize, Vec<usize>>,
    missing_ok: bool,
    errors: &mut Vec<Diagnostic>,
) -> Option<Instance> {
    let env = Env {
        manifest,
        binding: &binding,
    };
    let json_binding: Vec<(String, Json)> = binding
        .iter()
        .map(|(a, v)| (a.clone(), v.to_json()))
        .collect();
    let name = instance_name(&decl.name.name, &json_binding);
    let before = errors.len();

    let with = match decl
        .with
        .as_ref()
        .map(|w| interpolate::substitute(w, &env))
        .transpose()
    {
        Ok(w) => w,
        Err(d) => {
            errors.push(d);
            None
        }
    };
    let params = check_params(decl, &kind, with.as_ref(), errors);

    let device = device_of(manifest, decl, &env, errors);
    // What the device means is the device owner's to say (the stages crate's DeviceSpec).
    let device_env = if kind.uses_device() {
        registry.device_facts(&device).unwrap_or_else(|message| {
            let span = decl
                .device
                .as_ref()
                .map(|d| d.span.clone())
                .unwrap_or_else(|| decl.name.span.clone());
            errors.push(Diagnostic::at(&span, message));
            BTreeMap::new()
        })
    } else {
        BTreeMap::new()
    };

    let resources = resources_of(decl, errors);
    let (threads, gpus) = (
        resources.threads.unwrap_or(kind.default_threads()),
        resources.gpus,
    );

    let mut inputs = BTreeMap::new();
    let mut deps = BTreeSet::new();
    let upstream = Upstream {
        manifest,
        instances,
        by_decl,
        binding: &json_binding,
    };
    for ((input, span, raw), (_, node)) in info.refs.iter().zip(&decl.inputs) {
        match raw {
            RawRef::Upstream {
                stage,
                output,
                gather,
            } => match upstream.input(*stage, output, *gather, &name, (input, span)) {
                Ok(candidates) => {
                    deps.extend(candidates.iter().copied());
                    inputs.insert(
                        input.clone(),
                        InputRef::Upstream {
                            source: node.as_str().unwrap_or_default().to_string(),
                            items: candidates
                                .into_iter()
                                .map(|u| (u, output.clone()))
                                .collect(),
                            gather: *gather,
                        },
                    );
                }
                Err(d) => errors.push(d),
            },
            RawRef::Path => match interpolate::substitute(node, &env) {
                Err(d) => errors.push(d),
                Ok(n) => {
                    let text = n.as_str().unwrap_or_default().to_string();
                    match resolve_paths(manifest, &text, &decl_names_of(manifest)) {
                        Ok(input_ref) => {
                            inputs.insert(input.clone(), input_ref);
                        }
                        Err(_) if missing_ok => {
                            let pattern = text.contains(['*', '?', '[']);
                            let source = text.clone();
                            let items = Vec::new();
                            inputs.insert(
                                input.clone(),
                                InputRef::Paths {
                                    source,
                                    pattern,
                                    items,
                                },
                            );
                        }
                        Err((msg, help)) => errors.push(
                            Diagnostic::at(span, format!("input `{input}`: {msg}")).with_help(help),
                        ),
                    }
                }
            },
        }
    }
    if errors.len() > before {
        return None;
    }
    let params = params?;
    let outputs = kind.outputs(&params);
    Some(Instance {
        name,
        stage: decl.name.name.clone(),
        binding: json_binding,
        kind,
        params,
        inputs,
        outputs,
        device,
        env: device_env,
        threads,
        gpus,
        memory: resources.memory_bytes(),
        resources,
        deps: deps.into_iter().collect(),
    })
}

fn decl_names_of(manifest: &Manifest) -> Vec<&str> {
    manifest
        .stages
        .iter()
        .map(|s| s.name.name.as_str())
        .collect()
}

/// An upstream binding agrees with a consumer's when shared axes have equal values.
fn agrees(upstream: &[(String, Json)], consumer: &[(String, Json)]) -> bool {
    upstream
        .iter()
        .all(|(a, v)| consumer.iter().all(|(b, w)| a != b || v == w))
}

fn check_params(
    decl: &StageDecl,
    kind: &Arc<dyn Stage>,
    with: Option<&Node>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Json> {
    let raw = with.map(Node::to_json).unwrap_or(Json::Null);
    let schema = kind.params_schema();
    // Unknown keys first, with suggestions drawn from the schema.
    if let (Some(props), Some(w)) = (schema.get("properties").and_then(Json::as_object), with)
        && schema.get("additionalProperties") == Some(&Json::Bool(false))
    {
        let mut unknown = false;
        for (k, _) in w.as_map().unwrap_or_default() {
            if !props.contains_key(&k.name) {
                unknown = true;
                errors.push(
                    Diagnostic::at(
                        &k.span,
                        format!(
                            "unknown parameter `{}` for stage kind `{}`",
                            k.name,
                            kind.kind()
                        ),
                    )
                    .with_help(suggest::help(&k.name, props.keys())),
                );
            }
        }
        if unknown {
            return None;
        }
    }
    match kind.check_params(&raw) {
        Ok(p) => Some(p),
        Err(e) => {
            let span = match with {
                Some(w) => w.span_at(&e.path).clone(),
                None => decl.name.span.clone(),
            };
            let key = e
                .path
                .iter()
                .map(|s| match s {
                    crate::yaml::PathSegment::Key(k) => k.clone(),
                    crate::yaml::PathSegment::Index(i) => i.to_string(),
                })
                .collect::<Vec<_>>()
                .join(".");
            let what = if key.is_empty() {
                format!("invalid parameters for stage `{}`", decl.name.name)
            } else {
                format!("invalid parameter `{key}` of stage `{}`", decl.name.name)
            };
            errors.push(Diagnostic::at(&span, format!("{what}: {}", e.message)));
            None
        }
    }
}

/// A raw input: a path (file or directory) or a glob, relative to the manifest dir.
fn resolve_paths(
    manifest: &Manifest,
    text: &str,
    decl_names: &[&str],
) -> Result<InputRef, (String, Option<String>)> {
    let pattern = text.contains(['*', '?', '[']);
    let full = manifest.dir.join(text);
    let looks_like_ref = {
        let head = text.split('.').next().unwrap_or_default();
        !text.contains('/') && text.contains('.') && crate::manifest::is_identifier(head)
    };
    if pattern {
        let full_str = full.to_string_lossy().into_owned();
        let paths = glob::glob(&full_str).map_err(|e| (format!("bad glob `{text}`: {e}"), None))?;
        let mut items: Vec<(String, PathBuf)> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .map(|p| {
                let label = p
                    .strip_prefix(&manifest.dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                (label, p)
            })
            .collect();
        items.sort();
        if items.is_empty() {
            return Err((
                format!(
                    "no file matches `{text}` (relative to {})",
                    manifest.dir.display()
                ),
                None,
            ));
        }
        return Ok(InputRef::Paths {
            source: text.to_string(),
            pattern: true,
            items,
        });
    }
    if !full.exists() {
        let help = if looks_like_ref {
            let head = text.split('.').next().unwrap_or_default();
            suggest::did_you_mean(head, decl_names.iter().copied()).map(|s| {
                format!("did you mean the stage `{s}`? (no stage `{head}`, and no such file)")
            })
        } else {
            None
        };
        return Err((
            format!(
                "`{text}` is neither a stage output nor an existing file (looked in {})",
                manifest.dir.display()
            ),
            help,
        ));
    }
    Ok(InputRef::Paths {
        source: text.to_string(),
        pattern: false,
        items: vec![(text.to_string(), full)],
    })
}

fn dedup(errors: &mut Vec<Diagnostic>) {
    let mut seen = BTreeSet::new();
    errors.retain(|d| seen.insert((d.location(), d.message.clone())));
}
