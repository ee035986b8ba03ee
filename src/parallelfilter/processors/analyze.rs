// SPDX-License-Identifier: MPL-2.0
//! `analyze` and `overlay`: the analysis pass as a [`FrameProcessor`], its
//! results attached as the analysis custom meta and, for `overlay`, drawn
//! onto the frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Instant;

use gst::glib;
use gst_video::VideoFormat;
use gst_video::prelude::*;

use crate::analysis::kernel::{self, Layout, Luma};
use crate::analysis::{ANALYSIS_META, AnalysisResult, overlay};
use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::ProcessorKind;
use crate::parallelfilter::frame::{Frame, FrameProcessor};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "parallelfilter-analysis",
        gst::DebugColorFlags::empty(),
        Some("parallelfilter analyze and overlay processors"),
    )
});

/// The formats `analyze` and `overlay` read: 8-bit YUV, GRAY8 and RGB.
pub const FORMATS: &[VideoFormat] = &[
    VideoFormat::I420,
    VideoFormat::Yv12,
    VideoFormat::Nv12,
    VideoFormat::Nv21,
    VideoFormat::Y41b,
    VideoFormat::Y42b,
    VideoFormat::Y444,
    VideoFormat::Yuy2,
    VideoFormat::Uyvy,
    VideoFormat::Yvyu,
    VideoFormat::Gray8,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
];

/// Caps `analyze` and `overlay` accept: raw video in [`FORMATS`].
pub fn caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS.iter().copied())
        .build()
}

/// The `scene-threshold` property, shared with the running processor so
/// that changes apply from the next frame on.
#[derive(Debug, Clone)]
pub struct SceneThreshold(Arc<AtomicU64>);

impl SceneThreshold {
    pub fn new(value: f64) -> Self {
        SceneThreshold(Arc::new(AtomicU64::new(value.to_bits())))
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// Where luma sits in a frame of `format`.
fn layout(format: VideoFormat) -> Option<Layout> {
    use VideoFormat as F;
    let rgb = |r, g, b, step| Layout::Rgb { r, g, b, step };
    Some(match format {
        F::I420 | F::Yv12 | F::Nv12 | F::Nv21 | F::Y41b | F::Y42b | F::Y444 | F::Gray8 => {
            Layout::Plane
        }
        F::Yuy2 | F::Yvyu => Layout::Packed { offset: 0, step: 2 },
        F::Uyvy => Layout::Packed { offset: 1, step: 2 },
        F::Rgb => rgb(0, 1, 2, 3),
        F::Bgr => rgb(2, 1, 0, 3),
        F::Rgba | F::Rgbx => rgb(0, 1, 2, 4),
        F::Bgra | F::Bgrx => rgb(2, 1, 0, 4),
        F::Argb | F::Xrgb => rgb(1, 2, 3, 4),
        F::Abgr | F::Xbgr => rgb(3, 2, 1, 4),
        _ => return None,
    })
}

/// Luma of a mapped frame (plane 0 holds it in every supported format).
fn luma<'a>(frame: &'a gst_video::VideoFrameRef<&gst::BufferRef>) -> Result<Luma<'a>, String> {
    let layout = layout(frame.format())
        .ok_or_else(|| format!("format {} is not supported", frame.format().to_str()))?;
    let stride = usize::try_from(frame.plane_stride()[0])
        .map_err(|_| format!("negative stride {}", frame.plane_stride()[0]))?;
    let data = frame.plane_data(0).map_err(|e| e.to_string())?;
    Luma::new(
        data,
        stride,
        frame.width() as usize,
        frame.height() as usize,
        layout,
    )
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

/// The analysis sums of a frame of `info`, against `previous` when given
/// (for motion). Also used by `remote` for `payload=analysis`.
pub(crate) fn luma_sums(
    buffer: &gst::BufferRef,
    previous: Option<&gst::BufferRef>,
    info: &gst_video::VideoInfo,
) -> Result<kernel::Sums, String> {
    sums_for(buffer, previous, info, None)
}

/// [`luma_sums`], logging against `element` when known.
fn sums_for(
    buffer: &gst::BufferRef,
    previous: Option<&gst::BufferRef>,
    info: &gst_video::VideoInfo,
    element: Option<&gst::Element>,
) -> Result<kernel::Sums, String> {
    let current = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|e| format!("cannot map {buffer:?} as {:?}: {e}", info.format()))?;
    // A previous frame that does not fit the caps (its own turn reported
    // it) has nothing to compare with: motion 0, as for a first frame.
    let previous = previous.and_then(
        |p| match gst_video::VideoFrameRef::from_buffer_ref_readable(p, info) {
            Ok(frame) => Some(frame),
            Err(e) => {
                let text = format!("Previous frame {p:?} does not map ({e}): no motion");
                match element {
                    Some(element) => gst::debug!(CAT, obj = element, "{text}"),
                    None => gst::debug!(CAT, "{text}"),
                }
                None
            }
        },
    );
    let previous = previous.as_ref().map(luma).transpose()?;
    kernel::analyze(&luma(&current)?, previous.as_ref())
}

/// The whole per-frame job, on a blocking-pool thread.
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
    let sums = sums_for(&buffer, previous.as_deref(), info, element.as_ref())?;
    // Done with the previous frame: release it before the drawing.
    drop(previous);
    let motion = sums.motion();
    let mut result = AnalysisResult {
        timestamp: buffer.pts(),
        duration: buffer.duration(),
        seq: ctx.seq,
        worker: u32::try_from(ctx.worker).unwrap_or(u32::MAX),
        processing_time: gst::ClockTime::ZERO,
        luma_average: sums.luma_average(),
        luma_variance: sums.luma_variance(),
        luma_min: sums.luma_min(),
        luma_max: sums.luma_max(),
        histogram: sums.histogram16(),
        sharpness: sums.sharpness(),
        motion,
        scene_change: motion > threshold,
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
    fn every_format_has_a_layout_matching_gstreamer() {
        gst::init().unwrap();
        for &format in FORMATS {
            let layout = layout(format).unwrap();
            let finfo = gst_video::VideoFormatInfo::from_format(format);
            assert_eq!(finfo.bits(), 8, "{format:?}");
            match layout {
                Layout::Plane => {
                    assert_eq!(finfo.pixel_stride()[0], 1, "{format:?}");
                    assert_eq!(finfo.poffset()[0], 0, "{format:?}");
                }
                Layout::Packed { offset, step } => {
                    assert!(finfo.is_yuv());
                    assert_eq!(finfo.poffset()[0] as usize, offset, "{format:?}");
                    assert_eq!(finfo.pixel_stride()[0] as usize, step, "{format:?}");
                }
                Layout::Rgb { r, g, b, step } => {
                    assert!(finfo.is_rgb());
                    let po = finfo.poffset();
                    assert_eq!([po[0], po[1], po[2]].map(|v| v as usize), [r, g, b]);
                    assert_eq!(finfo.pixel_stride()[0] as usize, step, "{format:?}");
                    assert!(finfo.plane()[..3].iter().all(|&p| p == 0));
                }
            }
        }
    }

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
