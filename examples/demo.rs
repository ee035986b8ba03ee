// SPDX-License-Identifier: MPL-2.0
//! The first thing to run: `cargo run --release --example demo` (or `./demo.sh`).
//!
//! Sends `videotestsrc` frames through `parallelfilter processor=delay`, where
//! every frame waits a different time (5–40 ms by default, fixed seed), so
//! frames finish out of order inside the element. It prints one line per
//! frame in the order they leave the element, checks that this is input order,
//! then runs the same frames with `workers=1` and compares throughput.
//!
//! Options: `--frames N` (200), `--workers N` (32), `--delay-min MS` (5),
//! `--delay-max MS` (40), `--seed N` (42), `--quiet` (no per-frame lines).
//!
//! `--overlay [--out DIR]` instead runs `processor=overlay` on a moving ball
//! that turns into colour bars halfway (a scene change) and writes PNG
//! snapshots to DIR (default `overlay-snapshots` in cargo's profile
//! directory, e.g. `target/release/overlay-snapshots`).
//! Exits with status 1 if a frame is missing or out of order.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use gst::prelude::*;

/// Frames of the `workers=1` baseline at most: it is slow by design.
const MAX_BASELINE_FRAMES: u32 = 100;

#[derive(Debug, Clone)]
struct Options {
    frames: u32,
    workers: u32,
    delay_min_ms: u64,
    delay_max_ms: u64,
    seed: u64,
    quiet: bool,
    /// `--overlay`: the directory for the PNG snapshots.
    overlay: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            frames: 200,
            workers: 32,
            delay_min_ms: 5,
            delay_max_ms: 40,
            seed: 42,
            quiet: false,
            overlay: None,
        }
    }
}

const USAGE: &str = "usage: demo [--frames N] [--workers N] [--delay-min MS] [--delay-max MS] \
                     [--seed N] [--quiet] | --overlay [--out DIR]";

fn parse_args() -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--frames" => opts.frames = value("--frames")?.clamp(1, u32::MAX as u64) as u32,
            "--workers" => opts.workers = value("--workers")?.clamp(1, 1024) as u32,
            "--delay-min" => opts.delay_min_ms = value("--delay-min")?,
            "--delay-max" => opts.delay_max_ms = value("--delay-max")?,
            "--seed" => opts.seed = value("--seed")?,
            "--quiet" | "-q" => opts.quiet = true,
            "--overlay" => {
                opts.overlay.get_or_insert_with(default_overlay_dir);
            }
            "--out" => {
                let dir = args.next().ok_or("--out needs a directory")?;
                opts.overlay = Some(dir.into());
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    opts.delay_max_ms = opts.delay_max_ms.max(opts.delay_min_ms);
    Ok(opts)
}

/// `overlay-snapshots` next to the build's outputs (`target/release` for
/// `cargo run --release`), so the demo never writes into the source tree.
fn default_overlay_dir() -> std::path::PathBuf {
    // The example runs as <target>/<profile>/examples/demo.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("overlay-snapshots")))
        .unwrap_or_else(|| "target/overlay-snapshots".into())
}

/// One `parallelfilter-analysis` element message.
#[derive(Debug)]
struct Frame {
    seq: u64,
    pts: u64,
    worker: u32,
    processing: Duration,
}

impl Frame {
    fn from_structure(s: &gst::StructureRef) -> Option<Frame> {
        Some(Frame {
            seq: s.get("seq").ok()?,
            pts: s.get("timestamp").ok()?,
            worker: s.get("worker").ok()?,
            processing: Duration::from_nanos(s.get("processing-time").ok()?),
        })
    }
}

/// What one pipeline run gave.
struct Run {
    workers: u32,
    frames: Vec<Frame>,
    wall: Duration,
    stats: gst::Structure,
}

impl Run {
    fn fps(&self) -> f64 {
        self.frames.len() as f64 / self.wall.as_secs_f64()
    }

    fn stat_u64(&self, name: &str) -> u64 {
        self.stats
            .get::<u64>(name)
            .or_else(|_| self.stats.get::<u32>(name).map(u64::from))
            .unwrap_or(0)
    }

    fn per_worker(&self) -> Vec<u64> {
        self.stats
            .get::<gst::Array>("per-worker")
            .map(|a| a.iter().filter_map(|v| v.get::<u64>().ok()).collect())
            .unwrap_or_default()
    }
}

/// Runs `frames` frames through the element and collects its messages.
fn run(opts: &Options, workers: u32, frames: u32, print: bool) -> Result<Run, String> {
    let ms = 1_000_000;
    let description = format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,width=320,height=240 ! \
         parallelfilter name=pf processor=delay delay-min={} delay-max={} seed={} \
         workers={workers} post-messages=true ! fakesink sync=false",
        opts.delay_min_ms * ms,
        opts.delay_max_ms * ms,
        opts.seed,
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| format!("cannot build the pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let filter = pipeline.by_name("pf").ok_or("no parallelfilter")?;
    let bus = pipeline.bus().ok_or("no bus")?;

    // Far more than the slowest possible run: only a hang gets here.
    let deadline = Duration::from_secs(30) + Duration::from_millis(opts.delay_max_ms) * frames * 2;

    if print {
        println!(
            "  {:>5}  {:>17}  {:>6}  {:>10}",
            "seq", "pts", "worker", "processing"
        );
    }
    let start = Instant::now();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot start the pipeline".to_string())?;

    let mut collected = Vec::with_capacity(frames as usize);
    let result = loop {
        let Some(remaining) = deadline.checked_sub(start.elapsed()) else {
            break Err(format!("no EOS after {deadline:?}: the pipeline hangs"));
        };
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(remaining.as_nanos() as u64))
        else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                if s.name() != "parallelfilter-analysis" {
                    continue;
                }
                if let Some(frame) = Frame::from_structure(s) {
                    if print {
                        println!(
                            "  {:>5}  {:>17}  {:>6}  {:>7.1} ms",
                            frame.seq,
                            gst::ClockTime::from_nseconds(frame.pts).to_string(),
                            frame.worker,
                            frame.processing.as_secs_f64() * 1000.0
                        );
                    }
                    collected.push(frame);
                }
            }
            gst::MessageView::Eos(..) => break Ok(start.elapsed()),
            gst::MessageView::Error(err) => {
                break Err(format!(
                    "error from {}: {} ({})",
                    err.src().map(|s| s.path_string()).unwrap_or_default(),
                    err.error(),
                    err.debug().unwrap_or_default()
                ));
            }
            _ => {}
        }
    };

    // Read the counters before stopping: they describe the finished stream.
    let stats = filter.property::<gst::Structure>("stats");
    let _ = pipeline.set_state(gst::State::Null);
    Ok(Run {
        workers,
        frames: collected,
        wall: result?,
        stats,
    })
}

/// Frames whose seq or timestamp is not above the previous frame's.
fn out_of_order(frames: &[Frame]) -> usize {
    frames
        .windows(2)
        .filter(|w| w[1].seq <= w[0].seq || w[1].pts <= w[0].pts)
        .count()
}

/// Checks one run; returns the problems found.
fn check(run: &Run, expected: u32) -> Vec<String> {
    let mut problems = Vec::new();
    let bad = out_of_order(&run.frames);
    if bad > 0 {
        problems.push(format!(
            "workers={}: {bad} frames out of order",
            run.workers
        ));
    }
    let missing = (expected as usize).saturating_sub(run.frames.len());
    if missing > 0 {
        problems.push(format!("workers={}: {missing} frames missing", run.workers));
    }
    let out = run.stat_u64("frames-out");
    if out != expected as u64 {
        problems.push(format!(
            "workers={}: stats say frames-out={out}, expected {expected}",
            run.workers
        ));
    }
    problems
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn print_summary(opts: &Options, par: &Run, base: &Run) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let avg_delay = (opts.delay_min_ms + opts.delay_max_ms) as f64 / 2.0;
    println!();
    println!(
        "Summary ({cpus} CPUs; per-frame delay {}-{} ms, seed {})",
        opts.delay_min_ms, opts.delay_max_ms, opts.seed
    );
    println!(
        "  {:<22} {:>14} {:>14}",
        "",
        format!("workers={}", par.workers),
        "workers=1"
    );
    let row = |name: &str, a: String, b: String| println!("  {name:<22} {a:>14} {b:>14}");
    row(
        "frames",
        par.frames.len().to_string(),
        base.frames.len().to_string(),
    );
    row(
        "wall time",
        format!("{:.2} s", par.wall.as_secs_f64()),
        format!("{:.2} s", base.wall.as_secs_f64()),
    );
    row(
        "throughput",
        format!("{:.1} fps", par.fps()),
        format!("{:.1} fps", base.fps()),
    );
    for (name, stat) in [
        ("max-reorder-depth", "max-reorder-depth"),
        ("max-in-flight", "max-in-flight"),
    ] {
        row(
            name,
            par.stat_u64(stat).to_string(),
            base.stat_u64(stat).to_string(),
        );
    }
    for (name, stat) in [
        ("avg processing time", "avg-processing-time"),
        ("avg latency", "avg-latency"),
        ("max latency", "max-latency"),
    ] {
        let d = |r: &Run| ms(Duration::from_nanos(r.stat_u64(stat)));
        row(name, d(par), d(base));
    }
    // With every worker busy, throughput is workers / average delay.
    let ideal_fps = par.workers as f64 * 1000.0 / avg_delay;
    println!(
        "  speed-up: {:.1}x; throughput {:.0} fps is {:.2}x the ideal {ideal_fps:.0} fps \
         ({} workers / {avg_delay:.1} ms average delay)",
        par.fps() / base.fps(),
        par.fps(),
        par.fps() / ideal_fps,
        par.workers
    );
    let per_worker = par.per_worker();
    let used = per_worker.iter().filter(|&&n| n > 0).count();
    let list: Vec<String> = per_worker.iter().map(u64::to_string).collect();
    println!(
        "  per-worker frames (workers={}, {used} used): {}",
        par.workers,
        list.join(" ")
    );
}

/// Frames of the overlay demo; the pattern switches after half of them.
const OVERLAY_FRAMES: u32 = 8;

/// `processor=overlay` on 640x360 frames, every frame saved as a PNG.
fn overlay_snapshots(dir: &std::path::Path, workers: u32) -> Result<u32, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let location = dir.join("overlay-%02d.png");
    let description = format!(
        "videotestsrc name=src num-buffers={OVERLAY_FRAMES} pattern=ball ! \
         video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! \
         parallelfilter processor=overlay workers={workers} ! videoconvert ! pngenc ! \
         multifilesink location=\"{}\"",
        location.display()
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| format!("cannot build the pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let src = pipeline.by_name("src").ok_or("no source")?;
    // Switch the picture halfway: the next frame shows a scene change.
    let count = std::sync::atomic::AtomicU32::new(0);
    let weak = src.downgrade();
    src.static_pad("src").ok_or("no source pad")?.add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n == OVERLAY_FRAMES / 2
                && let Some(src) = weak.upgrade()
            {
                src.set_property_from_str("pattern", "smpte");
            }
            gst::PadProbeReturn::Ok
        },
    );
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot start the pipeline".to_string())?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(60)) else {
            break Err("no EOS after 60 s".to_string());
        };
        match msg.view() {
            gst::MessageView::Eos(..) => break Ok(OVERLAY_FRAMES),
            gst::MessageView::Error(err) => {
                break Err(format!(
                    "{} ({})",
                    err.error(),
                    err.debug().unwrap_or_default()
                ));
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = gst::init() {
        eprintln!("cannot initialize GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = gstparallel::plugin_register_static() {
        eprintln!("cannot register the parallel plugin: {e}");
        return ExitCode::FAILURE;
    }

    if let Some(dir) = &opts.overlay {
        return match overlay_snapshots(dir, opts.workers) {
            Ok(n) => {
                println!("wrote {n} PNG snapshots to {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("overlay: {e}");
                ExitCode::FAILURE
            }
        };
    }

    println!(
        "parallelfilter demo: {} frames, workers={}, delay {}-{} ms per frame (seed {})",
        opts.frames, opts.workers, opts.delay_min_ms, opts.delay_max_ms, opts.seed
    );
    if !opts.quiet {
        println!("Frames in output order:");
    }
    let par = match run(&opts, opts.workers, opts.frames, !opts.quiet) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("workers={}: {e}", opts.workers);
            return ExitCode::FAILURE;
        }
    };

    let base_frames = opts.frames.min(MAX_BASELINE_FRAMES);
    println!();
    let which = if base_frames == opts.frames {
        ""
    } else {
        "first "
    };
    println!("Baseline: the same {which}{base_frames} frames with workers=1 ...");
    let base = match run(&opts, 1, base_frames, false) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("workers=1: {e}");
            return ExitCode::FAILURE;
        }
    };

    print_summary(&opts, &par, &base);
    let problems: Vec<String> = check(&par, opts.frames)
        .into_iter()
        .chain(check(&base, base_frames))
        .collect();
    println!(
        "out-of-order frames: {}",
        out_of_order(&par.frames) + out_of_order(&base.frames)
    );
    println!(
        "missing frames: {}",
        (opts.frames as usize).saturating_sub(par.frames.len())
            + (base_frames as usize).saturating_sub(base.frames.len())
    );
    if problems.is_empty() {
        println!("OK: every frame left in input order");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("FAIL: {p}");
        }
        ExitCode::FAILURE
    }
}
