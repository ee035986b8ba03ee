// SPDX-License-Identifier: MPL-2.0
//! QoS (`qos=true`): what downstream's QoS events say, kept as
//! GstBaseTransform keeps it (proportion, earliest running time), read by
//! workers about to start a frame and by the src task for QoS messages.
//! Atomics only: the late check runs under the engine's lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::state::Tag;

/// `earliest` when no QoS event set it.
const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub(super) struct Qos {
    /// The `qos` property.
    enabled: AtomicBool,
    /// Frames whose running time is at or before it are late: the last QoS
    /// event's timestamp plus its jitter.
    earliest: AtomicU64,
    /// The last QoS event's proportion, as f64 bits.
    proportion: AtomicU64,
    /// Frames processed and frames let through late, for the messages.
    processed: AtomicU64,
    dropped: AtomicU64,
}

impl Default for Qos {
    fn default() -> Self {
        Qos {
            enabled: AtomicBool::new(false),
            earliest: AtomicU64::new(NONE),
            proportion: AtomicU64::new(1f64.to_bits()),
            processed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Qos {
    pub(super) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// A QoS event from downstream.
    pub(super) fn update(&self, proportion: f64, diff: i64, timestamp: Option<gst::ClockTime>) {
        let earliest = timestamp.map_or(NONE, |t| {
            t.nseconds().saturating_add_signed(diff).min(NONE - 1)
        });
        self.proportion
            .store(proportion.to_bits(), Ordering::Relaxed);
        self.earliest.store(earliest, Ordering::Relaxed);
    }

    /// Start and FLUSH_STOP: nothing known about downstream, counts anew.
    pub(super) fn reset(&self) {
        self.earliest.store(NONE, Ordering::Relaxed);
        self.proportion.store(1f64.to_bits(), Ordering::Relaxed);
        self.processed.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
    }

    /// Whether a frame at `running_time` would reach downstream late.
    pub(super) fn is_late(&self, running_time: Option<gst::ClockTime>) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let earliest = self.earliest.load(Ordering::Relaxed);
        running_time.is_some_and(|rt| earliest != NONE && rt.nseconds() <= earliest)
    }

    /// A frame left processed.
    pub(super) fn count_processed(&self) {
        self.processed.fetch_add(1, Ordering::Relaxed);
    }

    /// The QoS message for a frame let through late, as filters post it:
    /// how late, the proportion, and processed / dropped buffers so far
    /// (dropped: not processed; the frame itself still goes out).
    pub(super) fn late_message(&self, src: &gst::Element, tag: &Tag) -> gst::Message {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let processed = self.processed.load(Ordering::Relaxed);
        let earliest = self.earliest.load(Ordering::Relaxed);
        let proportion = f64::from_bits(self.proportion.load(Ordering::Relaxed));
        let jitter = match (tag.running_time, earliest) {
            (Some(rt), e) if e != NONE => {
                i64::try_from(e).unwrap_or(i64::MAX) - i64::try_from(rt.nseconds()).unwrap_or(0)
            }
            _ => 0,
        };
        let stream_time = tag.pts.and_then(|pts| tag.segment.to_stream_time(pts));
        gst::message::Qos::builder(false)
            .running_time(tag.running_time)
            .stream_time(stream_time)
            .timestamp(tag.pts)
            .duration(tag.duration)
            .values(jitter, proportion, 1_000_000)
            .stats(
                gst::format::Buffers::from_u64(processed),
                gst::format::Buffers::from_u64(dropped),
            )
            .src(src)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> Option<gst::ClockTime> {
        Some(gst::ClockTime::from_mseconds(ms))
    }

    #[test]
    fn late_is_at_or_before_timestamp_plus_jitter_when_enabled() {
        let q = Qos::default();
        q.update(1.5, 20 * MS as i64, at(100));
        assert!(!q.is_late(at(0)), "disabled");
        q.set_enabled(true);
        assert!(q.is_late(at(120)));
        assert!(!q.is_late(at(121)));
        assert!(!q.is_late(None));
        // Early frames (negative jitter) move the bound back.
        q.update(0.9, -(50 * MS as i64), at(200));
        assert!(q.is_late(at(150)));
        assert!(!q.is_late(at(151)));
    }

    #[test]
    fn reset_forgets_downstream() {
        let q = Qos::default();
        q.set_enabled(true);
        q.update(2.0, 0, at(500));
        q.reset();
        assert!(!q.is_late(at(0)));
        q.update(2.0, 0, None);
        assert!(!q.is_late(at(0)));
    }
}
