// SPDX-License-Identifier: MPL-2.0
//! Admission: room for a frame, what becomes of a new one (queued, let
//! through, refused), and when blocked producers wake.

use std::time::Duration;

use super::super::config::{Leaky, MAX_PASSED};
use super::super::output::Skip;
use super::{Admit, FrameState, Slot, Table};

impl<T, M, E> Table<T, M, E> {
    /// Whether a pop or a frame leaving wakes the waiters on `room`. Frame
    /// producers only once a quarter of the limit is free (at least one
    /// frame): a fast upstream then refills in bursts instead of paying a
    /// context switch per frame, and the frames still inside keep the
    /// workers busy. Waiters for items and barriers wake at once.
    pub(in crate::engine) fn wake_room(&self) -> bool {
        if self.blocked > self.blocked_frames {
            return true;
        }
        if self.blocked_frames == 0 {
            return false;
        }
        let limit = self.frame_limit();
        self.bounded_inside() <= limit - (limit / 4).max(1)
    }

    /// Frames inside that count towards the frames bound: all but those
    /// let through. A frame being pushed is still inside, so it counts.
    fn bounded_inside(&self) -> usize {
        (self.frames - self.passed) + self.leaving.saturating_sub(self.leaving_passed)
    }

    fn bytes_fit(&self, bytes: u64) -> bool {
        // A single frame always fits, or an oversized one would block forever.
        self.config.max_bytes == 0
            || self.frames + self.leaving == 0
            || (self.bytes + self.leaving_bytes).saturating_add(bytes) <= self.config.max_bytes
    }

    /// Room for a frame to process.
    pub(in crate::engine) fn has_room(&self, bytes: u64) -> bool {
        self.bounded_inside() < self.frame_limit() && self.bytes_fit(bytes)
    }

    /// Room for a frame to let through.
    pub(in crate::engine) fn has_pass_room(&self, bytes: u64) -> bool {
        self.passed + self.leaving_passed < MAX_PASSED && self.bytes_fit(bytes)
    }

    /// Decides for the next frame: off the interval it passes; with
    /// `leaky=pass` it is processed only if a worker can start it at once
    /// (`running`: frames on a worker now). `passable`: the frame may
    /// leave unprocessed (not when the processor changes its caps).
    pub(in crate::engine) fn admit(
        &self,
        bytes: u64,
        channel_free: bool,
        running: usize,
        passable: bool,
    ) -> Admit {
        let pass = |skip| {
            if self.has_pass_room(bytes) {
                Admit::Pass(skip)
            } else {
                Admit::Full { passing: true }
            }
        };
        if passable && self.config.off_interval(self.next_seq) {
            return pass(Skip::Interval);
        }
        let room = channel_free && self.has_room(bytes);
        if !passable || self.config.leaky != Leaky::Pass {
            return if room {
                Admit::Process
            } else {
                Admit::Full { passing: false }
            };
        }
        // Queued frames are about to take the free workers.
        if room && self.queued.len() + running < self.workers {
            Admit::Process
        } else {
            pass(Skip::Busy)
        }
    }

    /// Admits a frame (room checked by the caller); its sequence number.
    pub(in crate::engine) fn insert_frame(&mut self, frame: T, tag: M, bytes: u64) -> u64 {
        let (pos, seq) = self.insert(FrameState::Queued(frame), tag, bytes);
        self.queued.push_back(pos);
        seq
    }

    /// Admits a frame that passes unprocessed (room checked by the
    /// caller); its sequence number, and whether a waiting consumer can
    /// release something now.
    pub(in crate::engine) fn insert_passed(
        &mut self,
        frame: T,
        tag: M,
        bytes: u64,
        skip: Skip,
    ) -> (u64, bool) {
        let (_, seq) = self.insert(FrameState::Passed(frame, skip), tag, bytes);
        self.passed += 1;
        if skip == Skip::Busy {
            // For automatic workers: under leaky=no this frame would wait
            // behind a full pool, so it is demand for more workers.
            self.window.queued += self.workers as u64;
        }
        let wake = self.waiting_consumers > 0 && self.next_release().is_some();
        (seq, wake)
    }

    /// A worker just became free (`running` now on workers): with
    /// `leaky=pass`, the newest frame, if it was let through for lack of
    /// a worker less than [`Table::grace`] ago and still waits behind a
    /// frame in processing, is queued for processing after all. Timer
    /// jitter then does not cost a whole frame interval when the
    /// processing time is a multiple of it, and its latency stays within
    /// about one processing time. True if it was: the caller sends its
    /// ticket.
    pub(in crate::engine) fn process_newest_passed(&mut self, running: usize) -> bool {
        if self.config.leaky != Leaky::Pass || self.queued.len() + running >= self.workers {
            return false;
        }
        let grace = self.grace();
        let behind_processing = self.slots.values().any(|s| {
            matches!(
                &**s,
                Slot::Frame {
                    state: FrameState::Processing,
                    ..
                }
            )
        });
        let Some((&pos, slot)) = self.slots.last_key_value() else {
            return false;
        };
        let fresh = matches!(
            &**slot,
            Slot::Frame { admitted, state: FrameState::Passed(_, Skip::Busy), .. }
                if admitted.elapsed() <= grace
        );
        if !fresh || !behind_processing || !self.config.ordered {
            return false;
        }
        let Some(Slot::Frame { state, .. }) = self.slots.get_mut(&pos).map(|b| &mut **b) else {
            return false;
        };
        let FrameState::Passed(frame, _) = std::mem::replace(state, FrameState::Processing) else {
            return false;
        };
        *state = FrameState::Queued(frame);
        self.passed -= 1;
        self.queued.push_back(pos);
        true
    }

    /// How late a worker may come for a frame let through: a tenth of the
    /// mean processing time, at most 10 ms.
    fn grace(&self) -> Duration {
        (self.counters.mean_processing() / 10).min(Duration::from_millis(10))
    }
}
