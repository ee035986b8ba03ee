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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

pub use autoscale::Observer;
pub use config::{Config, Leaky, MAX_PASSED};
pub use control::{Change, Reason};
pub use output::{Leaving, Output, Processed, Skip};
pub use stats::Stats;
pub use table::{LateCheck, MAX_PENDING_ITEMS};
pub use work::{ProcessError, Processor, Work, WorkCtx};

use control::Controller;
use output::Report;
use pool::{CHANNEL_CAPACITY, PoolState, Ticket};
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

struct Inner<T, M, E> {
    table: Mutex<Table<T, M, E>>,
    /// Producers waiting for room.
    room: Condvar,
    /// The consumer waiting for a releasable slot.
    ready: Condvar,
    tx: mpsc::Sender<Ticket>,
    /// Only the leading worker thread takes it.
    rx: Mutex<mpsc::Receiver<Ticket>>,
    /// Current generation, so workers abandon async work on flush.
    generation: watch::Sender<u64>,
    /// Worker threads and frames in processing; lock order: never with
    /// `table`.
    pool: Mutex<PoolState>,
    /// Worker threads waiting for a turn.
    pool_changed: Condvar,
    processor: Arc<dyn Processor<T>>,
    handle: Handle,
    /// The automatic-workers controller, while `workers` is 0.
    control: Mutex<Option<Controller>>,
    /// Id of the one ticker task that may drive `control`.
    ticker: AtomicU64,
    observer: Mutex<Option<Observer>>,
    /// Frames on a worker now: taken from the table, worker not yet
    /// released. Raised under the table's lock with the take, so a frame
    /// is always counted as queued or running; for `leaky=pass`.
    running: AtomicUsize,
    /// `leaky=pass`, readable without the table's lock.
    leaky_pass: AtomicBool,
    /// While automatic: blocking work's CPU time is measured.
    measure_cpu: AtomicBool,
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

/// Engines whose workers have not all exited yet.
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

impl<T, M, E> Drop for Inner<T, M, E> {
    fn drop(&mut self) {
        let mut live = lock(&LIVE_ENGINES);
        *live -= 1;
        if *live == 0 {
            ENGINES_GONE.notify_all();
        }
    }
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
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let workers = config.initial_workers().max(1);
        let automatic = config.automatic().then_some(config.max_workers);
        let leaky_pass = AtomicBool::new(config.leaky == Leaky::Pass);
        *lock(&LIVE_ENGINES) += 1;
        let inner = Arc::new_cyclic(|me: &Weak<Inner<T, M, E>>| Inner {
            table: Mutex::new(Table::new(config, me.clone())),
            room: Condvar::new(),
            ready: Condvar::new(),
            tx,
            rx: Mutex::new(rx),
            generation: watch::Sender::new(0),
            pool: Mutex::new(PoolState::default()),
            pool_changed: Condvar::new(),
            processor,
            handle,
            control: Mutex::new(None),
            ticker: AtomicU64::new(0),
            observer: Mutex::new(None),
            running: AtomicUsize::new(0),
            leaky_pass,
            measure_cpu: AtomicBool::new(false),
        });
        lock(&inner.table).counters.per_worker.resize(workers, 0);
        inner.set_workers(workers);
        if let Some(max) = automatic {
            inner.start_autoscale(workers, max);
        }
        Engine { inner }
    }

    /// Applies new limits; a changed worker count takes effect at once,
    /// without dropping or reordering anything.
    pub fn configure(&self, config: Config) {
        let mut s = lock(&self.inner.table);
        let automatic = config.automatic().then_some(config.max_workers.max(1));
        let workers = match automatic {
            // The controller goes on from the count in use.
            Some(max) => s.workers.min(max),
            None => config.workers,
        };
        self.inner
            .leaky_pass
            .store(config.leaky == Leaky::Pass, Ordering::Relaxed);
        s.config = config;
        s.workers = workers;
        if s.counters.per_worker.len() < workers {
            s.counters.per_worker.resize(workers, 0);
        }
        drop(s);
        self.inner.set_workers(workers);
        match automatic {
            Some(max) => self.inner.start_autoscale(workers, max),
            None => {
                let mut control = lock(&self.inner.control);
                *control = None;
                self.inner.measure_cpu.store(false, Ordering::Relaxed);
            }
        }
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
            let channel_free = self.inner.tx.capacity() > 0;
            let running = self.inner.running.load(Ordering::Acquire);
            let passing = match s.admit(bytes, channel_free, running, passable) {
                Admit::Process => {
                    // Reserved under the lock, where capacity was checked,
                    // but sent after it: the woken worker's first step is
                    // to take the lock, and must not find it held.
                    let permit = self.inner.tx.try_reserve();
                    let seq = s.insert_frame(frame, tag, bytes);
                    let generation = s.generation;
                    drop(s);
                    if let Ok(permit) = permit {
                        permit.send(Ticket { generation });
                    }
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
        lock(&self.inner.pool).threads()
    }

    /// Frames inside: queued, processing or waiting for release.
    pub fn frames_inside(&self) -> usize {
        lock(&self.inner.table).frames()
    }

    fn shutdown(&self) {
        self.flush_start();
        self.inner.stop_workers();
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
