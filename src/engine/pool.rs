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
//!
//! The pool serves its members, the engines whose tickets it carries: a
//! ticket names its member, and the frame is taken from that member's
//! table and its result goes back there.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::control::Controller;
use super::table::{Job, Table, Take};
use super::work::{ProcessError, Work, WorkCtx, panic_message};
use super::{ENGINES_GONE, Inner, LIVE_ENGINES, cpu, lock};

mod batch;

/// The channel only ever holds one ticket per queued frame plus stale ones
/// from before a flush, and wake-ups; queued frames are at most 65535.
pub(super) const CHANNEL_CAPACITY: usize = 4 * 65536;

/// Sent once per admitted frame: the worker receiving it takes the oldest
/// queued frame of the member. The payload stays in the member's table, so
/// a flush or a leaky drop frees it at once.
pub(super) struct Ticket<T, M, E> {
    /// None: only wakes the leader (to retire, or to look at a batch again).
    pub(super) member: Option<Weak<Inner<T, M, E>>>,
    pub(super) generation: u64,
}

impl<T, M, E> Ticket<T, M, E> {
    pub(super) fn wake() -> Self {
        Ticket {
            member: None,
            generation: 0,
        }
    }
}

/// The worker threads and what they share: the channel, the count and the
/// automatic-workers controller. Its members are the engines whose frames
/// it processes.
pub(super) struct Pool<T, M, E> {
    pub(super) tx: mpsc::Sender<Ticket<T, M, E>>,
    /// Only the leading worker thread takes it.
    pub(super) inbox: Mutex<Inbox<T, M, E>>,
    /// Lock order: after `control`, before a member's table.
    pub(super) state: Mutex<PoolState>,
    /// Worker threads waiting for a turn.
    changed: Condvar,
    pub(super) handle: Handle,
    /// The automatic-workers controller, while `workers` is 0.
    pub(super) control: Mutex<Option<Controller>>,
    /// Id of the one ticker task that may drive `control`.
    pub(super) ticker: AtomicU64,
    /// While automatic: blocking work's CPU time is measured.
    pub(super) measure_cpu: AtomicBool,
    pub(super) members: Mutex<Vec<Weak<Inner<T, M, E>>>>,
}

/// The receiving end of the channel, and tickets a filling batch took out
/// of turn, which go before the channel's: another member's that ended
/// the batch, and this member's own that the batch did not use.
pub(super) struct Inbox<T, M, E> {
    pub(super) rx: mpsc::Receiver<Ticket<T, M, E>>,
    pub(super) held: VecDeque<Ticket<T, M, E>>,
}

impl<T, M, E> Drop for Pool<T, M, E> {
    fn drop(&mut self) {
        let mut live = lock(&LIVE_ENGINES);
        *live -= 1;
        if *live == 0 {
            ENGINES_GONE.notify_all();
        }
    }
}

/// The pool's bookkeeping, under its own lock (taken before a member's
/// table, never after).
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

impl<T, M, E> Pool<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// A pool without threads; the first comes with `set_workers`.
    pub(super) fn new(handle: Handle) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        *lock(&LIVE_ENGINES) += 1;
        Arc::new(Pool {
            tx,
            inbox: Mutex::new(Inbox {
                rx,
                held: VecDeque::new(),
            }),
            state: Mutex::new(PoolState::default()),
            changed: Condvar::new(),
            handle,
            control: Mutex::new(None),
            ticker: AtomicU64::new(0),
            measure_cpu: AtomicBool::new(false),
            members: Mutex::new(Vec::new()),
        })
    }

    /// The live members.
    pub(super) fn members(&self) -> Vec<Arc<Inner<T, M, E>>> {
        lock(&self.members)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Adds `member`, unless the pool closed (its last member left).
    pub(super) fn join(&self, member: Weak<Inner<T, M, E>>) -> bool {
        let mut members = lock(&self.members);
        if lock(&self.state).shutdown {
            return false;
        }
        members.retain(|m| m.strong_count() > 0);
        members.push(member);
        true
    }

    /// Removes `member`; the last one to leave stops the threads, the
    /// others' pool is sized again.
    pub(super) fn leave(self: &Arc<Self>, member: &Weak<Inner<T, M, E>>) {
        let mut members = lock(&self.members);
        members.retain(|m| !Weak::ptr_eq(m, member) && m.strong_count() > 0);
        if members.is_empty() {
            // Under the members' lock: no join slips in before it.
            self.stop_workers();
            return;
        }
        drop(members);
        self.reconcile(0);
    }

    /// Sizes the pool from its members' settings: the largest `workers`,
    /// or automatic if any member has `workers=0`, up to the largest of
    /// the automatic members' `max-workers` and the fixed ones' `workers`.
    /// Automatic, it goes on from the current count plus `joining`, the
    /// count a joining member would start alone with: a member is never
    /// worse off for joining, and the controller takes back what is not
    /// used. Every member's admission bound follows. Under the
    /// controller's lock, so concurrent joins, leaves and changes apply
    /// in one order.
    pub(super) fn reconcile(self: &Arc<Self>, joining: usize) {
        let mut control = lock(&self.control);
        let members = self.members();
        let (mut fixed, mut automatic) = (0, None::<usize>);
        for member in &members {
            let s = lock(&member.table);
            if s.config.automatic() {
                let max = s.config.max_workers.max(1);
                automatic = Some(automatic.map_or(max, |m| m.max(max)));
            } else {
                fixed = fixed.max(s.config.workers);
            }
        }
        let automatic = automatic.map(|max| max.max(fixed));
        let current = lock(&self.state).target;
        let workers = match automatic {
            Some(max) => (current + joining).clamp(1, max),
            None => fixed.max(1),
        };
        self.set_workers(workers);
        for member in &members {
            member.set_pool_workers(workers);
        }
        match automatic {
            Some(max) => self.start_autoscale(&mut control, workers, max),
            None => self.stop_autoscale(&mut control),
        }
    }

    /// Sets the worker count: a first thread if there is none; extra
    /// threads leave when they next look for work.
    pub(super) fn set_workers(self: &Arc<Self>, workers: usize) {
        let mut p = lock(&self.state);
        p.target = workers.max(1);
        let start = p.threads == 0 && !p.shutdown;
        if start {
            p.threads += 1;
        }
        drop(p);
        // Idle threads above the count leave; one may lead if none does.
        self.changed.notify_all();
        if start {
            self.start_thread();
        }
    }

    /// Wakes the leader: a batch it fills may be complete, or it retires.
    pub(super) fn wake_leader(&self) {
        let _ = self.tx.try_send(Ticket::wake());
    }

    /// Every thread leaves: the leader is woken by a ticket.
    pub(super) fn stop_workers(&self) {
        lock(&self.state).shutdown = true;
        self.changed.notify_all();
        self.wake_leader();
    }

    fn start_thread(self: &Arc<Self>) {
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("parallelfilter-worker".into())
            .spawn(move || pool.worker_thread());
        if started.is_err() {
            // Counted as alive above: the pool goes on with the others.
            lock(&self.state).threads -= 1;
        }
    }

    fn worker_thread(self: Arc<Self>) {
        // Processors may build timers and I/O futures when called.
        let _runtime = self.handle.enter();
        // The member whose consumer was left asleep for a burst of ready
        // frames.
        let mut deferred: Option<Arc<Inner<T, M, E>>> = None;
        let mut p = lock(&self.state);
        loop {
            if p.threads > p.wanted_threads() {
                // Nobody waits for this: a leaving thread is never the
                // leader, and it frees no capacity.
                p.threads -= 1;
                return;
            }
            if p.leader || p.busy >= p.target {
                if let Some(member) = deferred.take() {
                    drop(p);
                    member.nudge_consumer();
                    p = lock(&self.state);
                    continue;
                }
                p.idle += 1;
                p = self.changed.wait(p).unwrap_or_else(PoisonError::into_inner);
                p.idle -= 1;
                continue;
            }
            p.leader = true;
            drop(p);
            let ticket = {
                let mut inbox = lock(&self.inbox);
                match inbox
                    .held
                    .pop_front()
                    .map_or_else(|| inbox.rx.try_recv(), Ok)
                {
                    Ok(ticket) => Some(ticket),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if let Some(member) = deferred.take() {
                            member.nudge_consumer();
                        }
                        inbox.rx.blocking_recv()
                    }
                }
            };
            if ticket.is_some() && self.tx.capacity() == 1 {
                // The channel was full: any member's producer may wait (it
                // checks under its table's lock, taken here so the wake-up
                // cannot fall between its check and its wait).
                for member in self.members() {
                    drop(lock(&member.table));
                    member.room.notify_all();
                }
            }
            let member = match &ticket {
                Some(Ticket {
                    member: Some(member),
                    ..
                }) => member.upgrade(),
                _ => None,
            };
            // Still the leader: a batch fills from the channel.
            let batch = match (&ticket, &member) {
                (Some(t), Some(m)) if m.processor.batches() => m.fill_batch(t.generation),
                _ => None,
            };
            p = lock(&self.state);
            p.leader = false;
            let Some(ticket) = ticket else {
                // The channel closed: the pool is gone.
                p.shutdown = true;
                continue;
            };
            let Some(member) = member else {
                // A wake-up, or the member left.
                continue;
            };
            if let Some(other) = deferred.take_if(|d| !Arc::ptr_eq(d, &member)) {
                // Its burst ends here: its results go out now.
                drop(p);
                other.nudge_consumer();
                p = lock(&self.state);
            }
            let taken = batch.unwrap_or_else(|| {
                let mut s = lock(&member.table);
                let taken = s.take(ticket.generation);
                if matches!(taken, Take::Job(_)) {
                    member.running.fetch_add(1, Ordering::AcqRel);
                }
                taken
            });
            let job = match taken {
                Take::Job(job) => job,
                Take::Batch(batch) => {
                    if batch.wake {
                        member.ready.notify_one();
                    }
                    p.busy += 1;
                    let id = p.take_id();
                    drop(p);
                    if let Some(member) = deferred.take() {
                        member.nudge_consumer();
                    }
                    member.run_batch(batch, id);
                    p = lock(&self.state);
                    continue;
                }
                Take::Passed(wake) => {
                    // Late: it leaves unprocessed; its place in the bound
                    // is free for a frame to process.
                    if wake {
                        member.ready.notify_one();
                    }
                    member.room.notify_all();
                    continue;
                }
                Take::Nothing => {
                    // Stale ticket (its frame flushed, dropped or taken
                    // with a batch).
                    member.room.notify_all();
                    continue;
                }
            };
            p.busy += 1;
            let id = p.take_id();
            drop(p);
            let was_deferred = deferred.take().is_some();
            if member.run_job(job, id, was_deferred) {
                deferred = Some(member);
            }
            p = lock(&self.state);
        }
    }

    /// Worker `id` is free again; with `wake`, an idle thread may lead.
    fn release(&self, id: usize, wake: bool) {
        let mut p = lock(&self.state);
        p.release(id);
        let wake = wake && !p.leader && p.idle > 0;
        drop(p);
        if wake {
            self.changed.notify_one();
        }
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
    pub(super) fn hand_over_channel(self: &Arc<Self>) {
        let mut p = lock(&self.state);
        if p.busy >= p.target {
            return;
        }
        if p.idle > 0 {
            drop(p);
            self.changed.notify_one();
        } else if p.threads < p.wanted_threads() {
            p.threads += 1;
            drop(p);
            self.start_thread();
        }
    }
}

impl<T, M, E> Inner<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// The pool's count: this engine's admission bound and stats follow.
    pub(super) fn set_pool_workers(&self, workers: usize) {
        let mut s = lock(&self.table);
        s.workers = workers;
        if s.counters.per_worker.len() < workers {
            s.counters.per_worker.resize(workers, 0);
        }
        drop(s);
        // A higher bound admits blocked producers.
        self.room.notify_all();
        self.ready.notify_all();
    }

    /// A leader waiting for a batch to fill looks again: an item closed
    /// it, or a flush emptied it.
    pub(super) fn wake_filling_leader(&self) {
        if self.processor.batches() {
            self.pool.wake_leader();
        }
    }

    /// Async work of worker `id` ended.
    fn release_async(&self, id: usize) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        // A thread may wait for a free worker to lead.
        self.pool.release(id, true);
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
        self.pool.release(id, false);
        self.worker_freed();
    }

    /// With `leaky=pass`, a freed worker may take the newest frame let
    /// through just before (see `Table::process_newest_passed`).
    pub(super) fn worker_freed(&self) {
        if !self.leaky_pass.load(Ordering::Relaxed) {
            return;
        }
        // Its ticket's place first: a frame queued again needs one.
        let Ok(permit) = self.pool.tx.try_reserve() else {
            return;
        };
        let mut s = lock(&self.table);
        if s.process_newest_passed(self.running.load(Ordering::Acquire)) {
            permit.send(Ticket {
                member: Some(self.me.clone()),
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
                self.pool.hand_over_channel();
                let timer = timeout.map(|d| {
                    self.time_out(started, d, move |inner, err| {
                        inner.complete(pos, generation, id, Err(err), started.elapsed(), false);
                    })
                });
                let (r, cpu) = self.pool.counting_cpu(|| catch_unwind(AssertUnwindSafe(f)));
                let r = match r {
                    Ok(r) => r.map_err(ProcessError::Failed),
                    Err(payload) => Err(ProcessError::Panicked(panic_message(payload))),
                };
                if Self::first(timer) {
                    let elapsed = started.elapsed();
                    self.store(generation, |s| {
                        s.complete_on_cpu(pos, id, r, elapsed, cpu, false)
                    });
                }
                // Only now: a timed-out closure kept its worker busy.
                self.release_worker(id);
            }
            Ok(Work::Async(fut)) => {
                let inner = self.clone();
                self.pool.handle.spawn(async move {
                    if let Some(r) = inner.run_async(fut, timeout, generation).await {
                        inner.complete(pos, generation, id, r, started.elapsed(), false);
                    }
                    inner.release_async(id);
                });
            }
        }
        false
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
        let handle = self.pool.handle.spawn(async move {
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
        // The flush first: work polled once both are ready must not
        // finish, taking what was meant for the frames after the flush (a
        // semaphore's permit, a slot).
        tokio::select! {
            biased;
            _ = generation.wait_for(|g| *g != job_generation) => None,
            r = fut => Some(match r {
                Ok(Ok(r)) => r.map_err(ProcessError::Failed),
                Ok(Err(payload)) => Err(ProcessError::Panicked(panic_message(payload))),
                Err(e) => Err(e),
            }),
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

    /// Runs `store` on the table unless a flush came since the work was
    /// taken, and wakes the consumer if it says so; `None` if flushed.
    pub(super) fn store(
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
