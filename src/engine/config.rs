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
}

/// Limits and scheduling; can change at any time through
/// [`Engine::configure`](super::Engine::configure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Frames processed at once.
    pub workers: usize,
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
    /// The bound on frames inside, with 0 resolved.
    pub fn frame_limit(&self) -> usize {
        if self.max_frames == 0 {
            2 * self.workers.max(1)
        } else {
            self.max_frames
        }
    }
}
