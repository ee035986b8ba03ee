// SPDX-License-Identifier: MPL-2.0
//! The worker pool: OS threads that take tickets from the bounded channel
//! and run each frame's work where they took it.
//!
//! One thread at a time, the leader, waits on the channel. A frame whose
//! work is blocking (CPU-bound) runs on the thread that received it, and
//! its result goes straight into the table for the consumer: upstream →
//! worker → consumer, two hand-offs. Before running it, the leader passes
//! the channel to an idle thread, starting one if none is idle and fewer
//! than `workers` exist, so threads never outnumber `workers` and are only
//! started when blocking work needs them. Ready work completes inline and
//! the leader keeps the channel. Asynchronous work becomes a task on the
//! runtime, which waits without holding a thread; the leader keeps the
//! channel. `workers` bounds the frames in processing of every kind.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use super::table::Take;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;

use super::table::{Job, Table};
use super::work::{ProcessError, Work, WorkCtx, panic_message};
use super::{Inner, cpu, lock};

mod batch;

/// The channel only ever holds one ticket per queued frame plus stale ones
/// from before a flush, and wake-ups; queued frames are at most 65535.
pub(super) const CHANNEL_CAPACITY: usize = 4 * 65536;

/// Generation of a ticket that only wakes the leader (to retire).
const WAKE: u64 = u64::MAX;

/// Sent once per admitted frame: the worker receiving it takes the oldest
/// queued frame. The payload stays in the table, so a flush or a leaky
/// drop frees it at once.
pub(super) struct Ticket {
    pub(super) generation: u64,
}

impl Ticket {
    pub(super) fn wake() -> Self {
        Ticket { generation: WAKE }
    }
}

/// The pool's bookkeeping, under its own lock (never held with the
/// table's).
#[derive(Debug, Default)]
pub(super) struct PoolState {
    /// `workers`: frames in processing at most, and threads at most.
    pub(super) target: usize,
    /// Worker threads alive.
    threads: usize,
    /// Threads waiting for a turn as leader.
    idle: usize,
    /// A thread is waiting on the channel.
    leader: bool,
    /// Frames in processing: on a thread, in a task, or timed out while
    /// their blocking work still runs.
    busy: usize,
    /// Worker ids in use, for `WorkCtx::worker` and per-worker stats.
    ids: Vec<bool>,
    /// The engine is gone: every thread leaves.
    shutdown: bool,
}

impl PoolState {
    /// The lowest free worker id.
    fn take_id(&mut self) -> usize {
        match self.ids.iter().position(|used| !used) {
            Some(id) => {
                self.ids[id] = true;
                id
            }
            None => {
                self.ids.push(true);
                self.ids.len() - 1
            }
        }
    }

    fn release(&mut self, id: usize) {
        self.busy -= 1;
        if let Some(used) = self.ids.get_mut(id) {
            *used = false;
        }
    }

    /// Threads a running pool has: `target`, or none once shut down.
    fn wanted_threads(&self) -> usize {
        if self.shutdown { 0 } else { self.target.max(1) }
    }

    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    pub(super) fn stopping(&self) -> bool {
        self.shutdown
    }
}

impl<T, M, E> Inner<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// Sets the worker count: a first thread if there is none; extra
    /// threads leave when they next look for work.
    pub(super) fn set_workers(self: &Arc<Self>, workers: usize) {
        let mut p = lock(&self.pool);
        p.target = workers.max(1);
        let start = p.threads == 0 && !p.shutdown;
        if start {
            p.threads += 1;
        }
        drop(p);
        // Idle threads above the count leave; one may lead if none does.
        self.pool_changed.notify_all();
        if start {
            self.start_thread();
        }
    }

    /// A leader waiting for a batch to fill looks again: an item closed
    /// it, or a flush emptied it.
    pub(super) fn wake_filling_leader(&self) {
        if self.processor.batches() {
            let _ = self.tx.try_send(Ticket::wake());
        }
    }

    /// Every thread leaves: the leader is woken by a ticket.
    pub(super) fn stop_workers(&self) {
        lock(&self.pool).shutdown = true;
        self.pool_changed.notify_all();
        let _ = self.tx.try_send(Ticket::wake());
    }

    fn start_thread(self: &Arc<Self>) {
        let inner = self.clone();
        let started = std::thread::Builder::new()
            .name("parallelfilter-worker".into())
            .spawn(move || inner.worker_thread());
        if started.is_err() {
            // Counted as alive above: the pool goes on with the others.
            lock(&self.pool).threads -= 1;
        }
    }

    fn worker_thread(self: Arc<Self>) {
        // Processors may build timers and I/O futures when called.
        let _runtime = self.handle.enter();
        // The consumer was left asleep for a burst of ready frames.
        let mut deferred = false;
        let mut p = lock(&self.pool);
        loop {
            if p.threads > p.wanted_threads() {
                // Nobody waits for this: a leaving thread is never the
                // leader, and it frees no capacity.
                p.threads -= 1;
                return;
            }
            if p.leader || p.busy >= p.target {
                if std::mem::take(&mut deferred) {
                    drop(p);
                    self.nudge_consumer();
                    p = lock(&self.pool);
                    continue;
                }
                p.idle += 1;
                p = self
                    .pool_changed
                    .wait(p)
                    .unwrap_or_else(PoisonError::into_inner);
                p.idle -= 1;
                continue;
            }
            p.leader = true;
            drop(p);
            let ticket = {
                let mut rx = lock(&self.rx);
                match rx.try_recv() {
                    Ok(ticket) => Some(ticket),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if std::mem::take(&mut deferred) {
                            self.nudge_consumer();
                        }
                        rx.blocking_recv()
                    }
                }
            };
            // Still the leader: a batch fills from the channel.
            let batch = match &ticket {
                Some(t) if t.generation != WAKE && self.processor.batches() => {
                    self.fill_batch(t.generation)
                }
                _ => None,
            };
            p = lock(&self.pool);
            p.leader = false;
            let Some(ticket) = ticket else {
                // The channel closed: the engine is gone.
                p.shutdown = true;
                continue;
            };
            if ticket.generation == WAKE {
                continue;
            }
            let taken = batch.unwrap_or_else(|| {
                let mut s = lock(&self.table);
                let taken = s.take(ticket.generation);
                if matches!(taken, Take::Job(_)) {
                    self.running.fetch_add(1, Ordering::AcqRel);
                }
                taken
            });
            let job = match taken {
                Take::Job(job) => job,
                Take::Batch(batch) => {
                    if batch.wake {
                        self.ready.notify_one();
                    }
                    p.busy += 1;
                    let id = p.take_id();
                    drop(p);
                    if std::mem::take(&mut deferred) {
                        self.nudge_consumer();
                    }
                    self.run_batch(batch, id);
                    p = lock(&self.pool);
                    continue;
                }
                Take::Passed(wake) => {
                    // Late: it leaves unprocessed; its place in the bound
                    // is free for a frame to process.
                    if wake {
                        self.ready.notify_one();
                    }
                    self.room.notify_all();
                    continue;
                }
                Take::Nothing => {
                    // Stale ticket; a producer may be waiting for channel space.
                    self.room.notify_all();
                    continue;
                }
            };
            p.busy += 1;
            let id = p.take_id();
            drop(p);
            deferred = self.run_job(job, id, deferred);
            p = lock(&self.pool);
        }
    }

    /// Async work of worker `id` ended.
    fn release_async(&self, id: usize) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        let mut p = lock(&self.pool);
        p.release(id);
        // A thread may wait for a free worker to lead.
        let wake = !p.leader && p.idle > 0;
        drop(p);
        if wake {
            self.pool_changed.notify_one();
        }
        self.worker_freed();
    }

    /// Whether the work itself ended before its timer, which is then
    /// cancelled (no timer: always).
    fn first(timer: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)>) -> bool {
        timer.is_none_or(|(done, handle)| {
            handle.abort();
            !done.swap(true, Ordering::AcqRel)
        })
    }

    /// The worker `id` took is free again.
    fn release_worker(&self, id: usize) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        lock(&self.pool).release(id);
        self.worker_freed();
    }

    /// With `leaky=pass`, a freed worker may take the newest frame let
    /// through just before (see `Table::process_newest_passed`).
    pub(super) fn worker_freed(&self) {
        if !self.leaky_pass.load(Ordering::Relaxed) {
            return;
        }
        let mut s = lock(&self.table);
        if s.process_newest_passed(self.running.load(Ordering::Acquire)) {
            // Capacity is only checked under the lock, where this sends.
            let _ = self.tx.try_send(Ticket {
                generation: s.generation,
            });
        }
    }

    /// Wakes the consumer if something is releasable.
    fn nudge_consumer(&self) {
        if lock(&self.table).wake_consumer(false) {
            self.ready.notify_one();
        }
    }

    /// Runs one frame's work on this thread, or hands it to the runtime;
    /// true if the consumer was left asleep (`deferred` carries the last
    /// job's).
    fn run_job(self: &Arc<Self>, job: Job<T>, id: usize, deferred: bool) -> bool {
        let ctx = WorkCtx {
            seq: job.seq,
            worker: id,
        };
        let Job {
            pos,
            generation,
            frame,
            timeout,
            ..
        } = job;
        let started = Instant::now();
        let processor = self.processor.clone();
        let work = catch_unwind(AssertUnwindSafe(move || processor.process(frame, ctx)));
        if deferred && !matches!(work, Ok(Work::Ready(_))) {
            // Not a burst any more: the results so far go out now.
            self.nudge_consumer();
        }
        match work {
            Err(payload) => {
                let err = ProcessError::Panicked(panic_message(payload));
                self.complete(pos, generation, id, Err(err), started.elapsed(), false);
                self.release_worker(id);
            }
            Ok(Work::Ready(r)) => {
                let r = r.map_err(ProcessError::Failed);
                let woke = self.complete(pos, generation, id, r, started.elapsed(), true);
                self.release_worker(id);
                return !woke;
            }
            Ok(Work::Blocking(f)) => {
                self.hand_over_channel();
                let timer = timeout.map(|d| {
                    self.time_out(started, d, move |inner, err| {
                        inner.complete(pos, generation, id, Err(err), started.elapsed(), false);
                    })
                });
                let (r, cpu) = self.counting_cpu(|| catch_unwind(AssertUnwindSafe(f)));
                let r = match r {
                    Ok(r) => r.map_err(ProcessError::Failed),
                    Err(payload) => Err(ProcessError::Panicked(panic_message(payload))),
                };
                if Self::first(timer) {
                    let elapsed = started.elapsed();
                    self.complete_on_cpu(pos, generation, id, r, elapsed, cpu);
                }
                // Only now: a timed-out closure kept its worker busy.
                self.release_worker(id);
            }
            Ok(Work::Async(fut)) => {
                let inner = self.clone();
                self.handle.spawn(async move {
                    if let Some(r) = inner.run_async(fut, timeout, generation).await {
                        inner.complete(pos, generation, id, r, started.elapsed(), false);
                    }
                    inner.release_async(id);
                });
            }
        }
        false
    }

    /// Runs blocking work, and while automatic measures its CPU time on
    /// this thread, for the controller (zero otherwise).
    pub(super) fn counting_cpu<R>(&self, work: impl FnOnce() -> R) -> (R, Duration) {
        let before = if self.measure_cpu.load(Ordering::Relaxed) {
            cpu::thread()
        } else {
            None
        };
        let r = work();
        let cpu = match before {
            Some(before) => {
                cpu::thread().map_or(Duration::ZERO, |after| after.saturating_sub(before))
            }
            None => Duration::ZERO,
        };
        (r, cpu)
    }

    /// Before blocking work: another thread waits on the channel, so the
    /// next frame does not wait for this one.
    fn hand_over_channel(self: &Arc<Self>) {
        let mut p = lock(&self.pool);
        if p.busy >= p.target {
            return;
        }
        if p.idle > 0 {
            drop(p);
            self.pool_changed.notify_one();
        } else if p.threads < p.wanted_threads() {
            p.threads += 1;
            drop(p);
            self.start_thread();
        }
    }

    /// Calls `expire` with a timeout at `d` unless the blocking work ends
    /// first; the flag says which came first.
    fn time_out(
        self: &Arc<Self>,
        started: Instant,
        d: Duration,
        expire: impl FnOnce(&Arc<Self>, ProcessError) + Send + 'static,
    ) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let inner = Arc::downgrade(self);
        let handle = self.handle.spawn(async move {
            tokio::time::sleep_until((started + d).into()).await;
            if let Some(inner) = inner.upgrade()
                && !flag.swap(true, Ordering::AcqRel)
            {
                expire(&inner, ProcessError::TimedOut(d));
            }
        });
        (done, handle)
    }

    /// Awaits asynchronous work with the timeout, catching panics; `None`
    /// if a flush overtook it (the future is dropped at once).
    async fn run_async<R>(
        &self,
        fut: futures::future::BoxFuture<'static, Result<R, String>>,
        timeout: Option<Duration>,
        job_generation: u64,
    ) -> Option<Result<R, ProcessError>> {
        // Subscribed only here: a flush since the job was taken is seen at
        // once, as wait_for checks the current value first.
        let mut generation = self.generation.subscribe();
        let fut = AssertUnwindSafe(fut).catch_unwind();
        let fut = async move {
            match timeout {
                Some(d) => tokio::time::timeout(d, fut)
                    .await
                    .map_err(|_| ProcessError::TimedOut(d)),
                None => Ok(fut.await),
            }
        };
        tokio::select! {
            r = fut => Some(match r {
                Ok(Ok(r)) => r.map_err(ProcessError::Failed),
                Ok(Err(payload)) => Err(ProcessError::Panicked(panic_message(payload))),
                Err(e) => Err(e),
            }),
            _ = generation.wait_for(|g| *g != job_generation) => None,
        }
    }

    /// Stores a result; `more_soon`: this thread completes the next queued
    /// frame at once, so the consumer may wait for a burst.
    fn complete(
        &self,
        pos: u64,
        generation: u64,
        worker: usize,
        result: Result<T, ProcessError>,
        processing_time: Duration,
        more_soon: bool,
    ) -> bool {
        self.store(generation, |s| {
            s.complete_on_cpu(
                pos,
                worker,
                result,
                processing_time,
                Duration::ZERO,
                more_soon,
            )
        })
        .is_none_or(|wake| wake || !more_soon)
    }

    /// Stores blocking work's result, with the CPU time it took.
    fn complete_on_cpu(
        &self,
        pos: u64,
        generation: u64,
        worker: usize,
        result: Result<T, ProcessError>,
        processing_time: Duration,
        cpu: Duration,
    ) {
        self.store(generation, |s| {
            s.complete_on_cpu(pos, worker, result, processing_time, cpu, false)
        });
    }

    /// Runs `store` on the table unless a flush came since the work was
    /// taken, and wakes the consumer if it says so; `None` if flushed.
    fn store(
        &self,
        generation: u64,
        store: impl FnOnce(&mut Table<T, M, E>) -> bool,
    ) -> Option<bool> {
        let mut s = lock(&self.table);
        if generation != s.generation {
            // Flushed while processing: the result is dropped outside the
            // lock (with `store`).
            drop(s);
            drop(store);
            return None;
        }
        let wake = store(&mut s);
        drop(s);
        if wake {
            self.ready.notify_one();
        }
        Some(wake)
    }
}
