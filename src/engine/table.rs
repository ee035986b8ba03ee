// SPDX-License-Identifier: MPL-2.0
//! The slot table: everything under the engine's one lock, with no
//! threads and no waiting, so every rule of admission, release and flush
//! is a plain method that can be tested alone.
//!
//! Every frame and item takes the next position; slots are ordered by
//! position. A frame's slot goes Queued → Processing → Done and is
//! released when it is releasable (see [`Table::next_release`]); it then
//! still counts as inside, as `leaving`, until its [`Leaving`] guard
//! reports it ([`Table::frame_left`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::config::Config;
use super::control::Sample;
use super::output::{Leaving, Output, Processed, Report, Skip};
use super::stats::{Counters, Gauges, Stats};
use super::work::ProcessError;
use super::{Halt, ItemId};

/// Events and serialized queries waiting behind frames. Past this many the
/// producer blocks too, so no queue in the engine is unbounded.
pub const MAX_PENDING_ITEMS: usize = 1024;

pub(super) enum FrameState<T> {
    Queued(T),
    Processing,
    Done {
        result: Result<T, ProcessError>,
        worker: usize,
        processing_time: Duration,
    },
    /// Let through unprocessed: releasable at once, in order.
    Passed(T, Skip),
}

/// Whether a frame whose worker is about to start it is already late
/// (QoS); called under the table's lock, so it must only read.
pub type LateCheck<M> = Box<dyn Fn(&M) -> bool + Send + Sync>;

/// What becomes of a new frame, from [`Table::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admit {
    /// Queue it for a worker.
    Process,
    /// Let it through unprocessed.
    Pass(Skip),
    /// No room: for a frame to process (leaky decides), or for one to
    /// let through (the producer waits).
    Full { passing: bool },
}

/// What a worker holding a ticket gets, from [`Table::take`] or
/// [`Table::take_batch`].
pub(super) enum Take<T> {
    Job(Job<T>),
    Batch(Batch<T>),
    /// The oldest queued frame was late and now passes unprocessed; true
    /// if a waiting consumer can release something.
    Passed(bool),
    /// Stale ticket, or nothing queued.
    Nothing,
}

pub(super) enum Slot<T, M, E> {
    Frame {
        seq: u64,
        tag: M,
        bytes: u64,
        admitted: Instant,
        state: FrameState<T>,
    },
    Item(E),
}

impl<T, M, E> Slot<T, M, E> {
    pub(super) fn is_item(&self) -> bool {
        matches!(self, Slot::Item(_))
    }
}

/// Boxed: B-tree nodes shift their values on removal, and a slot is
/// hundreds of bytes.
pub(super) type Slots<T, M, E> = BTreeMap<u64, Box<Slot<T, M, E>>>;

/// A queued frame a worker takes.
pub(super) struct Job<T> {
    pub(super) pos: u64,
    pub(super) seq: u64,
    pub(super) generation: u64,
    pub(super) frame: T,
    pub(super) timeout: Option<Duration>,
}

/// Consecutive queued frames a worker takes at once, oldest first.
pub(super) struct Batch<T> {
    pub(super) generation: u64,
    pub(super) timeout: Option<Duration>,
    pub(super) pos: Vec<u64>,
    pub(super) seq: Vec<u64>,
    pub(super) frames: Vec<T>,
    /// Some were late and pass now: a waiting consumer may release them.
    pub(super) wake: bool,
}

pub(super) struct Table<T, M, E> {
    pub(super) halted: Option<Halt>,
    /// Bumped by every flush; tickets, jobs and items of an older one are
    /// stale.
    pub(super) generation: u64,
    /// Position of the next frame or item.
    next_pos: u64,
    /// Sequence number of the next frame.
    next_seq: u64,
    slots: Slots<T, M, E>,
    /// Positions of frames no worker has started, oldest first.
    queued: VecDeque<u64>,
    frames: usize,
    bytes: u64,
    items: usize,
    /// Processed frames waiting for release.
    done: usize,
    /// Frames let through unprocessed, not released yet: they count
    /// towards the bytes but not the frames bound, up to `MAX_PASSED`.
    passed: usize,
    /// Producers blocked in submit or wait_released: the waiters on `room`.
    pub(super) blocked: usize,
    /// Of those, producers of frames waiting for room (not items or
    /// barriers): they are woken with hysteresis, see `wake_room`.
    pub(super) blocked_frames: usize,
    /// Consumers waiting in pop: the waiters on `ready`. Notifying only
    /// when someone waits saves a futex syscall per frame on each side.
    pub(super) waiting_consumers: usize,
    /// Frames popped but not yet reported as left: the consumer is
    /// pushing them, so they still count as inside.
    leaving: usize,
    leaving_bytes: u64,
    /// Of those, frames let through unprocessed.
    leaving_passed: usize,
    pub(super) config: Config,
    /// Workers in use: `config.workers`, or the automatic count.
    pub(super) workers: usize,
    /// What the automatic controller reads, since its last sample.
    pub(super) window: Sample,
    pub(super) counters: Counters,
    /// Given to every released frame, so that it reports back here.
    report: Weak<dyn Report>,
    /// QoS: whether a frame about to start is late; see `take`.
    pub(super) late: Option<LateCheck<M>>,
}

impl<T, M, E> Table<T, M, E> {
    pub(super) fn new(config: Config, report: Weak<dyn Report>) -> Self {
        Table {
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
            passed: 0,
            blocked: 0,
            blocked_frames: 0,
            waiting_consumers: 0,
            leaving: 0,
            leaving_bytes: 0,
            leaving_passed: 0,
            workers: config.initial_workers().max(1),
            config,
            window: Sample::default(),
            counters: Counters::default(),
            report,
            late: None,
        }
    }

    /// The bound on frames inside now.
    pub(super) fn frame_limit(&self) -> usize {
        self.config.frame_limit(self.workers)
    }

    /// Frames queued, processing or waiting for release.
    pub(super) fn frames(&self) -> usize {
        self.frames
    }

    /// Frames no worker has taken yet.
    pub(super) fn queued_frames(&self) -> usize {
        self.queued.len()
    }

    fn insert(&mut self, state: FrameState<T>, tag: M, bytes: u64) -> (u64, u64) {
        let (pos, seq) = (self.next_pos, self.next_seq);
        self.next_pos += 1;
        self.next_seq += 1;
        let admitted = Instant::now();
        self.slots.insert(
            pos,
            Box::new(Slot::Frame {
                seq,
                tag,
                bytes,
                admitted,
                state,
            }),
        );
        self.frames += 1;
        self.bytes += bytes;
        self.counters.frames_in += 1;
        self.counters.max_in_flight = self.counters.max_in_flight.max(self.frames + self.leaving);
        (pos, seq)
    }

    /// Counts a new frame that leaky mode refused: it entered and will not
    /// leave.
    pub(super) fn refuse_frame(&mut self) {
        self.counters.frames_in += 1;
        self.counters.dropped += 1;
    }

    pub(super) fn has_item_room(&self) -> bool {
        self.items < MAX_PENDING_ITEMS
    }

    /// Queues an item behind everything inside; its id, and whether it is
    /// the head (releasable at once).
    pub(super) fn insert_item(&mut self, item: E) -> (ItemId, bool) {
        let pos = self.next_pos;
        self.next_pos += 1;
        self.slots.insert(pos, Box::new(Slot::Item(item)));
        self.items += 1;
        let head = self.slots.first_key_value().map(|(k, _)| *k) == Some(pos);
        let id = ItemId {
            pos,
            generation: self.generation,
        };
        (id, head)
    }

    /// Whether the item left: `None` while it waits, `Err` if a flush
    /// discarded it or the engine halted first.
    pub(super) fn item_released(&self, id: ItemId) -> Option<Result<(), Halt>> {
        if self.generation != id.generation {
            return Some(Err(Halt::Flushing));
        }
        if !self.slots.contains_key(&id.pos) {
            return Some(Ok(()));
        }
        self.halted.map(Err)
    }

    /// Drops the oldest frame not yet started; false if there is none.
    pub(super) fn drop_oldest_queued(&mut self) -> bool {
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

    /// Hands the oldest queued frame to a worker holding a ticket of
    /// `generation`, or lets it through if it is already late (QoS).
    pub(super) fn take(&mut self, generation: u64) -> Take<T> {
        if generation != self.generation {
            return Take::Nothing;
        }
        match self.take_front() {
            None => Take::Nothing,
            Some(Err(wake)) => Take::Passed(wake),
            Some(Ok((pos, seq, frame))) => Take::Job(Job {
                pos,
                seq,
                generation,
                frame,
                timeout: self.config.timeout,
            }),
        }
    }

    /// The oldest queued frame, now processing: its position, sequence
    /// number and payload; `Err(wake)` if it was late and passes instead.
    pub(super) fn take_front(&mut self) -> Option<Result<(u64, u64, T), bool>> {
        let pos = self.queued.pop_front()?;
        let late = self.late.as_ref();
        let Some(Slot::Frame {
            state, seq, tag, ..
        }) = self.slots.get_mut(&pos).map(|b| &mut **b)
        else {
            return None;
        };
        let skip = late.is_some_and(|late| late(tag));
        let seq = *seq;
        let frame = match std::mem::replace(state, FrameState::Processing) {
            FrameState::Queued(frame) => frame,
            other => {
                *state = other;
                return None;
            }
        };
        if skip {
            *state = FrameState::Passed(frame, Skip::Late);
            self.passed += 1;
            let wake = self.waiting_consumers > 0 && self.next_release().is_some();
            return Some(Err(wake));
        }
        Some(Ok((pos, seq, frame)))
    }

    /// Stores a worker's result (of the current generation, checked by the
    /// caller); true if a waiting consumer can release something now.
    #[cfg(test)]
    pub(super) fn complete(
        &mut self,
        pos: u64,
        worker: usize,
        result: Result<T, ProcessError>,
        processing_time: Duration,
        more_soon: bool,
    ) -> bool {
        self.complete_on_cpu(
            pos,
            worker,
            result,
            processing_time,
            Duration::ZERO,
            more_soon,
        )
    }

    /// [`Table::complete`] of blocking work that spent `cpu` on its thread
    /// (counted with its processing time, in the same window).
    pub(super) fn complete_on_cpu(
        &mut self,
        pos: u64,
        worker: usize,
        result: Result<T, ProcessError>,
        processing_time: Duration,
        cpu: Duration,
        more_soon: bool,
    ) -> bool {
        // Once: a timed-out frame's late result is not its result.
        if !self.store(pos, worker, result, processing_time) {
            return false;
        }
        self.window.completed += 1;
        self.window.processing += processing_time;
        self.window.cpu += cpu;
        self.window.queued += self.queued.len() as u64;
        self.wake_consumer(more_soon)
    }

    /// A frame's result, unless it already has one (a timed-out frame's
    /// late result is not its result); true if stored.
    pub(super) fn store(
        &mut self,
        pos: u64,
        worker: usize,
        result: Result<T, ProcessError>,
        processing_time: Duration,
    ) -> bool {
        let Some(Slot::Frame { state, .. }) = self.slots.get_mut(&pos).map(|b| &mut **b) else {
            return false;
        };
        if !matches!(state, FrameState::Processing) {
            return false;
        }
        *state = FrameState::Done {
            result,
            worker,
            processing_time,
        };
        self.done += 1;
        let depth = self.reorder_depth();
        self.counters.processed(worker, processing_time, depth);
        true
    }

    /// Whether a completed frame wakes the waiting consumer: once something
    /// is releasable. When the same worker completes the next queued frame
    /// at once (`more_soon`: work that was ready without waiting), only
    /// when nothing is queued any more (a live stream: at once) or a
    /// quarter of the limit is done (a fast upstream: the consumer pushes
    /// in bursts instead of a context switch per frame).
    pub(super) fn wake_consumer(&self, more_soon: bool) -> bool {
        if self.waiting_consumers == 0 {
            return false;
        }
        let batch = (self.frame_limit() / 4).max(1);
        if more_soon && !self.queued.is_empty() && self.done < batch {
            return false;
        }
        !self.config.ordered
            || self
                .slots
                .first_key_value()
                .is_some_and(|(_, slot)| Self::is_releasable(slot))
    }

    fn is_releasable(slot: &Slot<T, M, E>) -> bool {
        matches!(
            slot,
            Slot::Item(_)
                | Slot::Frame {
                    state: FrameState::Done { .. } | FrameState::Passed(..),
                    ..
                }
        )
    }

    /// Next releasable position: the head in order, or with `ordered=false` the
    /// first processed frame before any item.
    pub(super) fn next_release(&self) -> Option<u64> {
        let (&head, slot) = self.slots.first_key_value()?;
        if Self::is_releasable(slot) {
            return Some(head);
        }
        if self.config.ordered {
            return None;
        }
        for (&pos, slot) in &self.slots {
            match &**slot {
                Slot::Item(_) => return None,
                Slot::Frame {
                    state: FrameState::Done { .. } | FrameState::Passed(..),
                    ..
                } => return Some(pos),
                Slot::Frame { .. } => {}
            }
        }
        None
    }

    /// Takes a releasable slot out; a frame moves to `leaving`.
    pub(super) fn release(&mut self, pos: u64) -> Option<Output<T, M, E>> {
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
                self.counters.released(&result);
                Some(Output::Frame(Processed {
                    seq,
                    tag,
                    result,
                    worker,
                    processing_time,
                    admitted,
                    skipped: None,
                    leaving: Leaving::new(self.report.clone(), bytes, false),
                }))
            }
            Slot::Frame {
                seq,
                tag,
                bytes,
                admitted,
                state: FrameState::Passed(frame, skip),
            } => {
                self.frames -= 1;
                self.bytes -= bytes;
                self.passed -= 1;
                self.leaving += 1;
                self.leaving_bytes += bytes;
                self.leaving_passed += 1;
                self.counters.skipped += 1;
                Some(Output::Frame(Processed {
                    seq,
                    tag,
                    result: Ok(frame),
                    worker: 0,
                    processing_time: Duration::ZERO,
                    admitted,
                    skipped: Some(skip),
                    leaving: Leaving::new(self.report.clone(), bytes, true),
                }))
            }
            slot @ Slot::Frame { .. } => {
                // Not releasable: back in its place.
                self.slots.insert(pos, Box::new(slot));
                None
            }
        }
    }

    /// The next releasable output, if any.
    pub(super) fn pop(&mut self) -> Option<Output<T, M, E>> {
        self.next_release().and_then(|pos| self.release(pos))
    }

    /// A released frame of `bytes` left: pushed with `latency`, or not.
    /// Saturating: a frame popped before a flush may report after it.
    pub(super) fn frame_left(&mut self, pushed: bool, latency: Duration, bytes: u64) {
        self.leaving = self.leaving.saturating_sub(1);
        self.leaving_bytes = self.leaving_bytes.saturating_sub(bytes);
        self.counters.left(pushed, latency);
    }

    /// [`Table::frame_left`] for a frame that was let through.
    pub(super) fn passed_frame_left(&mut self, pushed: bool, latency: Duration, bytes: u64) {
        self.leaving_passed = self.leaving_passed.saturating_sub(1);
        self.frame_left(pushed, latency, bytes);
    }

    /// Processed frames waiting behind an unfinished one.
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

    /// Stops producers and the consumer with `halt`; a flush wins.
    pub(super) fn halt(&mut self, halt: Halt) {
        if self.halted != Some(Halt::Flushing) {
            self.halted = Some(halt);
        }
    }

    /// Clears the halt if it is `halt` and not a flush; true if it did.
    pub(super) fn resume_from(&mut self, halt: Halt) -> bool {
        if self.halted == Some(halt) && halt != Halt::Flushing {
            self.halted = None;
            return true;
        }
        false
    }

    /// Empties the table and refuses work until [`Table::flush_stop`];
    /// returns the slots so the caller drops them unlocked.
    pub(super) fn flush_start(&mut self) -> Slots<T, M, E> {
        let old = self.clear();
        self.halted = Some(Halt::Flushing);
        old
    }

    /// Empties the table and accepts work again, numbering from 0.
    pub(super) fn flush_stop(&mut self) -> Slots<T, M, E> {
        let old = self.clear();
        self.halted = None;
        self.next_pos = 0;
        self.next_seq = 0;
        old
    }

    fn clear(&mut self) -> Slots<T, M, E> {
        // Flushed frames count as dropped, so frames-in always equals
        // frames-out + dropped + in-flight.
        self.counters.dropped += self.frames as u64;
        self.generation += 1;
        self.queued.clear();
        self.frames = 0;
        self.bytes = 0;
        self.items = 0;
        self.done = 0;
        self.passed = 0;
        std::mem::take(&mut self.slots)
    }

    pub(super) fn stats(&self) -> Stats {
        self.counters.snapshot(Gauges {
            in_flight: self.frames + self.leaving,
            reorder_depth: self.reorder_depth(),
            workers: self.workers,
            blocked: self.blocked,
        })
    }
}

mod admit;
mod batch;
#[cfg(test)]
mod tests;
