//! `slayer dag`: the manifest's instances and their dependencies as a graph, each node
//! labelled with its stage kind, its state (cached / stale / missing) and, when cached,
//! how long it ran — as Mermaid (`flowchart`, renders in GitHub and GitLab Markdown) or
//! Graphviz DOT (`dot -Tsvg`).

use crate::pipeline::Pipeline;
use crate::plan::{StageStatus, State};

/// Output syntax of [`render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DagFormat {
    Mermaid,
    Dot,
}

impl std::str::FromStr for DagFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<DagFormat, String> {
        match s {
            "mermaid" => Ok(DagFormat::Mermaid),
            "dot" => Ok(DagFormat::Dot),
            other => Err(format!(
                "unknown graph format `{other}`: expected `mermaid` or `dot`"
            )),
        }
    }
}

/// Fill colour per state (both formats).
fn colour(state: State) -> &'static str {
    match state {
        State::Cached => "#d4edda",
        State::Stale => "#fff3cd",
        State::Missing => "#f8d7da",
    }
}

/// The lines of a node's label: name, then `kind · state[ · duration]`.
fn label(pipeline: &Pipeline, i: usize, status: &StageStatus) -> (String, String) {
    let inst = &pipeline.instances[i];
    let mut detail = format!("{} · {}", inst.kind.kind(), status.state);
    if status.state == State::Cached
        && let Some(r) = &status.record
    {
        detail.push_str(&format!(" · {:.1} s", r.duration_s));
    }
    (inst.name.clone(), detail)
}

/// Mermaid text may not contain `"`, and `<`/`>` would be read as HTML.
fn mermaid_escape(s: &str) -> String {
    s.replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph of `pipeline` with one status per instance (from [`crate::plan::plan`]).
pub fn render(pipeline: &Pipeline, statuses: &[StageStatus], format: DagFormat) -> String {
    let mut out = String::new();
    match format {
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, s) in statuses.iter().enumerate() {
                let (name, detail) = label(pipeline, i, s);
                out.push_str(&format!(
                    "  n{i}[\"{}<br/>{}\"]\n",
                    mermaid_escape(&name),
                    mermaid_escape(&detail)
                ));
                out.push_str(&format!("  style n{i} fill:{}\n", colour(s.state)));
            }
            for (i, inst) in pipeline.instances.iter().enumerate() {
                for d in &inst.deps {
                    out.push_str(&format!("  n{d} --> n{i}\n"));
                }
            }
        }
        DagFormat::Dot => {
            out.push_str(&format!(
                "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n",
                dot_escape(&pipeline.manifest.name)
            ));
            for (i, s) in statuses.iter().enumerate() {
                let (name, detail) = label(pipeline, i, s);
                out.push_str(&format!(
                    "  n{i} [label=\"{}\\n{}\", fillcolor=\"{}\"];\n",
                    dot_escape(&name),
                    dot_escape(&detail),
                    colour(s.state)
                ));
            }
            for (i, inst) in pipeline.instances.iter().enumerate() {
                for d in &inst.deps {
                    out.push_str(&format!("  n{d} -> n{i};\n"));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}
