// SPDX-License-Identifier: MPL-2.0
//! `delay`: an asynchronous wait per frame, the frame untouched.

use std::time::Duration;

use futures::FutureExt;

use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::frame::FrameProcessor;

mod timer;

/// Waits a per-frame time drawn uniformly from [min, max] without holding a
/// thread: stands for an enrichment server's variable latency.
pub struct Delay {
    pub min: Duration,
    pub max: Duration,
    pub seed: u64,
}

/// splitmix64: a tiny, well-mixed hash, so a frame's delay depends only on
/// (seed, seq) and not on which worker runs first.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl FrameProcessor for Delay {}

impl Delay {
    pub fn delay_for(&self, seq: u64) -> Duration {
        let (min, max) = (self.min.as_nanos() as u64, self.max.as_nanos() as u64);
        if max <= min {
            return self.min;
        }
        // u128: the span of [0, u64::MAX] does not fit in u64.
        let span = u128::from(max - min) + 1;
        let r = u128::from(splitmix64(self.seed ^ splitmix64(seq)));
        Duration::from_nanos(min + (r % span) as u64)
    }
}

impl<T: Send + 'static> Processor<T> for Delay {
    fn process(&self, frame: T, ctx: WorkCtx) -> Work<T> {
        let d = self.delay_for(ctx.seq);
        if d.is_zero() {
            return Work::Ready(Ok(frame));
        }
        Work::Async(timer::sleep(d).map(move |_| Ok(frame)).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_deterministic_and_in_range() {
        let d = Delay {
            min: Duration::from_millis(5),
            max: Duration::from_millis(15),
            seed: 42,
        };
        for seq in 0..1000 {
            let v = d.delay_for(seq);
            assert!(v >= d.min && v <= d.max, "{v:?} out of range");
            assert_eq!(v, d.delay_for(seq));
        }
        let other = Delay { seed: 43, ..d };
        assert!((0..100).any(|s| other.delay_for(s) != d.delay_for(s)));
    }

    #[test]
    fn full_range_does_not_overflow() {
        let d = Delay {
            min: Duration::ZERO,
            max: Duration::from_nanos(u64::MAX),
            seed: 1,
        };
        for seq in 0..100 {
            d.delay_for(seq);
        }
    }

    #[test]
    fn fixed_delay_when_min_equals_max() {
        let d = Delay {
            min: Duration::from_millis(20),
            max: Duration::from_millis(20),
            seed: 0,
        };
        assert_eq!(d.delay_for(7), Duration::from_millis(20));
    }
}
