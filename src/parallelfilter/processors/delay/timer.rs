// SPDX-License-Identifier: MPL-2.0
//! A precise timer for the `delay` processor.
//!
//! tokio's timer wheel ticks every millisecond and rounds deadlines up, so a
//! 20 ms sleep takes about 21 ms, 5% more than asked for. Here one thread
//! per process waits on a condvar until the nearest deadline (nanosecond
//! timeouts) and completes the waiting futures: waits still hold no thread
//! each, and they end within tens of microseconds of their deadline.

use crate::engine::lock;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

/// Past this many entries the abandoned ones (flushed frames) are pruned,
/// so the heap stays bounded by the waits in progress.
const PRUNE_AT: usize = 4096;

/// The waits, nearest deadline on top.
struct Waits {
    heap: BinaryHeap<Entry>,
    /// Length at which the next prune runs: twice what the last one kept,
    /// so that many live waits do not mean a full scan on every sleep.
    prune_at: usize,
}

struct Entry {
    deadline: Instant,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: the heap's top is the nearest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other.deadline.cmp(&self.deadline)
    }
}

struct Timer {
    waits: Mutex<Waits>,
    changed: Condvar,
}

/// The process's timer thread, started on first use; `None` if no thread
/// could be started.
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            waits: Mutex::new(Waits {
                heap: BinaryHeap::new(),
                prune_at: PRUNE_AT,
            }),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("parallelfilter-timer".into())
            .spawn(move || run(timer))
            .ok()
            .map(|_| timer)
    })
}

fn run(timer: &Timer) {
    let mut waits = lock(&timer.waits);
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        while waits.heap.peek().is_some_and(|e| e.deadline <= now) {
            due.extend(waits.heap.pop());
        }
        if !due.is_empty() {
            // Woken unlocked: a wake may run the waiting task at once.
            drop(waits);
            for entry in due.drain(..) {
                let _ = entry.tx.send(());
            }
            waits = lock(&timer.waits);
            continue;
        }
        waits = match waits.heap.peek().map(|e| e.deadline - now) {
            Some(wait) => {
                timer
                    .changed
                    .wait_timeout(waits, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => timer
                .changed
                .wait(waits)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

/// Completes after `d`. Dropping the future abandons the wait.
pub fn sleep(d: Duration) -> BoxFuture<'static, ()> {
    let (Some(timer), Some(deadline)) = (timer(), Instant::now().checked_add(d)) else {
        return tokio::time::sleep(d).boxed();
    };
    let (tx, rx) = oneshot::channel();
    let mut waits = lock(&timer.waits);
    if waits.heap.len() >= waits.prune_at {
        waits.heap.retain(|e| !e.tx.is_closed());
        waits.prune_at = (2 * waits.heap.len()).max(PRUNE_AT);
    }
    let nearest = waits.heap.peek().is_none_or(|e| deadline < e.deadline);
    waits.heap.push(Entry { deadline, tx });
    drop(waits);
    if nearest {
        timer.changed.notify_one();
    }
    rx.map(|_| ()).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn sleeps_at_least_as_long_as_asked_in_any_order() {
        let rt = rt();
        let start = Instant::now();
        let ends = rt.block_on(async {
            let waits = [30u64, 10, 20, 0, 10].map(|ms| async move {
                sleep(Duration::from_millis(ms)).await;
                (ms, start.elapsed())
            });
            futures::future::join_all(waits).await
        });
        for (ms, end) in ends {
            assert!(end >= Duration::from_millis(ms), "{ms} ms ended at {end:?}");
        }
    }

    #[test]
    fn abandoned_waits_are_pruned() {
        let rt = rt();
        rt.block_on(async {
            for _ in 0..2 * PRUNE_AT {
                drop(sleep(Duration::from_secs(3600)));
            }
            sleep(Duration::from_millis(1)).await;
        });
        let len = timer().map_or(0, |t| lock(&t.waits).heap.len());
        assert!(len <= PRUNE_AT + 1, "{len} entries kept");
    }
}
