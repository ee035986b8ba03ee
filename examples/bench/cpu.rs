// SPDX-License-Identifier: MPL-2.0
//! c. CPU-bound scaling: `processor=analyze` at 1280x720 and 1920x1080 and
//! `filter="gaussianblur"` at 1280x720, workers 1..cores, against serial
//! work (analyze: workers=1; gaussianblur: the element alone) and against
//! the machine limit (cores serial pipelines at once, see [`crate::limit`]).
//! analyze 1280x720 also runs at workers = 2 x cores: more workers than
//! cores must not be slower. Peak threads of a process running analyze
//! 1280x720 at workers=cores (see [`crate::threads`]).
//! h. The filter processor's own targets: workers=1 within 5% of serial
//! gaussianblur, workers=2 at least 1.9x.
//!
//! The source is one frame repeated by `imagefreeze`, so it costs nothing
//! next to the work; rates are taken at the sink after the first tenth.

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, Series, median, require_processor, run_recorded};
use crate::limit::{self, Work};
use crate::threads;

pub fn source(format: &str, width: u32, height: u32, frames: usize) -> String {
    format!(
        "videotestsrc num-buffers=1 pattern=smpte ! \
         video/x-raw,format={format},width={width},height={height},framerate=30/1 ! \
         imagefreeze num-buffers={frames}"
    )
}

const SINK: &str = "fakesink name=sink sync=false";

/// Steady frames/s of `desc` with `workers` frames in parallel.
fn rate(desc: &str, frames: usize, workers: usize) -> Result<f64, Fail> {
    let seen = run_recorded(desc, frames, Duration::from_secs(300))?;
    if seen.at.len() != frames {
        return Err(Fail::Error(format!(
            "{} of {frames} frames arrived through '{desc}'",
            seen.at.len()
        )));
    }
    Ok(seen.rate(warmup(frames).max(workers), workers))
}

/// Frames left out at the start of every run, the limit's too: thread
/// start-up and cold caches are not the steady rate.
pub fn warmup(frames: usize) -> usize {
    (frames / 10).max(1)
}

/// A CPU-bound workload and its references.
struct Workload {
    what: String,
    src: String,
    frames: usize,
    /// The serial run and its name in the table.
    serial: String,
    serial_name: &'static str,
    /// The serial run is `parallel(1)` (analyze): no separate workers=1.
    serial_is_one: bool,
    /// The element with this many workers.
    parallel: fn(&str, usize) -> String,
    /// The serial work of one machine-limit pipeline.
    work: Work,
    /// The element at workers=cores with a deeper bound than the default
    /// 2 x workers, to show what per-frame wake-ups cost.
    deeper: Option<String>,
}

/// Samples per round of one workload.
struct Sweep {
    serial: Vec<f64>,
    /// Per worker count, its samples.
    parallel: Vec<(usize, Vec<f64>)>,
    limit: Vec<f64>,
    /// Pipelines of the machine limit.
    limit_n: usize,
    /// Samples of `Workload::deeper`, if it ran.
    deeper: Vec<f64>,
}

impl Sweep {
    fn at(&self, workers: usize) -> Option<&[f64]> {
        self.parallel
            .iter()
            .find(|(w, _)| *w == workers)
            .map(|(_, s)| s.as_slice())
    }
}

/// One run of a sweep.
enum Variant {
    One { desc: String, workers: usize },
    Limit { n: usize },
}

/// Serial, each worker count, then the machine limit of `n` pipelines,
/// alternating per round.
fn sweep(ctx: &Ctx, wl: &Workload, workers: &[usize], n: usize) -> Result<Sweep, Fail> {
    let mut variants = vec![Variant::One {
        desc: wl.serial.clone(),
        workers: 1,
    }];
    let counted: Vec<usize> = workers
        .iter()
        .copied()
        .filter(|&w| !(wl.serial_is_one && w == 1))
        .collect();
    variants.extend(counted.iter().map(|&w| Variant::One {
        desc: (wl.parallel)(&wl.src, w),
        workers: w,
    }));
    variants.push(Variant::Limit { n });
    if let Some(desc) = &wl.deeper {
        variants.push(Variant::One {
            desc: desc.clone(),
            workers: n,
        });
    }
    let key = format!("{} {workers:?} limit {n}", wl.what);
    let mut samples = ctx
        .alternate(&key, &variants, |v| match v {
            Variant::One { desc, workers } => rate(desc, wl.frames, *workers),
            Variant::Limit { n } => limit::rate(&wl.src, &wl.work, *n, wl.frames),
        })?
        .into_iter();
    let serial = samples.next().unwrap_or_default();
    let mut parallel: Vec<(usize, Vec<f64>)> = counted
        .iter()
        .map(|&w| (w, samples.next().unwrap_or_default()))
        .collect();
    if wl.serial_is_one {
        parallel.insert(0, (1, serial.clone()));
    }
    Ok(Sweep {
        serial,
        parallel,
        limit: samples.next().unwrap_or_default(),
        limit_n: n,
        deeper: samples.next().unwrap_or_default(),
    })
}

/// Per-round ratios `a / b`.
fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

fn gaussianblur(frames: usize) -> Workload {
    Workload {
        what: "gaussianblur 1280x720 AYUV".into(),
        src: source("AYUV", 1280, 720, frames),
        frames,
        serial: format!(
            "{} ! gaussianblur ! {SINK}",
            source("AYUV", 1280, 720, frames)
        ),
        serial_name: "gaussianblur alone",
        serial_is_one: false,
        parallel: |src, w| {
            format!("{src} ! parallelfilter filter=gaussianblur workers={w} ! {SINK}")
        },
        work: Work::Chain("gaussianblur".into()),
        deeper: None,
    }
}

fn analyze(width: u32, height: u32, frames: usize) -> Workload {
    let src = source("I420", width, height, frames);
    let parallel: fn(&str, usize) -> String =
        |src, w| format!("{src} ! parallelfilter processor=analyze workers={w} ! {SINK}");
    Workload {
        what: format!("analyze {width}x{height} I420"),
        serial: parallel(&src, 1),
        src,
        frames,
        serial_name: "workers=1",
        serial_is_one: true,
        parallel,
        work: Work::AnalyzeKernel,
        deeper: None,
    }
}

/// A bound deep enough for wake-ups in bursts (see `Table::wake_room`).
const DEEPER: usize = 32;

/// analyze 1280x720, also at workers=cores with `DEEPER` frames inside.
fn analyze_deeper(cores: usize, frames: usize) -> Workload {
    let mut wl = analyze(1280, 720, frames);
    wl.deeper = Some(format!(
        "{} ! parallelfilter processor=analyze workers={cores} max-size-buffers={DEEPER} ! {SINK}",
        wl.src
    ));
    wl
}

fn filter_sweep(ctx: &Ctx, workers: &[usize]) -> Result<Sweep, Fail> {
    require_processor("filter", "filter=gaussianblur", "AYUV")?;
    sweep(ctx, &gaussianblur(ctx.pick(60, 6)), workers, ctx.cores)
}

fn report_scaling(out: &mut Output, ctx: &Ctx, wl: &Workload, s: &Sweep) {
    let name = "cpu-scaling";
    let what = &wl.what;
    let serial = median(&s.serial);
    out.rows.push(Row::new(
        name,
        format!("{what}: serial ({})", wl.serial_name),
        &s.serial,
        "frames/s",
    ));
    let mut curve = vec![];
    for (w, samples) in &s.parallel {
        let speedup = median(&ratios(samples, &s.serial));
        curve.push((*w as f64, speedup));
        if wl.serial_is_one && *w == 1 || *w > ctx.cores {
            // The serial run itself, or oversubscription (below).
            continue;
        }
        // One worker must stay within 3% of the work alone (issue 13);
        // more, within 5% of the ideal min(workers, cores) x serial.
        let min = if *w == 1 {
            0.97
        } else {
            0.95 * (*w).min(ctx.cores) as f64
        };
        out.rows.push(
            Row::new(name, format!("{what}: workers={w}"), samples, "frames/s")
                .reference(wl.serial_name, serial)
                .ratio(speedup)
                .target(format!(">= {min:.2}x serial"), speedup >= min),
        );
    }
    let n = s.limit_n;
    let limit = median(&s.limit);
    out.rows.push(
        Row::new(
            name,
            format!("{what}: machine limit ({n} serial pipelines)"),
            &s.limit,
            "frames/s",
        )
        .reference(format!("{n} x {}", wl.serial_name), n as f64 * serial)
        .ratio(median(&ratios(&s.limit, &s.serial)) / n as f64),
    );
    if let Some(samples) = s.at(ctx.cores) {
        let fraction = median(&ratios(samples, &s.limit));
        out.rows.push(
            Row::new(
                name,
                format!("{what}: workers={} vs machine limit", ctx.cores),
                samples,
                "frames/s",
            )
            .reference("machine limit", limit)
            .ratio(fraction)
            .target(">= 0.95x limit", fraction >= 0.95),
        );
    }
    if !s.deeper.is_empty() {
        out.rows.push(
            Row::new(
                name,
                format!(
                    "{what}: workers={} max-size-buffers={DEEPER} vs machine limit",
                    ctx.cores
                ),
                &s.deeper,
                "frames/s",
            )
            .reference("machine limit", limit)
            .ratio(median(&ratios(&s.deeper, &s.limit))),
        );
    }
    let over = 2 * ctx.cores;
    if let (Some(samples), Some(at_cores)) = (s.at(over), s.at(ctx.cores)) {
        let ratio = median(&ratios(samples, at_cores));
        out.rows.push(
            Row::new(
                name,
                format!("{what}: workers={over} (2 x cores)"),
                samples,
                "frames/s",
            )
            .reference(format!("workers={}", ctx.cores), median(at_cores))
            .ratio(ratio)
            .target(">= 1.0x workers=cores", ratio >= 1.0),
        );
    }
    out.series.push(Series {
        chart: "cpu",
        name: what.clone(),
        points: curve,
    });
}

/// Peak threads of `wl` at workers=cores.
fn report_threads(out: &mut Output, ctx: &Ctx, wl: &Workload) -> Result<(), Fail> {
    let desc = (wl.parallel)(&wl.src, ctx.cores);
    match ctx.alternate(&format!("threads {}", wl.what), &[desc], |d| {
        threads::peak(d)
    }) {
        Ok(samples) => out.rows.push(threads::row(
            "cpu-scaling",
            format!("{}: peak threads, workers={}", wl.what, ctx.cores),
            &samples[0],
            ctx.cores,
        )),
        Err(Fail::Skipped(why)) => out.skipped.push(("cpu-scaling threads".into(), why)),
        Err(e) => return Err(e),
    }
    Ok(())
}

pub fn run_scaling(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let cores = ctx.cores;
    let workers: Vec<usize> = (1..=cores).collect();
    out.series.push(Series {
        chart: "cpu",
        name: "ideal min(workers, cores)".into(),
        points: (1..=2 * cores)
            .map(|w| (w as f64, w.min(cores) as f64))
            .collect(),
    });
    let mut skipped = vec![];
    match require_processor("analyze", "", "I420") {
        Ok(()) => {
            // Seconds, not a fraction of one: start-up must not weigh.
            let frames = ctx.pick(3000, 10);
            let mut oversubscribed = workers.clone();
            oversubscribed.push(2 * cores);
            for (wl, workers) in [
                (analyze_deeper(cores, frames), &oversubscribed),
                (analyze(1920, 1080, frames), &workers),
            ] {
                let s = sweep(ctx, &wl, workers, cores)?;
                report_scaling(out, ctx, &wl, &s);
            }
            report_threads(out, ctx, &analyze(1280, 720, frames))?;
        }
        Err(Fail::Skipped(why)) => skipped.push(why),
        Err(e) => return Err(e),
    }
    match filter_sweep(ctx, &workers) {
        Ok(s) => report_scaling(out, ctx, &gaussianblur(ctx.pick(60, 6)), &s),
        Err(Fail::Skipped(why)) => skipped.push(why),
        Err(e) => return Err(e),
    }
    if skipped.len() == 2 {
        return Err(Fail::Skipped(skipped.join("; ")));
    }
    for why in skipped {
        out.skipped.push(("cpu-scaling (part)".into(), why));
    }
    out.notes.push(format!(
        "cpu-scaling: machine limit = {cores} independent serial pipelines (source ! work ! \
         fakesink) in one pipeline, combined frames/s while all run; its work is gaussianblur, \
         or for analyze the analysis kernel in an identity handoff (no element, no result meta)"
    ));
    Ok(())
}

pub fn run_filter(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let name = "filter";
    let workers = [1, 2];
    let s = filter_sweep(ctx, &workers)?;
    let serial = median(&s.serial);
    out.rows.push(Row::new(
        name,
        "gaussianblur 1280x720 alone",
        &s.serial,
        "frames/s",
    ));
    for (w, min) in workers.iter().zip([0.95, 1.9]) {
        let samples = s.at(*w).unwrap_or_default();
        let speedup = median(&ratios(samples, &s.serial));
        out.rows.push(
            Row::new(
                name,
                format!("filter=gaussianblur workers={w}"),
                samples,
                "frames/s",
            )
            .reference("gaussianblur alone", serial)
            .ratio(speedup)
            .target(format!(">= {min}x serial"), speedup >= min),
        );
    }
    Ok(())
}
