// SPDX-License-Identifier: MPL-2.0
//! Draws analysis results onto a frame in its own colour space: histogram
//! bars, motion and sharpness meters, a scene-change marker and a label.
//!
//! Every supported format is 8 bits per component, so one generic writer
//! covers them all: each component lives in a plane at an offset, with a
//! pixel stride and a chroma subsampling (GstVideoFormatInfo).

use gst_video::prelude::*;

use super::font;
use super::kernel;
use super::result::AnalysisResult;

/// An sRGB colour; converted once per rectangle to the format's
/// components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

const BACKGROUND: Rgb = Rgb(16, 16, 16);
const TEXT: Rgb = Rgb(255, 255, 255);
const BARS: Rgb = Rgb(200, 200, 200);
const MOTION: Rgb = Rgb(0, 200, 0);
const SHARPNESS: Rgb = Rgb(0, 160, 255);
const SCENE: Rgb = Rgb(230, 0, 0);
const THRESHOLD: Rgb = Rgb(255, 220, 0);

/// BT.601 studio-range Y'CbCr, the matrix videoconvert uses for SD.
fn to_yuv(c: Rgb) -> [u8; 3] {
    let (r, g, b) = (c.0 as i32, c.1 as i32, c.2 as i32);
    let row = |k: [i32; 3], offset: i32| {
        (k[0] * r + k[1] * g + k[2] * b + (offset << 16) + (1 << 15)) >> 16
    };
    let y = kernel::luma_of_rgb(c.0, c.1, c.2);
    let u = row(kernel::BT601_CB, 128);
    let v = row(kernel::BT601_CR, 128);
    [y, u.clamp(0, 255) as u8, v.clamp(0, 255) as u8]
}

#[derive(Debug, Clone, Copy)]
struct Component {
    plane: usize,
    offset: usize,
    pixel_stride: usize,
    w_sub: u32,
    h_sub: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    Yuv,
    Rgb,
    Gray,
}

/// A writable frame of one of the supported 8-bit formats.
pub struct Canvas<'a, 'b> {
    frame: &'a mut gst_video::VideoFrameRef<&'b mut gst::BufferRef>,
    components: Vec<Component>,
    space: Space,
    width: i64,
    height: i64,
}

impl<'a, 'b> Canvas<'a, 'b> {
    pub fn new(
        frame: &'a mut gst_video::VideoFrameRef<&'b mut gst::BufferRef>,
    ) -> Result<Self, String> {
        let finfo = frame.format_info();
        if finfo.bits() != 8 || finfo.is_complex() || finfo.has_palette() {
            return Err(format!("cannot draw on {}", finfo.name()));
        }
        let space = if finfo.is_rgb() {
            Space::Rgb
        } else if finfo.is_gray() {
            Space::Gray
        } else {
            Space::Yuv
        };
        let components = (0..finfo.n_components() as usize)
            .map(|c| {
                let pixel_stride = usize::try_from(finfo.pixel_stride()[c])
                    .map_err(|_| format!("negative pixel stride in {}", finfo.name()))?;
                Ok(Component {
                    plane: finfo.plane()[c] as usize,
                    offset: finfo.poffset()[c] as usize,
                    pixel_stride,
                    w_sub: finfo.w_sub()[c],
                    h_sub: finfo.h_sub()[c],
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        for p in 0..frame.n_planes() as usize {
            if frame.plane_stride()[p] <= 0 {
                return Err(format!("plane {p} has stride {}", frame.plane_stride()[p]));
            }
        }
        Ok(Canvas {
            width: i64::from(frame.width()),
            height: i64::from(frame.height()),
            frame,
            components,
            space,
        })
    }

    fn values(&self, c: Rgb) -> [u8; 4] {
        match self.space {
            Space::Rgb => [c.0, c.1, c.2, 255],
            Space::Yuv => {
                let [y, u, v] = to_yuv(c);
                [y, u, v, 255]
            }
            Space::Gray => [to_yuv(c)[0], 0, 0, 0],
        }
    }

    /// Fills the rectangle, clipped to the frame. Chroma samples are
    /// written where the rectangle covers the pixel they start at.
    pub fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, colour: Rgb) {
        let (x0, y0) = (x.max(0), y.max(0));
        let (x1, y1) = ((x + w).min(self.width), (y + h).min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let values = self.values(colour);
        for i in 0..self.components.len() {
            let comp = self.components[i];
            let stride = self.frame.plane_stride()[comp.plane] as usize;
            let Ok(data) = self.frame.plane_data_mut(comp.plane as u32) else {
                continue;
            };
            // First and one-past-last sample whose pixel lies inside.
            let sub = |v: i64, s: u32| ((v + (1 << s) - 1) >> s) as usize;
            let (sx0, sx1) = (sub(x0, comp.w_sub), sub(x1, comp.w_sub));
            let (sy0, sy1) = (sub(y0, comp.h_sub), sub(y1, comp.h_sub));
            for sy in sy0..sy1 {
                let row = sy * stride + comp.offset;
                for sx in sx0..sx1 {
                    if let Some(p) = data.get_mut(row + sx * comp.pixel_stride) {
                        *p = values[i.min(3)];
                    }
                }
            }
        }
    }

    /// Draws `text` with its top left corner at (`x`, `y`), each font pixel
    /// `scale` pixels wide; returns the width drawn.
    pub fn text(&mut self, x: i64, y: i64, scale: i64, text: &str, colour: Rgb) -> i64 {
        let mut cx = x;
        for c in text.chars() {
            if let Some(rows) = font::glyph(c) {
                for gy in 0..font::HEIGHT {
                    for gx in 0..font::WIDTH {
                        if font::lit(rows, gx, gy) {
                            let (px, py) = (cx + gx as i64 * scale, y + gy as i64 * scale);
                            self.fill(px, py, scale, scale, colour);
                        }
                    }
                }
            }
            cx += font::ADVANCE as i64 * scale;
        }
        cx - x
    }

    /// A horizontal meter: background, then `fraction` (0..1) of it filled.
    fn meter(&mut self, x: i64, y: i64, w: i64, h: i64, fraction: f64, colour: Rgb) {
        self.fill(x, y, w, h, BACKGROUND);
        let filled = (fraction.clamp(0.0, 1.0) * w as f64).round() as i64;
        self.fill(x, y, filled, h, colour);
    }
}

/// Sharpness as a meter fraction: the Laplacian's standard deviation,
/// saturating at 0.5 (strong edges everywhere).
fn sharpness_fraction(sharpness: f64) -> f64 {
    (sharpness.max(0.0).sqrt() / 0.5).min(1.0)
}

/// Draws `result` onto the frame; `threshold` is the scene threshold the
/// motion meter marks.
pub fn draw(canvas: &mut Canvas, result: &AnalysisResult, threshold: f64) {
    let (w, h) = (canvas.width, canvas.height);
    // Font pixel size: 1 at 240p, 2 at 360p, 5 at 1080p.
    let s = ((h + 100) / 200).max(1);
    let m = 4 * s;
    let line = 10 * s;
    let label = format!(
        "#{} W{} {:.2}MS",
        result.seq,
        result.worker,
        result.processing_time.nseconds() as f64 / 1e6
    );
    let label_w = (label.chars().count() * font::ADVANCE) as i64 * s;
    canvas.fill(m - s, m - s, label_w + 2 * s, 3 * line, BACKGROUND);
    canvas.text(m, m, s, &label, TEXT);

    // Meters: label column, then the bar.
    let bar_x = m + 7 * font::ADVANCE as i64 * s;
    let bar_w = (w / 4).max(20 * s);
    let motion_colour = if result.scene_change { SCENE } else { MOTION };
    canvas.text(m, m + line, s, "MOTION", TEXT);
    canvas.meter(bar_x, m + line, bar_w, 7 * s, result.motion, motion_colour);
    let tick = bar_x + (threshold.clamp(0.0, 1.0) * bar_w as f64).round() as i64;
    canvas.fill(tick - s / 2, m + line - s, s.max(1), 9 * s, THRESHOLD);
    canvas.text(m, m + 2 * line, s, "SHARP", TEXT);
    canvas.meter(
        bar_x,
        m + 2 * line,
        bar_w,
        7 * s,
        sharpness_fraction(result.sharpness),
        SHARPNESS,
    );

    // Histogram bars, bottom left, scaled to the fullest bin.
    let (bar, gap, hist_h) = (4 * s, s, 40 * s);
    let hist_w = 16 * (bar + gap) + gap;
    let (hx, hy) = (m, h - m - hist_h);
    canvas.fill(hx, hy, hist_w, hist_h, BACKGROUND);
    let peak = result.histogram.iter().copied().max().unwrap_or(0).max(1);
    for (i, &n) in result.histogram.iter().enumerate() {
        let bh = (n as u64 * (hist_h - 2 * s) as u64 / peak as u64) as i64;
        let bx = hx + gap + i as i64 * (bar + gap);
        canvas.fill(bx, hy + hist_h - s - bh, bar, bh, BARS);
    }

    if result.scene_change {
        let text_w = (5 * font::ADVANCE) as i64 * s;
        let (bw, bh) = (text_w + 3 * s, 11 * s);
        let bx = w - m - bw;
        canvas.fill(bx, m, bw, bh, SCENE);
        canvas.text(bx + 2 * s, m + 2 * s, s, "SCENE", TEXT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_of_primaries() {
        assert_eq!(to_yuv(Rgb(0, 0, 0)), [16, 128, 128]);
        assert_eq!(to_yuv(Rgb(255, 255, 255)), [235, 128, 128]);
        // BT.601: red is Y 81, Cb 90, Cr 240.
        assert_eq!(to_yuv(Rgb(255, 0, 0)), [81, 90, 240]);
    }

    #[test]
    fn sharpness_meter_saturates() {
        assert_eq!(sharpness_fraction(0.0), 0.0);
        assert_eq!(sharpness_fraction(1.0), 1.0);
        assert!((sharpness_fraction(0.0625) - 0.5).abs() < 1e-12);
    }
}
