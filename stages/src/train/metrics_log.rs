//! The per-step training log: [`LogRow`]s written as `log.csv` and `log.parquet`, the
//! loss curve as `loss.svg`, and the process's resident memory for the `rss_mb` column.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use super::error::TrainError;

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// 1-based optimizer step.
    pub step: u64,
    /// Token-mean training loss of the step's batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens consumed so far.
    pub tokens: u64,
    /// Tokens per second of this step (forward, backward and update).
    pub tokens_per_s: f64,
    /// Resident memory of the process after the step, MiB.
    pub rss_mb: f64,
    /// Held-out loss, on the steps where it was measured.
    pub eval_loss: Option<f64>,
}

const HEADER: &str = "step,loss,lr,grad_norm,tokens,tokens_per_s,rss_mb,eval_loss";

/// Write `rows` as CSV.
pub fn write_csv(path: &Path, rows: &[LogRow]) -> Result<(), TrainError> {
    let mut s = String::with_capacity(64 * (rows.len() + 1));
    s.push_str(HEADER);
    s.push('\n');
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{:.1},{:.1},{}",
            r.step,
            r.loss,
            r.lr,
            r.grad_norm,
            r.tokens,
            r.tokens_per_s,
            r.rss_mb,
            r.eval_loss.map(|e| e.to_string()).unwrap_or_default()
        );
    }
    std::fs::write(path, s).map_err(|e| TrainError::io(path, e))
}

/// Write `rows` as Parquet (same columns as the CSV; `eval_loss` is null when absent).
pub fn write_parquet(path: &Path, rows: &[LogRow]) -> Result<(), TrainError> {
    let u = |f: fn(&LogRow) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let f = |f: fn(&LogRow) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        u(|r| r.step),
        f(|r| r.loss),
        f(|r| r.lr),
        f(|r| r.grad_norm),
        u(|r| r.tokens),
        f(|r| r.tokens_per_s),
        f(|r| r.rss_mb),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.eval_loss).collect::<Vec<_>>(),
        )),
    ];
    let fields: Vec<Field> = HEADER
        .split(',')
        .zip(&columns)
        .map(|(name, c)| Field::new(name, c.data_type().clone(), name == "eval_loss"))
        .collect();
    debug_assert!(fields.iter().any(|f| f.data_type() == &DataType::UInt64));
    let schema = Arc::new(Schema::new(fields));
    let err = |e: &dyn std::fmt::Display| TrainError::data(path, e.to_string());
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(&e))?;
    let file = File::create(path).map_err(|e| TrainError::io(path, e))?;
    let mut w = ArrowWriter::try_new(file, schema, None).map_err(|e| err(&e))?;
    w.write(&batch).map_err(|e| err(&e))?;
    w.close().map_err(|e| err(&e))?;
    Ok(())
}

/// Resident set size of this process in MiB (Linux; 0 elsewhere).
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// An SVG line chart of training loss (and held-out loss as dots) against step.
pub fn loss_svg(rows: &[LogRow], title: &str) -> String {
    let (w, h) = (720.0, 400.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let finite = |v: f64| v.is_finite();
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| [Some(r.loss), r.eval_loss])
        .flatten()
        .filter(|v| finite(*v))
        .collect();
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    let x = |s: f64| left + pw * s / max_step;
    let y = |v: f64| top + ph * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    // axes and ticks
    let _ = writeln!(
        s,
        r#"<path d="M{left},{top} V{} H{}" stroke="black" fill="none"/>"#,
        top + ph,
        left + pw
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.3}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0
        );
        let st = max_step * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{st:.0}</text>"#,
            x(st),
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">optimizer step</text>"#,
        left + pw / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">loss</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    let points: Vec<String> = rows
        .iter()
        .filter(|r| finite(r.loss))
        .map(|r| format!("{:.1},{:.1}", x(r.step as f64), y(r.loss)))
        .collect();
    if !points.is_empty() {
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>"##,
            points.join(" ")
        );
    }
    let mut any_eval = false;
    for r in rows {
        if let Some(e) = r.eval_loss.filter(|e| finite(*e)) {
            any_eval = true;
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#d62728"/>"##,
                x(r.step as f64),
                y(e)
            );
        }
    }
    // legend
    let lx = left + pw - 150.0;
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="#1f77b4" stroke-width="2"/><text x="{}" y="{}">train loss</text>"##,
        lx + 20.0,
        top + 10.0,
        top + 10.0,
        lx + 26.0,
        top + 14.0
    );
    if any_eval {
        let _ = writeln!(
            s,
            r##"<circle cx="{}" cy="{}" r="3.5" fill="#d62728"/><text x="{}" y="{}">held-out loss</text>"##,
            lx + 10.0,
            top + 28.0,
            lx + 26.0,
            top + 32.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
