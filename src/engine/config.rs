// SPDX-License-Identifier: MPL-2.0
//! What the engine's owner sets: limits, leaky mode, order and timeout.

use std::time::Duration;

/// What happens to a new frame when the engine is full.
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
    /// Process a frame only if a worker can start it at once; let any
    /// other through unprocessed, in order (see [`MAX_PASSED`]).
    Pass,
}

/// Frames let through unprocessed inside the engine at most; past it the
/// producer blocks (a processor stuck without a timeout holds them all).
pub const MAX_PASSED: usize = 1024;

/// Limits and scheduling; can change at any time through
/// [`Engine::configure`](super::Engine::configure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Frames processed at once; 0: automatic, from the CPUs available up
    /// to `max_workers`, adapted while frames flow (see `control`).
    pub workers: usize,
    /// Upper bound of automatic workers.
    pub max_workers: usize,
    /// Frames inside the engine; 0 means 2 × workers.
    pub max_frames: usize,
    /// Bytes of frames inside the engine; 0 means no limit.
    pub max_bytes: u64,
    pub leaky: Leaky,
    /// false: a processed frame leaves at once, but never across an item
    /// submitted with [`Engine::submit_item`](super::Engine::submit_item).
    pub ordered: bool,
    /// Abandon a frame whose processing takes longer.
    pub timeout: Option<Duration>,
    /// Process every Nth frame (from frame 0 after start or a flush); the
    /// others pass unprocessed without waiting for a worker. 0 counts as 1.
    pub interval: u64,
    /// Frames a worker takes at once when the processor has a batch form
    /// ([`Processor::batches`](super::Processor::batches)); 0 counts as 1.
    pub batch_size: usize,
    /// Longest a worker waits for a batch to fill; zero: it takes what is
    /// queued.
    pub batch_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 1,
            max_workers: 256,
            max_frames: 0,
            max_bytes: 0,
            leaky: Leaky::No,
            ordered: true,
            timeout: None,
            interval: 1,
            batch_size: 1,
            batch_timeout: Duration::ZERO,
        }
    }
}

impl Config {
    pub fn automatic(&self) -> bool {
        self.workers == 0
    }

    /// The bound on frames inside with `workers` in use, 0 resolved: two
    /// batches a worker.
    pub fn frame_limit(&self, workers: usize) -> usize {
        if self.max_frames == 0 {
            2 * workers.max(1) * self.batch_size.max(1)
        } else {
            self.max_frames
        }
    }

    /// Whether frame `seq` is off the interval: it passes unprocessed.
    pub fn off_interval(&self, seq: u64) -> bool {
        self.interval > 1 && !seq.is_multiple_of(self.interval)
    }

    /// The count to start with: `workers`, or for automatic the CPUs
    /// available within `max_workers`.
    pub fn initial_workers(&self) -> usize {
        if self.automatic() {
            super::cpu::available().clamp(1, self.max_workers.max(1))
        } else {
            self.workers
        }
    }
}
