// SPDX-License-Identifier: MPL-2.0
//! Drives the automatic-workers [`Controller`] from the engine's
//! measurements: a task on the runtime samples the members' tables every window and
//! applies the controller's changes to the pool and the admission bound.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::control::{Change, Controller, Sample, WINDOW};
use super::pool::Pool;
use super::{cpu, lock};

/// The clocks a window is measured with.
struct Clocks {
    wall: Instant,
    process: Option<Duration>,
    machine: Option<(u64, u64)>,
}

impl Clocks {
    fn now() -> Self {
        Clocks {
            wall: Instant::now(),
            process: cpu::process(),
            machine: cpu::machine(),
        }
    }

    /// The window from `earlier` to this, without the engine's figures.
    fn since(&self, earlier: &Clocks) -> Sample {
        // Missing if a counter went back (iowait may, says proc(5)).
        let (machine_idle, machine_total) = match (self.machine, earlier.machine) {
            (Some((idle, total)), Some((idle0, total0))) => idle
                .checked_sub(idle0)
                .zip(total.checked_sub(total0))
                .unwrap_or((0, 0)),
            _ => (0, 0),
        };
        Sample {
            elapsed: self.wall - earlier.wall,
            process_cpu: match (self.process, earlier.process) {
                (Some(now), Some(then)) => now.saturating_sub(then),
                _ => Duration::ZERO,
            },
            machine_idle,
            machine_total,
            ..Sample::default()
        }
    }
}

/// Told of every change of the automatic count (for the element's log).
pub type Observer = Box<dyn Fn(Change) + Send + Sync>;

impl<T, M, E> Pool<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// Starts the controller at `initial`, or bounds the running one by
    /// `max`; with the controller's lock held (`control`), as every change
    /// of the count is made.
    pub(super) fn start_autoscale(
        self: &Arc<Self>,
        control: &mut Option<Controller>,
        initial: usize,
        max: usize,
    ) {
        if let Some(c) = control.as_mut() {
            if let Some(change) = c.set_max(max) {
                self.apply(change);
            }
            return;
        }
        *control = Some(Controller::new(initial, max, cpu::available()));
        self.measure_cpu.store(true, Ordering::Relaxed);
        // Completions from before, while fixed, are not this controller's.
        for member in self.members() {
            lock(&member.table).window = Sample::default();
        }
        // A ticker left from an earlier automatic spell (fixed and back
        // within one window) sees a newer id and ends.
        let id = self.ticker.fetch_add(1, Ordering::SeqCst) + 1;
        let me = Arc::downgrade(self);
        self.handle.spawn(async move {
            let mut ticks = tokio::time::interval(WINDOW);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = Clocks::now();
            loop {
                ticks.tick().await;
                let Some(pool) = Weak::upgrade(&me) else {
                    return;
                };
                let now = Clocks::now();
                if !pool.autoscale_tick(id, now.since(&last)) {
                    return;
                }
                last = now;
            }
        });
    }

    /// Fixed `workers`: the controller stops (its lock held).
    pub(super) fn stop_autoscale(&self, control: &mut Option<Controller>) {
        *control = None;
        self.measure_cpu.store(false, Ordering::Relaxed);
    }

    /// One sample; false once the controller is gone (fixed `workers` or
    /// the engine stopped).
    fn autoscale_tick(self: &Arc<Self>, id: u64, clocks: Sample) -> bool {
        if self.ticker.load(Ordering::SeqCst) != id {
            return false;
        }
        let mut control = lock(&self.control);
        if lock(&self.state).stopping() {
            *control = None;
            return false;
        }
        let Some(c) = control.as_mut() else {
            return false;
        };
        // The pool's completions, and the frames waiting in it: each
        // member's mean queue, summed.
        let (mut sample, mut waiting) = (Sample::default(), 0.0);
        for member in self.members() {
            let window = std::mem::take(&mut lock(&member.table).window);
            if window.completed > 0 {
                waiting += window.queued as f64 / window.completed as f64;
            }
            sample.add(&window);
        }
        sample.queued = (waiting * sample.completed as f64).round() as u64;
        if let Some(change) = c.sample(sample.with_clocks(clocks)) {
            self.apply(change);
        }
        true
    }

    /// Puts a new count into force: pool, admission bounds, stats; with
    /// the controller's lock held.
    fn apply(self: &Arc<Self>, change: Change) {
        self.set_workers(change.to);
        for member in self.members() {
            member.set_pool_workers(change.to);
            if let Some(observe) = lock(&member.observer).as_ref() {
                observe(change);
            }
        }
    }
}
