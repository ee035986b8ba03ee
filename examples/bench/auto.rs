// SPDX-License-Identifier: MPL-2.0
//! k. Automatic workers (`workers=0`) next to a sweep of fixed counts
//! (1, 2, 4 … 256) on the same workload, in the same run:
//!
//! - `delay` fixed 20 ms, non-live source;
//! - a delay that changes mid-stream, 5 ms, then 50 ms, then 5 ms (an async
//!   Rust processor whose sleep depends on the time since the first frame);
//! - `filter=gaussianblur` 1280x720 and `analyze` 1920x1080 (CPU-bound);
//! - `remote` against two test servers serving at most 4 requests at once
//!   each, 20 ms per request;
//! - live 30 fps with `delay` 100 ms.
//!
//! Every run lasts a fixed time from the first frame into the element;
//! then EOS goes into the element's sink pad and every frame must leave, in
//! order. A thread reads `stats` `workers` every 50 ms; a probe on the sink
//! takes the output times. Throughput is the outputs of the steady part of
//! a phase (after the controller's warm-up, or 1 s after a load change)
//! over its length, the same window for automatic and fixed runs. One
//! round (three for the CPU-bound workloads, whose throughput follows what
//! else the cores run), or `--rounds`.
//! Settling after a load change: the time from the change to the start of
//! the first 250 ms window (stepped by 50 ms) in which the automatic run
//! delivers at least 0.9x the phase's best fixed throughput and from which
//! every window starting within the next second (or up to the phase's end)
//! does too; holding keeps the frames still finishing at the old load from
//! counting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstparallel::ParallelFilter;
use gstparallel::parallelfilter::CustomProcessor;

use crate::common::{
    Ctx, Fail, Output, Row, Series, median, record, require_processor, run_with, take,
};
use crate::remote::oip_server::{MODEL, TestServer};
use crate::scaling::SMALL_SRC;

const NAME: &str = "auto";
/// How often the sampler thread reads `stats`.
const SAMPLE: Duration = Duration::from_millis(50);
/// Window of the time series and of the settling time, and its step (s).
const WINDOW: f64 = 0.25;
const STEP: f64 = 0.05;
/// Targets: throughput vs the best fixed count, workers vs the smallest
/// fixed count reaching `ENOUGH` of the best, settling time (s).
const THROUGHPUT: f64 = 0.9;
const ENOUGH: f64 = 0.95;
const WASTE: f64 = 1.5;
const SETTLE: f64 = 1.0;
/// The changing delay's phases: per-frame time (ms) and length (in
/// `Timing::phase`s; the slow phase is longer, so a slow settling still
/// ends within it and is measured).
const CHANGING: [(u64, f64); 3] = [(5, 1.0), (50, 1.6), (5, 1.0)];

/// A part of a run with one load: from `start` to `end`, measured from
/// `steady` (s since the first frame entered the element).
#[derive(Clone, Debug)]
struct Phase {
    label: String,
    start: f64,
    steady: f64,
    end: f64,
}

/// Per-frame time of the changing delay, by time since the first frame.
type Schedule = Arc<dyn Fn(Duration) -> Duration + Send + Sync>;

struct Workload {
    what: String,
    counts: Vec<usize>,
    /// The pipeline with `workers=N` (0: automatic); the element is named
    /// `pf`, the sink `sink`.
    pipeline: Box<dyn Fn(usize) -> String>,
    phases: Vec<Phase>,
    /// Set as a custom async processor when present.
    schedule: Option<Schedule>,
    /// CPU-bound: throughput follows what else the cores run, so more,
    /// shorter rounds.
    cpu: bool,
}

/// Run lengths (s) and rounds.
struct Timing {
    /// What the controller gets before a one-load run is measured.
    warmup: f64,
    run: f64,
    /// The same for CPU-bound work, where it starts at the cores.
    cpu_warmup: f64,
    cpu_run: f64,
    cpu_rounds: usize,
    /// Each phase of the changing delay.
    phase: f64,
    /// Allowed after a load change before its steady part, and how long
    /// the new throughput must hold to count as settled.
    settle: f64,
}

/// What one run recorded, in s since the first frame entered the element.
#[derive(Default)]
struct Trace {
    /// Output times, ascending.
    out: Vec<f64>,
    /// `stats` `workers`, every 50 ms until EOS was sent.
    workers: Vec<(f64, u32)>,
}

impl Trace {
    /// Outputs per s in (a, b], measured between outputs: from the last
    /// output at or before `a` to the last at or before `b`, when within a
    /// quarter of the window, so that bursts (workers finishing together)
    /// count whole rather than as one burst too many or too few.
    fn rate(&self, a: f64, b: f64) -> f64 {
        let slack = (b - a) / 4.0;
        let i = self.out.partition_point(|&t| t <= a);
        let j = self.out.partition_point(|&t| t <= b);
        let start = match i.checked_sub(1).map(|k| self.out[k]) {
            Some(t) if a - t <= slack => t,
            _ => a,
        };
        let end = match j.checked_sub(1).map(|k| self.out[k]) {
            Some(t) if t > start && b - t <= slack => t,
            _ => b,
        };
        (j - i) as f64 / (end - start)
    }

    fn in_range(&self, a: f64, b: f64) -> impl Iterator<Item = u32> + '_ {
        self.workers
            .iter()
            .filter(move |(t, _)| *t >= a && *t <= b)
            .map(|(_, w)| *w)
    }

    /// Mean of the 50 ms samples in [a, b].
    fn mean_workers(&self, a: f64, b: f64) -> f64 {
        let (sum, n) = self
            .in_range(a, b)
            .fold((0.0, 0usize), |(s, n), w| (s + f64::from(w), n + 1));
        if n == 0 { f64::NAN } else { sum / n as f64 }
    }

    fn last_workers(&self, b: f64) -> Option<u32> {
        self.workers
            .iter()
            .take_while(|(t, _)| *t <= b)
            .last()
            .map(|(_, w)| *w)
    }

    /// Throughput over a sliding 250 ms window from `a` to `b`, at each
    /// window's centre.
    fn throughput_series(&self, a: f64, b: f64) -> Vec<(f64, f64)> {
        let steps = ((b - a - WINDOW) / STEP).floor().max(0.0) as usize;
        (0..=steps)
            .map(|i| {
                let from = a + i as f64 * STEP;
                (from + WINDOW / 2.0, self.rate(from, from + WINDOW))
            })
            .collect()
    }

    /// Time from the phase's start until the throughput reaches `rate`
    /// and holds it for `hold` (or to the phase's end): the start of the
    /// first window from which every window starting within `hold` does.
    /// Holding excludes the frames still finishing at the old load.
    fn settling(&self, phase: &Phase, rate: f64, hold: f64) -> Option<f64> {
        let starts: Vec<f64> = (0..)
            .map(|i| phase.start + f64::from(i) * STEP)
            .take_while(|from| from + WINDOW <= phase.end + 1e-9)
            .collect();
        let ok: Vec<bool> = starts
            .iter()
            .map(|&from| self.rate(from, from + WINDOW) >= rate)
            .collect();
        (0..starts.len())
            .find(|&i| {
                starts[i..]
                    .iter()
                    .zip(&ok[i..])
                    .take_while(|(from, _)| **from <= starts[i] + hold + 1e-9)
                    .all(|(_, ok)| *ok)
            })
            .map(|i| starts[i] - phase.start)
    }
}

/// Reads `stats` `workers` every 50 ms from when the first frame entered
/// until EOS was sent; ends when `done` is set.
fn sampler(
    pf: gst::Element,
    origin: Arc<OnceLock<Instant>>,
    eos: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> JoinHandle<Vec<(f64, u32)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(SAMPLE);
            let Some(origin) = origin.get() else {
                continue;
            };
            if eos.load(Ordering::SeqCst) {
                continue;
            }
            let t = origin.elapsed().as_secs_f64();
            if let Ok(w) = pf.property::<gst::Structure>("stats").get::<u32>("workers") {
                samples.push((t, w));
            }
        }
        samples
    })
}

/// One run of `desc` for `secs`; every frame that entered must leave, in
/// order, and a fixed `workers` must stay exactly that.
fn run_once(
    desc: &str,
    workers: usize,
    secs: f64,
    schedule: Option<&Schedule>,
) -> Result<Trace, Fail> {
    let origin: Arc<OnceLock<Instant>> = Arc::default();
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let eos = Arc::new(AtomicBool::new(false));
    let mut seen = None;
    let mut thread = None;
    let result = run_with(desc, Duration::from_secs_f64(secs + 60.0), |p| {
        let pf = p.by_name("pf").ok_or("no element named 'pf'")?;
        let (o, n, e) = (origin.clone(), entered.clone(), eos.clone());
        pf.static_pad("sink")
            .ok_or("no sink pad on 'pf'")?
            .add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
                let start = *o.get_or_init(Instant::now);
                if start.elapsed().as_secs_f64() < secs {
                    n.fetch_add(1, Ordering::Relaxed);
                    return gst::PadProbeReturn::Ok;
                }
                if e.swap(true, Ordering::SeqCst) {
                    // The pad refuses it with EOS: upstream stops.
                    return gst::PadProbeReturn::Ok;
                }
                // From the streaming thread, which holds the stream lock:
                // sent from another thread, the serialized event can starve
                // behind back-to-back pushes.
                pad.send_event(gst::event::Eos::new());
                // Handled: the buffer is consumed here (Drop would leave
                // the core a null buffer to unref).
                gst::PadProbeReturn::Handled
            });
        let pad = p
            .by_name("sink")
            .and_then(|e| e.static_pad("sink"))
            .ok_or("no element named 'sink' with a sink pad")?;
        seen = Some(record(&pad, 1 << 16));
        if let Some(schedule) = schedule {
            let pf = pf
                .clone()
                .downcast::<ParallelFilter>()
                .map_err(|_| "'pf' is not a parallelfilter")?;
            let (o, schedule) = (origin.clone(), schedule.clone());
            pf.set_custom_processor(CustomProcessor::new_async(move |buffer, _| {
                let wait = schedule(o.get_or_init(Instant::now).elapsed());
                async move {
                    tokio::time::sleep(wait).await;
                    Ok::<_, String>(buffer)
                }
            }));
        }
        thread = Some(sampler(pf, origin.clone(), eos.clone(), done.clone()));
        Ok(())
    });
    done.store(true, Ordering::SeqCst);
    let samples = match thread.map(JoinHandle::join) {
        Some(Ok(s)) => s,
        Some(Err(_)) => return Err(Fail::Error("the stats sampler panicked".into())),
        None => Vec::new(),
    };
    result?;
    let seen = seen.map(take).unwrap_or_default();
    let entered = entered.load(Ordering::Relaxed);
    if seen.at.len() != entered {
        return Err(Fail::Error(format!(
            "workers={workers}: {} of {entered} frames left '{desc}'",
            seen.at.len()
        )));
    }
    if seen.out_of_order() != 0 {
        return Err(Fail::Error(format!(
            "workers={workers}: frames out of order through '{desc}'"
        )));
    }
    if workers > 0
        && let Some((t, w)) = samples.iter().find(|(_, w)| *w as usize != workers)
    {
        return Err(Fail::Error(format!(
            "workers={workers}: stats said {w} workers at {t:.2} s"
        )));
    }
    let Some(origin) = origin.get().copied() else {
        return Err(Fail::Error(format!("no frame entered '{desc}'")));
    };
    let secs_since = |i: &Instant| i.saturating_duration_since(origin).as_secs_f64();
    Ok(Trace {
        out: seen.at.iter().map(secs_since).collect(),
        workers: samples,
    })
}

fn counts(ctx: &Ctx, max: usize) -> Vec<usize> {
    if ctx.quick {
        vec![1, 4]
    } else {
        (0..=8).map(|i| 1usize << i).filter(|&w| w <= max).collect()
    }
}

fn one_phase(warmup: f64, run: f64) -> Vec<Phase> {
    vec![Phase {
        label: String::new(),
        start: 0.0,
        steady: warmup,
        end: run,
    }]
}

fn delay_element(ms: u64, workers: usize) -> String {
    let ns = ms * 1_000_000;
    format!(
        "parallelfilter name=pf processor=delay delay-min={ns} delay-max={ns} workers={workers} ! \
         fakesink name=sink sync=false"
    )
}

fn workloads(ctx: &Ctx, t: &Timing, urls: &str) -> Vec<Workload> {
    let imagefreeze = |format: &str, w: u32, h: u32| {
        format!(
            "videotestsrc num-buffers=1 pattern=smpte ! \
             video/x-raw,format={format},width={w},height={h},framerate=30/1 ! imagefreeze"
        )
    };
    let blur_src = imagefreeze("AYUV", 1280, 720);
    let analyze_src = imagefreeze("I420", 1920, 1080);
    let urls = urls.to_string();
    let mut start = 0.0;
    let changing: Vec<Phase> = CHANGING
        .iter()
        .enumerate()
        .map(|(i, (ms, length))| {
            let phase = Phase {
                label: format!("phase {} ({ms} ms)", i + 1),
                start,
                steady: start + if i == 0 { t.warmup } else { t.settle },
                end: start + length * t.phase,
            };
            start = phase.end;
            phase
        })
        .collect();
    let ends: Vec<(f64, u64)> = changing
        .iter()
        .zip(CHANGING)
        .map(|(p, c)| (p.end, c.0))
        .collect();
    vec![
        Workload {
            what: "delay 20 ms".into(),
            counts: counts(ctx, 256),
            pipeline: Box::new(|w| format!("{SMALL_SRC} ! {}", delay_element(20, w))),
            phases: one_phase(t.warmup, t.run),
            schedule: None,
            cpu: false,
        },
        Workload {
            what: "delay 5/50/5 ms".into(),
            counts: counts(ctx, 256),
            pipeline: Box::new(|w| {
                format!(
                    "{SMALL_SRC} ! parallelfilter name=pf workers={w} ! fakesink name=sink sync=false"
                )
            }),
            phases: changing,
            schedule: Some(Arc::new(move |since: Duration| {
                let since = since.as_secs_f64();
                let ms = ends
                    .iter()
                    .find(|(end, _)| since < *end)
                    .or(ends.last())
                    .map_or(0, |(_, ms)| *ms);
                Duration::from_millis(ms)
            })),
            cpu: false,
        },
        Workload {
            what: "gaussianblur 1280x720".into(),
            // One round of 64 frames takes 2 s on 2 cores: more workers
            // cannot reach a steady state within a run.
            counts: counts(ctx, 32),
            pipeline: Box::new(move |w| {
                format!(
                    "{blur_src} ! parallelfilter name=pf filter=gaussianblur workers={w} ! \
                     fakesink name=sink sync=false"
                )
            }),
            phases: one_phase(t.cpu_warmup, t.cpu_run),
            schedule: None,
            cpu: true,
        },
        Workload {
            what: "analyze 1920x1080".into(),
            counts: counts(ctx, 256),
            pipeline: Box::new(move |w| {
                format!(
                    "{analyze_src} ! parallelfilter name=pf processor=analyze workers={w} ! \
                     fakesink name=sink sync=false"
                )
            }),
            phases: one_phase(t.cpu_warmup, t.cpu_run),
            schedule: None,
            cpu: true,
        },
        Workload {
            what: "remote 2 servers K=4 +20 ms".into(),
            counts: counts(ctx, 256),
            pipeline: Box::new(move |w| {
                format!(
                    "videotestsrc pattern=ball ! \
                     video/x-raw,format=RGB,width=32,height=24,framerate=1000/1 ! \
                     parallelfilter name=pf processor=remote servers={urls} model={MODEL} \
                     workers={w} ! fakesink name=sink sync=false"
                )
            }),
            phases: one_phase(t.warmup, t.run),
            schedule: None,
            cpu: false,
        },
        Workload {
            what: "live 30 fps, delay 100 ms".into(),
            counts: counts(ctx, 256),
            pipeline: Box::new(|w| {
                format!(
                    "{} ! {}",
                    SMALL_SRC.replacen("videotestsrc", "videotestsrc is-live=true", 1),
                    delay_element(100, w)
                )
            }),
            phases: one_phase(t.warmup, t.run),
            schedule: None,
            cpu: false,
        },
    ]
}

/// The automatic run (index 0) and each fixed count, alternating per
/// round; the traces per variant.
fn measure(wl: &Workload, rounds: usize) -> Result<Vec<Vec<Trace>>, Fail> {
    let variants: Vec<usize> = std::iter::once(0)
        .chain(wl.counts.iter().copied())
        .collect();
    let secs = wl.phases.last().map_or(0.0, |p| p.end);
    let mut traces: Vec<Vec<Trace>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, &w) in variants.iter().enumerate() {
            traces[i].push(run_once(&(wl.pipeline)(w), w, secs, wl.schedule.as_ref())?);
        }
        eprintln!("   {}: round {}/{rounds} done", wl.what, round + 1);
    }
    Ok(traces)
}

fn fmt_fps(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A row's target, judged only in a full run.
fn judged(ctx: &Ctx, row: Row, target: String, pass: bool) -> Row {
    if ctx.quick {
        row
    } else {
        row.target(target, pass)
    }
}

/// What one phase showed.
struct PhaseResult {
    best: f64,
    smallest: usize,
}

/// Rows, notes and sweep curves of one phase.
fn report_phase(
    ctx: &Ctx,
    out: &mut Output,
    wl: &Workload,
    phase: &Phase,
    traces: &[Vec<Trace>],
    hold: f64,
) -> PhaseResult {
    let (a, b) = (phase.steady, phase.end);
    let what = if phase.label.is_empty() {
        wl.what.clone()
    } else {
        format!("{}, {}", wl.what, phase.label)
    };
    let rates: Vec<Vec<f64>> = traces
        .iter()
        .map(|runs| runs.iter().map(|t| t.rate(a, b)).collect())
        .collect();
    let fixed: Vec<(usize, f64)> = wl
        .counts
        .iter()
        .zip(&rates[1..])
        .map(|(&w, s)| (w, median(s)))
        .collect();
    let (best_at, best) = fixed.iter().copied().fold((0, f64::NAN), |m, (w, r)| {
        if r > m.1 || m.1.is_nan() { (w, r) } else { m }
    });
    let smallest = fixed
        .iter()
        .find(|(_, r)| *r >= ENOUGH * best)
        .map_or(0, |(w, _)| *w);

    let auto = &rates[0];
    let ratio = median(auto) / best;
    let when = if phase.start == 0.0 {
        format!("{a:.1}-{b:.1} s, after {a:.1} s warm-up")
    } else {
        format!(
            "{a:.1}-{b:.1} s, from {:.1} s after the change",
            a - phase.start
        )
    };
    out.rows.push(judged(
        ctx,
        Row::new(NAME, format!("{what}: workers=0, {when}"), auto, "frames/s")
            .reference(format!("best fixed workers={best_at}"), best)
            .ratio(ratio),
        format!(">= {THROUGHPUT}x best fixed"),
        ratio >= THROUGHPUT,
    ));

    let used: Vec<f64> = traces[0].iter().map(|t| t.mean_workers(a, b)).collect();
    let last = traces[0]
        .last()
        .and_then(|t| t.last_workers(b))
        .map_or("-".into(), |w| w.to_string());
    let waste = median(&used) / smallest as f64;
    out.rows.push(judged(
        ctx,
        Row::new(
            NAME,
            format!("{what}: workers used by workers=0, mean (final {last})"),
            &used,
            "workers",
        )
        .reference(
            format!("smallest fixed >= {ENOUGH}x best: {smallest}"),
            smallest as f64,
        )
        .ratio(waste),
        format!("<= {WASTE}x smallest"),
        waste <= WASTE,
    ));

    if phase.start > 0.0 {
        let settle: Vec<f64> = traces[0]
            .iter()
            .map(|t| {
                t.settling(phase, THROUGHPUT * best, hold)
                    .unwrap_or(f64::INFINITY)
            })
            .collect();
        let value = median(&settle);
        let never = if value.is_finite() {
            String::new()
        } else {
            format!(" (not within the {:.1} s phase)", phase.end - phase.start)
        };
        out.rows.push(judged(
            ctx,
            Row::new(
                NAME,
                format!(
                    "{what}: settling, until {THROUGHPUT}x best fixed ({} frames/s) held {hold:.1} s{never}",
                    fmt_fps(best)
                ),
                &settle,
                "s",
            ),
            format!("<= {SETTLE} s"),
            settle.iter().all(|s| s.is_finite()) && value <= SETTLE,
        ));
    }

    let sweep: Vec<String> = fixed
        .iter()
        .map(|(w, r)| format!("{w}: {}", fmt_fps(*r)))
        .collect();
    out.notes.push(format!(
        "auto, {what}: fixed counts, frames/s {a:.1}-{b:.1} s: {}; workers=0: {}",
        sweep.join(", "),
        fmt_fps(median(auto))
    ));
    out.series.push(Series {
        chart: "auto-sweep",
        name: what,
        points: fixed.iter().map(|&(w, r)| (w as f64, r)).collect(),
    });
    PhaseResult { best, smallest }
}

/// The changing-delay run's time series for the plot: throughput and
/// workers of the (last) automatic run, and per phase the best fixed
/// throughput and the smallest count reaching 0.95x of it.
fn time_series(out: &mut Output, wl: &Workload, auto: &Trace, results: &[PhaseResult]) {
    let end = wl.phases.last().map_or(0.0, |p| p.end);
    let steps = |f: &dyn Fn(&PhaseResult) -> f64| -> Vec<(f64, f64)> {
        wl.phases
            .iter()
            .zip(results)
            .flat_map(|(p, r)| [(p.start, f(r)), (p.end, f(r))])
            .collect()
    };
    out.series.push(Series {
        chart: "auto-throughput",
        name: "workers=0 (250 ms window)".into(),
        points: auto.throughput_series(0.0, end),
    });
    out.series.push(Series {
        chart: "auto-throughput",
        name: "best fixed count".into(),
        points: steps(&|r| r.best),
    });
    out.series.push(Series {
        chart: "auto-workers",
        name: "workers=0".into(),
        points: auto
            .workers
            .iter()
            .map(|&(t, w)| (t, f64::from(w)))
            .collect(),
    });
    out.series.push(Series {
        chart: "auto-workers",
        name: format!("smallest fixed count at {ENOUGH}x best"),
        points: steps(&|r| r.smallest as f64),
    });
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let t = ctx.pick(
        Timing {
            warmup: 1.5,
            run: 2.5,
            cpu_warmup: 1.0,
            cpu_run: 4.0,
            cpu_rounds: 3,
            phase: 2.0,
            settle: SETTLE,
        },
        Timing {
            warmup: 0.3,
            run: 0.6,
            cpu_warmup: 0.3,
            cpu_run: 0.6,
            cpu_rounds: 1,
            phase: 0.5,
            settle: 0.2,
        },
    );
    let servers = [TestServer::start(), TestServer::start()];
    for s in &servers {
        s.set_latency(Duration::from_millis(20));
        s.set_capacity(Some(4));
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    for wl in workloads(ctx, &t, &urls.join(",")) {
        let needs = if wl.what.starts_with("gaussianblur") {
            Some(("filter", "filter=gaussianblur", "AYUV"))
        } else if wl.what.starts_with("analyze") {
            Some(("analyze", "", "I420"))
        } else {
            None
        };
        let traces = match needs
            .map_or(Ok(()), |(p, extra, format)| {
                require_processor(p, extra, format)
            })
            .and_then(|()| {
                // Time series are long: one round unless asked for more.
                let rounds = if wl.cpu { t.cpu_rounds } else { 1 };
                measure(&wl, ctx.rounds_given.unwrap_or(rounds))
            }) {
            Ok(traces) => traces,
            Err(Fail::Skipped(why)) => {
                out.skipped.push((format!("{NAME} {}", wl.what), why));
                continue;
            }
            Err(e) => return Err(e),
        };
        let results: Vec<PhaseResult> = wl
            .phases
            .iter()
            .map(|p| report_phase(ctx, out, &wl, p, &traces, t.settle))
            .collect();
        if wl.schedule.is_some()
            && let Some(auto) = traces[0].last()
        {
            time_series(out, &wl, auto, &results);
        }
    }
    out.notes.push(format!(
        "auto: {} round(s) ({} for CPU-bound work); each run {:.1} s ({:.1} s CPU-bound, \
         measured after {:.1} s) from the first frame into the element \
         (changing delay: phases of {:.1}, {:.1} and {:.1} s), then EOS; throughput over the steady part (between the outputs nearest its ends, so \
         bursts count whole), the same window for workers=0 and the fixed counts; workers used = mean of `stats` \
         `workers` read every 50 ms in that window; settling = from the load change to the \
         start of the first 250 ms window (50 ms steps) at >= {THROUGHPUT}x the phase's best \
         fixed throughput such that every window starting within {:.1} s after it (or up to \
         the phase's end) is too; gaussianblur sweeps up to 32 workers",
        ctx.rounds_given.unwrap_or(1),
        ctx.rounds_given.unwrap_or(t.cpu_rounds),
        t.run,
        t.cpu_run,
        t.cpu_warmup,
        CHANGING[0].1 * t.phase,
        CHANGING[1].1 * t.phase,
        CHANGING[2].1 * t.phase,
        t.settle
    ));
    Ok(())
}
