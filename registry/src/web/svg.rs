//! Charts and diagrams drawn on the server as SVG: no script runs to show
//! them, and every text in them is escaped.

use std::fmt::Write;

/// Escapes text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A small line of values (downloads per day), no axes.
pub fn sparkline(values: &[f64], label: &str) -> String {
    let (w, h) = (160.0, 32.0);
    let mut s = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    if values.is_empty() {
        s.push_str("<text x=\"0\" y=\"20\" font-size=\"11\" fill=\"#777\">none yet</text></svg>");
        return s;
    }
    let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-9);
    let step = if values.len() > 1 {
        w / (values.len() - 1) as f64
    } else {
        0.0
    };
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - v / max * (h - 4.0)
            )
        })
        .collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        pts.join(" ")
    );
    s
}

/// One bar of a bar chart: a label, its value and, if any, its target.
#[derive(Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub target: Option<f64>,
}

/// Horizontal bars, each against its target (a tick) when it has one; a bar
/// that reached its target is green.
pub fn bars(items: &[Bar], title: &str) -> String {
    let row = 22.0;
    let (label_w, bar_w) = (170.0, 300.0);
    let h = row * items.len().max(1) as f64 + 8.0;
    let max = items
        .iter()
        .map(|b| b.value.max(b.target.unwrap_or(0.0)))
        .fold(1.0f64, f64::max);
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {} {h}\" width=\"{}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        label_w + bar_w + 90.0,
        label_w + bar_w + 90.0,
        esc(title)
    );
    for (i, b) in items.iter().enumerate() {
        let y = 4.0 + i as f64 * row;
        let len = b.value / max * bar_w;
        let met = b.target.is_none_or(|t| b.value >= t);
        let colour = if met { "#16a34a" } else { "#d97706" };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{len:.1}\" height=\"{}\" fill=\"{colour}\"/>",
            label_w - 6.0,
            y + 14.0,
            esc(&b.label),
            row - 6.0
        );
        let mut tail = fmt_num(b.value);
        if let Some(t) = b.target {
            let x = label_w + t / max * bar_w;
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#111\" stroke-width=\"2\"/>",
                y - 2.0,
                y + row - 4.0
            );
            tail = format!("{tail} / {}", fmt_num(t));
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>",
            label_w + len + 6.0,
            y + 14.0,
            esc(&tail)
        );
    }
    s.push_str("</svg>");
    s
}

/// A series of a line chart.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// Lines over shared axes; `x_labels` name a few x values.
pub fn lines(series: &[Series], title: &str, x_labels: &[(f64, String)], y_unit: &str) -> String {
    let (w, h, left, bottom, top) = (560.0, 200.0, 48.0, 24.0, 18.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    if x0 > x1 {
        s.push_str(
            "<text x=\"10\" y=\"30\" font-size=\"12\" fill=\"#777\">no data yet</text></svg>",
        );
        return s;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    let span = (x1 - x0).max(1e-9);
    let px = |x: f64| left + (x - x0) / span * (w - left - 10.0);
    let py = |y: f64| h - bottom - y / y1 * (h - bottom - top);
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" stroke=\"#999\"/>",
        w - 10.0,
        h - bottom,
        h - bottom,
        h - bottom
    );
    for frac in [0.5, 1.0] {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}{}</text>",
            left - 4.0,
            py(y1 * frac) + 4.0,
            fmt_num(y1 * frac),
            esc(y_unit)
        );
    }
    for (x, label) in x_labels {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            px(*x),
            h - 8.0,
            esc(label)
        );
    }
    for (i, ser) in series.iter().enumerate() {
        let p: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            ser.colour,
            p.join(" ")
        );
        for &(x, y) in &ser.points {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"><title>{}: {}</title></circle>",
                px(x),
                py(y),
                ser.colour,
                esc(&ser.name),
                fmt_num(y)
            );
        }
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            left + 8.0 + i as f64 * 150.0,
            2.0,
            ser.colour,
            left + 22.0 + i as f64 * 150.0,
            11.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// A box of the pipeline diagram: a step, what runs it and its ports.
#[derive(Debug)]
pub struct StepBox {
    pub name: String,
    /// `stage`, `onnx` or `candle`.
    pub kind: String,
    /// The published artifact it runs, if known.
    pub runs: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// A kit's pipeline: its input ports, each step in order with its ports, its outputs.
pub fn pipeline(inputs: &[String], steps: &[StepBox], outputs: &[String]) -> String {
    let (bw, gap) = (210.0, 36.0);
    let lines_of = |b: &StepBox| 3 + b.inputs.len() + b.outputs.len();
    let tallest = steps
        .iter()
        .map(lines_of)
        .max()
        .unwrap_or(3)
        .max(inputs.len().max(outputs.len()) + 1);
    let bh = 16.0 * tallest as f64 + 12.0;
    let n = steps.len() + 2;
    let w = n as f64 * (bw + gap);
    let h = bh + 20.0;
    let mut s = format!(
        "<svg class=\"pipeline\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"pipeline of {} steps\"><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#555\"/></marker></defs>",
        steps.len()
    );
    let mut draw = |i: usize, title: &str, sub: &str, fill: &str, rows: &[String]| {
        let x = 4.0 + i as f64 * (bw + gap);
        let _ = write!(
            s,
            "<g class=\"step\"><rect x=\"{x}\" y=\"8\" width=\"{bw}\" height=\"{bh}\" rx=\"6\" fill=\"{fill}\" stroke=\"#555\"/><text x=\"{}\" y=\"26\" font-size=\"13\" font-weight=\"bold\">{}</text><text x=\"{}\" y=\"42\" font-size=\"11\" fill=\"#444\">{}</text>",
            x + 8.0,
            esc(title),
            x + 8.0,
            esc(sub)
        );
        for (j, r) in rows.iter().enumerate() {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" font-family=\"monospace\">{}</text>",
                x + 8.0,
                60.0 + j as f64 * 16.0,
                esc(r)
            );
        }
        s.push_str("</g>");
        if i + 1 < n {
            let _ = write!(
                s,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#555\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>",
                x + bw,
                x + bw + gap - 2.0,
                8.0 + bh / 2.0,
                8.0 + bh / 2.0
            );
        }
    };
    draw(0, "input", "what a request sends", "#eef2ff", inputs);
    for (i, b) in steps.iter().enumerate() {
        let fill = if b.kind == "stage" {
            "#f0fdf4"
        } else {
            "#fff7ed"
        };
        let mut rows: Vec<String> = b.inputs.iter().map(|p| format!("in  {p}")).collect();
        rows.extend(b.outputs.iter().map(|p| format!("out {p}")));
        let sub = if b.runs.is_empty() {
            b.kind.clone()
        } else {
            format!("{} · {}", b.kind, b.runs)
        };
        draw(i + 1, &b.name, &sub, fill, &rows);
    }
    draw(n - 1, "output", "what it answers", "#eef2ff", outputs);
    s.push_str("</svg>");
    s
}

/// Values of a square image (an 8×8 digit) as grey cells, darkest for the largest.
pub fn grid(values: &[f32], side: usize) -> String {
    let cell = (96 / side.max(1)).max(2);
    let w = cell * side;
    let max = values.iter().cloned().fold(0.0f32, f32::max).max(1e-6);
    let mut s = format!(
        "<svg class=\"grid\" viewBox=\"0 0 {w} {w}\" width=\"{w}\" height=\"{w}\" role=\"img\" aria-label=\"input as an image\">"
    );
    for (i, v) in values.iter().take(side * side).enumerate() {
        let g = 255 - ((v.max(0.0) / max) * 255.0) as u8;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({g},{g},{g})\"/>",
            (i % side) * cell,
            (i / side) * cell
        );
    }
    s.push_str("</svg>");
    s
}

/// A trace as a waterfall: the request on top, each step below it at its offset.
pub fn waterfall(total_ms: f64, steps: &[(f64, String, f64)]) -> String {
    let (label_w, bar_w, row) = (160.0, 420.0, 20.0);
    let h = row * (steps.len() + 1) as f64 + 10.0;
    let total = total_ms
        .max(steps.iter().map(|s| s.0 + s.2).fold(0.0, f64::max))
        .max(1e-6);
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {} {h}\" width=\"{}\" height=\"{h}\" role=\"img\" aria-label=\"trace waterfall\">",
        label_w + bar_w + 80.0,
        label_w + bar_w + 80.0
    );
    let mut bar = |i: usize, name: &str, at: f64, ms: f64, colour: &str| {
        let y = 4.0 + i as f64 * row;
        let x = label_w + at / total * bar_w;
        let len = (ms / total * bar_w).max(1.0);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text><rect x=\"{x:.1}\" y=\"{y}\" width=\"{len:.1}\" height=\"{}\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{} ms</text>",
            label_w - 6.0,
            y + 13.0,
            esc(name),
            row - 6.0,
            x + len + 4.0,
            y + 13.0,
            fmt_num(ms)
        );
    };
    bar(0, "request", 0.0, total_ms, "#2563eb");
    for (i, (at, name, ms)) in steps.iter().enumerate() {
        bar(i + 1, name, *at, *ms, "#16a34a");
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_charts_is_escaped() {
        let out = bars(
            &[Bar {
                label: "<script>x</script>".into(),
                value: 3.0,
                target: Some(5.0),
            }],
            "t\"",
        );
        assert!(!out.contains("<script"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(out.contains("3 / 5"), "{out}");
        let p = pipeline(
            &["image: bytes".into()],
            &[StepBox {
                name: "det\"><script>".into(),
                kind: "onnx".into(),
                runs: "acme/det@1.0.0".into(),
                inputs: vec!["x: f32[1,3,?,?]".into()],
                outputs: vec!["y: f32[1,1,?,?]".into()],
            }],
            &["text: text".into()],
        );
        assert!(!p.contains("<script"), "{p}");
        assert!(
            p.contains("acme/det@1.0.0") && p.contains("f32[1,3,?,?]"),
            "{p}"
        );
    }
}
