// SPDX-License-Identifier: MPL-2.0
//! From a mapped video frame to the kernels' [`Luma`]: which formats carry
//! luma where, and the analysis sums of a buffer. Shared by every
//! processor that analyses frames (`analyze`, `overlay`, and `remote`'s
//! `payload=analysis`), so they agree on definitions.

use gst_video::VideoFormat;
use gst_video::prelude::*;

use super::CAT;
use super::kernel::{self, Layout, Luma};

/// The formats the analysis reads: 8-bit YUV, GRAY8 and RGB.
pub(crate) const FORMATS: &[VideoFormat] = &[
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

/// The analysis sums of a frame of `info`, against `previous` when given
/// (for motion); logs against `element` when known.
pub fn luma_sums(
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
}
