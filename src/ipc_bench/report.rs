//! Presenting results: a text table for people and an SVG plot of round-trip latency
//! against message size.

use std::fmt;
use std::path::Path;

use plotters::prelude::*;

use super::measurement::Measurement;
use super::size::format_size;

/// A duration in nanoseconds as people read it: `310 ns`, `4.2 µs`, `1.35 ms`.
pub fn format_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

fn format_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

/// The rows as an aligned text table: transport, copies per message, size, wait,
/// round-trip p50 and p99 (percentiles of the round trips), and messages per second and
/// GB/s over the whole timed run (means, so stalls count: labelled as such).
pub fn format_table(rows: &[Measurement]) -> String {
    let header = [
        "transport",
        "copies",
        "size",
        "wait",
        "rtt p50",
        "rtt p99",
        "msgs/s (mean)",
        "GB/s (mean)",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|m| {
            [
                m.transport.clone(),
                m.copies.to_string(),
                format_size(m.size_bytes),
                m.wait.clone(),
                format_ns(m.rtt_ns_p50),
                format_ns(m.rtt_ns_p99),
                format_rate(m.msgs_per_s),
                format!("{:.3}", m.gbps),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i < 1 || i == 3 {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
            out.push_str(if i + 1 < row.len() { "  " } else { "\n" });
        }
    };
    line(&mut out, &header.map(String::from));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    line(&mut out, &rule);
    for row in &cells {
        line(&mut out, row);
    }
    out
}

/// Why the plot could not be written.
#[derive(Debug)]
pub struct PlotError(String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing the plot failed: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

fn plot_err(e: impl fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Writes an SVG of median round-trip latency against message size, log-log, one
/// labelled line per transport (and wait mode), to `path`.
pub fn plot_svg(rows: &[Measurement], path: &Path) -> Result<(), PlotError> {
    if rows.is_empty() {
        return Err(PlotError("there are no results to plot".into()));
    }
    // One series per (transport, wait, copies), in first-seen order.
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for m in rows {
        let floor = super::Transport::from_name(&m.transport).is_some_and(|t| t.is_floor());
        let label = if floor {
            format!("{} floor ({} B, {})", m.transport, m.size_bytes, m.wait)
        } else {
            let copies = if m.copies == 1 { "copy" } else { "copies" };
            format!("{} ({} {copies}, {})", m.transport, m.copies, m.wait)
        };
        let point = (m.size_bytes as f64, m.rtt_ns_p50.max(1) as f64);
        match series.iter_mut().find(|(l, _)| *l == label) {
            Some((_, pts)) => pts.push(point),
            None => series.push((label, vec![point])),
        }
    }
    let x_min = rows.iter().map(|m| m.size_bytes).min().unwrap_or(8) as f64;
    let x_max = rows.iter().map(|m| m.size_bytes).max().unwrap_or(8) as f64;
    let y_min = rows.iter().map(|m| m.rtt_ns_p50.max(1)).min().unwrap_or(1) as f64;
    let y_max = rows.iter().map(|m| m.rtt_ns_p50.max(1)).max().unwrap_or(1) as f64;
    let (x_lo, x_hi) = (x_min / 2.0, (x_max * 2.0).max(x_min * 4.0));
    let (y_lo, y_hi) = (y_min / 2.0, (y_max * 3.0).max(y_min * 4.0));

    let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "memlink bench ipc: median round-trip latency vs message size (two processes, log-log)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(85)
        .build_cartesian_2d((x_lo..x_hi).log_scale().base(4.0), (y_lo..y_hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes, log scale)")
        .y_desc("round trip p50 (log scale)")
        .x_label_formatter(&|x| format_size(x.round() as usize))
        .y_label_formatter(&|y| format_ns(y.round() as u64))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(plot_err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, size: usize, p50: u64) -> Measurement {
        Measurement {
            transport: t.into(),
            copies: 2,
            size_bytes: size,
            wait: "block".into(),
            rtt_ns_p50: p50,
            rtt_ns_p99: p50 * 2,
            msgs_per_s: 1e6,
            gbps: 0.5,
        }
    }

    #[test]
    fn the_table_has_a_line_per_row_and_readable_units() {
        let t = format_table(&[row("pipe", 8, 5_300), row("pipe", 1 << 20, 2_100_000)]);
        assert_eq!(t.lines().count(), 4);
        assert!(t.contains("5.3 µs") && t.contains("2.10 ms") && t.contains("1 MiB"));
    }

    #[test]
    fn the_plot_names_every_transport() {
        let dir = std::env::temp_dir().join(format!("memlink-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        plot_svg(
            &[
                row("pipe", 8, 5_000),
                row("pipe", 4096, 9_000),
                row("futex", 8, 3_000),
            ],
            &path,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("pipe (2 copies, block)") && svg.contains("futex floor (8 B, block)"));
        assert!(svg.contains("message size"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
