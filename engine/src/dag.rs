//! `slayer dag`: the manifest's instances and their dependencies as a graph, each node
//! labelled with its stage kind, its state (cached / stale / missing) and, when cached,
//! how long it ran — as Mermaid (`flowchart`, renders in GitHub and GitLab Markdown),
//! Graphviz DOT (`dot -Tsvg`) or a self-contained SVG drawing of its own (a layered
//! layout: one column per depth), which the HTML experiment page embeds.

use crate::pipeline::Pipeline;
use crate::plan::{StageStatus, State};

/// Output syntax of [`render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DagFormat {
    Mermaid,
    Dot,
    Svg,
}

impl std::str::FromStr for DagFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<DagFormat, String> {
        match s {
            "mermaid" => Ok(DagFormat::Mermaid),
            "dot" => Ok(DagFormat::Dot),
            "svg" => Ok(DagFormat::Svg),
            other => Err(format!(
                "unknown graph format `{other}`: expected `mermaid`, `dot` or `svg`"
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
        DagFormat::Svg => out = svg(pipeline, statuses),
    }
    out
}
/// Pixel geometry of the SVG drawing.
const NODE_W: usize = 250;
const NODE_H: usize = 38;
const COL_GAP: usize = 60;
const ROW_GAP: usize = 10;
const MARGIN: usize = 10;

/// Longest path from a root to each instance: its column in the drawing.
fn depths(pipeline: &Pipeline) -> Vec<usize> {
    fn depth(i: usize, pipeline: &Pipeline, memo: &mut [Option<usize>]) -> usize {
        if let Some(d) = memo[i] {
            return d;
        }
        let d = pipeline.instances[i]
            .deps
            .iter()
            .map(|&u| depth(u, pipeline, memo) + 1)
            .max()
            .unwrap_or(0);
        memo[i] = Some(d);
        d
    }
    let mut memo = vec![None; pipeline.instances.len()];
    (0..pipeline.instances.len())
        .map(|i| depth(i, pipeline, &mut memo))
        .collect()
}

/// `s` safe as XML/HTML text or a double-quoted attribute value.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// At most `n` characters, an ellipsis marking a cut.
fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// A layered drawing: one column per depth (longest path from a root), nodes in
/// manifest order within a column, an edge per dependency as a curve from the
/// producer's right side to the consumer's left side. Each node is a
/// `<g class="dag-node" id="node-N">` with the instance name in `data-instance` and a
/// `<title>` holding the full label, so pages can link and style it.
fn svg(pipeline: &Pipeline, statuses: &[StageStatus]) -> String {
    let depth = depths(pipeline);
    let columns = depth.iter().max().map_or(0, |d| d + 1);
    let mut rows = vec![0usize; columns];
    let mut at = vec![(0usize, 0usize); depth.len()];
    for (i, &d) in depth.iter().enumerate() {
        at[i] = (
            MARGIN + d * (NODE_W + COL_GAP),
            MARGIN + rows[d] * (NODE_H + ROW_GAP),
        );
        rows[d] += 1;
    }
    let width = 2 * MARGIN + columns * NODE_W + columns.saturating_sub(1) * COL_GAP;
    let height = 2 * MARGIN + rows.iter().max().copied().unwrap_or(0) * (NODE_H + ROW_GAP);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n"
    );
    for (i, inst) in pipeline.instances.iter().enumerate() {
        let (x, y) = at[i];
        for &d in &inst.deps {
            let (px, py) = at[d];
            let (x0, y0, x1, y1) = (px + NODE_W, py + NODE_H / 2, x, y + NODE_H / 2);
            let mid = (x0 + x1) / 2;
            out.push_str(&format!(
                "<path class=\"dag-edge\" d=\"M{x0},{y0} C{mid},{y0} {mid},{y1} {x1},{y1}\" fill=\"none\" stroke=\"#999\"/>\n"
            ));
        }
    }
    for (i, s) in statuses.iter().enumerate() {
        let (x, y) = at[i];
        let (name, detail) = label(pipeline, i, s);
        out.push_str(&format!(
            "<g class=\"dag-node\" id=\"node-{i}\" data-instance=\"{n}\" data-state=\"{st}\"{rec}><title>{n}\n{d}</title><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\" fill=\"{c}\" stroke=\"#666\"/><text x=\"{tx}\" y=\"{ty1}\" font-weight=\"bold\">{sn}</text><text x=\"{tx}\" y=\"{ty2}\">{sd}</text></g>\n",
            n = xml_escape(&name),
            st = s.state,
            rec = match (&s.state, &s.record) {
                (State::Cached, Some(r)) => format!(" data-record=\"{}\"", xml_escape(&r.fingerprint)),
                _ => String::new(),
            },
            d = xml_escape(&detail),
            c = colour(s.state),
            tx = x + 6,
            ty1 = y + 15,
            ty2 = y + 30,
            sn = xml_escape(&shorten(&name, 38)),
            sd = xml_escape(&shorten(&detail, 42)),
        ));
    }
    out.push_str("</svg>\n");
    out
}
