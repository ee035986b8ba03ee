// SPDX-License-Identifier: MPL-2.0
//! The table on stdout, `results.json`, the `scaling.svg` plot and, when
//! the `auto` scenario ran, `auto-workers.svg`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use crate::common::{Ctx, Output, Row, Series, fmt_ns};

/// Where the figures were measured.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub gstreamer: String,
    pub load_start: String,
    pub load_end: String,
    pub duration: Duration,
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

impl Machine {
    pub fn probe() -> Self {
        Machine {
            cpu: first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into()),
            gstreamer: gst::version_string().to_string(),
            load_start: loadavg(),
            load_end: String::new(),
            duration: Duration::ZERO,
        }
    }

    pub fn finish(mut self, duration: Duration) -> Self {
        self.load_end = loadavg();
        self.duration = duration;
        self
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ns" | "ns/buffer" | "ns/frame" => {
            let per = unit.strip_prefix("ns").unwrap_or("");
            format!("{}{per}", fmt_ns(v))
        }
        _ if !v.is_finite() => "-".into(),
        // Well below one per buffer: two decimals would read 0.
        "switches/buffer" => format!("{v:.3} {unit}"),
        "threads" => format!("{v:.0} {unit}"),
        _ if v.abs() >= 100.0 => format!("{v:.0} {unit}"),
        _ => format!("{v:.2} {unit}"),
    }
}

fn cells(row: &Row) -> [String; 6] {
    let reference = row
        .reference
        .as_ref()
        .map(|(name, v)| format!("{name}: {}", fmt_value(*v, row.unit)))
        .unwrap_or_default();
    let ratio = row.ratio.map(|r| format!("{r:.2}x")).unwrap_or_default();
    let pass = match row.pass {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "",
    };
    [
        row.scenario.to_string(),
        row.case.clone(),
        fmt_value(row.value, row.unit),
        reference,
        ratio,
        format!("{} {pass}", row.target.clone().unwrap_or_default())
            .trim()
            .to_string(),
    ]
}

/// A Markdown table (readable on a terminal, pasteable into docs/performance.md).
pub fn table(out: &Output, ctx: &Ctx, m: &Machine) -> String {
    let header = [
        "scenario",
        "case",
        "median",
        "reference",
        "ratio",
        "target met",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = out.rows.iter().map(cells).collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 6]| {
        let mut s = String::from("|");
        for (c, w) in r.iter().zip(widths) {
            let pad = w - c.chars().count();
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s.push('\n');
        s
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{} rounds{}, medians; {} ({} cores), {}, GStreamer {}; load {} -> {}, {:.0} s\n",
        ctx.rounds,
        if ctx.quick {
            " (quick: targets not meaningful)"
        } else {
            ""
        },
        m.cpu,
        m.cores,
        m.kernel,
        m.gstreamer,
        m.load_start,
        m.load_end,
        m.duration.as_secs_f64()
    );
    s.push_str(&line(&header));
    s.push_str(&line(&widths.map(|w| "-".repeat(w))));
    for r in &rows {
        s.push_str(&line(r));
    }
    for (name, why) in &out.skipped {
        let _ = writeln!(s, "\n{name}: skipped: {why}");
    }
    if !out.notes.is_empty() {
        s.push('\n');
        for n in &out.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_opt_num(v: Option<f64>) -> String {
    v.map_or("null".into(), json_num)
}

fn json_nums(v: &[f64]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| json_num(*x))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub fn json(out: &Output, ctx: &Ctx, m: &Machine) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(
        s,
        "  \"machine\": {{\"cpu\": {}, \"cores\": {}, \"kernel\": {}, \"gstreamer\": {}, \
         \"load_start\": {}, \"load_end\": {}, \"seconds\": {:.1}}},",
        json_str(&m.cpu),
        m.cores,
        json_str(&m.kernel),
        json_str(&m.gstreamer),
        json_str(&m.load_start),
        json_str(&m.load_end),
        m.duration.as_secs_f64()
    );
    let _ = writeln!(s, "  \"rounds\": {}, \"quick\": {},", ctx.rounds, ctx.quick);
    s.push_str("  \"rows\": [\n");
    let rows: Vec<String> = out
        .rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"scenario\": {}, \"case\": {}, \"median\": {}, \"unit\": {}, \
                 \"reference\": {}, \"reference_value\": {}, \"ratio\": {}, \"target\": {}, \
                 \"pass\": {}, \"samples\": {}}}",
                json_str(r.scenario),
                json_str(&r.case),
                json_num(r.value),
                json_str(r.unit),
                r.reference
                    .as_ref()
                    .map_or("null".into(), |(n, _)| json_str(n)),
                json_opt_num(r.reference.as_ref().map(|(_, v)| *v)),
                json_opt_num(r.ratio),
                r.target.as_deref().map_or("null".into(), json_str),
                r.pass.map_or("null".into(), |p| p.to_string()),
                json_nums(&r.samples)
            )
        })
        .collect();
    s.push_str(&rows.join(",\n"));
    s.push_str("\n  ],\n  \"series\": [\n");
    let series: Vec<String> = out
        .series
        .iter()
        .map(|c| {
            let pts: Vec<String> = c
                .points
                .iter()
                .map(|(x, y)| format!("[{}, {}]", json_num(*x), json_num(*y)))
                .collect();
            format!(
                "    {{\"chart\": {}, \"name\": {}, \"points\": [{}]}}",
                json_str(c.chart),
                json_str(&c.name),
                pts.join(", ")
            )
        })
        .collect();
    s.push_str(&series.join(",\n"));
    s.push_str("\n  ],\n  \"skipped\": [");
    let skipped: Vec<String> = out
        .skipped
        .iter()
        .map(|(n, w)| {
            format!(
                "{{\"scenario\": {}, \"why\": {}}}",
                json_str(n),
                json_str(w)
            )
        })
        .collect();
    s.push_str(&skipped.join(", "));
    s.push_str("],\n  \"notes\": [");
    s.push_str(
        &out.notes
            .iter()
            .map(|n| json_str(n))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str("]\n}\n");
    s
}

pub fn write_files(dir: &Path, out: &Output, ctx: &Ctx, m: &Machine) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let json_path = dir.join("results.json");
    std::fs::write(&json_path, json(out, ctx, m)).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.md"), table(out, ctx, m)).map_err(|e| e.to_string())?;
    let svg = dir.join("scaling.svg");
    plot(&svg, &out.series).map_err(|e| format!("plot: {e}"))?;
    eprintln!(
        "wrote {}, results.md and {}",
        json_path.display(),
        svg.display()
    );
    if out.series.iter().any(|s| s.chart == AUTO_THROUGHPUT) {
        let svg = dir.join("auto-workers.svg");
        auto_plot(&svg, &out.series).map_err(|e| format!("plot: {e}"))?;
        eprintln!("wrote {}", svg.display());
    }
    Ok(())
}

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(120, 120, 120),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// A curve of `s` with its legend entry.
pub fn draw_line<'c, DB: DrawingBackend + 'c, X, Y>(
    chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
    s: &Series,
    color: RGBColor,
    width: u32,
) -> PlotResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
    DB::ErrorType: 'static,
{
    chart
        .draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(width),
        ))?
        .label(s.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    Ok(())
}

/// The legend box, the same on every chart.
pub fn draw_legend<'c, DB: DrawingBackend + 'c, X, Y>(
    chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> PlotResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn plot(path: &Path, series: &[Series]) -> PlotResult {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    latency_chart(&left, series.iter().filter(|s| s.chart == "latency"))?;
    cpu_chart(&right, series.iter().filter(|s| s.chart == "cpu"))?;
    root.present()?;
    Ok(())
}

fn draw_series<'c, 's, DB: DrawingBackend + 'c, X, Y>(
    chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
    series: impl Iterator<Item = &'s Series>,
) -> PlotResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
    DB::ErrorType: 'static,
{
    for (i, s) in series.enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dashed = s.name.starts_with("ideal");
        draw_line(chart, s, color, if dashed { 1 } else { 2 })?;
        if !dashed {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    draw_legend(chart, SeriesLabelPosition::UpperLeft)
}

fn latency_chart<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: impl Iterator<Item = &'a Series> + Clone,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let max_x = series
        .clone()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(2.0, f64::max);
    let max_y = series
        .clone()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(100.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency-bound: delay 20 ms per frame", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d((1f64..max_x).log_scale(), (10f64..max_y * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("frames/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    draw_series(&mut chart, series)
}

fn cpu_chart<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: impl Iterator<Item = &'a Series> + Clone,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let max_x = series
        .clone()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(2.0, f64::max);
    let max_y = series
        .clone()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(2.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "CPU-bound at 1280x720: speed-up vs serial",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.8f64..max_x + 0.2, 0f64..max_y * 1.2)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("speed-up")
        .x_labels(max_x as usize + 1)
        // Whole worker counts only: the mesh may put ticks between them.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .draw()?;
    draw_series(&mut chart, series)
}

const AUTO_THROUGHPUT: &str = "auto-throughput";
const AUTO_WORKERS: &str = "auto-workers";

/// Throughput over workers of the changing-delay run: two stacked panels
/// on one time axis.
fn auto_plot(path: &Path, series: &[Series]) -> PlotResult {
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let end = series
        .iter()
        .filter(|s| s.chart == AUTO_THROUGHPUT || s.chart == AUTO_WORKERS)
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let (top, bottom) = root.split_vertically(280);
    time_chart(
        &top,
        "Automatic workers, delay 5 ms, then 50 ms, then 5 ms per frame",
        "frames/s",
        end,
        series.iter().filter(|s| s.chart == AUTO_THROUGHPUT),
    )?;
    time_chart(
        &bottom,
        "",
        "workers",
        end,
        series.iter().filter(|s| s.chart == AUTO_WORKERS),
    )?;
    root.present()?;
    Ok(())
}

/// The first series (the automatic run) bold, the others (references)
/// thin.
fn time_chart<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    end: f64,
    series: impl Iterator<Item = &'a Series> + Clone,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let max_y = series
        .clone()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..end, 0f64..max_y * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("s since the first frame")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, s) in series.enumerate() {
        let color = if i == 0 { COLORS[0] } else { COLORS[2] };
        draw_line(&mut chart, s, color, if i == 0 { 2 } else { 1 })?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}
