// SPDX-License-Identifier: MPL-2.0
//! The engine's counters and their snapshot, [`Stats`].

use std::time::Duration;

use super::work::ProcessError;

/// Snapshot of the counters; see docs/semantics.md#stats. `dropped` counts every
/// frame that entered and will not leave: leaky drops, on-error=drop, and
/// frames discarded by a flush.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Frames let through unprocessed (`leaky=pass`, `interval`, QoS),
    /// counted as they are released.
    pub skipped: u64,
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
    /// Batches processed (`batch-size` > 1), and the frames in them.
    pub batches: u64,
    pub batched_frames: u64,
}

impl Stats {
    /// Mean frames a batch; 0 without batches.
    pub fn avg_batch_size(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.batched_frames as f64 / self.batches as f64
        }
    }
}

/// Running totals, kept under the engine's lock.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) frames_in: u64,
    pub(super) frames_out: u64,
    pub(super) dropped: u64,
    pub(super) errors: u64,
    pub(super) timeouts: u64,
    pub(super) skipped: u64,
    pub(super) max_in_flight: usize,
    pub(super) max_reorder_depth: usize,
    processed: u64,
    total_processing: Duration,
    max_processing: Duration,
    released: u64,
    total_latency: Duration,
    max_latency: Duration,
    pub(super) per_worker: Vec<u64>,
    batches: u64,
    batched_frames: u64,
}

/// The values a snapshot reads from the table, not from the counters.
pub(super) struct Gauges {
    pub(super) in_flight: usize,
    pub(super) reorder_depth: usize,
    pub(super) workers: usize,
    pub(super) blocked: usize,
}

impl Counters {
    /// A worker finished a frame.
    pub(super) fn processed(&mut self, worker: usize, time: Duration, reorder_depth: usize) {
        self.max_reorder_depth = self.max_reorder_depth.max(reorder_depth);
        self.processed += 1;
        self.total_processing += time;
        self.max_processing = self.max_processing.max(time);
        if let Some(n) = self.per_worker.get_mut(worker) {
            *n += 1;
        }
    }

    /// A worker finished a batch of `frames`.
    pub(super) fn batch(&mut self, frames: u64) {
        self.batches += 1;
        self.batched_frames += frames;
    }

    /// Mean processing time so far.
    pub(super) fn mean_processing(&self) -> Duration {
        let n = u32::try_from(self.processed).unwrap_or(u32::MAX);
        self.total_processing.checked_div(n).unwrap_or_default()
    }

    /// A frame is released; failures count then, in output order.
    pub(super) fn released<T>(&mut self, result: &Result<T, ProcessError>) {
        match result {
            Ok(_) => {}
            Err(ProcessError::TimedOut(_)) => {
                self.errors += 1;
                self.timeouts += 1;
            }
            Err(_) => self.errors += 1,
        }
    }

    /// A released frame left: pushed, with its latency, or not.
    pub(super) fn left(&mut self, pushed: bool, latency: Duration) {
        if pushed {
            self.frames_out += 1;
            self.released += 1;
            self.total_latency += latency;
            self.max_latency = self.max_latency.max(latency);
        } else {
            self.dropped += 1;
        }
    }

    pub(super) fn snapshot(&self, now: Gauges) -> Stats {
        let avg = |total: Duration, n: u64| {
            let ns = total.as_nanos().checked_div(u128::from(n)).unwrap_or(0);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        };
        let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Stats {
            frames_in: self.frames_in,
            frames_out: self.frames_out,
            dropped: self.dropped,
            errors: self.errors,
            timeouts: self.timeouts,
            skipped: self.skipped,
            in_flight: to_u32(now.in_flight),
            max_in_flight: to_u32(self.max_in_flight),
            reorder_depth: to_u32(now.reorder_depth),
            max_reorder_depth: to_u32(self.max_reorder_depth),
            workers: to_u32(now.workers),
            blocked_upstream: to_u32(now.blocked),
            avg_processing_time: avg(self.total_processing, self.processed),
            max_processing_time: self.max_processing,
            avg_latency: avg(self.total_latency, self.released),
            max_latency: self.max_latency,
            per_worker: self.per_worker.clone(),
            batches: self.batches,
            batched_frames: self.batched_frames,
        }
    }
}
