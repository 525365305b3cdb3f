//! `slayer report [MANIFEST] --html DIR`: an experiment as one self-contained page,
//! `DIR/index.html` (inline CSS and SVG, one small inline script, nothing fetched when it
//! is viewed): the manifest's DAG with each instance's state; a timeline of when each
//! current result was produced, in parallel lanes; what each run cost (wall, CPU, peak
//! RSS, GPU memory where the stage reported it); the evaluations as a grid-rows × tasks
//! table whose every cell links to its run record; the tables and paired comparisons
//! of the manifest's own `report` stages; the plots the stages wrote (their SVG
//! outputs); and every run record on the page (parameters, inputs linked to the records
//! that produced them, metrics, resources, the tail of its log).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use slayer_cache::{RunRecord, Store, parse_rfc3339};
use slayer_engine::dag::{self, DagFormat};
use slayer_engine::{EngineError, Pipeline, Registry, StageStatus, State, commands, plan};

use super::primary_metric;

/// Lines of a record's log shown on the page.
const LOG_TAIL_LINES: usize = 40;
/// Bytes read from the end of a log for its tail.
const LOG_TAIL_BYTES: u64 = 64 << 10;
/// SVG outputs larger than this are linked by path instead of embedded.
const MAX_EMBEDDED_SVG: u64 = 2 << 20;

/// Writes `dir/index.html` for `manifest` and returns its path. Nothing runs: the page
/// shows the store as it is.
pub fn write(manifest: &Path, registry: &Registry, dir: &Path) -> Result<PathBuf, EngineError> {
    let (pipeline, store) = commands::open(manifest, registry)?;
    let statuses = plan::plan(&pipeline, &store, &BTreeSet::new())?;
    let html = page(&pipeline, &store, &statuses);
    std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
        context: dir.display().to_string(),
        source,
    })?;
    // Written whole, then renamed: a reader never sees half a page.
    let path = dir.join("index.html");
    slayer_cache::atomic_write(&path, html.as_bytes())?;
    Ok(path)
}

/// A fingerprint's 12-character prefix, as the report tables show it.
fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// Text and attribute values escaped for the page (the DAG drawing's own escaping).
fn esc(s: &str) -> String {
    dag::xml_escape(s)
}

/// The anchor of a run record on the page.
fn anchor(fingerprint: &str) -> String {
    format!("rec-{}", esc(fingerprint))
}

fn record_link(fingerprint: &str, text: &str) -> String {
    format!(
        "<a class=\"rec\" href=\"#{}\">{}</a>",
        anchor(fingerprint),
        esc(text)
    )
}

/// The current record of each instance (cached instances only).
fn current(statuses: &[StageStatus]) -> Vec<Option<&RunRecord>> {
    statuses
        .iter()
        .map(|s| match s.state {
            State::Cached => s.record.as_ref(),
            _ => None,
        })
        .collect()
}

fn page(pipeline: &Pipeline, store: &Store, statuses: &[StageStatus]) -> String {
    let records = current(statuses);
    let name = &pipeline.manifest.name;
    let counts = {
        let mut c: BTreeMap<String, usize> = BTreeMap::new();
        for s in statuses {
            *c.entry(s.state.to_string()).or_default() += 1;
        }
        c.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>{CSS}</style></head><body>\n<h1>{t}</h1>\n<p class=\"summary\">{n} instances: {counts}. Generated {now} by slayer {v} from <code>{m}</code>.</p>\n<nav><a href=\"#dag\">DAG</a> · <a href=\"#timeline\">timeline</a> · <a href=\"#resources\">resources</a> · <a href=\"#results\">results</a> · <a href=\"#reports\">reports</a> · <a href=\"#plots\">plots</a> · <a href=\"#records\">records</a></nav>\n",
        t = esc(name),
        n = statuses.len(),
        now = slayer_cache::now_rfc3339(),
        v = env!("CARGO_PKG_VERSION"),
        m = esc(&pipeline.manifest.path.display().to_string()),
    );
    let _ = writeln!(
        out,
        "<section id=\"dag\"><h2>DAG</h2><p>One node per instance; green cached, yellow stale, red never run. Click a node for its record.</p><div class=\"scroll\">{}</div></section>",
        dag::render(pipeline, statuses, DagFormat::Svg)
    );
    out.push_str(&timeline(pipeline, &records));
    out.push_str(&resources(pipeline, statuses, &records));
    out.push_str(&results(pipeline, &records));
    out.push_str(&reports(pipeline, store, &records));
    out.push_str(&plots(pipeline, store, &records));
    out.push_str(&record_sections(pipeline, store, &records));
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}h2{border-bottom:1px solid #ccc;margin-top:1.6em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;font-size:13px}td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto}.dag-node{cursor:pointer}.dag-node:hover rect{stroke:#000;stroke-width:2}section.record{border:1px solid #ddd;border-radius:6px;padding:.3em 1em;margin:.6em 0}section.record:target{border-color:#d80;box-shadow:0 0 6px #d80}pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px;max-height:24em}code{font-size:12px}.plot img{max-width:48%;margin:4px;border:1px solid #eee}";

/// Makes DAG nodes open their record, and marks the page as rendered (the browser
/// test reads `data-ready` from the DOM).
const SCRIPT: &str = "document.querySelectorAll('.dag-node').forEach(function(n){var r=n.getAttribute('data-record');if(r){n.addEventListener('click',function(){location.hash='rec-'+r;});}});document.body.setAttribute('data-ready','1');";

/// Seconds since the epoch of a record's start (None when unreadable).
fn start_of(r: &RunRecord) -> Option<i64> {
    parse_rfc3339(&r.started_at)
}

/// A Gantt chart of the current records: each run a bar from its start for its
/// duration; runs overlapping in time go to separate lanes (first free lane).
fn timeline(pipeline: &Pipeline, records: &[Option<&RunRecord>]) -> String {
    let mut runs: Vec<(i64, f64, usize, &RunRecord)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.and_then(|r| start_of(r).map(|s| (s, r.duration_s, i, r))))
        .collect();
    let mut out = String::from("<section id=\"timeline\"><h2>Timeline</h2>");
    if runs.is_empty() {
        out.push_str("<p>No results yet.</p></section>\n");
        return out;
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
    let t0 = runs[0].0;
    let end = runs
        .iter()
        .map(|(s, d, _, _)| (s - t0) as f64 + d)
        .fold(1.0, f64::max);
    let mut lane_free: Vec<f64> = Vec::new();
    let mut bars = Vec::new();
    // Starts have second precision: runs that started in the same second are laid end
    // to end within it while they fit (sub-second stages ran one after the other).
    let mut second = (i64::MIN, 0.0);
    for (s, d, i, r) in &runs {
        let mut start = (s - t0) as f64;
        if second.0 == *s && second.1 < start + 1.0 {
            start = second.1;
        }
        second = (*s, start + d);
        let lane = match lane_free.iter().position(|&f| f <= start) {
            Some(l) => l,
            None => {
                lane_free.push(0.0);
                lane_free.len() - 1
            }
        };
        lane_free[lane] = start + d;
        bars.push((lane, start, *d, *i, *r));
    }
    let (width, lane_h, left) = (1100.0, 16.0, 10.0);
    let scale = (width - 2.0 * left) / end;
    let height = lane_free.len() as f64 * lane_h + 30.0;
    let _ = write!(
        out,
        "<p>When each current result was produced (UTC start {}; {} lanes; total span {:.0} s). Hover a bar for its instance.</p><div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"10\">",
        esc(&runs[0].3.started_at),
        lane_free.len(),
        end
    );
    for (lane, start, d, i, r) in bars {
        let x = left + start * scale;
        let w = (d * scale).max(1.5);
        let y = lane as f64 * lane_h + 4.0;
        let _ = write!(
            out,
            "<a href=\"#{a}\"><rect class=\"run\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{c}\"><title>{n} ({k}): {d:.1} s from +{start:.0} s</title></rect></a>",
            a = anchor(&r.fingerprint),
            h = lane_h - 3.0,
            c = kind_colour(pipeline.instances[i].kind.kind()),
            n = esc(&pipeline.instances[i].name),
            k = esc(&r.kind),
        );
    }
    let axis_y = lane_free.len() as f64 * lane_h + 18.0;
    for k in 0..=5 {
        let t = end * k as f64 / 5.0;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{axis_y:.1}\">{t:.0} s</text>",
            left + t * scale
        );
    }
    out.push_str("</svg></div></section>\n");
    out
}

/// A stable colour per stage kind.
fn kind_colour(kind: &str) -> String {
    let h = kind
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("hsl({}, 55%, 60%)", h % 360)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(String::new, |v| format!("{v:.digits$}"))
}

/// GPU memory a stage reported in its metrics, in bytes (`peak_gpu_bytes` or
/// `memory_total_bytes`-style keys are not measured values; only peaks count).
fn gpu_peak(r: &RunRecord) -> Option<f64> {
    r.usage
        .get("peak_gpu_bytes")
        .copied()
        .or_else(|| r.metrics.get("peak_gpu_bytes").and_then(Value::as_f64))
}

/// One row per instance: state, when, wall, CPU and memory of its current result.
fn resources(
    pipeline: &Pipeline,
    statuses: &[StageStatus],
    records: &[Option<&RunRecord>],
) -> String {
    let mut out = String::from(
        "<section id=\"resources\"><h2>Resources</h2><table class=\"resources\"><tr><th>instance</th><th>kind</th><th>state</th><th>started (UTC)</th><th>wall s</th><th>CPU s</th><th>peak RSS MB</th><th>peak GPU MB</th><th>host</th><th>record</th></tr>\n",
    );
    for (i, s) in statuses.iter().enumerate() {
        let inst = &pipeline.instances[i];
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&inst.name),
            esc(inst.kind.kind()),
            s.state
        );
        match records[i] {
            Some(r) => {
                let cpu = match (r.usage.get("cpu_user_s"), r.usage.get("cpu_system_s")) {
                    (Some(u), Some(sys)) => Some(u + sys),
                    _ => None,
                };
                let _ = writeln!(
                    out,
                    "<td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&r.started_at),
                    r.duration_s,
                    fmt_opt(cpu, 1),
                    fmt_opt(r.usage.get("peak_rss_bytes").map(|b| b / 1e6), 0),
                    fmt_opt(gpu_peak(r).map(|b| b / 1e6), 0),
                    esc(&r.host),
                    record_link(&r.fingerprint, short(&r.fingerprint))
                );
            }
            None => {
                let _ = writeln!(out, "<td colspan=\"7\">{}</td></tr>", esc(&s.reason));
            }
        }
    }
    out.push_str("</table></section>\n");
    out
}

/// The evaluations: a row per `eval` instance with a current result, a column per
/// task (its primary metric); each cell links to the record it comes from.
fn results(pipeline: &Pipeline, records: &[Option<&RunRecord>]) -> String {
    let rows: Vec<(usize, &RunRecord)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.filter(|_| pipeline.instances[i].kind.kind() == "eval")
                .map(|r| (i, r))
        })
        .collect();
    // The metric a report stage of the manifest chose for a task (`metric:`), else the
    // task's primary one.
    let chosen: BTreeMap<String, String> = pipeline
        .instances
        .iter()
        .filter(|inst| inst.kind.kind() == "report")
        .filter_map(|inst| inst.params.get("metric")?.as_object().cloned())
        .flatten()
        .filter_map(|(task, m)| Some((task, m.as_str()?.to_string())))
        .collect();
    let mut tasks: Vec<(String, String)> = Vec::new();
    for (_, r) in &rows {
        if let Some(m) = r.metrics.as_object() {
            for (task, v) in m {
                let Some(metric) = chosen
                    .get(task)
                    .cloned()
                    .or_else(|| v.as_object().and_then(primary_metric))
                else {
                    continue;
                };
                if !tasks.iter().any(|(t, _)| t == task) {
                    tasks.push((task.clone(), metric));
                }
            }
        }
    }
    let mut out = String::from(
        "<section id=\"results\"><h2>Results</h2><p>Every evaluation with a current result (the metric a report stage chose for the task, else its primary one); each number links to its run record.</p><table class=\"results\"><tr><th>instance</th>",
    );
    for (task, metric) in &tasks {
        let _ = write!(out, "<th>{} ({})</th>", esc(task), esc(metric));
    }
    out.push_str("</tr>\n");
    for (i, r) in rows {
        let _ = write!(out, "<tr><td>{}</td>", esc(&pipeline.instances[i].name));
        for (task, metric) in &tasks {
            let v = r
                .metrics
                .get(task)
                .and_then(|t| t.get(metric))
                .and_then(Value::as_f64);
            match v {
                Some(v) => {
                    let _ = write!(
                        out,
                        "<td>{}</td>",
                        record_link(&r.fingerprint, &format!("{v:.4}"))
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></section>\n");
    out
}

/// The body of an HTML document the report stage wrote (what follows its `<style>`),
/// with each fingerprint prefix in its `record` column linked to the record here.
fn report_body(html: &str, fingerprints: &[String]) -> String {
    let body = html
        .find("</style>")
        .map_or(html, |at| &html[at + "</style>".len()..]);
    let mut out = body.to_string();
    for fp in fingerprints {
        let short = short(fp);
        out = out.replace(
            &format!("{short} "),
            &format!("{} ", record_link(fp, short)),
        );
        out = out.replace(
            &format!("{short}</code>"),
            &format!("{}</code>", record_link(fp, short)),
        );
    }
    out
}

/// The tables of the manifest's `report` stages, as they wrote them.
fn reports(pipeline: &Pipeline, store: &Store, records: &[Option<&RunRecord>]) -> String {
    let fingerprints: Vec<String> = records
        .iter()
        .flatten()
        .map(|r| r.fingerprint.clone())
        .collect();
    let mut out = String::from("<section id=\"reports\"><h2>Reports</h2>");
    let mut any = false;
    for (i, r) in records.iter().enumerate() {
        let Some(r) = r.filter(|_| pipeline.instances[i].kind.kind() == "report") else {
            continue;
        };
        let Some(html) = store
            .output_path(r, "html")
            .and_then(|p| std::fs::read_to_string(p).ok())
        else {
            continue;
        };
        any = true;
        let _ = write!(
            out,
            "<div class=\"report\"><p>From {} ({}).</p>{}</div>",
            esc(&pipeline.instances[i].name),
            record_link(&r.fingerprint, "record"),
            report_body(&html, &fingerprints)
        );
    }
    if !any {
        out.push_str("<p>The manifest has no report stage with a current result.</p>");
    }
    out.push_str("</section>\n");
    out
}

/// Every SVG file among the current results' outputs, as images (data URIs keep each
/// drawing's ids to itself).
fn plots(pipeline: &Pipeline, store: &Store, records: &[Option<&RunRecord>]) -> String {
    let mut out = String::from("<section id=\"plots\"><h2>Plots</h2><div class=\"plot\">");
    let mut n = 0;
    for (i, r) in records.iter().enumerate() {
        let Some(r) = r else { continue };
        for output in r.outputs.keys() {
            let Some(path) = store.output_path(r, output) else {
                continue;
            };
            // Only files inside the record's own output directory are read: a record's
            // output paths come from its JSON, which a remote cache may have supplied.
            let Ok(root) = store.output_dir(&r.fingerprint).canonicalize() else {
                continue;
            };
            for file in svg_files(&path) {
                if !file.canonicalize().is_ok_and(|f| f.starts_with(&root)) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&file) else {
                    continue;
                };
                let title = format!(
                    "{} · {} · {}",
                    pipeline.instances[i].name,
                    output,
                    file.strip_prefix(&path).unwrap_or(&file).display()
                );
                n += 1;
                if meta.len() > MAX_EMBEDDED_SVG {
                    let _ = write!(
                        out,
                        "<p>{}: {} (too large to embed)</p>",
                        esc(&title),
                        esc(&file.display().to_string())
                    );
                    continue;
                }
                let Ok(bytes) = std::fs::read(&file) else {
                    continue;
                };
                let _ = write!(
                    out,
                    "<a href=\"#{}\"><img alt=\"{t}\" title=\"{t}\" src=\"data:image/svg+xml;base64,{}\"></a>",
                    anchor(&r.fingerprint),
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                    t = esc(&title),
                );
            }
        }
    }
    if n == 0 {
        out.push_str("<p>No stage wrote a plot.</p>");
    }
    out.push_str("</div></section>\n");
    out
}

/// `path` itself when it is an SVG file, else the SVG files directly inside it.
fn svg_files(path: &Path) -> Vec<PathBuf> {
    let is_svg = |p: &Path| p.extension().is_some_and(|e| e == "svg");
    if path.is_file() {
        return if is_svg(path) {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_svg(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The last `n` lines of a file, read from its last [`LOG_TAIL_BYTES`] only (a log can be
/// gigabytes; a longer line is cut at its start); empty when it cannot be read.
fn tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err()
        || file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// One section per current record: what ran, with what, what it produced and cost.
fn record_sections(pipeline: &Pipeline, store: &Store, records: &[Option<&RunRecord>]) -> String {
    let on_page: BTreeSet<&str> = records
        .iter()
        .flatten()
        .map(|r| r.fingerprint.as_str())
        .collect();
    let mut out = String::from("<section id=\"records\"><h2>Run records</h2>");
    for (i, r) in records.iter().enumerate() {
        let Some(r) = r else { continue };
        let _ = write!(
            out,
            "<section class=\"record\" id=\"{a}\"><h3>{n}</h3><p><code>{k}</code> v{ver} · fingerprint <code>{fp}</code> · {s} → {f} ({d:.1} s) on {h}</p>",
            a = anchor(&r.fingerprint),
            n = esc(&pipeline.instances[i].name),
            k = esc(&r.kind),
            ver = r.stage_version,
            fp = esc(&r.fingerprint),
            s = esc(&r.started_at),
            f = esc(&r.finished_at),
            d = r.duration_s,
            h = esc(&r.host),
        );
        out.push_str("<table><tr><th>input</th><th>source</th><th>hash</th></tr>");
        for (name, input) in &r.inputs {
            let source = match &input.producer {
                Some(p) if on_page.contains(p.as_str()) => record_link(p, &input.source),
                _ => esc(&input.source),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{source}</td><td><code>{}</code></td></tr>",
                esc(name),
                esc(input.hash.0.get(..16).unwrap_or(&input.hash.0))
            );
        }
        out.push_str("</table>");
        let _ = write!(
            out,
            "<details><summary>parameters</summary><pre>{}</pre></details><details><summary>metrics</summary><pre>{}</pre></details>",
            esc(&pretty(&r.params)),
            esc(&pretty(&r.metrics))
        );
        if !r.usage.is_empty() || !r.job.is_empty() {
            let usage = serde_json::json!({"usage": r.usage, "job": r.job});
            let _ = write!(
                out,
                "<details><summary>resources</summary><pre>{}</pre></details>",
                esc(&pretty(&usage))
            );
        }
        // The store's own log path, never a path a (possibly pulled) record names.
        let text = tail(&store.log_path(&r.fingerprint), LOG_TAIL_LINES);
        if !text.is_empty() {
            let _ = write!(
                out,
                "<details><summary>log (last {LOG_TAIL_LINES} lines: stdout and stderr)</summary><pre>{}</pre></details>",
                esc(&text)
            );
        }
        out.push_str("</section>\n");
    }
    out.push_str("</section>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn a_log_tail_reads_only_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        text.push_str("last line");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(tail(&path, 2), "line 19999\nlast line");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(tail(&path, 40), "one\ntwo");
    }
}
