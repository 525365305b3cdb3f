//! A grouped bar chart of a results table (one group per task, one bar per run), written
//! as plain SVG so it renders anywhere without a plotting dependency.

use super::table::ResultsTable;

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Bars of every column's values; the y axis spans 0 to the largest value.
pub fn bar_chart(t: &ResultsTable) -> String {
    let (w, h, left, bottom, top) = (820.0, 420.0, 60.0, 60.0, 40.0);
    let legend_h = 18.0 * t.rows.len() as f64;
    let total_h = h + legend_h;
    let plot_w = w - left - 20.0;
    let plot_h = h - top - bottom;
    let max = t
        .rows
        .iter()
        .flat_map(|(_, v, _)| v.iter().flatten().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{total_h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        esc(&t.title)
    );
    // Axes and y ticks.
    let y0 = top + plot_h;
    s.push_str(&format!("<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"black\"/>\n<line x1=\"{left}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"black\"/>\n", left + plot_w));
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = y0 - plot_h * i as f64 / 4.0;
        s.push_str(&format!(
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{left}\" y2=\"{y}\" stroke=\"black\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.3}</text>\n",
            left - 4.0,
            left - 6.0,
            y + 4.0
        ));
    }
    let groups = t.columns.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = (group_w * 0.8) / t.rows.len().max(1) as f64;
    for (g, (task, metric)) in t.columns.iter().enumerate() {
        let gx = left + group_w * g as f64 + group_w * 0.1;
        for (r, (_, values, _)) in t.rows.iter().enumerate() {
            if let Some(v) = values[g] {
                let bh = plot_h * v / max;
                s.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{v:.4}</title></rect>\n",
                    gx + bar_w * r as f64,
                    y0 - bh,
                    bar_w,
                    bh,
                    PALETTE[r % PALETTE.len()]
                ));
            }
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            left + group_w * (g as f64 + 0.5),
            y0 + 18.0,
            esc(&format!("{task} ({metric})"))
        ));
    }
    for (r, (row, _, _)) in t.rows.iter().enumerate() {
        let y = h + 18.0 * r as f64;
        s.push_str(&format!(
            "<rect x=\"{left}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            y - 10.0,
            PALETTE[r % PALETTE.len()],
            left + 18.0,
            y,
            esc(&row.label)
        ));
    }
    s.push_str("</svg>\n");
    s
}
