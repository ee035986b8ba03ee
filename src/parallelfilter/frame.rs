// SPDX-License-Identifier: MPL-2.0
//! What a worker gets for each frame, and the hooks an element-level
//! processor implements on top of the engine's [`Processor`].

use std::sync::Arc;

use crate::engine::Processor;

/// The caps a frame arrived with, parsed once per CAPS event.
#[derive(Debug)]
pub struct StreamInfo {
    pub caps: gst::Caps,
    /// `None` for raw-video caps that do not describe a frame layout; the
    /// processors that read pixels refuse such caps at negotiation.
    pub info: Option<gst_video::VideoInfo>,
    /// The src caps these frames go out with, when the processor changes
    /// them: a renegotiation starts a new `StreamInfo` for the same input.
    pub(crate) output: Option<gst::Caps>,
}

impl StreamInfo {
    /// The frame layout, for processors that read pixels.
    pub(crate) fn video_info(&self) -> Result<&gst_video::VideoInfo, String> {
        self.info
            .as_ref()
            .ok_or_else(|| format!("caps {} do not describe a video frame layout", self.caps))
    }

    /// Refuses a buffer too small for the caps, naming both sizes and the
    /// caps: mapping it would only say "cannot map". A buffer with a video
    /// meta has its own layout and is left to the map.
    pub(crate) fn check_size(&self, buffer: &gst::BufferRef) -> Result<(), String> {
        match &self.info {
            Some(info)
                if buffer.size() < info.size()
                    && buffer.meta::<gst_video::VideoMeta>().is_none() =>
            {
                Err(format!(
                    "the buffer has {} bytes, but its caps {} need {}",
                    buffer.size(),
                    self.caps,
                    info.size()
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn new(caps: gst::Caps) -> Self {
        Self::with_output(caps, None)
    }

    pub(crate) fn with_output(caps: gst::Caps, output: Option<gst::Caps>) -> Self {
        let info = gst_video::VideoInfo::from_caps(&caps).ok();
        StreamInfo { caps, info, output }
    }

    /// The caps frames of this stream leave the element with.
    pub(crate) fn output_caps(&self) -> &gst::Caps {
        self.output.as_ref().unwrap_or(&self.caps)
    }
}

/// One frame on its way through a worker.
#[derive(Debug)]
pub struct Frame {
    /// The buffer; make it writable with `make_mut()` (a shallow copy
    /// only when someone else still holds it).
    pub buffer: gst::Buffer,
    /// The caps that were current when the frame entered.
    pub stream: Arc<StreamInfo>,
    /// The segment that was current when the frame entered.
    pub segment: gst::FormattedSegment<gst::ClockTime>,
    /// The previous input frame with the same caps, by reference, for
    /// processors that ask for it (custom processors with
    /// [`CustomProcessor::with_previous_frame`](crate::parallelfilter::CustomProcessor::with_previous_frame));
    /// `None` for the first frame after start, a flush or new caps.
    pub previous: Option<gst::Buffer>,
}

/// A processor as the element runs it: the engine's work function plus
/// negotiation, latency and result reporting.
pub(crate) trait FrameProcessor: Processor<Frame> {
    /// Caps accepted on the sink pad (and produced on the src pad, unless
    /// [`FrameProcessor::set_caps`] says otherwise); `None` means any raw
    /// video.
    fn caps(&self) -> Option<gst::Caps> {
        None
    }

    /// Answers a CAPS query on the element's pad of `direction` for a
    /// processor whose output caps differ from its input caps; `None`:
    /// answered from [`FrameProcessor::caps`] as if src caps were sink
    /// caps. A processor answering them also answers ACCEPT_CAPS on the
    /// sink pad; its kind says `changes_caps()`, so that ALLOCATION queries
    /// are not forwarded downstream (its buffers are not upstream's).
    fn query_caps(
        &self,
        _direction: gst::PadDirection,
        _filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        None
    }

    /// Called once at start, before any data, with the element: for
    /// processors that ask its pads' peers.
    fn attach(&self, _element: &gst::Element) {}

    /// Checks caps arriving on the sink pad and returns the caps to push on
    /// the src pad. An error is posted as is and fails negotiation.
    fn set_caps(&self, caps: &gst::Caps) -> Result<gst::Caps, gst::ErrorMessage> {
        Ok(caps.clone())
    }

    /// Whether workers get the previous input frame ([`Frame::previous`]).
    fn needs_previous(&self) -> bool {
        false
    }

    /// Latency added by the processor itself (e.g. wrapped elements), on
    /// top of the per-frame processing bound.
    fn extra_latency(&self) -> gst::ClockTime {
        gst::ClockTime::ZERO
    }

    /// The per-frame element message for a frame leaving with this buffer:
    /// its name and fields after the timing fields the element adds.
    /// `None`: the element's default (seq, worker, processing-time).
    fn message(&self, _buffer: &gst::BufferRef) -> Option<gst::Structure> {
        None
    }

    /// A flush discarded everything inside; drop per-stream state.
    fn flush(&self) {}

    /// Adds the processor's own counters to the `stats` structure.
    fn stats(&self, _stats: &mut gst::StructureRef) {}
}

/// Shares one processor between the element (hooks) and the engine (work).
pub(crate) type SharedProcessor = Arc<dyn FrameProcessor>;
