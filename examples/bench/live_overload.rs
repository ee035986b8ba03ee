// SPDX-License-Identifier: MPL-2.0
//! j. Live overload: a live 30 fps source into 2 workers taking 100 ms a
//! frame (the pool does 20 frames/s at best) and a sink that syncs to the
//! clock, as a video sink does (qos, 20 ms max-lateness). `leaky=no`
//! holds the source up, `downstream` drops frames, `pass` lets them
//! through unprocessed, `interval=2` processes every other one. Per
//! variant: frames out, frames processed, frames the sink found late,
//! and the end-to-end latency (running time at the sink's pad minus the
//! capture time, the PTS) over time, plotted into `DIR/live-overload.svg`.

use std::path::Path;
use std::time::Duration;

use gst::prelude::*;
use plotters::prelude::*;

use crate::common::{Ctx, Fail, Output, Row, Series, SinkWatch, median, quantile, run_with};
use crate::report::{draw_legend, draw_line};

const NAME: &str = "live-overload";
/// The chart the latency curves belong to.
pub const CHART: &str = "live-overload";
const FPS: u64 = 30;
const DELAY_MS: u64 = 100;
const WORKERS: u64 = 2;

/// What one run measured.
struct Run {
    frames_in: u64,
    frames_out: u64,
    processed: u64,
    late: u64,
    /// (capture time s, latency ns) per frame reaching the sink.
    latency: Vec<(f64, f64)>,
}

fn counter(s: &gst::Structure, name: &str) -> u64 {
    s.get::<u64>(name).unwrap_or(0)
}

fn measure(props: &str, frames: u64) -> Result<Run, Fail> {
    let desc = format!(
        "videotestsrc is-live=true num-buffers={frames} ! \
         video/x-raw,format=I420,width=320,height=240,framerate={FPS}/1 ! \
         parallelfilter name=el processor=delay delay-min={d} delay-max={d} workers={WORKERS} \
         {props} ! fakesink name=sink sync=true qos=true max-lateness=20000000",
        d = DELAY_MS * 1_000_000
    );
    let mut watched = None;
    let timeout = Duration::from_secs(60 + frames / FPS * 4);
    run_with(&desc, timeout, |p| {
        let el = p.by_name("el").ok_or("no element named 'el'")?;
        let sink = p.by_name("sink").ok_or("no element named 'sink'")?;
        watched = Some((el, SinkWatch::attach(&sink)?));
        Ok(())
    })?;
    let (el, watch) = watched.ok_or_else(|| Fail::Error("not set up".into()))?;
    // Kept after the stop.
    let stats = el.property::<gst::Structure>("stats");
    let late = watch
        .late()
        .ok_or_else(|| Fail::Error("no EOS at the sink".into()))?;
    let latency = watch.latency();
    Ok(Run {
        frames_in: counter(&stats, "frames-in"),
        frames_out: counter(&stats, "frames-out"),
        processed: counter(&stats, "frames-out") - counter(&stats, "skipped"),
        late,
        latency,
    })
}

/// Whether latency stays flat: the last quarter's p99 within 10 ms of the
/// second quarter's (the first holds the start-up).
fn flat(latency: &[(f64, f64)]) -> bool {
    let n = latency.len();
    if n < 8 {
        return false;
    }
    let p99 = |part: &[(f64, f64)]| quantile(&part.iter().map(|p| p.1).collect::<Vec<_>>(), 0.99);
    p99(&latency[3 * n / 4..]) <= p99(&latency[n / 4..n / 2]) + 10e6
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let seconds = ctx.pick(20, 4);
    let frames = seconds * FPS;
    let variants = [
        ("leaky=no", "leaky=no"),
        ("leaky=downstream", "leaky=downstream"),
        ("leaky=pass", "leaky=pass"),
        ("interval=2", "interval=2"),
    ];
    let mut runs: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..ctx.rounds {
        for (i, (_, props)) in variants.iter().enumerate() {
            runs[i].push(measure(props, frames)?);
        }
        eprintln!("   round {}/{} done", round + 1, ctx.rounds);
    }
    // What the pool can process in the time the frames take to arrive.
    let capacity = (WORKERS * 1000 / DELAY_MS * seconds) as f64;
    for ((name, _), runs) in variants.iter().zip(&runs) {
        let col = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let frames_out = col(&|r| r.frames_out as f64);
        let dropped = col(&|r| (r.frames_in - r.frames_out) as f64);
        let processed = col(&|r| r.processed as f64);
        let late = col(&|r| r.late as f64);
        let lat =
            |q: f64| col(&|r| quantile(&r.latency.iter().map(|p| p.1).collect::<Vec<_>>(), q));
        let (p50, p99) = (lat(0.5), lat(0.99));
        let is_pass = *name == "leaky=pass";
        let mut row = Row::new(NAME, format!("{name} frames out"), &frames_out, "frames")
            .reference("frames in", frames as f64);
        if is_pass {
            row = row.target("0 dropped", median(&dropped) == 0.0);
        }
        out.rows.push(row);
        let mut row = Row::new(
            NAME,
            format!("{name} frames processed"),
            &processed,
            "frames",
        )
        .reference("pool capacity", capacity)
        .ratio(median(&processed) / capacity);
        if is_pass {
            row = row.target(">= 0.9x capacity", median(&processed) >= 0.9 * capacity);
        }
        out.rows.push(row);
        let mut row = Row::new(
            NAME,
            format!("{name} frames late at the sink"),
            &late,
            "frames",
        );
        if is_pass {
            row = row.target("0 late", median(&late) == 0.0);
        }
        out.rows.push(row);
        out.rows
            .push(Row::new(NAME, format!("{name} latency p50"), &p50, "ns"));
        let mut row = Row::new(NAME, format!("{name} latency p99"), &p99, "ns");
        if is_pass {
            let flat = runs.iter().all(|r| flat(&r.latency));
            row = row.target("flat", flat);
        }
        out.rows.push(row);
        if let Some(first) = runs.first() {
            out.series.push(Series {
                chart: CHART,
                name: name.to_string(),
                points: first.latency.iter().map(|&(t, ns)| (t, ns / 1e6)).collect(),
            });
        }
    }
    out.notes.push(format!(
        "live-overload: videotestsrc is-live=true {FPS} fps 320x240 I420, {seconds} s, \
         processor=delay {DELAY_MS} ms, workers={WORKERS} (capacity {capacity:.0} frames); \
         fakesink sync=true qos=true max-lateness=20 ms; latency = running time at the \
         sink's pad - PTS; plot: live-overload.svg"
    ));
    Ok(())
}

const COLORS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(120, 120, 120),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
];

/// Latency over time, one curve per variant.
pub fn plot(path: &Path, series: &[Series]) -> Result<(), Box<dyn std::error::Error>> {
    let curves: Vec<&Series> = series.iter().filter(|s| s.chart == CHART).collect();
    let max_x = curves
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = curves
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(100.0, f64::max);
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Live 30 fps, 100 ms a frame, 2 workers: end-to-end latency",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max_x, (10f64..max_y * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("capture time (s)")
        .y_desc("latency (ms)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, s) in curves.iter().enumerate() {
        draw_line(&mut chart, s, COLORS[i % COLORS.len()], 2)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}
