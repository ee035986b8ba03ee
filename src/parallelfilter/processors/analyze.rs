// SPDX-License-Identifier: MPL-2.0
//! `analyze` and `overlay`: the analysis pass as a [`FrameProcessor`], its
//! results attached as the analysis custom meta and, for `overlay`, drawn
//! onto the frame.

use std::sync::OnceLock;
use std::time::Instant;

use gst::glib;
use gst_video::VideoFormat;
use gst_video::prelude::*;

use crate::analysis::luma::{FORMATS, luma_sums};
use crate::analysis::{ANALYSIS_META, AnalysisResult, CAT, SceneThreshold, overlay};
use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::ProcessorKind;
use crate::parallelfilter::frame::{Frame, FrameProcessor};

/// Caps `analyze` and `overlay` accept: raw video in the formats the
/// analysis reads.
pub fn caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS.iter().copied())
        .build()
}

pub struct Analyze {
    /// `overlay`: draw the results onto the frame.
    draw: bool,
    threshold: SceneThreshold,
    /// The element, for logging.
    element: OnceLock<glib::WeakRef<gst::Element>>,
}

impl Analyze {
    pub fn new(kind: ProcessorKind, threshold: SceneThreshold) -> Self {
        Analyze {
            draw: kind == ProcessorKind::Overlay,
            threshold,
            element: OnceLock::new(),
        }
    }

    fn name(&self) -> &'static str {
        if self.draw { "overlay" } else { "analyze" }
    }

    fn element(&self) -> Option<gst::Element> {
        self.element.get().and_then(|e| e.upgrade())
    }
}

/// The whole per-frame job, on the worker thread that took the frame.
fn run(
    frame: Frame,
    ctx: WorkCtx,
    draw: bool,
    threshold: f64,
    element: Option<gst::Element>,
) -> Result<Frame, String> {
    let start = Instant::now();
    let Frame {
        mut buffer,
        stream,
        segment,
        previous,
    } = frame;
    let info = stream.video_info()?;
    stream.check_size(&buffer)?;
    let sums = luma_sums(&buffer, previous.as_deref(), info, element.as_ref())?;
    // Done with the previous frame: release it before the drawing.
    drop(previous);
    let mut result = AnalysisResult {
        timestamp: buffer.pts(),
        duration: buffer.duration(),
        seq: ctx.seq,
        worker: u32::try_from(ctx.worker).unwrap_or(u32::MAX),
        ..AnalysisResult::measured(&sums, threshold)
    };
    // A copy only if someone else still holds the buffer (or, for
    // overlay, its memory): the next frame's motion reads this one.
    let buffer_mut = buffer.make_mut();
    if draw {
        result.processing_time = elapsed(start);
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer_mut, info)
            .map_err(|e| format!("cannot map frame writable: {e}"))?;
        let mut canvas = overlay::Canvas::new(&mut frame)?;
        overlay::draw(&mut canvas, &result, threshold);
    }
    result.processing_time = elapsed(start);
    result
        .attach(buffer_mut)
        .map_err(|e| format!("cannot attach {ANALYSIS_META}: {e}"))?;
    Ok(Frame {
        buffer,
        stream,
        segment,
        previous: None,
    })
}

fn elapsed(start: Instant) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(start.elapsed().as_nanos() as u64)
}

impl Processor<Frame> for Analyze {
    fn process(&self, frame: Frame, ctx: WorkCtx) -> Work<Frame> {
        // Only for debug logs: upgrading the weak ref costs per frame.
        let element = CAT
            .above_threshold(gst::DebugLevel::Debug)
            .then(|| self.element())
            .flatten();
        let (draw, threshold) = (self.draw, self.threshold.get());
        Work::Blocking(Box::new(move || run(frame, ctx, draw, threshold, element)))
    }
}

impl FrameProcessor for Analyze {
    fn caps(&self) -> Option<gst::Caps> {
        Some(caps())
    }

    fn attach(&self, element: &gst::Element) {
        let _ = self.element.set(element.downgrade());
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<gst::Caps, gst::ErrorMessage> {
        let name = self.name();
        let Some(s) = caps.structure(0) else {
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                ["processor {name}: empty caps"]
            ));
        };
        if let Some(features) = caps.features(0)
            && !features.is_empty()
            && !features.contains(gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY)
        {
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                ["processor {name} needs system memory, got {features}"]
            ));
        }
        let format = s.get::<&str>("format").unwrap_or("(none)");
        let supported = VideoFormat::from_string(format);
        if !FORMATS.contains(&supported) {
            let list: Vec<&str> = FORMATS.iter().map(|f| f.to_str().as_str()).collect();
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                ("Format {format} is not supported by processor {name}",),
                ["supported formats: {}", list.join(", ")]
            ));
        }
        gst_video::VideoInfo::from_caps(caps).map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Negotiation,
                ["processor {name}: invalid caps {caps}: {e}"]
            )
        })?;
        match self.element() {
            Some(element) => gst::debug!(CAT, obj = &element, "{name}: analysing {format}"),
            None => gst::debug!(CAT, "{name}: analysing {format}"),
        }
        Ok(caps.clone())
    }

    fn needs_previous(&self) -> bool {
        true
    }

    fn message(&self, buffer: &gst::BufferRef) -> Option<gst::Structure> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, ANALYSIS_META).ok()?;
        Some(meta.structure().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_caps_names_an_unsupported_format() {
        gst::init().unwrap();
        for kind in [ProcessorKind::Analyze, ProcessorKind::Overlay] {
            let p = Analyze::new(kind, SceneThreshold::new(0.3));
            let caps: gst::Caps = "video/x-raw,format=I420_10LE,width=64,height=48"
                .parse()
                .unwrap();
            let text = format!("{:?}", p.set_caps(&caps).unwrap_err());
            assert!(text.contains("I420_10LE"), "{text}");
            assert!(text.contains(kind.nick()), "{text}");
            let caps: gst::Caps = "video/x-raw,format=NV12,width=64,height=48"
                .parse()
                .unwrap();
            assert_eq!(p.set_caps(&caps).unwrap(), caps);
        }
    }

    #[test]
    fn threshold_is_shared() {
        let t = SceneThreshold::new(0.3);
        let p = Analyze::new(ProcessorKind::Analyze, t.clone());
        t.set(0.7);
        assert_eq!(p.threshold.get(), 0.7);
    }
}
