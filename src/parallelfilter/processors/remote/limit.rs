// SPDX-License-Identifier: MPL-2.0
//! Each server's concurrency limit: fixed (`max-requests-per-server=N`) or
//! adapted to the server's measured latency (`max-requests-per-server=0`).
//! Pure: no threads, no clock; the caller passes the times.
//!
//! The adaptive limit is a delay-gradient limiter in the family of TCP
//! Vegas (Brakmo & Peterson, 1995: compare the RTT with the base RTT, back
//! off before losses), Netflix concurrency-limits (`VegasLimit`,
//! `Gradient2Limit`: limit × no-load RTT / RTT plus a queue allowance) and
//! Envoy's adaptive concurrency filter (a gradient clamped to a range plus
//! headroom, a no-load RTT re-measured with the concurrency pinned low).
//! Here:
//!
//! - Successful requests are sampled in windows of one round: as many
//!   samples as the limit (at most [`WINDOW_SAMPLES`]), so the last ones
//!   met the queue the limit builds; a request started before the window
//!   did not run under the current limit and is left out. The window's
//!   mean RTT is the short-term RTT.
//! - The limit starts at [`INITIAL`]. The no-load RTT is the fastest
//!   request of the first window (the first request of a burst meets no
//!   queue of ours), then the lowest window mean seen. It is re-based to
//!   the current mean when the RTT stays high with the limit at 1: one
//!   request alone queues behind none of ours, so the server itself got
//!   slower (Envoy re-measures its minimum RTT with the concurrency pinned
//!   low for the same reason). A window after a decrease starts once our
//!   excess requests have left the server.
//! - At the end of a window, gradient = clamp(no-load / RTT, 0.5, 1).
//!   Near no-load (gradient ≥ [`NEAR`]) and with requests waiting for a
//!   full server, the limit grows by √limit (at least 1); above it, the
//!   limit in force becomes limit × gradient. Against a server serving K
//!   at once and queueing the rest (RTT ∝ concurrency / K) it so moves
//!   between K and about 1.2 K + √(1.2 K).
//! - A failed or timed-out request halves the limit, once per window
//!   (one multiplicative decrease per round trip, as TCP does on loss).
//! - The limit stays within 1 and the element's bound.

use std::time::{Duration, Instant};

/// Most successful requests per measuring window: enough for a mean at
/// any limit.
pub(super) const WINDOW_SAMPLES: usize = 256;
/// Lowest gradient still "near no-load": an RTT up to 1.2 × the no-load
/// RTT is jitter, not queueing.
pub(super) const NEAR: f64 = 1.0 / 1.2;
/// Lowest gradient: the limit at most halves per window.
const MIN_GRADIENT: f64 = 0.5;
/// The first limit, as Envoy's minimum concurrency: a few requests at
/// once from the start, so a slow server is not met one request at a
/// time.
pub(super) const INITIAL: usize = 4;
/// A failure's multiplicative decrease.
const FAILURE_DECREASE: f64 = 0.5;

/// Which samples a window takes.
#[derive(Debug, Default, Clone, Copy)]
enum Start {
    /// The first window: every sample counts.
    #[default]
    Any,
    /// Requests started before this ran under an older limit.
    From(Instant),
    /// After a decrease: from the first completion that finds no more in
    /// flight than the limit, as our excess still queued at the server
    /// would slow the next requests down.
    Drained,
}

/// A change of the limit in force, for logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Change {
    pub from: usize,
    pub to: usize,
}

#[derive(Debug)]
pub(super) enum Limit {
    Fixed(usize),
    Adaptive(Box<Adaptive>),
}

#[derive(Debug)]
pub(super) struct Adaptive {
    /// Fractional, so small steps add up.
    limit: f64,
    max: f64,
    /// Lowest window mean RTT seen (see the module doc for re-basing).
    noload: Option<Duration>,
    window: Window,
    /// A failure already cut the limit in this window.
    cut: bool,
}

#[derive(Debug, Default)]
struct Window {
    start: Start,
    samples: usize,
    total: Duration,
    /// The fastest sample.
    least: Option<Duration>,
    /// The server was full while requests waited for a slot.
    demand: bool,
}

impl Limit {
    /// An adaptive limit between 1 and `max`, starting at [`INITIAL`].
    pub(super) fn adaptive(max: usize) -> Self {
        let max = max.max(1);
        Limit::Adaptive(Box::new(Adaptive {
            limit: INITIAL.min(max) as f64,
            max: max as f64,
            noload: None,
            window: Window::default(),
            cut: false,
        }))
    }

    /// Requests the server may have in flight now; never 0.
    pub(super) fn current(&self) -> usize {
        match self {
            Limit::Fixed(n) => (*n).max(1),
            Limit::Adaptive(a) => a.current(),
        }
    }

    /// A request sent at `start` succeeded at `now`. `in_flight` counts it;
    /// `waiting`: requests wait for a slot on some server.
    pub(super) fn succeeded(
        &mut self,
        start: Instant,
        now: Instant,
        in_flight: usize,
        waiting: bool,
    ) -> Option<Change> {
        let Limit::Adaptive(a) = self else {
            return None;
        };
        let from = a.current();
        a.sample(start, now, in_flight, waiting);
        a.changed(from)
    }

    /// A request failed or timed out.
    pub(super) fn failed(&mut self) -> Option<Change> {
        let Limit::Adaptive(a) = self else {
            return None;
        };
        let from = a.current();
        if !a.cut {
            a.limit = (a.limit * FAILURE_DECREASE).max(1.0);
            a.cut = true;
            a.window = Window {
                start: Start::Drained,
                ..Window::default()
            };
        }
        a.changed(from)
    }
}

impl Adaptive {
    fn current(&self) -> usize {
        // In 1..=max by construction; the cast saturates anyway.
        self.limit.floor() as usize
    }

    fn changed(&self, from: usize) -> Option<Change> {
        let to = self.current();
        (to != from).then_some(Change { from, to })
    }

    fn sample(&mut self, start: Instant, now: Instant, in_flight: usize, waiting: bool) {
        let limit = self.current();
        match self.window.start {
            Start::Any => {}
            Start::From(w) if start >= w => {}
            Start::From(_) => return,
            Start::Drained if in_flight <= limit => {
                self.window.start = Start::From(now);
                return;
            }
            Start::Drained => return,
        }
        let w = &mut self.window;
        let rtt = now.saturating_duration_since(start);
        w.samples += 1;
        w.total += rtt;
        w.least = Some(w.least.map_or(rtt, |l| l.min(rtt)));
        w.demand |= waiting && in_flight >= limit;
        if w.samples >= limit.min(WINDOW_SAMPLES) {
            self.close_window(now);
        }
    }

    fn close_window(&mut self, now: Instant) {
        let w = std::mem::replace(
            &mut self.window,
            Window {
                start: Start::From(now),
                ..Window::default()
            },
        );
        self.cut = false;
        let Some(rtt) = w.total.checked_div(w.samples as u32) else {
            return;
        };
        // The first window may have queued at a server of less capacity
        // than the first limit: its mean is no no-load RTT.
        let noload = match self.noload {
            Some(n) => n.min(rtt),
            None => w.least.unwrap_or(rtt),
        };
        self.noload = Some(noload);
        let gradient = if rtt.is_zero() {
            1.0
        } else {
            (noload.as_secs_f64() / rtt.as_secs_f64()).clamp(MIN_GRADIENT, 1.0)
        };
        if gradient >= NEAR {
            if w.demand {
                self.limit += self.limit.sqrt().max(1.0);
            }
        } else if self.limit < 2.0 {
            // One request at a time and the RTT is still high: no queue
            // of ours makes it so, the server got slower. Measure from
            // here.
            self.noload = Some(rtt);
        } else {
            // The limit in force made that RTT, not its fraction.
            self.limit = self.limit.floor() * gradient;
            self.window.start = Start::Drained;
        }
        self.limit = self.limit.clamp(1.0, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};

    const MS: Duration = Duration::from_millis(1);

    /// A server serving at most `capacity` requests at once, each for
    /// `service`, the others queued in order; and a client with more
    /// requests than the limit lets through.
    struct Sim {
        now: Instant,
        service: Duration,
        capacity: usize,
        /// (done, sent) of requests being served.
        serving: BinaryHeap<Reverse<(Instant, Instant)>>,
        /// Sent times of requests queued at the server.
        queue: VecDeque<Instant>,
        in_flight: usize,
        limit: Limit,
    }

    impl Sim {
        fn new(capacity: usize, service: Duration, limit: Limit) -> Self {
            Sim {
                now: Instant::now(),
                service,
                capacity,
                serving: BinaryHeap::new(),
                queue: VecDeque::new(),
                in_flight: 0,
                limit,
            }
        }

        fn arrive(&mut self) {
            if self.serving.len() < self.capacity {
                self.serving
                    .push(Reverse((self.now + self.service, self.now)));
            } else {
                self.queue.push_back(self.now);
            }
        }

        /// Runs for `d`; the limit after each completion and the most in
        /// flight.
        fn run(&mut self, d: Duration) -> (Vec<usize>, usize) {
            let end = self.now + d;
            let mut limits = Vec::new();
            let mut most = 0;
            loop {
                while self.in_flight < self.limit.current() {
                    self.in_flight += 1;
                    self.arrive();
                }
                most = most.max(self.in_flight);
                let Some(Reverse((done, sent))) = self.serving.peek().copied() else {
                    break;
                };
                if done > end {
                    break;
                }
                self.serving.pop();
                self.now = done;
                self.limit.succeeded(sent, done, self.in_flight, true);
                self.in_flight -= 1;
                if let Some(s) = self.queue.pop_front() {
                    self.serving.push(Reverse((self.now + self.service, s)));
                }
                limits.push(self.limit.current());
            }
            self.now = end;
            (limits, most)
        }
    }

    /// An adaptive limit at `limit`.
    fn at(limit: usize, max: usize) -> Limit {
        let mut l = Limit::adaptive(max);
        if let Limit::Adaptive(a) = &mut l {
            a.limit = limit as f64;
        }
        l
    }

    fn settled(k: usize) -> std::ops::RangeInclusive<usize> {
        k..=(3 * k / 2 + 1)
    }

    #[test]
    fn settles_near_the_servers_capacity_within_a_second() {
        for k in [1, 2, 4, 8, 16] {
            let mut sim = Sim::new(k, 20 * MS, Limit::adaptive(64));
            sim.run(Duration::from_secs(1));
            let (limits, _) = sim.run(Duration::from_secs(2));
            let (lo, hi) = (limits.iter().min(), limits.iter().max());
            assert!(
                limits.iter().all(|l| settled(k).contains(l)),
                "K={k}: limits {lo:?}..{hi:?}"
            );
        }
    }

    #[test]
    fn grows_to_the_bound_on_a_server_without_a_capacity() {
        let mut sim = Sim::new(usize::MAX, 20 * MS, Limit::adaptive(32));
        sim.run(Duration::from_secs(1));
        assert_eq!(sim.limit.current(), 32);
    }

    #[test]
    fn a_slower_server_gets_a_lower_limit_then_a_recovered_one_a_higher() {
        let k = 4;
        let mut sim = Sim::new(k, 20 * MS, Limit::adaptive(64));
        let (before, _) = sim.run(Duration::from_secs(1));
        let before = *before.last().unwrap();
        sim.service = 100 * MS;
        let (slow, _) = sim.run(Duration::from_millis(400));
        let low = *slow.iter().min().unwrap();
        assert!(low < k && low < before, "slow: {slow:?}");
        sim.service = 20 * MS;
        let (fast, _) = sim.run(Duration::from_secs(1));
        let high = *fast.iter().max().unwrap();
        assert!(high > low, "recovered: {fast:?}");
        let (end, _) = sim.run(Duration::from_secs(1));
        assert!(end.iter().all(|l| settled(k).contains(l)), "end: {end:?}");
    }

    #[test]
    fn a_lasting_slowdown_is_relearnt_as_the_new_no_load_latency() {
        // Capacity unchanged, each request 5x slower: after the drop the
        // limit finds the capacity again.
        let k = 4;
        let mut sim = Sim::new(k, 20 * MS, Limit::adaptive(64));
        sim.run(Duration::from_secs(1));
        sim.service = 100 * MS;
        sim.run(Duration::from_secs(3));
        let (limits, _) = sim.run(Duration::from_secs(2));
        assert!(limits.iter().all(|l| settled(k).contains(l)), "{limits:?}");
    }

    #[test]
    fn failures_halve_once_per_window_and_never_reach_zero() {
        let t = Instant::now();
        let mut l = at(16, 64);
        assert_eq!(l.failed(), Some(Change { from: 16, to: 8 }));
        // Same window: the first cut stands for all.
        assert_eq!(l.failed(), None);
        assert_eq!(l.current(), 8);
        let mut now = t;
        for _ in 0..100 {
            // A success after the cut closes the window; then fail again.
            for _ in 0..l.current() {
                l.succeeded(now, now + 20 * MS, 1, false);
            }
            now += 20 * MS;
            l.failed();
            assert!(l.current() >= 1);
        }
        assert_eq!(l.current(), 1);
    }

    #[test]
    fn no_growth_without_requests_waiting() {
        let t = Instant::now();
        let mut l = at(4, 64);
        for i in 0..100 {
            let start = t + i * MS;
            assert_eq!(l.succeeded(start, start + 20 * MS, 4, false), None);
        }
        assert_eq!(l.current(), 4);
    }

    #[test]
    fn a_fixed_limit_never_moves() {
        let t = Instant::now();
        let mut l = Limit::Fixed(3);
        assert_eq!(l.failed(), None);
        assert_eq!(l.succeeded(t, t + Duration::from_secs(9), 3, true), None);
        assert_eq!(l.current(), 3);
        assert_eq!(Limit::Fixed(0).current(), 1);
    }

    #[test]
    fn the_bound_of_one_stays_one() {
        let mut sim = Sim::new(8, 20 * MS, Limit::adaptive(1));
        let (limits, most) = sim.run(Duration::from_secs(1));
        assert!(limits.iter().all(|&l| l == 1));
        assert_eq!(most, 1);
    }
}
