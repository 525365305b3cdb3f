//! `importance.svg`: the paper's Figure 2 as three panels, written by hand — (a) angular
//! distance per block, (b) perplexity after removing each block, (c) perplexity after
//! inserting a block after each block, `copy` vs `average` — with axes, ticks, labels,
//! legends and the base model's perplexity as a dashed line. Perplexity axes switch to
//! a log scale when the values span more than a factor of 10.

use std::fmt::Write as _;

use super::eval_sweep::EvalSweep;
use super::sweep::Importance;

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 380.0;
const HEADER: f64 = 44.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 58.0;
const BLUE: &str = "#1f77b4";
const ORANGE: &str = "#ff7f0e";
const GREEN: &str = "#2ca02c";
const GREY: &str = "#555555";

/// One line of a panel.
struct Series<'a> {
    label: &'a str,
    color: &'a str,
    dashed: bool,
    values: &'a [f64],
}

/// A panel's y axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn fit(values: impl Iterator<Item = f64>, zero_based: bool, allow_log: bool) -> Axis {
        let finite: Vec<f64> = values.filter(|v| v.is_finite()).collect();
        let mut lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let mut hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if finite.is_empty() {
            (lo, hi) = (0.0, 1.0);
        }
        if allow_log && lo > 0.0 && hi / lo > 10.0 {
            let lo = 10f64.powf(lo.log10().floor());
            let hi = 10f64.powf(hi.log10().ceil());
            return Axis { lo, hi, log: true };
        }
        if zero_based {
            lo = lo.min(0.0);
        }
        if hi - lo < 1e-12 {
            hi = lo + 1.0;
        }
        let step = nice_step((hi - lo) / 5.0);
        Axis {
            lo: (lo / step).floor() * step,
            hi: (hi / step).ceil() * step,
            log: false,
        }
    }

    /// Position in [0, 1] of `v` along the axis.
    fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        f.clamp(0.0, 1.0)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            let mults: &[f64] = if b - a <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            let mut t = Vec::new();
            for e in a..=b {
                for m in mults {
                    let v = m * 10f64.powi(e);
                    if v >= self.lo * 0.999 && v <= self.hi * 1.001 {
                        t.push(v);
                    }
                }
            }
            t
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let n = ((self.hi - self.lo) / step).round() as usize;
            (0..=n).map(|i| self.lo + step * i as f64).collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 || (v.fract() == 0.0) {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Everything one panel needs.
struct Panel<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<Series<'a>>,
    baseline: Option<f64>,
    zero_based: bool,
    allow_log: bool,
}

fn draw_panel(svg: &mut String, p: &Panel, x0: f64, y0: f64, blocks: usize) {
    let (w, h) = (PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM);
    let (left, top) = (x0 + LEFT, y0 + TOP);
    let values = p
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .chain(p.baseline);
    let axis = Axis::fit(values, p.zero_based, p.allow_log);
    let xmax = blocks.saturating_sub(1).max(1) as f64;
    let px = |i: f64| left + w * i / xmax;
    let py = |v: f64| top + h * (1.0 - axis.frac(v));
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        left + w / 2.0,
        y0 + 22.0,
        escape(p.title)
    );
    // Grid, y ticks and labels.
    for t in axis.ticks() {
        let y = py(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{left:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><line x1="{:.1}" y1="{y:.1}" x2="{left:.1}" y2="{y:.1}" stroke="#000"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            left + w,
            left - 5.0,
            left - 8.0,
            y + 4.0,
            label(t)
        );
    }
    // X ticks: integer block indices, at most ~10.
    let step = (nice_step(xmax / 8.0).round() as usize).max(1);
    for i in (0..blocks).step_by(step) {
        let x = px(i as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#000"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{i}</text>"##,
            top + h,
            top + h + 5.0,
            top + h + 18.0
        );
    }
    // Axes.
    let _ = writeln!(
        svg,
        r##"<path d="M{left:.1},{top:.1} V{:.1} H{:.1}" fill="none" stroke="#000"/>"##,
        top + h,
        left + w
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"#,
        left + w / 2.0,
        top + h + 38.0,
        escape(p.x_label)
    );
    let ylab = if axis.log {
        format!("{} (log scale)", p.y_label)
    } else {
        p.y_label.to_string()
    };
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" font-size="12">{}</text>"#,
        x0 + 16.0,
        top + h / 2.0,
        escape(&ylab)
    );
    // Baseline.
    let mut legend: Vec<(String, &str, bool)> = Vec::new();
    if let Some(b) = p.baseline.filter(|b| b.is_finite()) {
        let y = py(b);
        let _ = writeln!(
            svg,
            r#"<line x1="{left:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{GREY}" stroke-dasharray="6,4"/>"#,
            left + w
        );
        legend.push((format!("base model ({})", label(b)), GREY, true));
    }
    // Series.
    for s in &p.series {
        let pts: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", px(i as f64), py(*v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let dash = if s.dashed {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.8"{dash}/>"#,
            pts.join(" "),
            s.color
        );
        for pt in &pts {
            let (x, y) = pt.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r#"<circle cx="{x}" cy="{y}" r="2.6" fill="{}"/>"#,
                s.color
            );
        }
        legend.push((s.label.to_string(), s.color, s.dashed));
    }
    // Legend, top right inside the plot.
    for (k, (text, color, dashed)) in legend.iter().enumerate() {
        let y = top + 12.0 + 16.0 * k as f64;
        let x = left + w - 150.0;
        let dash = if *dashed {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="154" height="16" fill="white" fill-opacity="0.8"/><line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            x - 4.0,
            y - 8.0,
            x + 22.0,
            x + 28.0,
            y + 4.0,
            escape(text)
        );
    }
}

/// The three-panel figure. `reduce` (`mean` or `last`) picks the solid AD line;
/// `subtitle` says which model and tokens. With `eval`, panels (b) and (c) show the
/// variants' benchmark score (the paper's Fig. 2(b)/(c)) instead of perplexity.
pub fn figure(imp: &Importance, eval: Option<&EvalSweep>, reduce: &str, subtitle: &str) -> String {
    let width = 3.0 * PANEL_W;
    let height = PANEL_H + HEADER;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{:.1}" y="26" text-anchor="middle" font-size="16">{}</text>"#,
        width / 2.0,
        escape(subtitle)
    );
    let (main, other, main_label, other_label) = if reduce == "last" {
        (
            &imp.angular_last,
            &imp.angular_mean,
            "last token",
            "mean over tokens",
        )
    } else {
        (
            &imp.angular_mean,
            &imp.angular_last,
            "mean over tokens",
            "last token",
        )
    };
    let score_label = eval.map(|e| format!("{} ({})", e.metric, e.tasks.join(", ")));
    let (y_label, base, remove, copy, average) = match eval {
        Some(e) => (
            score_label.as_deref().unwrap_or_default(),
            e.score(&e.base),
            e.scores(&e.remove),
            e.scores(&e.insert_copy),
            e.scores(&e.insert_average),
        ),
        None => (
            "perplexity",
            imp.base_ppl,
            imp.remove_ppl.clone(),
            imp.insert_copy_ppl.clone(),
            imp.insert_average_ppl.clone(),
        ),
    };
    let panels = [
        Panel {
            title: "(a) Angular distance per block",
            x_label: "block",
            y_label: "angular distance",
            series: vec![
                Series {
                    label: main_label,
                    color: BLUE,
                    dashed: false,
                    values: main,
                },
                Series {
                    label: other_label,
                    color: "#9ecae1",
                    dashed: true,
                    values: other,
                },
            ],
            baseline: None,
            zero_based: true,
            allow_log: false,
        },
        Panel {
            title: "(b) Removing one block",
            x_label: "removed block",
            y_label,
            series: vec![Series {
                label: "block removed",
                color: GREEN,
                dashed: false,
                values: &remove,
            }],
            baseline: Some(base),
            zero_based: eval.is_some(),
            allow_log: eval.is_none(),
        },
        Panel {
            title: "(c) Inserting one block after each",
            x_label: "inserted after block",
            y_label,
            series: vec![
                Series {
                    label: "copy",
                    color: ORANGE,
                    dashed: false,
                    values: &copy,
                },
                Series {
                    label: "average",
                    color: BLUE,
                    dashed: false,
                    values: &average,
                },
            ],
            baseline: Some(base),
            zero_based: eval.is_some(),
            allow_log: eval.is_none(),
        },
    ];
    for (k, p) in panels.iter().enumerate() {
        draw_panel(&mut svg, p, k as f64 * PANEL_W, HEADER, imp.blocks);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_and_log_axes() {
        assert_eq!(nice_step(0.23), 0.5);
        assert_eq!(nice_step(3.0), 5.0);
        let a = Axis::fit([12.0, 3000.0].into_iter(), false, true);
        assert!(a.log);
        assert_eq!((a.lo, a.hi), (10.0, 10000.0));
        let a = Axis::fit([0.1, 0.33].into_iter(), true, false);
        assert_eq!((a.lo, a.hi), (0.0, 0.4));
    }
}
