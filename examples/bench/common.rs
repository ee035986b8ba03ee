// SPDX-License-Identifier: MPL-2.0
//! What every scenario shares: the run context, results, pipeline runs with
//! timestamps taken in a pad probe, medians and rates.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstparallel::plugin_register_static().map_err(|e| e.to_string())
}

/// Why a scenario produced no figures.
#[derive(Debug)]
pub enum Fail {
    /// Something the scenario needs is missing in this build or system.
    Skipped(String),
    Error(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Error(s)
    }
}

pub struct Ctx {
    pub quick: bool,
    pub rounds: usize,
    /// `--rounds` when given (a scenario of long runs defaults to fewer).
    pub rounds_given: Option<usize>,
    pub cores: usize,
    /// Measurements shared by scenarios (c and h measure the same sweep).
    cache: RefCell<HashMap<String, Vec<Vec<f64>>>>,
}

impl Ctx {
    pub fn new(quick: bool, rounds: Option<usize>) -> Self {
        Ctx {
            quick,
            rounds: rounds.unwrap_or(if quick { 1 } else { 5 }),
            rounds_given: rounds,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// `full` normally, `quick` in smoke mode.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    /// Runs `measure` on every variant once per round, variants alternating
    /// within each round; returns the samples per variant. Cached by `key`.
    pub fn alternate<V>(
        &self,
        key: &str,
        variants: &[V],
        mut measure: impl FnMut(&V) -> Result<f64, Fail>,
    ) -> Result<Vec<Vec<f64>>, Fail> {
        if let Some(samples) = self.cache.borrow().get(key) {
            return Ok(samples.clone());
        }
        let mut samples = vec![Vec::with_capacity(self.rounds); variants.len()];
        for round in 0..self.rounds {
            for (i, v) in variants.iter().enumerate() {
                samples[i].push(measure(v)?);
            }
            eprintln!("   round {}/{} done", round + 1, self.rounds);
        }
        self.cache
            .borrow_mut()
            .insert(key.to_string(), samples.clone());
        Ok(samples)
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    pub case: String,
    pub value: f64,
    pub unit: &'static str,
    /// What the value is compared with, and its value in the same unit.
    pub reference: Option<(String, f64)>,
    /// value / reference (or as the scenario defines it).
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub pass: Option<bool>,
    /// All samples, one per round.
    pub samples: Vec<f64>,
}

impl Row {
    pub fn new(
        scenario: &'static str,
        case: impl Into<String>,
        samples: &[f64],
        unit: &'static str,
    ) -> Self {
        Row {
            scenario,
            case: case.into(),
            value: median(samples),
            unit,
            reference: None,
            ratio: None,
            target: None,
            pass: None,
            samples: samples.to_vec(),
        }
    }

    pub fn reference(mut self, name: impl Into<String>, value: f64) -> Self {
        self.reference = Some((name.into(), value));
        self
    }

    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = Some(ratio);
        self
    }

    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Self {
        self.target = Some(target.into());
        self.pass = Some(pass);
        self
    }
}

/// A curve of the scaling plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Which chart: "latency" (frames/s) or "cpu" (speed-up).
    pub chart: &'static str,
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Default)]
pub struct Output {
    pub rows: Vec<Row>,
    pub series: Vec<Series>,
    pub notes: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Value at quantile `q` (0..1) of unsorted samples, nearest rank.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Buffers seen by a probe: when, and their PTS.
#[derive(Default)]
pub struct Seen {
    pub at: Vec<Instant>,
    pub pts: Vec<Option<gst::ClockTime>>,
}

impl Seen {
    /// Steady rate in frames/s between output `warmup` and the last output a
    /// whole number of `period`s later, so bursts of `period` frames (one per
    /// worker) do not bias it.
    pub fn rate(&self, warmup: usize, period: usize) -> f64 {
        let n = self.at.len();
        if n < 2 {
            return f64::NAN;
        }
        let a = warmup.min(n - 2);
        let period = period.max(1);
        let steps = (n - 1 - a) / period;
        let b = if steps == 0 {
            n - 1
        } else {
            a + steps * period
        };
        (b - a) as f64 / self.at[b].duration_since(self.at[a]).as_secs_f64()
    }

    /// Buffers whose PTS is lower than one seen before them.
    pub fn out_of_order(&self) -> usize {
        let mut max = None;
        let mut count = 0;
        for pts in self.pts.iter().flatten() {
            if max.is_some_and(|m| *pts < m) {
                count += 1;
            } else {
                max = Some(*pts);
            }
        }
        count
    }
}

/// Combined steady rate in frames/s of sinks fed at the same time: the
/// outputs of all of them while all run (from the latest `warmup`-th output
/// to the earliest last one), over that time.
pub fn combined_rate(seen: &[Seen], warmup: usize) -> f64 {
    if seen.is_empty() || seen.iter().any(|s| s.at.len() < 2) {
        return f64::NAN;
    }
    let start = seen.iter().map(|s| s.at[warmup.min(s.at.len() - 2)]).max();
    let end = seen.iter().filter_map(|s| s.at.last().copied()).min();
    let (Some(start), Some(end)) = (start, end) else {
        return f64::NAN;
    };
    if end <= start {
        return f64::NAN;
    }
    let outputs: usize = seen
        .iter()
        .map(|s| s.at.iter().filter(|&&t| t > start && t <= end).count())
        .sum();
    outputs as f64 / end.duration_since(start).as_secs_f64()
}

/// What a [`record`] probe saw (left empty in the probe's copy).
pub fn take(seen: Arc<Mutex<Seen>>) -> Seen {
    seen.lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

/// Records every buffer passing `pad`.
pub fn record(pad: &gst::Pad, capacity: usize) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen {
        at: Vec::with_capacity(capacity),
        pts: Vec::with_capacity(capacity),
    }));
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let now = Instant::now();
        if let Some(buffer) = info.buffer()
            && let Ok(mut s) = s.lock()
        {
            s.at.push(now);
            s.pts.push(buffer.pts());
        }
        gst::PadProbeReturn::Ok
    });
    seen
}

/// CPU time (user + system) used by this process so far, threads that
/// exited included; clock-tick resolution (10 ms), so for runs of seconds.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of this process's live threads named `name` (as
/// `/proc/self/task/*/comm` gives it), e.g. an in-process server's.
pub fn threads_cpu_time(name: &str) -> Option<Duration> {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if head.split_once('(').map(|(_, comm)| comm) != Some(name) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_millis(ticks * 10))
}

/// Context switches of this process so far, voluntary and involuntary,
/// threads that exited included (getrusage; /proc counts live threads only).
pub fn context_switches() -> Option<(u64, u64)> {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return None;
        }
        usage
    };
    Some((
        u64::try_from(usage.ru_nvcsw).ok()?,
        u64::try_from(usage.ru_nivcsw).ok()?,
    ))
}

/// Runs `desc` from PLAYING to EOS. `setup` gets the pipeline before it
/// starts (to add probes). A pipeline error or a timeout is an error,
/// unless it says a processor is not available: then the scenario is
/// skipped.
pub fn run_with(
    desc: &str,
    timeout: Duration,
    setup: impl FnOnce(&gst::Pipeline) -> Result<(), String>,
) -> Result<Duration, Fail> {
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| Fail::Error(format!("cannot build '{desc}': {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| Fail::Error(format!("'{desc}' is not a pipeline")))?;
    setup(&pipeline)?;
    let bus = pipeline
        .bus()
        .ok_or(Fail::Error("pipeline without bus".into()))?;
    let started = Instant::now();
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| Fail::Error(format!("'{desc}' cannot start")))?;
        let deadline = started + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = bus
                .timed_pop_filtered(
                    gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                )
                .ok_or_else(|| Fail::Error(format!("'{desc}' timed out after {timeout:?}")))?;
            match msg.view() {
                gst::MessageView::Eos(_) => return Ok(started.elapsed()),
                gst::MessageView::Error(err) => {
                    let text = format!("{} ({})", err.error(), err.debug().unwrap_or_default());
                    if text.contains("not available") {
                        return Err(Fail::Skipped(text));
                    }
                    return Err(Fail::Error(format!("'{desc}': {text}")));
                }
                _ => {}
            }
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Runs `desc`, recording the buffers reaching the sink pad of the element
/// named `sink`.
pub fn run_recorded(desc: &str, capacity: usize, timeout: Duration) -> Result<Seen, Fail> {
    let mut seen = None;
    run_with(desc, timeout, |p| {
        let pad = p
            .by_name("sink")
            .and_then(|e| e.static_pad("sink"))
            .ok_or("no element named 'sink' with a sink pad")?;
        seen = Some(record(&pad, capacity));
        Ok(())
    })?;
    Ok(seen.map(take).unwrap_or_default())
}

/// Skips the scenario if `processor` (with `extra` properties) cannot run
/// in this build: one frame through it.
pub fn require_processor(processor: &str, extra: &str, format: &str) -> Result<(), Fail> {
    let desc = format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format={format},width=64,height=64 ! \
         parallelfilter processor={processor} {extra} ! fakesink"
    );
    match run_with(&desc, Duration::from_secs(30), |_| Ok(())) {
        Ok(_) => Ok(()),
        Err(Fail::Skipped(_)) => Err(Fail::Skipped(format!(
            "processor {processor} not available"
        ))),
        Err(e) => Err(e),
    }
}

/// ns as a readable duration.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns.abs() >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns.abs() >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns.abs() >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// What a syncing sink saw, from probes on its pad: each frame's capture
/// time (PTS, s) and latency (running time at the pad minus PTS, ns), and
/// the frames it dropped as late, read at EOS (its counters are gone once
/// it stops).
#[derive(Clone, Default)]
pub struct SinkWatch {
    pub latency: Arc<Mutex<Vec<(f64, f64)>>>,
    pub late: Arc<Mutex<Option<u64>>>,
}

impl SinkWatch {
    pub fn attach(sink: &gst::Element) -> Result<Self, String> {
        let pad = sink.static_pad("sink").ok_or("no sink pad")?;
        let watch = SinkWatch::default();
        let (l, s) = (watch.latency.clone(), sink.clone());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(pts) = info.buffer().and_then(|b| b.pts())
                && let Some(now) = s.current_running_time()
                && let Ok(mut l) = l.lock()
            {
                let ns = now.nseconds() as f64 - pts.nseconds() as f64;
                l.push((pts.nseconds() as f64 / 1e9, ns));
            }
            gst::PadProbeReturn::Ok
        });
        let (late, s) = (watch.late.clone(), sink.clone());
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && e.type_() == gst::EventType::Eos
                && let Ok(mut late) = late.lock()
            {
                let stats = s.property::<gst::Structure>("stats");
                *late = Some(stats.get::<u64>("dropped").unwrap_or(0));
            }
            gst::PadProbeReturn::Ok
        });
        Ok(watch)
    }

    /// The latencies seen so far.
    pub fn latency(&self) -> Vec<(f64, f64)> {
        self.latency.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Frames dropped as late; `None` before EOS reached the sink.
    pub fn late(&self) -> Option<u64> {
        self.late.lock().ok().and_then(|l| *l)
    }
}
