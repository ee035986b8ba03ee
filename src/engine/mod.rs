// SPDX-License-Identifier: MPL-2.0
//! The engine behind `parallelfilter`: admission bound, worker pool and
//! resequencer. It knows nothing about pads, so it can be tested alone.
//!
//! Every frame and every serialized item gets a position on entry and a slot
//! in a table ordered by position; frames also get a frame sequence number
//! (0 for the first frame after start or flush). Frames wait in their slot;
//! the bounded tokio channel carries one ticket per queued frame to the
//! worker pool, and a worker takes the oldest queued frame when it receives
//! a ticket. Keeping the payload in the slot (not in the channel) lets a
//! flush or a leaky drop free a frame at once and makes the admission bound
//! exact: a frame is counted from admission until the consumer has pushed
//! it, which its [`Leaving`] guard reports, or drops it.
//!
//! Where things are: [`Engine`] here, the producer's and consumer's API;
//! `table` the slot table and every rule of admission, release and flush,
//! without threads; `pool` the workers; `work` what a processor is and how
//! one frame's work runs; `config`, `output` and `stats` the types of the
//! API.

mod autoscale;
mod config;
mod control;
mod cpu;
mod output;
mod pool;
mod stats;
mod table;
mod work;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

pub use autoscale::Observer;
pub use config::{Config, Leaky, MAX_PASSED};
pub use control::{Change, Reason};
pub use output::{Leaving, Output, Processed, Skip};
pub use stats::Stats;
pub use table::{LateCheck, MAX_PENDING_ITEMS};
pub use work::{ProcessError, Processor, Work, WorkCtx};

use output::Report;
use pool::{Pool, Ticket};
use table::{Admit, Slots, Table};

/// An item's place, from [`Engine::submit_item`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemId {
    pub pos: u64,
    generation: u64,
}

/// Result of [`Engine::submit_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Queued {
        seq: u64,
    },
    /// The frame passes unprocessed (`leaky=pass`, `interval`).
    Passed {
        seq: u64,
        skip: Skip,
    },
    /// Leaky mode dropped the new frame.
    Dropped,
}

/// Why the engine refuses to take or give anything. The engine itself only
/// ever sets [`Halt::Flushing`]; every other reason is the consumer's, given
/// to [`Engine::halt`] and handed back unchanged to producers. The reasons
/// are those a GStreamer src pad returns, so the element maps them both ways
/// without loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Halt {
    /// Between [`Engine::flush_start`] and [`Engine::flush_stop`]; no other
    /// halt replaces it and [`Engine::resume_from`] never clears it.
    Flushing,
    /// Downstream is at the end of the stream.
    Eos,
    /// Downstream is not linked.
    NotLinked,
    /// Downstream refused the format.
    NotNegotiated,
    /// Downstream does not support what was asked.
    NotSupported,
    /// A fatal error, reported by whoever halted.
    Error,
    /// Application-defined reasons, passed through as they are.
    CustomError,
    CustomError1,
    CustomError2,
}

/// One engine's own state: its frames, order and consumer. Its workers
/// are its pool's.
struct Inner<T, M, E> {
    table: Mutex<Table<T, M, E>>,
    /// Producers waiting for room.
    room: Condvar,
    /// The consumer waiting for a releasable slot.
    ready: Condvar,
    /// Current generation, so workers abandon async work on flush.
    generation: watch::Sender<u64>,
    processor: Arc<dyn Processor<T>>,
    observer: Mutex<Option<Observer>>,
    /// Frames on a worker now: taken from the table, worker not yet
    /// released. Raised under the table's lock with the take, so a frame
    /// is always counted as queued or running; for `leaky=pass`.
    running: AtomicUsize,
    /// `leaky=pass`, readable without the table's lock.
    leaky_pass: AtomicBool,
    pool: Arc<Pool<T, M, E>>,
    /// For the tickets this engine's frames send.
    me: Weak<Inner<T, M, E>>,
}

/// The engine. Dropping it stops its workers; frames still being processed
/// are discarded when they finish.
pub struct Engine<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    inner: Arc<Inner<T, M, E>>,
}

/// A worker pool engines share (`context`): each keeps its own order,
/// items, flushing, admission bound and stats; the workers take the oldest
/// queued frame of all of them. Its size is the largest `workers` of its
/// engines, automatic if any has 0. Its threads end with its last engine,
/// and then it takes no more: [`Engine::join`] says so.
pub struct SharedPool<T, M, E>(Arc<Pool<T, M, E>>);

impl<T, M, E> SharedPool<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// A pool without engines or threads, on `handle` (a multi-thread
    /// runtime with time enabled).
    pub fn new(handle: Handle) -> Self {
        SharedPool(Pool::new(handle))
    }

    /// Its engines.
    pub fn members(&self) -> usize {
        self.0.members().len()
    }

    /// The worker count now.
    pub fn workers(&self) -> usize {
        lock(&self.0.state).target
    }

    /// Worker threads alive.
    pub fn threads(&self) -> usize {
        lock(&self.0.state).threads()
    }

    /// A handle that does not keep the pool.
    pub fn downgrade(&self) -> WeakSharedPool<T, M, E> {
        WeakSharedPool(Arc::downgrade(&self.0))
    }
}

impl<T, M, E> Clone for SharedPool<T, M, E> {
    fn clone(&self) -> Self {
        SharedPool(self.0.clone())
    }
}

/// A [`SharedPool`] that lives only as long as its engines (for a
/// registry of pools by name).
pub struct WeakSharedPool<T, M, E>(Weak<Pool<T, M, E>>);

impl<T, M, E> WeakSharedPool<T, M, E> {
    pub fn upgrade(&self) -> Option<SharedPool<T, M, E>> {
        self.0.upgrade().map(SharedPool)
    }
}

/// Pools whose workers have not all exited yet (a pool ends with its
/// last engine).
static LIVE_ENGINES: Mutex<usize> = Mutex::new(0);
static ENGINES_GONE: Condvar = Condvar::new();

/// Blocks until the workers of every dropped engine have exited (frames in
/// async work are freed by then), or `timeout` passes; true if none is
/// left. For leak checks and orderly shutdown before `gst::deinit`.
pub fn wait_all_stopped(timeout: Duration) -> bool {
    let live = lock(&LIVE_ENGINES);
    let (live, _) = ENGINES_GONE
        .wait_timeout_while(live, timeout, |n| *n > 0)
        .unwrap_or_else(PoisonError::into_inner);
    *live == 0
}

impl<T, M, E> Report for Inner<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    fn frame_left(&self, pushed: bool, latency: Duration, bytes: u64, passed: bool) {
        let mut s = lock(&self.table);
        if passed {
            s.passed_frame_left(pushed, latency, bytes);
        } else {
            s.frame_left(pushed, latency, bytes);
        }
        let wake = s.wake_room();
        drop(s);
        // Its place is free now.
        if wake {
            self.room.notify_all();
        }
    }
}

pub(crate) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    // Nothing panics while holding the lock; if something ever did, the
    // state is still consistent enough to tear down.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T, M, E> Engine<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// Starts the worker pool on `handle`, which must be a multi-thread
    /// runtime with time enabled.
    pub fn new(config: Config, processor: Arc<dyn Processor<T>>, handle: Handle) -> Self {
        let pool = Pool::new(handle);
        let engine = Self::member(&pool, config, processor);
        // A new pool has not closed.
        pool.join(engine.inner.me.clone());
        let initial = engine.initial_workers();
        pool.reconcile(initial);
        engine
    }

    /// An engine whose frames `pool`'s workers process, with those of the
    /// pool's other engines (oldest first); `None` if the pool closed
    /// (its last engine was dropped): make a new one.
    pub fn join(
        pool: &SharedPool<T, M, E>,
        config: Config,
        processor: Arc<dyn Processor<T>>,
    ) -> Option<Self> {
        let engine = Self::member(&pool.0, config, processor);
        if !pool.0.join(engine.inner.me.clone()) {
            return None;
        }
        let initial = engine.initial_workers();
        pool.0.reconcile(initial);
        Some(engine)
    }

    /// The count its settings start a pool at.
    fn initial_workers(&self) -> usize {
        lock(&self.inner.table).config.initial_workers()
    }

    fn member(pool: &Arc<Pool<T, M, E>>, config: Config, processor: Arc<dyn Processor<T>>) -> Self {
        let leaky_pass = AtomicBool::new(config.leaky == Leaky::Pass);
        let inner = Arc::new_cyclic(|me: &Weak<Inner<T, M, E>>| Inner {
            table: Mutex::new(Table::new(config, me.clone())),
            room: Condvar::new(),
            ready: Condvar::new(),
            generation: watch::Sender::new(0),
            processor,
            observer: Mutex::new(None),
            running: AtomicUsize::new(0),
            leaky_pass,
            pool: pool.clone(),
            me: me.clone(),
        });
        Engine { inner }
    }

    /// Applies new limits; a changed worker count takes effect at once,
    /// without dropping or reordering anything. In a shared pool, the
    /// pool's count follows every member's `workers` (see [`SharedPool`]).
    pub fn configure(&self, config: Config) {
        self.inner
            .leaky_pass
            .store(config.leaky == Leaky::Pass, Ordering::Relaxed);
        lock(&self.inner.table).config = config;
        self.inner.pool.reconcile(0);
        self.inner.room.notify_all();
        self.inner.ready.notify_all();
    }

    /// Lets a queued frame through unprocessed when `late` says, as a
    /// worker is about to start it (QoS). Called under the engine's lock:
    /// it must be quick and must not call into the engine.
    pub fn set_late_check(&self, late: impl Fn(&M) -> bool + Send + Sync + 'static) {
        lock(&self.inner.table).late = Some(Box::new(late));
    }

    /// Calls `observe` on every change of the automatic worker count.
    pub fn on_workers_changed(&self, observe: impl Fn(Change) + Send + Sync + 'static) {
        *lock(&self.inner.observer) = Some(Box::new(observe));
    }

    /// Admits a frame, blocking while the engine is full (unless leaky).
    pub fn submit_frame(&self, frame: T, tag: M, bytes: u64) -> Result<Admission, Halt> {
        self.submit(frame, tag, bytes, true)
    }

    /// [`Engine::submit_frame`]; `passable`: the frame may leave
    /// unprocessed (`leaky=pass`, `interval`), false when it must be
    /// processed whatever these say (the late check decides for itself).
    pub fn submit(&self, frame: T, tag: M, bytes: u64, passable: bool) -> Result<Admission, Halt> {
        let mut s = lock(&self.inner.table);
        loop {
            if let Some(halt) = s.halted {
                return Err(halt);
            }
            let channel_free = self.inner.pool.tx.capacity() > 0;
            let running = self.inner.running.load(Ordering::Acquire);
            let passing = match s.admit(bytes, channel_free, running, passable) {
                Admit::Process => {
                    // Reserved under the lock, but sent after it: the woken
                    // worker's first step is to take the lock, and must not
                    // find it held. Another member may have filled the
                    // channel since the check: then wait, as for room.
                    let Ok(permit) = self.inner.pool.tx.try_reserve() else {
                        s = self.wait_for_room(s);
                        continue;
                    };
                    let seq = s.insert_frame(frame, tag, bytes);
                    let generation = s.generation;
                    drop(s);
                    permit.send(Ticket {
                        member: Some(self.inner.me.clone()),
                        generation,
                    });
                    return Ok(Admission::Queued { seq });
                }
                Admit::Pass(skip) => {
                    let (seq, wake) = s.insert_passed(frame, tag, bytes, skip);
                    drop(s);
                    if wake {
                        self.inner.ready.notify_one();
                    }
                    return Ok(Admission::Passed { seq, skip });
                }
                Admit::Full { passing } => passing,
            };
            if passing {
                // Too many frames let through: wait for any to leave,
                // woken at once (not a frame producer's hysteresis).
                s = self.wait_for_room(s);
                continue;
            }
            match s.config.leaky {
                // A frame that must be processed waits for room.
                Leaky::No | Leaky::Pass => {
                    s.blocked_frames += 1;
                    s = self.wait_for_room(s);
                    s.blocked_frames -= 1;
                }
                Leaky::Upstream => {
                    s.refuse_frame();
                    return Ok(Admission::Dropped);
                }
                Leaky::Downstream => {
                    // Each dropped queued frame leaves its ticket behind for
                    // the new one, so no send is needed.
                    let mut freed = false;
                    while !s.has_room(bytes) && s.drop_oldest_queued() {
                        freed = true;
                    }
                    let admission = if freed && s.has_room(bytes) {
                        Admission::Queued {
                            seq: s.insert_frame(frame, tag, bytes),
                        }
                    } else {
                        // Every frame inside has started (or the bytes limit
                        // still refuses it): the new frame goes.
                        s.refuse_frame();
                        Admission::Dropped
                    };
                    drop(s);
                    if freed {
                        // A dropped head may uncover a releasable item.
                        self.inner.ready.notify_one();
                    }
                    return Ok(admission);
                }
            }
        }
    }

    /// Queues an item (event, query, barrier) that is released after every
    /// frame submitted before it.
    pub fn submit_item(&self, item: E) -> Result<ItemId, Halt> {
        let mut s = lock(&self.inner.table);
        loop {
            if let Some(halt) = s.halted {
                return Err(halt);
            }
            if s.has_item_room() {
                break;
            }
            s = self.wait_for_room(s);
        }
        let (id, head) = s.insert_item(item);
        let filling = s.config.batch_size > 1 && !s.config.batch_timeout.is_zero();
        drop(s);
        if head {
            self.inner.ready.notify_one();
        }
        if filling {
            self.inner.wake_filling_leader();
        }
        Ok(id)
    }

    /// Blocks until the consumer has popped the item, so everything before
    /// it is out; `Err` if a flush discarded it or the engine halted first.
    pub fn wait_released(&self, id: ItemId) -> Result<(), Halt> {
        let mut s = lock(&self.inner.table);
        loop {
            if let Some(released) = s.item_released(id) {
                return released;
            }
            s = self.wait_for_room(s);
        }
    }

    /// Waits for a pop, halt or flush, counting the producer as blocked.
    fn wait_for_room<'a>(
        &'a self,
        mut s: MutexGuard<'a, Table<T, M, E>>,
    ) -> MutexGuard<'a, Table<T, M, E>> {
        s.blocked += 1;
        let mut s = self
            .inner
            .room
            .wait(s)
            .unwrap_or_else(PoisonError::into_inner);
        s.blocked -= 1;
        s
    }

    /// Blocks until the next output is releasable or the engine halts.
    ///
    /// A popped frame still counts as inside (stats and limits) until its
    /// [`Processed::leaving`] is reported or dropped.
    pub fn pop(&self) -> Result<Output<T, M, E>, Halt> {
        let mut s = lock(&self.inner.table);
        loop {
            if let Some(halt) = s.halted {
                return Err(halt);
            }
            if let Some(out) = s.pop() {
                let wake = s.wake_room();
                drop(s);
                if wake {
                    self.inner.room.notify_all();
                }
                return Ok(out);
            }
            s.waiting_consumers += 1;
            s = self
                .inner
                .ready
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
            s.waiting_consumers -= 1;
        }
    }

    /// Like [`Engine::pop`] without blocking: `Ok(None)` if nothing is
    /// releasable.
    pub fn try_pop(&self) -> Result<Option<Output<T, M, E>>, Halt> {
        let mut s = lock(&self.inner.table);
        if let Some(halt) = s.halted {
            return Err(halt);
        }
        let out = s.pop();
        let wake = s.wake_room();
        drop(s);
        if out.is_some() && wake {
            self.inner.room.notify_all();
        }
        Ok(out)
    }

    /// Stops producers and the consumer with `halt` (for example a
    /// downstream flow error or EOS); the contents stay.
    pub fn halt(&self, halt: Halt) {
        lock(&self.inner.table).halt(halt);
        self.inner.room.notify_all();
        self.inner.ready.notify_all();
    }

    /// Discards everything inside and refuses new work until
    /// [`Engine::flush_stop`]. Async work in progress is abandoned; results of
    /// blocking work are discarded when they arrive.
    pub fn flush_start(&self) {
        self.discard(Table::flush_start);
    }

    /// Accepts work again; positions and frame numbers restart at 0. Also
    /// discards everything, for a FLUSH_STOP that came without FLUSH_START.
    pub fn flush_stop(&self) {
        self.discard(Table::flush_stop);
    }

    /// Empties the table with `flush`; wakes everyone, tells workers to
    /// abandon async work, and drops the frames unlocked.
    fn discard(&self, flush: impl FnOnce(&mut Table<T, M, E>) -> Slots<T, M, E>) {
        let mut s = lock(&self.inner.table);
        let old = flush(&mut s);
        let generation = s.generation;
        drop(s);
        self.inner.generation.send_replace(generation);
        self.inner.room.notify_all();
        self.inner.ready.notify_all();
        self.inner.wake_filling_leader();
        drop(old);
    }

    /// Clears the halt if it is `halt` (not a flush: downstream was linked
    /// again, or a new stream follows EOS), keeping the sequence going.
    /// True if it did, so the caller restarts the consumer.
    pub fn resume_from(&self, halt: Halt) -> bool {
        lock(&self.inner.table).resume_from(halt)
    }

    pub fn halted(&self) -> Option<Halt> {
        lock(&self.inner.table).halted
    }

    pub fn stats(&self) -> Stats {
        lock(&self.inner.table).stats()
    }

    /// Worker threads alive: at most `workers`, and only as many as
    /// blocking work has needed at once.
    pub fn worker_threads(&self) -> usize {
        lock(&self.inner.pool.state).threads()
    }

    /// Frames inside: queued, processing or waiting for release.
    pub fn frames_inside(&self) -> usize {
        lock(&self.inner.table).frames()
    }

    fn shutdown(&self) {
        self.flush_start();
        self.inner.pool.leave(&self.inner.me);
    }
}

impl<T, M, E> Drop for Engine<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    fn drop(&mut self) {
        self.shutdown();
    }
}
