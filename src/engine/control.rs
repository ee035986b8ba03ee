// SPDX-License-Identifier: MPL-2.0
//! Automatic workers (`workers=0`): a controller that sizes the pool from
//! what the engine measures, without threads or a clock of its own, so it
//! can be driven by a simulated workload in tests.
//!
//! Every window (about 100 ms, longer while few frames complete) it reads
//! three figures, all from Little's law on the window's completions:
//! `rtt`, the mean processing time; `busy`, the mean frames in processing
//! (processing time summed / window length); and `waiting`, the mean
//! frames queued for a worker, sampled at each completion. Frames wait
//! and every worker is busy: the pool limits the stream (*demand*).
//!
//! It is a gradient limiter, in the family of TCP Vegas and Netflix's
//! concurrency-limits (Vegas, Gradient2) and Envoy's adaptive concurrency
//! filter: throughput is `busy / rtt`, so as long as the processing time
//! does not grow with the concurrency, more workers mean proportionally
//! more throughput. The no-load time (`base`) is the processing time
//! measured at the lowest recent concurrency. With demand:
//!
//! - no measurement at a higher concurrency than the base yet: probe by
//!   doubling (latency-bound work reaches 256 from 2 in seven windows);
//! - the processing time stayed within 10 % of the base: double again;
//! - it grew (CPU-bound work past the cores, a saturated server): set the
//!   count to `count × base / rtt`, the concurrency at which the work
//!   still ran at no-load speed (the knee), never below half;
//! - back at the knee at no-load speed, grow by one, not double, and only
//!   double once two steps past the knee still run at no-load speed (the
//!   knee moved): so the count moves between the knee and one above it
//!   (2 and 3 for CPU-bound work on 2 cores) instead of sitting one above
//!   it, and never swings by a factor of two;
//! - every 10 windows in that state, step down by a quarter to measure the
//!   base again, so a changed workload is noticed (like Gradient2's and
//!   Envoy's periodic minimum-RTT probes); if the work still runs at
//!   no-load speed there, the count goes back to where it was, not double
//!   (CPU-bound work would otherwise visit 2 × cores after every probe).
//!
//! CPU-bound work does not grow past the CPUs while they are full: when
//! blocking work runs on a CPU for at least 30 % of its processing time
//! and the process uses 90 % of the CPUs it may, or the machine 90 % of
//! all, the count grows at most to the CPUs' count (the .NET thread pool
//! adds no thread above 95 % CPU either). One more worker would only
//! share the CPUs, and trying it costs CPU-bound work a window in two.
//!
//! A processing time that grew more than twice what the count's change
//! explains (work slows at most in proportion to the concurrency) is the
//! work itself changing (5 ms frames become 50 ms ones): the base is
//! measured anew at the current count instead of cutting it.
//!
//! Without demand the count shrinks towards what is used, `busy × 1.25 +
//! 1`, never by more than half per window, and never grows. Unlike the .NET thread pool's
//! hill climbing, which needs several windows per step to see a
//! throughput change through the noise, the processing time tells in one
//! window whether more concurrency pays. docs/performance.md#automatic-workers
//! has the figure.

use std::time::Duration;

/// Shortest window the controller decides on.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Longest window: decided on even with few completions.
const MAX_WINDOW: Duration = Duration::from_secs(1);
/// Completions a window needs before its end, unless `MAX_WINDOW` passed.
const MIN_COMPLETIONS: u64 = 8;
/// Processing time within this factor of the base counts as no-load.
const FLAT: f64 = 1.1;
/// Windows in the gradient regime before the base is measured again.
const REPROBE: u32 = 10;
/// A processing time this many times what the count explains: the work
/// changed (a slower delay, another model), not the concurrency.
const CHANGED: f64 = 2.0;
/// Processing on a CPU for at least this share of its time is CPU-bound
/// (wait-bound work: a few %; CPU-bound work sharing its CPUs: 0.4 and
/// up).
const CPU_BOUND: f64 = 0.3;
/// The process using this share of its CPUs, or the machine this share
/// of all, leaves none for another worker.
const CPUS_FULL: f64 = 0.9;

/// What the engine measured since the last sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub elapsed: Duration,
    /// Frames whose processing ended.
    pub completed: u64,
    /// Their processing times, summed.
    pub processing: Duration,
    /// Frames queued for a worker, summed over those completions.
    pub queued: u64,
    /// CPU time the completed blocking work spent on its threads.
    pub cpu: Duration,
    /// CPU time of the whole process.
    pub process_cpu: Duration,
    /// The machine's idle and total CPU time, in clock ticks (0 and 0:
    /// unknown).
    pub machine_idle: u64,
    pub machine_total: u64,
}

impl Sample {
    /// The table's figures (completions) with the clocks' (times).
    pub fn with_clocks(self, clocks: Sample) -> Sample {
        Sample {
            completed: self.completed,
            processing: self.processing,
            queued: self.queued,
            cpu: self.cpu,
            ..clocks
        }
    }

    pub fn add(&mut self, other: &Sample) {
        self.elapsed += other.elapsed;
        self.completed += other.completed;
        self.processing += other.processing;
        self.queued += other.queued;
        self.cpu += other.cpu;
        self.process_cpu += other.process_cpu;
        self.machine_idle += other.machine_idle;
        self.machine_total += other.machine_total;
    }
}

/// Why the count changed, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Frames wait and the processing time does not grow with workers.
    Growing,
    /// The processing time grew with the workers: more would not help.
    Saturated,
    /// Measuring the no-load processing time again.
    Probing,
    /// Workers sit idle.
    Idle,
}

/// A change of the worker count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    pub from: usize,
    pub to: usize,
    pub reason: Reason,
    /// The window's mean processing time and frames completed per second.
    pub rtt: Duration,
    pub throughput: f64,
}

#[derive(Debug)]
pub struct Controller {
    workers: usize,
    max: usize,
    /// CPUs the process may use.
    cpus: f64,
    window: Sample,
    /// No-load processing time (s) and the concurrency it was measured at.
    base: Option<(f64, f64)>,
    /// Windows spent limited by a grown processing time.
    saturated: u32,
    /// The last window's count and processing time (s).
    last: Option<(usize, f64)>,
    /// The count a probe stepped down from, until the probe's window.
    probed_from: Option<usize>,
    /// The count where the processing time last started to grow.
    knee: Option<usize>,
}

impl Controller {
    /// Starts at `initial`, bounded by 1 and `max`, in a process that may
    /// use `cpus` CPUs.
    pub fn new(initial: usize, max: usize, cpus: usize) -> Self {
        let max = max.max(1);
        Controller {
            workers: initial.clamp(1, max),
            max,
            cpus: cpus.max(1) as f64,
            window: Sample::default(),
            base: None,
            saturated: 0,
            last: None,
            probed_from: None,
            knee: None,
        }
    }

    #[cfg(test)]
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A new upper bound; the count follows at once if above it.
    pub fn set_max(&mut self, max: usize) -> Option<Change> {
        self.max = max.max(1);
        let from = self.workers;
        (from > self.max).then(|| {
            self.workers = self.max;
            Change {
                from,
                to: self.max,
                reason: Reason::Idle,
                rtt: Duration::ZERO,
                throughput: 0.0,
            }
        })
    }

    /// Adds what was measured since the last call; a change of the count
    /// when a window ends with one.
    pub fn sample(&mut self, sample: Sample) -> Option<Change> {
        self.window.add(&sample);
        let w = self.window;
        if w.elapsed < WINDOW || (w.completed < MIN_COMPLETIONS && w.elapsed < MAX_WINDOW) {
            return None;
        }
        self.window = Sample::default();
        if w.completed == 0 {
            // Frames take longer than a window, or nothing flows: no
            // figure to act on.
            return None;
        }
        let elapsed = w.elapsed.as_secs_f64();
        let rtt = w.processing.as_secs_f64() / w.completed as f64;
        let busy = w.processing.as_secs_f64() / elapsed;
        let waiting = w.queued as f64 / w.completed as f64;
        let n = self.workers as f64;
        // More workers make a frame take at most proportionally longer
        // (CPUs or a server shared by more): a bigger jump is the work
        // itself changing, and its no-load time is measured anew.
        let changed = self
            .last
            .is_some_and(|(m, last)| rtt > CHANGED * last * (n / m as f64).max(1.0));
        self.last = Some((self.workers, rtt));
        if changed {
            self.base = Some((rtt, busy));
            self.saturated = 0;
            self.knee = None;
            return None;
        }
        // 0.7: a window just after doubling has had the new count for half its length.
        let demand = waiting >= 0.5 && busy >= 0.7 * n;
        // The CPUs are full and the work needs them: another worker could
        // only take a share of them from the others.
        let cpu = w.cpu.as_secs_f64();
        let machine_full = w.machine_total > 0
            && w.machine_idle as f64 <= (1.0 - CPUS_FULL) * w.machine_total as f64;
        let cpus_full = cpu > 0.0
            && cpu >= CPU_BOUND * w.processing.as_secs_f64()
            && (w.process_cpu.as_secs_f64() >= CPUS_FULL * self.cpus * elapsed || machine_full);
        let (to, reason) = if demand {
            let (to, reason) = self.with_demand(rtt, busy);
            // Back up to the CPUs' count (after a cut or a probe) but not
            // past it.
            let cap = self.workers.max(self.cpus as usize);
            (if cpus_full { to.min(cap) } else { to }, reason)
        } else {
            self.saturated = 0;
            self.probed_from = None;
            self.knee = None;
            if self.base.is_some_and(|(_, at)| busy <= at * 1.1) {
                self.base = Some((rtt, busy));
            }
            // Never up: without demand more workers would idle too.
            let used = (busy * 1.25).ceil() as usize + 1;
            (
                used.max(self.workers.div_ceil(2)).min(self.workers),
                Reason::Idle,
            )
        };
        let to = to.clamp(1, self.max);
        let from = self.workers;
        if to == from {
            return None;
        }
        self.workers = to;
        Some(Change {
            from,
            to,
            reason,
            rtt: Duration::from_secs_f64(rtt),
            throughput: w.completed as f64 / elapsed,
        })
    }

    fn with_demand(&mut self, rtt: f64, busy: f64) -> (usize, Reason) {
        let n = self.workers;
        // A slower no-load time measured at a lower concurrency: the work
        // changed (5 ms frames became 50 ms ones over a few windows), and
        // a knee found against the old one means nothing.
        if self
            .base
            .is_some_and(|(base, at)| busy <= at * 1.1 && rtt > base * FLAT)
        {
            self.knee = None;
        }
        // Growing right after a probe: back to the count probed from.
        // Near a known knee: one step; two past it, the knee moved.
        let step = match self.knee {
            Some(k) if n < k + 2 => n + 1,
            _ => {
                self.knee = None;
                n * 2
            }
        };
        let grow = self
            .probed_from
            .take()
            .filter(|&from| from > n)
            .unwrap_or(step);
        let Some((base, at)) = self.base else {
            self.base = Some((rtt, busy));
            return (grow, Reason::Growing);
        };
        if busy <= at * 1.1 || rtt < base {
            // At no higher a concurrency, or faster: the no-load time now.
            self.base = Some((rtt, busy));
            if busy <= at * 1.1 {
                self.saturated = 0;
                return (grow, Reason::Growing);
            }
        }
        let base = base.min(rtt);
        if rtt <= base * FLAT {
            self.saturated = 0;
            return (grow, Reason::Growing);
        }
        self.saturated += 1;
        if self.saturated >= REPROBE {
            self.saturated = 0;
            self.probed_from = Some(n);
            return ((n * 3 / 4).max(1), Reason::Probing);
        }
        let gradient = base / rtt;
        let to = ((n as f64 * gradient).round() as usize).max(n.div_ceil(2));
        self.knee = Some(to);
        (to, Reason::Saturated)
    }
}

#[cfg(test)]
mod tests;
