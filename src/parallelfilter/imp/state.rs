// SPDX-License-Identifier: MPL-2.0
//! What the element knows about the stream while it runs, and how a flush
//! and a stop clear it.

use std::sync::Arc;
use std::time::Instant;

use super::super::ProcessorKind;
use super::super::frame::{Frame, SharedProcessor, StreamInfo};
use super::ParallelFilter;
use crate::engine::{self, Engine, lock};

/// What the src side needs about a frame, whatever its processing gives.
#[derive(Debug)]
pub(super) struct Tag {
    pub(super) pts: Option<gst::ClockTime>,
    pub(super) duration: Option<gst::ClockTime>,
    pub(super) segment: gst::FormattedSegment<gst::ClockTime>,
    /// The PTS in running time, for QoS.
    pub(super) running_time: Option<gst::ClockTime>,
    /// `State::epoch` when the frame entered.
    pub(super) epoch: u64,
    /// It may leave unprocessed (leaky=pass, interval, qos): not when the
    /// processor gives it other caps.
    pub(super) passable: bool,
    /// The input frame, kept only with on-error=pass.
    pub(super) original: Option<gst::Buffer>,
}

/// Items that bypass the workers and keep their place in the stream.
#[derive(Debug)]
pub(super) enum Serialized {
    Event(gst::Event),
    /// Released once everything before it has been pushed.
    Barrier,
}

pub(super) type FrameEngine = Engine<Frame, Tag, Serialized>;

#[derive(Default)]
pub(super) struct State {
    pub(super) engine: Option<Arc<FrameEngine>>,
    /// The processor the engine runs (its hooks), its kind and longest
    /// delay: the settings at start.
    pub(super) hooks: Option<SharedProcessor>,
    pub(super) processor: ProcessorKind,
    pub(super) delay_bound: u64,
    /// Caps of the frames entering now, and the src caps they leave with.
    pub(super) stream: Option<Arc<StreamInfo>>,
    /// The last frame in, for processors that compare with it.
    pub(super) previous: Option<gst::Buffer>,
    pub(super) segment: gst::FormattedSegment<gst::ClockTime>,
    /// EOS entered the element: nobody upstream will see a flow return.
    pub(super) eos: bool,
    /// Counts SEGMENT, STREAM_START and FLUSH_STOP at the sink pad: a
    /// downstream EOS holds until the next one.
    pub(super) epoch: u64,
    /// Downstream returned EOS for a frame of this epoch.
    pub(super) eos_epoch: Option<u64>,
    /// Stats of the last run, kept after the engine is gone.
    pub(super) last_stats: Option<engine::Stats>,
    /// The processor's own counters at the last stop.
    pub(super) last_processor_stats: Option<gst::Structure>,
    /// Formats refused in queries that a warning named already.
    pub(super) refused_formats: Vec<String>,
    /// When a frame failure was last posted as a bus warning.
    pub(super) last_failure_warning: Option<Instant>,
    /// Failures not posted since then.
    pub(super) unreported_failures: u64,
}

impl State {
    /// FLUSH_STOP: a fresh sequence in a new epoch; caps and the run's
    /// set-up stay.
    pub(super) fn flush(&mut self) {
        self.eos = false;
        self.epoch += 1;
        self.eos_epoch = None;
        self.segment = gst::FormattedSegment::new();
        self.previous = None;
    }

    /// A new run (start) or none (stop): everything goes but the last
    /// run's stats, which `stats` still reports after a stop.
    pub(super) fn reset(&mut self) {
        *self = State {
            last_stats: self.last_stats.take(),
            last_processor_stats: self.last_processor_stats.take(),
            ..State::default()
        };
    }

    /// The src caps of the frames entering now, when the processor
    /// changed them.
    pub(super) fn changed_src_caps(&self) -> Option<gst::Caps> {
        self.stream.as_ref().and_then(|s| s.output.clone())
    }
}

impl ParallelFilter {
    pub(super) fn hooks(&self) -> Option<SharedProcessor> {
        lock(&self.state).hooks.clone()
    }

    pub(super) fn engine(&self) -> Option<Arc<FrameEngine>> {
        lock(&self.state).engine.clone()
    }
}
