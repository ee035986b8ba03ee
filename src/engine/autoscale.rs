// SPDX-License-Identifier: MPL-2.0
//! Drives the automatic-workers [`Controller`] from the engine's
//! measurements: a task on the runtime samples the table every window and
//! applies the controller's changes to the pool and the admission bound.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::control::{Change, Controller, WINDOW};
use super::{Inner, lock};

/// Told of every change of the automatic count (for the element's log).
pub type Observer = Box<dyn Fn(Change) + Send + Sync>;

impl<T, M, E> Inner<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// Starts the controller at the current count, unless one runs.
    pub(super) fn start_autoscale(self: &Arc<Self>, initial: usize, max: usize) {
        let mut control = lock(&self.control);
        if let Some(c) = control.as_mut() {
            if let Some(change) = c.set_max(max) {
                drop(control);
                self.apply(change);
            }
            return;
        }
        *control = Some(Controller::new(initial, max));
        // A ticker left from an earlier automatic spell (fixed and back
        // within one window) sees a newer id and ends.
        let id = self.ticker.fetch_add(1, Ordering::SeqCst) + 1;
        drop(control);
        let me = Arc::downgrade(self);
        self.handle.spawn(async move {
            let mut ticks = tokio::time::interval(WINDOW);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = Instant::now();
            loop {
                ticks.tick().await;
                let Some(inner) = Weak::upgrade(&me) else {
                    return;
                };
                let now = Instant::now();
                if !inner.autoscale_tick(id, now - last) {
                    return;
                }
                last = now;
            }
        });
    }

    /// One sample; false once the controller is gone (fixed `workers` or
    /// the engine stopped).
    fn autoscale_tick(self: &Arc<Self>, id: u64, elapsed: std::time::Duration) -> bool {
        if self.ticker.load(Ordering::SeqCst) != id {
            return false;
        }
        if lock(&self.pool).stopping() {
            *lock(&self.control) = None;
            return false;
        }
        let mut sample = std::mem::take(&mut lock(&self.table).window);
        sample.elapsed = elapsed;
        let mut control = lock(&self.control);
        let Some(c) = control.as_mut() else {
            return false;
        };
        let change = c.sample(sample);
        drop(control);
        if let Some(change) = change {
            self.apply(change);
        }
        true
    }

    /// Puts a new count into force: pool, admission bound, stats.
    fn apply(self: &Arc<Self>, change: Change) {
        let mut s = lock(&self.table);
        if !s.config.automatic() {
            return;
        }
        s.workers = change.to;
        if s.counters.per_worker.len() < change.to {
            s.counters.per_worker.resize(change.to, 0);
        }
        drop(s);
        self.set_workers(change.to);
        // A higher bound admits blocked producers.
        self.room.notify_all();
        if let Some(observe) = lock(&self.observer).as_ref() {
            observe(change);
        }
    }
}
