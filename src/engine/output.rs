// SPDX-License-Identifier: MPL-2.0
//! What leaves the engine, in release order, and the guard that reports a
//! released frame gone.

use std::fmt;
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::work::ProcessError;

/// Why a frame leaves unprocessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// `leaky=pass`: no worker could start it at once.
    Busy,
    /// Off the `interval`.
    Interval,
    /// Already late when a worker would have started it (QoS).
    Late,
}

/// A frame leaving the engine, in release order.
#[derive(Debug)]
pub struct Processed<T, M> {
    pub seq: u64,
    pub tag: M,
    pub result: Result<T, ProcessError>,
    pub worker: usize,
    pub processing_time: Duration,
    /// When the frame entered, for the latency the consumer reports with
    /// [`Leaving::left`].
    pub admitted: Instant,
    /// Let through unprocessed, and why: `result` is the frame as it
    /// entered, `worker` and `processing_time` mean nothing.
    pub skipped: Option<Skip>,
    /// The frame's place inside the engine, until reported or dropped.
    pub leaving: Leaving,
}

/// The next thing for the consumer: a frame, or an item with its position.
#[derive(Debug)]
pub enum Output<T, M, E> {
    Frame(Processed<T, M>),
    Item { pos: u64, item: E },
}

/// Where a leaving frame is reported: the engine's table and its waiters.
pub(super) trait Report: Send + Sync {
    /// `passed`: the frame was let through unprocessed.
    fn frame_left(&self, pushed: bool, latency: Duration, bytes: u64, passed: bool);
}

/// A released frame still counts as inside (limits and stats) while the
/// consumer pushes it. [`Leaving::left`] reports how it went; dropping it
/// unreported counts the frame as not pushed, so no consumer path can
/// leave the admission bound short for good.
pub struct Leaving {
    bytes: u64,
    passed: bool,
    /// The latency, once reported as pushed.
    pushed: Option<Duration>,
    /// Weak: a frame outliving its engine has nothing to report to.
    engine: Weak<dyn Report>,
}

impl Leaving {
    pub(super) fn new(engine: Weak<dyn Report>, bytes: u64, passed: bool) -> Self {
        Leaving {
            bytes,
            passed,
            pushed: None,
            engine,
        }
    }

    /// The frame left: `pushed` downstream, `latency` after it was
    /// admitted (measured just before the push), or not pushed (dropped,
    /// failed, refused), when `latency` is not used.
    pub fn left(mut self, pushed: bool, latency: Duration) {
        if pushed {
            self.pushed = Some(latency);
        }
    }
}

impl Drop for Leaving {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.upgrade() {
            let latency = self.pushed.unwrap_or_default();
            engine.frame_left(self.pushed.is_some(), latency, self.bytes, self.passed);
        }
    }
}

impl fmt::Debug for Leaving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaving")
            .field("bytes", &self.bytes)
            .field("pushed", &self.pushed)
            .finish_non_exhaustive()
    }
}
