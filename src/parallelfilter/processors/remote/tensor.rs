// SPDX-License-Identifier: MPL-2.0
//! What the `remote` processor sends: a frame's input tensor, its pixels
//! (`payload=frame`) or its analysis (`payload=analysis`, the fields and
//! definitions of [`crate::analysis`]).

use gst_video::prelude::VideoFrameExt;

use crate::analysis::luma::luma_sums;
use crate::analysis::{ANALYSIS_META, AnalysisResult, HISTOGRAM_BINS, SCALAR_FIELDS, field};

/// Formats `payload=frame` sends, all 8 bits per component.
pub const FORMATS: &[&str] = &[
    "RGB", "BGR", "RGBA", "BGRA", "ARGB", "ABGR", "RGBx", "BGRx", "xRGB", "xBGR", "GRAY8", "I420",
    "YV12", "NV12", "NV21", "Y42B", "Y444",
];

/// Caps `remote` accepts: raw video in [`FORMATS`].
pub fn caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(
            FORMATS
                .iter()
                .map(|f| gst_video::VideoFormat::from_string(f)),
        )
        .build()
}

/// Tensors larger than this are built and encoded on the runtime's small
/// blocking pool, not on its async threads.
pub(super) const INLINE_BYTES: usize = 64 * 1024;

/// A frame's tensor appended to a batch's bytes: its datatype and shape.
pub(super) type Appended = Result<(&'static str, Vec<i64>), String>;

/// Appends the frame's pixels to `bytes` as a tightly packed UINT8 tensor
/// (strides and padding removed): `[1, H, W, C]` for packed RGB and GRAY8
/// formats, `[1, N]` with the planes one after the other for planar and
/// semi-planar YUV (N = W×H + the chroma planes' sizes).
pub(super) fn frame_tensor(
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    bytes: &mut Vec<u8>,
) -> Appended {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|_| "cannot map the frame".to_string())?;
    let finfo = info.format_info();
    let (w, h) = (info.width(), info.height());
    let start = bytes.len();
    for plane in 0..info.n_planes() {
        let Some(comp) = (0..finfo.n_components()).find(|&c| finfo.plane()[c as usize] == plane)
        else {
            continue;
        };
        let row = finfo.scale_width(comp as u8, w) as usize
            * finfo.pixel_stride()[comp as usize] as usize;
        let rows = finfo.scale_height(comp as u8, h) as usize;
        let stride = usize::try_from(frame.plane_stride()[plane as usize])
            .map_err(|_| format!("plane {plane} has a negative stride"))?;
        let data = frame
            .plane_data(plane)
            .map_err(|_| format!("cannot read plane {plane}"))?;
        for r in 0..rows {
            let line = data
                .get(r * stride..r * stride + row)
                .ok_or_else(|| format!("plane {plane} shorter than its caps say"))?;
            bytes.extend_from_slice(line);
        }
    }
    let shape = if finfo.is_yuv() && info.n_planes() > 1 {
        vec![1, (bytes.len() - start) as i64]
    } else {
        let c = finfo.pixel_stride()[0] as i64;
        vec![1, h as i64, w as i64, c]
    };
    Ok(("UINT8", shape))
}

/// Appends the `payload=analysis` features to `bytes` (FP32 `[1, 23]`):
/// from the `GstParallelFilterAnalysisMeta` when an `analyze` ran before,
/// else computed here on luma.
pub(super) fn analysis_tensor(
    buffer: &gst::BufferRef,
    previous: Option<&gst::Buffer>,
    info: &gst_video::VideoInfo,
    scene_threshold: f64,
    bytes: &mut Vec<u8>,
) -> Appended {
    let mut v: Vec<f32> = Vec::with_capacity(SCALAR_FIELDS.len() + HISTOGRAM_BINS);
    if let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, ANALYSIS_META) {
        let s = meta.structure();
        let num = |f: &str| {
            s.get::<f64>(f)
                .ok()
                .or_else(|| s.get::<u32>(f).ok().map(f64::from))
                .or_else(|| s.get::<bool>(f).ok().map(|b| f64::from(u8::from(b))))
                .unwrap_or(0.0) as f32
        };
        v.extend(SCALAR_FIELDS.iter().map(|f| num(f)));
        let hist = s.get::<gst::Array>(field::HISTOGRAM).ok();
        for i in 0..HISTOGRAM_BINS {
            let x = hist
                .as_ref()
                .and_then(|h| h.get(i))
                .and_then(|x| x.get::<u32>().ok())
                .unwrap_or(0);
            v.push(x as f32);
        }
    } else {
        // The same kernel and definitions as processor=analyze, so the
        // features do not depend on whether an analyze ran upstream.
        let sums = luma_sums(buffer, previous.map(|p| p.as_ref()), info, None)?;
        let result = AnalysisResult::measured(&sums, scene_threshold);
        v.extend(result.scalars().map(|x| x as f32));
        v.extend(result.histogram.map(|x| x as f32));
    }
    bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    Ok(("FP32", vec![1, v.len() as i64]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_features_come_from_the_analysis_meta() {
        gst::init().unwrap();
        if !gst::meta::CustomMeta::is_registered(ANALYSIS_META) {
            gst::meta::CustomMeta::register(ANALYSIS_META, &[]);
        }
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, 4, 2)
            .build()
            .unwrap();
        let mut buffer = gst::Buffer::from_mut_slice(vec![100u8; info.size()]);
        let features = |b: &gst::Buffer| {
            let mut bytes = Vec::new();
            let t = analysis_tensor(b, None, &info, 0.3, &mut bytes).unwrap();
            assert_eq!(t, ("FP32", vec![1, 23]));
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        };
        // Computed: a flat 100 frame.
        let v = features(&buffer);
        assert_eq!(&v[..7], &[100.0 / 255.0, 0.0, 100.0, 100.0, 0.0, 0.0, 0.0]);
        assert_eq!(v[7 + 6], 8.0);
        {
            let mut meta =
                gst::meta::CustomMeta::add(buffer.get_mut().unwrap(), ANALYSIS_META).unwrap();
            let s = meta.mut_structure();
            s.set("luma-average", 0.25f64);
            s.set("luma-variance", 0.5f64);
            s.set("luma-min", 3u32);
            s.set("luma-max", 200u32);
            s.set("sharpness", 7.0f64);
            s.set("motion", 0.125f64);
            s.set("scene-change", true);
            s.set("histogram", gst::Array::new((0..16u32).collect::<Vec<_>>()));
        }
        let v = features(&buffer);
        assert_eq!(&v[..7], &[0.25, 0.5, 3.0, 200.0, 7.0, 0.125, 1.0]);
        assert_eq!(v[7 + 15], 15.0);
    }
}
