// SPDX-License-Identifier: MPL-2.0
//! The engine behind `parallelfilter`: admission bound, worker pool and
//! resequencer. It knows nothing about pads, so it can be tested alone.
//!
//! Every frame and every serialized item gets a position on entry and a slot
//! in a table ordered by position; frames also get a frame sequence number
//! (0 for the first frame after start or flush). Frames wait in their slot; the bounded tokio
//! channel carries one ticket per queued frame to the worker pool, and a
//! worker takes the oldest queued frame when it receives a ticket. Keeping
//! the payload in the slot (not in the channel) lets a flush or a leaky
//! drop free a frame at once and makes the admission bound exact: a frame is
//! counted from admission until the consumer pops it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

/// Events and serialized queries waiting behind frames. Past this many the
/// producer blocks too, so no queue in the engine is unbounded.
pub const MAX_PENDING_ITEMS: usize = 1024;

/// The channel only ever holds one ticket per queued frame plus stale ones
/// from before a flush; queued frames are at most 65535.
const CHANNEL_CAPACITY: usize = 4 * 65536;

/// What happens to a new frame when the element is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Leaky {
    /// Block the producer until there is room.
    #[default]
    No,
    /// Drop the new frame.
    Upstream,
    /// Drop the oldest frame that no worker has started; if every frame
    /// inside has started, drop the new one.
    Downstream,
}

/// Limits and scheduling; can change at any time through [`Engine::configure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub workers: usize,
    /// Frames inside the engine; 0 means 2 × workers.
    pub max_frames: usize,
    /// Bytes of frames inside the engine; 0 means no limit.
    pub max_bytes: u64,
    pub leaky: Leaky,
    /// false: a processed frame leaves at once, but never across an item
    /// submitted with [`Engine::submit_item`].
    pub ordered: bool,
    /// Abandon a frame whose processing takes longer.
    pub timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 1,
            max_frames: 0,
            max_bytes: 0,
            leaky: Leaky::No,
            ordered: true,
            timeout: None,
        }
    }
}

impl Config {
    pub fn frame_limit(&self) -> usize {
        if self.max_frames == 0 {
            2 * self.workers.max(1)
        } else {
            self.max_frames
        }
    }
}

/// Why a frame has no processed result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessError {
    Failed(String),
    Panicked(String),
    TimedOut(Duration),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Failed(msg) => write!(f, "processing failed: {msg}"),
            ProcessError::Panicked(msg) => write!(f, "processing panicked: {msg}"),
            ProcessError::TimedOut(d) => write!(f, "processing timed out after {d:?}"),
        }
    }
}

/// What a worker knows about the frame it processes.
#[derive(Clone, Copy, Debug)]
pub struct WorkCtx {
    pub seq: u64,
    pub worker: usize,
}

/// How a processor does its work. CPU-bound work must be `Blocking` so it
/// runs on the blocking pool and never stalls the runtime's async threads.
pub enum Work<T> {
    Ready(Result<T, String>),
    Blocking(Box<dyn FnOnce() -> Result<T, String> + Send>),
    Async(BoxFuture<'static, Result<T, String>>),
}

pub trait Processor<T>: Send + Sync + 'static {
    fn process(&self, frame: T, ctx: WorkCtx) -> Work<T>;
}

impl<T, F> Processor<T> for F
where
    F: Fn(T, WorkCtx) -> Work<T> + Send + Sync + 'static,
{
    fn process(&self, frame: T, ctx: WorkCtx) -> Work<T> {
        self(frame, ctx)
    }
}

/// A frame leaving the engine, in release order.
#[derive(Debug)]
pub struct Processed<T, M> {
    pub seq: u64,
    pub tag: M,
    pub result: Result<T, ProcessError>,
    pub worker: usize,
    pub processing_time: Duration,
    /// When the frame entered; the consumer reports the latency when the
    /// frame leaves (see [`Engine::frame_left`]).
    pub admitted: Instant,
    /// Its size as submitted, for [`Engine::frame_left`].
    pub bytes: u64,
}

#[derive(Debug)]
pub enum Output<T, M, E> {
    Frame(Processed<T, M>),
    Item { pos: u64, item: E },
}

/// Snapshot of the counters; see DESIGN.md "Stats". `dropped` counts every
/// frame that entered and will not leave: leaky drops, on-error=drop, and
/// frames discarded by a flush.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub in_flight: u32,
    pub max_in_flight: u32,
    pub reorder_depth: u32,
    pub max_reorder_depth: u32,
    pub workers: u32,
    /// Upstream threads blocked inside: waiting for room, or for a
    /// serialized item to be released.
    pub blocked_upstream: u32,
    pub avg_processing_time: Duration,
    pub max_processing_time: Duration,
    pub avg_latency: Duration,
    pub max_latency: Duration,
    pub per_worker: Vec<u64>,
}

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
    /// Leaky mode dropped the new frame.
    Dropped,
}

/// Why the engine refuses to take or give anything.
pub type Halt = gst::FlowError;

enum FrameState<T> {
    Queued(T),
    Processing,
    Done {
        result: Result<T, ProcessError>,
        worker: usize,
        processing_time: Duration,
    },
}

enum Slot<T, M, E> {
    Frame {
        seq: u64,
        tag: M,
        bytes: u64,
        admitted: Instant,
        state: FrameState<T>,
    },
    Item(E),
}

#[derive(Default)]
struct Counters {
    frames_in: u64,
    frames_out: u64,
    dropped: u64,
    errors: u64,
    timeouts: u64,
    max_in_flight: usize,
    max_reorder_depth: usize,
    processed: u64,
    total_processing: Duration,
    max_processing: Duration,
    released: u64,
    total_latency: Duration,
    max_latency: Duration,
    per_worker: Vec<u64>,
}

struct Shared<T, M, E> {
    halted: Option<Halt>,
    generation: u64,
    /// Position of the next frame or item.
    next_pos: u64,
    /// Sequence number of the next frame.
    next_seq: u64,
    /// Boxed: B-tree nodes shift their values on removal, and a slot is
    /// hundreds of bytes.
    slots: BTreeMap<u64, Box<Slot<T, M, E>>>,
    /// Positions of frames no worker has started, oldest first.
    queued: VecDeque<u64>,
    frames: usize,
    bytes: u64,
    items: usize,
    /// Processed frames waiting for release.
    done: usize,
    /// Producers blocked in submit or wait_released: the waiters on `room`.
    blocked: usize,
    /// Of those, producers of frames waiting for room (not items or
    /// barriers): they are woken with hysteresis, see `wake_room`.
    blocked_frames: usize,
    /// Consumers waiting in pop: the waiters on `ready`. Notifying only
    /// when someone waits saves a futex syscall per frame on each side.
    waiting_consumers: usize,
    /// Frames popped but not yet reported by [`Engine::frame_left`]: the
    /// consumer is pushing them, so they still count as inside.
    leaving: usize,
    leaving_bytes: u64,
    config: Config,
    /// Worker ids with a running task.
    alive: Vec<bool>,
    counters: Counters,
}

impl<T, M, E> Shared<T, M, E> {
    /// Whether a pop or a frame leaving wakes the waiters on `room`. Frame
    /// producers only once a quarter of the limit is free (at least one
    /// frame): a fast upstream then refills in bursts instead of paying a
    /// context switch per frame, and the frames still inside keep the
    /// workers busy. Waiters for items and barriers wake at once.
    fn wake_room(&self) -> bool {
        if self.blocked > self.blocked_frames {
            return true;
        }
        if self.blocked_frames == 0 {
            return false;
        }
        let limit = self.config.frame_limit();
        self.frames + self.leaving <= limit - (limit / 4).max(1)
    }

    fn has_room(&self, bytes: u64) -> bool {
        // A frame being pushed is still inside, so it counts.
        let inside = self.frames + self.leaving;
        if inside == 0 {
            // A single frame always fits, or an oversized one would block forever.
            return true;
        }
        let bytes_inside = self.bytes + self.leaving_bytes;
        inside < self.config.frame_limit()
            && (self.config.max_bytes == 0
                || bytes_inside.saturating_add(bytes) <= self.config.max_bytes)
    }

    fn insert_frame(&mut self, frame: T, tag: M, bytes: u64) -> u64 {
        let (pos, seq) = (self.next_pos, self.next_seq);
        self.next_pos += 1;
        self.next_seq += 1;
        self.slots.insert(
            pos,
            Box::new(Slot::Frame {
                seq,
                tag,
                bytes,
                admitted: Instant::now(),
                state: FrameState::Queued(frame),
            }),
        );
        self.queued.push_back(pos);
        self.frames += 1;
        self.bytes += bytes;
        self.counters.frames_in += 1;
        self.counters.max_in_flight = self.counters.max_in_flight.max(self.frames + self.leaving);
        seq
    }

    /// Drops the oldest frame not yet started; false if there is none.
    fn drop_oldest_queued(&mut self) -> bool {
        let Some(pos) = self.queued.pop_front() else {
            return false;
        };
        if let Some(Slot::Frame { bytes, .. }) = self.slots.remove(&pos).map(|b| *b) {
            self.frames -= 1;
            self.bytes -= bytes;
        }
        self.counters.dropped += 1;
        true
    }

    fn is_releasable(&self, slot: &Slot<T, M, E>) -> bool {
        matches!(
            slot,
            Slot::Item(_)
                | Slot::Frame {
                    state: FrameState::Done { .. },
                    ..
                }
        )
    }

    /// Next releasable position: the head in order, or with `ordered=false` the
    /// first processed frame before any item.
    fn next_release(&self) -> Option<u64> {
        let (&head, slot) = self.slots.first_key_value()?;
        if self.is_releasable(slot) {
            return Some(head);
        }
        if self.config.ordered {
            return None;
        }
        for (&pos, slot) in &self.slots {
            match &**slot {
                Slot::Item(_) => return None,
                Slot::Frame {
                    state: FrameState::Done { .. },
                    ..
                } => return Some(pos),
                Slot::Frame { .. } => {}
            }
        }
        None
    }

    fn release(&mut self, pos: u64) -> Option<Output<T, M, E>> {
        match *self.slots.remove(&pos)? {
            Slot::Item(item) => {
                self.items -= 1;
                Some(Output::Item { pos, item })
            }
            Slot::Frame {
                seq,
                tag,
                bytes,
                admitted,
                state:
                    FrameState::Done {
                        result,
                        worker,
                        processing_time,
                    },
            } => {
                self.frames -= 1;
                self.bytes -= bytes;
                self.done -= 1;
                self.leaving += 1;
                self.leaving_bytes += bytes;
                let c = &mut self.counters;
                match &result {
                    Ok(_) => {}
                    Err(ProcessError::TimedOut(_)) => {
                        c.errors += 1;
                        c.timeouts += 1;
                    }
                    Err(_) => c.errors += 1,
                }
                Some(Output::Frame(Processed {
                    seq,
                    tag,
                    result,
                    worker,
                    processing_time,
                    admitted,
                    bytes,
                }))
            }
            Slot::Frame { .. } => None,
        }
    }

    fn reorder_depth(&self) -> usize {
        let head_done = matches!(
            self.slots.first_key_value().map(|(k, v)| (k, &**v)),
            Some((
                _,
                Slot::Frame {
                    state: FrameState::Done { .. },
                    ..
                }
            ))
        );
        self.done - usize::from(head_done)
    }

    /// Empties the table; returns it so the caller drops frames unlocked.
    fn clear(&mut self) -> BTreeMap<u64, Box<Slot<T, M, E>>> {
        // Flushed frames count as dropped, so frames-in always equals
        // frames-out + dropped + in-flight.
        self.counters.dropped += self.frames as u64;
        self.generation += 1;
        self.queued.clear();
        self.frames = 0;
        self.bytes = 0;
        self.items = 0;
        self.done = 0;
        std::mem::take(&mut self.slots)
    }
}

struct Ticket {
    generation: u64,
}

struct Job<T> {
    pos: u64,
    seq: u64,
    generation: u64,
    frame: T,
    timeout: Option<Duration>,
}

struct Inner<T, M, E> {
    shared: Mutex<Shared<T, M, E>>,
    /// Producers waiting for room.
    room: Condvar,
    /// The consumer waiting for a releasable slot.
    ready: Condvar,
    tx: mpsc::Sender<Ticket>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Ticket>>,
    /// Current generation, so workers abandon async work on flush.
    generation: watch::Sender<u64>,
    /// Target number of workers.
    target: watch::Sender<usize>,
    processor: Arc<dyn Processor<T>>,
    handle: Handle,
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

pub(crate) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    // Nothing panics while holding the lock; if something ever did, the
    // state is still consistent enough to tear down.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
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
        let workers = config.workers.max(1);
        *lock(&LIVE_ENGINES) += 1;
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                halted: None,
                generation: 0,
                next_pos: 0,
                next_seq: 0,
                slots: BTreeMap::new(),
                queued: VecDeque::new(),
                frames: 0,
                bytes: 0,
                items: 0,
                done: 0,
                blocked: 0,
                blocked_frames: 0,
                waiting_consumers: 0,
                leaving: 0,
                leaving_bytes: 0,
                config,
                alive: Vec::new(),
                counters: Counters::default(),
            }),
            room: Condvar::new(),
            ready: Condvar::new(),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            generation: watch::Sender::new(0),
            target: watch::Sender::new(workers),
            processor,
            handle,
        });
        let engine = Engine { inner };
        engine.spawn_workers(&mut lock(&engine.inner.shared), workers);
        engine
    }

    fn spawn_workers(&self, s: &mut Shared<T, M, E>, workers: usize) {
        self.inner.target.send_replace(workers);
        if s.alive.len() < workers {
            s.alive.resize(workers, false);
        }
        if s.counters.per_worker.len() < workers {
            s.counters.per_worker.resize(workers, 0);
        }
        for id in 0..workers {
            if !s.alive[id] {
                s.alive[id] = true;
                self.inner.handle.spawn(worker(self.inner.clone(), id));
            }
        }
    }

    /// Applies new limits; a changed worker count takes effect at once,
    /// without dropping or reordering anything.
    pub fn configure(&self, config: Config) {
        let mut s = lock(&self.inner.shared);
        let workers = config.workers.max(1);
        s.config = config;
        self.spawn_workers(&mut s, workers);
        drop(s);
        self.inner.room.notify_all();
        self.inner.ready.notify_all();
    }

    /// Admits a frame, blocking while the engine is full (unless leaky).
    pub fn submit_frame(&self, frame: T, tag: M, bytes: u64) -> Result<Admission, Halt> {
        let mut s = lock(&self.inner.shared);
        loop {
            if let Some(halt) = s.halted {
                return Err(halt);
            }
            let channel_free = self.inner.tx.capacity() > 0;
            if channel_free && s.has_room(bytes) {
                let seq = s.insert_frame(frame, tag, bytes);
                // Cannot fail: capacity checked under the lock, and only
                // producers holding the lock send.
                let _ = self.inner.tx.try_send(Ticket {
                    generation: s.generation,
                });
                return Ok(Admission::Queued { seq });
            }
            match s.config.leaky {
                Leaky::No => {
                    s.blocked_frames += 1;
                    s = self.wait_for_room(s);
                    s.blocked_frames -= 1;
                }
                Leaky::Upstream => {
                    s.counters.frames_in += 1;
                    s.counters.dropped += 1;
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
                        s.counters.frames_in += 1;
                        s.counters.dropped += 1;
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
        let mut s = lock(&self.inner.shared);
        loop {
            if let Some(halt) = s.halted {
                return Err(halt);
            }
            if s.items < MAX_PENDING_ITEMS {
                break;
            }
            s = self.wait_for_room(s);
        }
        let pos = s.next_pos;
        s.next_pos += 1;
        s.slots.insert(pos, Box::new(Slot::Item(item)));
        s.items += 1;
        let head = s.slots.first_key_value().map(|(k, _)| *k) == Some(pos);
        let generation = s.generation;
        drop(s);
        if head {
            self.inner.ready.notify_one();
        }
        Ok(ItemId { pos, generation })
    }

    /// Blocks until the consumer has popped the item, so everything before
    /// it is out; `Err` if a flush discarded it or the engine halted first.
    pub fn wait_released(&self, id: ItemId) -> Result<(), Halt> {
        let mut s = lock(&self.inner.shared);
        loop {
            if s.generation != id.generation {
                return Err(gst::FlowError::Flushing);
            }
            if !s.slots.contains_key(&id.pos) {
                return Ok(());
            }
            if let Some(halt) = s.halted {
                return Err(halt);
            }
            s = self.wait_for_room(s);
        }
    }

    /// Waits for a pop, halt or flush, counting the producer as blocked.
    fn wait_for_room<'a>(
        &'a self,
        mut s: MutexGuard<'a, Shared<T, M, E>>,
    ) -> MutexGuard<'a, Shared<T, M, E>> {
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
    /// A popped frame still counts as inside (stats and limits) until the
    /// consumer reports it with [`Engine::frame_left`]; a consumer that
    /// never does fills the engine up.
    pub fn pop(&self) -> Result<Output<T, M, E>, Halt> {
        let mut s = lock(&self.inner.shared);
        loop {
            if let Some(halt) = s.halted {
                return Err(halt);
            }
            if let Some(pos) = s.next_release()
                && let Some(out) = s.release(pos)
            {
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
    /// releasable. Popped frames must be reported with [`Engine::frame_left`].
    pub fn try_pop(&self) -> Result<Option<Output<T, M, E>>, Halt> {
        let mut s = lock(&self.inner.shared);
        if let Some(halt) = s.halted {
            return Err(halt);
        }
        let out = s.next_release().and_then(|pos| s.release(pos));
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
        let mut s = lock(&self.inner.shared);
        if s.halted != Some(gst::FlowError::Flushing) {
            s.halted = Some(halt);
        }
        drop(s);
        self.inner.room.notify_all();
        self.inner.ready.notify_all();
    }

    /// Discards everything inside and refuses new work until
    /// [`Engine::flush_stop`]. Async work in progress is abandoned; results of
    /// blocking work are discarded when they arrive.
    pub fn flush_start(&self) {
        self.discard(|s| s.halted = Some(gst::FlowError::Flushing));
    }

    /// Accepts work again; positions and frame numbers restart at 0. Also
    /// discards everything, for a FLUSH_STOP that came without FLUSH_START.
    pub fn flush_stop(&self) {
        self.discard(|s| {
            s.halted = None;
            s.next_pos = 0;
            s.next_seq = 0;
        });
    }

    /// Empties the table, then `update`s the state; wakes everyone, tells
    /// workers to abandon async work, and drops the frames unlocked.
    fn discard(&self, update: impl FnOnce(&mut Shared<T, M, E>)) {
        let mut s = lock(&self.inner.shared);
        let old = s.clear();
        update(&mut s);
        let generation = s.generation;
        drop(s);
        self.inner.generation.send_replace(generation);
        self.inner.room.notify_all();
        self.inner.ready.notify_all();
        drop(old);
    }

    /// Clears the halt if it is `halt` (not a flush: downstream was linked
    /// again, or a new stream follows EOS), keeping the sequence going.
    /// True if it did, so the caller restarts the consumer.
    pub fn resume_from(&self, halt: Halt) -> bool {
        let mut s = lock(&self.inner.shared);
        if s.halted == Some(halt) && halt != gst::FlowError::Flushing {
            s.halted = None;
            return true;
        }
        false
    }

    pub fn halted(&self) -> Option<Halt> {
        lock(&self.inner.shared).halted
    }

    /// The consumer reports a popped frame: pushed downstream, with its
    /// latency from entry to exit, or not (dropped, failed, refused).
    /// `bytes` is [`Processed::bytes`].
    pub fn frame_left(&self, pushed: bool, latency: Duration, bytes: u64) {
        let mut s = lock(&self.inner.shared);
        s.leaving = s.leaving.saturating_sub(1);
        s.leaving_bytes = s.leaving_bytes.saturating_sub(bytes);
        let c = &mut s.counters;
        if pushed {
            c.frames_out += 1;
            c.released += 1;
            c.total_latency += latency;
            c.max_latency = c.max_latency.max(latency);
        } else {
            c.dropped += 1;
        }
        let wake = s.wake_room();
        drop(s);
        // Its place is free now.
        if wake {
            self.inner.room.notify_all();
        }
    }

    pub fn stats(&self) -> Stats {
        let s = lock(&self.inner.shared);
        let c = &s.counters;
        let avg = |total: Duration, n: u64| {
            let ns = total.as_nanos().checked_div(u128::from(n)).unwrap_or(0);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        };
        let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Stats {
            frames_in: c.frames_in,
            frames_out: c.frames_out,
            dropped: c.dropped,
            errors: c.errors,
            timeouts: c.timeouts,
            in_flight: to_u32(s.frames + s.leaving),
            max_in_flight: to_u32(c.max_in_flight),
            reorder_depth: to_u32(s.reorder_depth()),
            max_reorder_depth: to_u32(c.max_reorder_depth),
            workers: to_u32(s.config.workers),
            blocked_upstream: to_u32(s.blocked),
            avg_processing_time: avg(c.total_processing, c.processed),
            max_processing_time: c.max_processing,
            avg_latency: avg(c.total_latency, c.released),
            max_latency: c.max_latency,
            per_worker: c.per_worker.clone(),
        }
    }

    /// Frames inside: queued, processing or waiting for release.
    pub fn frames_inside(&self) -> usize {
        lock(&self.inner.shared).frames
    }

    fn shutdown(&self) {
        self.flush_start();
        // Every worker retires.
        self.inner.target.send_replace(0);
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

impl<T, M, E> Inner<T, M, E> {
    /// Leaves the pool if the worker count dropped below this id.
    fn retire(&self, id: usize) -> bool {
        // Checked again under the lock, which spawn_workers holds.
        if id < *self.target.borrow() {
            return false;
        }
        let mut s = lock(&self.shared);
        if id >= *self.target.borrow() {
            s.alive[id] = false;
            return true;
        }
        false
    }

    fn take(&self, ticket: Ticket) -> Option<Job<T>> {
        let mut s = lock(&self.shared);
        if ticket.generation != s.generation {
            return None;
        }
        let pos = s.queued.pop_front()?;
        let (generation, timeout) = (s.generation, s.config.timeout);
        match s.slots.get_mut(&pos).map(|b| &mut **b) {
            Some(Slot::Frame { state, seq, .. }) => {
                match std::mem::replace(state, FrameState::Processing) {
                    FrameState::Queued(frame) => Some(Job {
                        pos,
                        seq: *seq,
                        generation,
                        frame,
                        timeout,
                    }),
                    other => {
                        *state = other;
                        None
                    }
                }
            }
            _ => None,
        }
    }

    fn complete(
        &self,
        pos: u64,
        generation: u64,
        worker: usize,
        result: Result<T, ProcessError>,
        processing_time: Duration,
    ) {
        let mut s = lock(&self.shared);
        if generation != s.generation {
            // Flushed while processing: drop the result outside the lock.
            drop(s);
            drop(result);
            return;
        }
        let Some(Slot::Frame { state, .. }) = s.slots.get_mut(&pos).map(|b| &mut **b) else {
            return;
        };
        *state = FrameState::Done {
            result,
            worker,
            processing_time,
        };
        s.done += 1;
        let depth = s.reorder_depth();
        let c = &mut s.counters;
        c.max_reorder_depth = c.max_reorder_depth.max(depth);
        c.processed += 1;
        c.total_processing += processing_time;
        c.max_processing = c.max_processing.max(processing_time);
        if let Some(n) = c.per_worker.get_mut(worker) {
            *n += 1;
        }
        let wake = s.waiting_consumers > 0
            && (!s.config.ordered || s.slots.first_key_value().map(|(k, _)| *k) == Some(pos));
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }
}

type Blocked<T> = tokio::task::JoinHandle<std::thread::Result<Result<T, String>>>;

/// Runs one frame's work with the timeout, catching panics. The result is
/// `None` if a flush overtook it. A blocking closure that timed out cannot
/// be stopped: its handle comes back so the worker waits for it before
/// taking another frame, which keeps threads and memory bounded.
async fn run_work<T: Send + 'static>(
    work: Work<T>,
    timeout: Option<Duration>,
    generation: &watch::Sender<u64>,
    job_generation: u64,
) -> (Option<Result<T, ProcessError>>, Option<Blocked<T>>) {
    let timed = |d: Duration| ProcessError::TimedOut(d);
    let joined = |j: Result<std::thread::Result<Result<T, String>>, tokio::task::JoinError>| match j
    {
        Ok(Ok(r)) => r.map_err(ProcessError::Failed),
        Ok(Err(payload)) => Err(ProcessError::Panicked(panic_message(payload))),
        Err(e) => Err(ProcessError::Panicked(e.to_string())),
    };
    match work {
        Work::Ready(r) => (Some(r.map_err(ProcessError::Failed)), None),
        Work::Blocking(f) => {
            // Not aborted on flush either: the worker waits for it and the
            // result is discarded.
            let mut handle = tokio::task::spawn_blocking(move || catch_unwind(AssertUnwindSafe(f)));
            match timeout {
                Some(d) => match tokio::time::timeout(d, &mut handle).await {
                    Ok(j) => (Some(joined(j)), None),
                    Err(_) => (Some(Err(timed(d))), Some(handle)),
                },
                None => (Some(joined(handle.await)), None),
            }
        }
        Work::Async(fut) => {
            // Subscribed only here: a flush since the job was taken is seen
            // at once, as wait_for checks the current value first.
            let mut generation = generation.subscribe();
            let fut = AssertUnwindSafe(fut).catch_unwind();
            let fut = async move {
                match timeout {
                    Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| timed(d)),
                    None => Ok(fut.await),
                }
            };
            let outcome = tokio::select! {
                r = fut => Some(match r {
                    Ok(Ok(r)) => r.map_err(ProcessError::Failed),
                    Ok(Err(payload)) => Err(ProcessError::Panicked(panic_message(payload))),
                    Err(e) => Err(e),
                }),
                _ = generation.wait_for(|g| *g != job_generation) => None,
            };
            (outcome, None)
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
            let mut s = lock(&inner.shared);
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
