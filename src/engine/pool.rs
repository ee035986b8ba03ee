// SPDX-License-Identifier: MPL-2.0
//! The worker pool: tokio tasks that take queued frames, run the
//! processor and store the results, growing and shrinking with the
//! configured count.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::table::{Job, Table};
use super::work::{ProcessError, WorkCtx, panic_message, run_work};
use super::{Inner, lock};

/// The channel only ever holds one ticket per queued frame plus stale ones
/// from before a flush; queued frames are at most 65535.
pub(super) const CHANNEL_CAPACITY: usize = 4 * 65536;

/// Sent once per admitted frame: a worker holding one takes the oldest
/// queued frame. The payload stays in the table, so a flush or a leaky
/// drop frees it at once.
pub(super) struct Ticket {
    pub(super) generation: u64,
}

impl<T, M, E> Inner<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// Sets the worker count and starts the missing workers; the extra
    /// ones retire when they next look for work.
    pub(super) fn spawn_workers(self: &Arc<Self>, s: &mut Table<T, M, E>, workers: usize) {
        self.target.send_replace(workers);
        if s.alive.len() < workers {
            s.alive.resize(workers, false);
        }
        if s.counters.per_worker.len() < workers {
            s.counters.per_worker.resize(workers, 0);
        }
        for id in 0..workers {
            if !s.alive[id] {
                s.alive[id] = true;
                self.handle.spawn(worker(self.clone(), id));
            }
        }
    }
}

impl<T, M, E> Inner<T, M, E> {
    /// Leaves the pool if the worker count dropped below this id.
    fn retire(&self, id: usize) -> bool {
        // Checked again under the lock, which spawn_workers holds.
        if id < *self.target.borrow() {
            return false;
        }
        let mut s = lock(&self.table);
        if id >= *self.target.borrow() {
            s.alive[id] = false;
            return true;
        }
        false
    }

    fn take(&self, ticket: Ticket) -> Option<Job<T>> {
        lock(&self.table).take(ticket.generation)
    }

    fn complete(
        &self,
        pos: u64,
        generation: u64,
        worker: usize,
        result: Result<T, ProcessError>,
        processing_time: Duration,
    ) {
        let mut s = lock(&self.table);
        if generation != s.generation {
            // Flushed while processing: drop the result outside the lock.
            drop(s);
            drop(result);
            return;
        }
        let wake = s.complete(pos, worker, result, processing_time);
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }
}

async fn worker<T, M, E>(inner: Arc<Inner<T, M, E>>, id: usize)
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    let mut target = inner.target.subscribe();
    loop {
        if inner.retire(id) {
            return;
        }
        let ticket = tokio::select! {
            _ = target.changed() => continue,
            t = async { inner.rx.lock().await.recv().await } => t,
        };
        let Some(ticket) = ticket else {
            // Channel closed: the engine is gone.
            let mut s = lock(&inner.table);
            s.alive[id] = false;
            return;
        };
        let Some(job) = inner.take(ticket) else {
            // Stale ticket; a producer may be waiting for channel space.
            inner.room.notify_all();
            continue;
        };
        let (timeout, job_generation) = (job.timeout, job.generation);
        let ctx = WorkCtx {
            seq: job.seq,
            worker: id,
        };
        let started = Instant::now();
        let processor = inner.processor.clone();
        let frame = job.frame;
        let (outcome, abandoned) =
            match catch_unwind(AssertUnwindSafe(move || processor.process(frame, ctx))) {
                Ok(work) => run_work(work, timeout, &inner.generation, job_generation).await,
                Err(payload) => (
                    Some(Err(ProcessError::Panicked(panic_message(payload)))),
                    None,
                ),
            };
        if let Some(result) = outcome {
            inner.complete(job.pos, job_generation, id, result, started.elapsed());
        }
        if let Some(handle) = abandoned {
            // The frame timed out and its slot moved on; the closure still
            // runs, so this worker stays busy until it ends.
            let _ = handle.await;
        }
    }
}
