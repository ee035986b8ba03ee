// SPDX-License-Identifier: MPL-2.0
//! Per-frame luma statistics on plain slices, in one pass over the rows.
//!
//! Each row feeds three small loops that stay in cache: a 256-bin histogram
//! (mean, variance, min, max and the 16-bin histogram all follow from it
//! exactly), the sum of absolute differences to the previous frame's row,
//! and the 3x3 Laplacian of the row above. The loops are written so that
//! the compiler vectorizes the latter two.

/// Where luma sits in a row of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One luma byte per pixel: the Y plane of planar and semi-planar YUV,
    /// and GRAY8.
    Plane,
    /// Luma every `step` bytes from `offset`: packed YUV (YUY2, UYVY, ...).
    Packed { offset: usize, step: usize },
    /// R, G, B bytes at these offsets, `step` bytes per pixel; luma is
    /// computed as BT.601 studio-range Y'.
    Rgb {
        r: usize,
        g: usize,
        b: usize,
        step: usize,
    },
}

impl Layout {
    /// Bytes a row of `width` pixels spans.
    fn row_bytes(self, width: usize) -> usize {
        match self {
            Layout::Plane => width,
            Layout::Packed { offset, step } => (width - 1) * step + offset + 1,
            Layout::Rgb { r, g, b, step } => (width - 1) * step + r.max(g).max(b) + 1,
        }
    }
}

/// A frame's luma as the kernels read it.
#[derive(Debug, Clone, Copy)]
pub struct Luma<'a> {
    data: &'a [u8],
    stride: usize,
    width: usize,
    height: usize,
    layout: Layout,
}

impl<'a> Luma<'a> {
    /// Checks that `data` holds `height` rows of `stride` bytes (the last
    /// one possibly short) with room for `width` pixels each.
    pub fn new(
        data: &'a [u8],
        stride: usize,
        width: usize,
        height: usize,
        layout: Layout,
    ) -> Result<Self, String> {
        if width == 0 || height == 0 {
            return Err(format!("empty frame {width}x{height}"));
        }
        let row = layout.row_bytes(width);
        if row > stride {
            return Err(format!(
                "stride {stride} too small for {width} pixels of {layout:?}"
            ));
        }
        let needed = (height - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(row))
            .ok_or_else(|| format!("frame {width}x{height} stride {stride} too large"))?;
        if data.len() < needed {
            return Err(format!(
                "{} bytes for a {width}x{height} frame with stride {stride}, need {needed}",
                data.len()
            ));
        }
        Ok(Luma {
            data,
            stride,
            width,
            height,
            layout,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Raw bytes of row `y` (checked in `new`).
    fn raw_row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.layout.row_bytes(self.width)]
    }

    /// Luma of row `y`: borrowed for planes, else converted into `scratch`.
    fn row<'s>(&self, y: usize, scratch: &'s mut [u8]) -> &'s [u8]
    where
        'a: 's,
    {
        let raw = self.raw_row(y);
        if self.layout == Layout::Plane {
            return raw;
        }
        let out = &mut scratch[..self.width];
        match self.layout {
            Layout::Plane => {}
            Layout::Packed { offset, step } => {
                for (o, px) in out.iter_mut().zip(raw[offset..].chunks(step)) {
                    *o = px[0];
                }
            }
            Layout::Rgb { r, g, b, step } => rgb_to_luma(raw, out, r, g, b, step),
        }
        out
    }

    fn converts(&self) -> bool {
        self.layout != Layout::Plane
    }
}

/// BT.601 studio-range Y' (16..235) from 8-bit R'G'B', as videoconvert
/// computes it for I420: 219/255 x (0.299, 0.587, 0.114) in 16-bit fixed
/// point, rounded.
#[inline]
pub fn luma_of_rgb(r: u8, g: u8, b: u8) -> u8 {
    let [kr, kg, kb] = BT601_Y;
    ((kr * r as i32 + kg * g as i32 + kb * b as i32 + (16 << 16) + (1 << 15)) >> 16) as u8
}

/// BT.601 studio-range R'G'B' to Y'CbCr rows (Y', Cb, Cr) in 16-bit fixed
/// point; the offsets are 16 for Y' and 128 for chroma.
pub const BT601_Y: [i32; 3] = [16829, 33039, 6416];
pub const BT601_CB: [i32; 3] = [-9714, -19070, 28784];
pub const BT601_CR: [i32; 3] = [28784, -24103, -4681];

fn rgb_to_luma(raw: &[u8], out: &mut [u8], r: usize, g: usize, b: usize, step: usize) {
    for (o, px) in out.iter_mut().zip(raw.chunks(step)) {
        *o = luma_of_rgb(px[r], px[g], px[b]);
    }
}

/// Sums over a frame, from which every result follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    pub width: u64,
    pub height: u64,
    /// Luma histogram, one bin per value.
    pub histogram: [u64; 256],
    /// Laplacian over interior pixels: count, sum and sum of squares.
    pub laplacian_n: u64,
    pub laplacian_sum: i64,
    pub laplacian_sq: u64,
    /// Sum of |Y - Y_previous|, when there was a previous frame.
    pub abs_diff: Option<u64>,
}

impl Sums {
    pub fn pixels(&self) -> u64 {
        self.width * self.height
    }

    pub fn sum(&self) -> u64 {
        self.histogram
            .iter()
            .enumerate()
            .map(|(v, &n)| v as u64 * n)
            .sum()
    }

    fn sum_sq(&self) -> u64 {
        self.histogram
            .iter()
            .enumerate()
            .map(|(v, &n)| (v * v) as u64 * n)
            .sum()
    }

    /// Mean luma on 0..1, as videoanalyse: sum / (255 x width x height).
    pub fn luma_average(&self) -> f64 {
        self.sum() as f64 / (255.0 * self.width as f64 * self.height as f64)
    }

    /// Luma variance on the 0..1 scale as videoanalyse computes it: the
    /// squared distance to the mean truncated to an integer.
    pub fn luma_variance(&self) -> f64 {
        let n = self.pixels() as i128;
        let sum = self.sum() as i128;
        let avg = sum / n;
        // sum (avg - y)^2 = sum y^2 - 2 avg sum y + n avg^2, exactly.
        let sq = self.sum_sq() as i128 - 2 * avg * sum + n * avg * avg;
        sq as f64 / (255.0 * 255.0 * self.width as f64 * self.height as f64)
    }

    pub fn luma_min(&self) -> u8 {
        self.histogram.iter().position(|&n| n > 0).unwrap_or(0) as u8
    }

    pub fn luma_max(&self) -> u8 {
        self.histogram.iter().rposition(|&n| n > 0).unwrap_or(0) as u8
    }

    /// 16 equal bins (values 0..15, 16..31, ...).
    pub fn histogram16(&self) -> [u32; 16] {
        let mut h = [0u32; 16];
        for (i, bin) in h.iter_mut().enumerate() {
            let n: u64 = self.histogram[i * 16..(i + 1) * 16].iter().sum();
            *bin = u32::try_from(n).unwrap_or(u32::MAX);
        }
        h
    }

    /// Variance of the Laplacian, with luma on the 0..1 scale; 0 without
    /// interior pixels.
    pub fn sharpness(&self) -> f64 {
        if self.laplacian_n == 0 {
            return 0.0;
        }
        let n = self.laplacian_n as i128;
        let s = self.laplacian_sum as i128;
        let q = self.laplacian_sq as i128;
        // (n q - s^2) / n^2 is exact up to the final division.
        let num = n * q - s * s;
        num as f64 / (n as f64 * n as f64) / (255.0 * 255.0)
    }

    /// Mean absolute luma difference to the previous frame, 0..1; 0 without
    /// one.
    pub fn motion(&self) -> f64 {
        match self.abs_diff {
            Some(d) => d as f64 / (255.0 * self.pixels() as f64),
            None => 0.0,
        }
    }
}

/// Counts per value in four tables, so that runs of equal values do not
/// wait on each other's increments.
struct Histogram {
    tables: Box<[[u32; 256]; 4]>,
    total: [u64; 256],
    pending: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            tables: Box::new([[0; 256]; 4]),
            total: [0; 256],
            pending: 0,
        }
    }

    #[inline(always)]
    fn add_row(&mut self, row: &[u8]) {
        // Keeps every u32 counter below overflow on huge frames.
        if self.pending + row.len() as u64 > u32::MAX as u64 {
            self.flush();
        }
        self.pending += row.len() as u64;
        let [t0, t1, t2, t3] = &mut *self.tables;
        let mut chunks = row.chunks_exact(8);
        for c in &mut chunks {
            // One load for eight values.
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            t0[(v & 0xff) as usize] += 1;
            t1[((v >> 8) & 0xff) as usize] += 1;
            t2[((v >> 16) & 0xff) as usize] += 1;
            t3[((v >> 24) & 0xff) as usize] += 1;
            t0[((v >> 32) & 0xff) as usize] += 1;
            t1[((v >> 40) & 0xff) as usize] += 1;
            t2[((v >> 48) & 0xff) as usize] += 1;
            t3[(v >> 56) as usize] += 1;
        }
        for &v in chunks.remainder() {
            t0[v as usize] += 1;
        }
    }

    fn flush(&mut self) {
        for table in self.tables.iter_mut() {
            for (t, c) in self.total.iter_mut().zip(table.iter_mut()) {
                *t += u64::from(std::mem::take(c));
            }
        }
        self.pending = 0;
    }

    fn finish(mut self) -> [u64; 256] {
        self.flush();
        self.total
    }
}

/// Pixels per inner block: keeps 32-bit accumulators from overflowing
/// (4096 x 255 and 1024 x 1020^2 fit) so that the loops vectorize.
const SAD_BLOCK: usize = 4096;
const LAPLACIAN_BLOCK: usize = 1024;

/// Sum of |a - b| over two rows of equal length.
#[inline(always)]
pub fn abs_diff_row(a: &[u8], b: &[u8]) -> u64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut total = 0u64;
    for (a, b) in a.chunks(SAD_BLOCK).zip(b.chunks(SAD_BLOCK)) {
        let mut s = 0u32;
        for (&x, &y) in a.iter().zip(b) {
            s += u32::from(x.abs_diff(y));
        }
        total += u64::from(s);
    }
    total
}

/// Sum and sum of squares of the 4-neighbour Laplacian
/// `4 c - left - right - up - down` at the interior pixels of `mid`.
#[inline(always)]
pub fn laplacian_row(up: &[u8], mid: &[u8], down: &[u8]) -> (i64, u64) {
    let w = mid.len();
    if w < 3 || up.len() < w || down.len() < w {
        return (0, 0);
    }
    let n = w - 2;
    let (left, centre, right) = (&mid[..n], &mid[1..n + 1], &mid[2..n + 2]);
    let (up, down) = (&up[1..n + 1], &down[1..n + 1]);
    let (mut sum, mut sq) = (0i64, 0u64);
    let mut start = 0;
    while start < n {
        let end = (start + LAPLACIAN_BLOCK).min(n);
        let (l, c, r) = (&left[start..end], &centre[start..end], &right[start..end]);
        let (u, d) = (&up[start..end], &down[start..end]);
        let (mut s, mut q) = (0i32, 0u32);
        for i in 0..c.len() {
            // i16 lanes: |v| <= 1020, and v * v as a widening multiply.
            let v = 4 * i16::from(c[i])
                - i16::from(l[i])
                - i16::from(r[i])
                - i16::from(u[i])
                - i16::from(d[i]);
            s += i32::from(v);
            q += (i32::from(v) * i32::from(v)) as u32;
        }
        sum += i64::from(s);
        sq += u64::from(q);
        start = end;
    }
    (sum, sq)
}

/// All sums of `frame`, and the difference to `previous` when given and of
/// the same size (else motion is 0, as for a first frame).
pub fn analyze(frame: &Luma, previous: Option<&Luma>) -> Result<Sums, String> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { analyze_avx2(frame, previous) };
    }
    analyze_rows(frame, previous)
}

/// The same loops compiled for AVX2: twice the lanes for the Laplacian and
/// the differences. The default x86-64 target only has SSE2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn analyze_avx2(frame: &Luma, previous: Option<&Luma>) -> Result<Sums, String> {
    analyze_rows(frame, previous)
}

#[inline(always)]
fn analyze_rows(frame: &Luma, previous: Option<&Luma>) -> Result<Sums, String> {
    let (w, h) = (frame.width, frame.height);
    // A previous frame of another size has nothing to compare with: as
    // for the first frame, no motion.
    let previous = previous.filter(|p| p.width == w && p.height == h);
    // Converted rows: a ring of three for the Laplacian, one for the
    // previous frame. Planes are read in place and need none.
    let mut ring = if frame.converts() {
        vec![0u8; 3 * w]
    } else {
        Vec::new()
    };
    let mut prev_row = match previous {
        Some(p) if p.converts() => vec![0u8; w],
        _ => Vec::new(),
    };
    let mut hist = Histogram::new();
    let (mut lap_sum, mut lap_sq) = (0i64, 0u64);
    let mut abs_diff = previous.map(|_| 0u64);

    for y in 0..h {
        if frame.converts() {
            let slot = &mut ring[(y % 3) * w..(y % 3 + 1) * w];
            frame.row(y, slot);
        }
        let row_at = |i: usize| -> &[u8] {
            if frame.converts() {
                &ring[(i % 3) * w..(i % 3 + 1) * w]
            } else {
                frame.raw_row(i)
            }
        };
        let row = &row_at(y)[..w];
        hist.add_row(row);
        if let (Some(p), Some(d)) = (previous, abs_diff.as_mut()) {
            *d += abs_diff_row(row, p.row(y, &mut prev_row));
        }
        if y >= 2 {
            let (s, q) = laplacian_row(&row_at(y - 2)[..w], &row_at(y - 1)[..w], row);
            lap_sum += s;
            lap_sq += q;
        }
    }
    let interior = (w.saturating_sub(2) * h.saturating_sub(2)) as u64;
    Ok(Sums {
        width: w as u64,
        height: h as u64,
        histogram: hist.finish(),
        laplacian_n: interior,
        laplacian_sum: lap_sum,
        laplacian_sq: lap_sq,
        abs_diff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    fn sums(data: &[u8], w: usize, h: usize) -> Sums {
        analyze(&Luma::new(data, w, w, h, Layout::Plane).unwrap(), None).unwrap()
    }

    /// Direct definitions, one value at a time.
    fn reference(data: &[u8], w: usize, h: usize) -> (f64, f64, f64) {
        let n = (w * h) as f64;
        let sum: u64 = data.iter().map(|&v| v as u64).sum();
        let avg = sum / (w * h) as u64;
        let var: u64 = data
            .iter()
            .map(|&v| (avg as i64 - v as i64).pow(2) as u64)
            .sum();
        let mut lap = Vec::new();
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let p = |dx: isize, dy: isize| {
                    data[(y as isize + dy) as usize * w + (x as isize + dx) as usize] as f64
                };
                lap.push((4.0 * p(0, 0) - p(-1, 0) - p(1, 0) - p(0, -1) - p(0, 1)) / 255.0);
            }
        }
        let m = lap.iter().sum::<f64>() / lap.len() as f64;
        let lv = lap.iter().map(|v| (v - m).powi(2)).sum::<f64>() / lap.len() as f64;
        (
            sum as f64 / (255.0 * n),
            var as f64 / (255.0 * 255.0 * n),
            lv,
        )
    }

    #[test]
    fn flat_frame() {
        let data = vec![100u8; 64 * 48];
        let s = sums(&data, 64, 48);
        assert_eq!(s.luma_average(), 100.0 / 255.0);
        assert_eq!(s.luma_variance(), 0.0);
        assert_eq!((s.luma_min(), s.luma_max()), (100, 100));
        let mut h = [0u32; 16];
        h[100 / 16] = 64 * 48;
        assert_eq!(s.histogram16(), h);
        assert_eq!(s.sharpness(), 0.0);
        assert_eq!(s.motion(), 0.0);
    }

    #[test]
    fn ramp() {
        // Every value 0..255 once per row: uniform histogram, Laplacian 0
        // inside (a linear ramp has no curvature).
        let (w, h) = (256, 8);
        let data = plane(w, h, |x, _| x as u8);
        let s = sums(&data, w, h);
        assert_eq!(s.luma_average(), 127.5 / 255.0);
        assert_eq!((s.luma_min(), s.luma_max()), (0, 255));
        assert_eq!(s.histogram16(), [16 * 8; 16]);
        assert_eq!(s.sharpness(), 0.0);
        // Around the truncated mean 127: sum of (127 - v)^2 for v in 0..256.
        let expected: i64 = (0..256).map(|v: i64| (127 - v).pow(2)).sum();
        assert_eq!(s.luma_variance(), expected as f64 / (255.0 * 255.0 * 256.0));
    }

    #[test]
    fn checkerboard() {
        // 0/255 alternating: Laplacian is +-4 x 255 everywhere inside,
        // half of each sign: mean 0, variance 16 on the 0..1 scale.
        let (w, h) = (40, 30);
        let data = plane(w, h, |x, y| if (x + y) % 2 == 0 { 0 } else { 255 });
        let s = sums(&data, w, h);
        assert_eq!(s.luma_average(), 0.5);
        assert_eq!((s.luma_min(), s.luma_max()), (0, 255));
        let mut hist = [0u32; 16];
        hist[0] = 600;
        hist[15] = 600;
        assert_eq!(s.histogram16(), hist);
        assert!((s.sharpness() - 16.0).abs() < 1e-12, "{}", s.sharpness());
        // avg truncates to 127: (127^2 + 128^2) / 2 / 255^2.
        let v = (127.0f64 * 127.0 + 128.0 * 128.0) / 2.0 / (255.0 * 255.0);
        assert!((s.luma_variance() - v).abs() < 1e-15);
    }

    #[test]
    fn matches_direct_definitions() {
        let (w, h) = (97, 61);
        let data = plane(w, h, |x, y| ((x * 7 + y * 13 + x * y) % 251) as u8);
        let s = sums(&data, w, h);
        let (avg, var, sharp) = reference(&data, w, h);
        assert_eq!(s.luma_average(), avg);
        assert_eq!(s.luma_variance(), var);
        assert!(
            (s.sharpness() - sharp).abs() < 1e-9,
            "{} {sharp}",
            s.sharpness()
        );
    }

    #[test]
    fn motion_between_two_frames() {
        let (w, h) = (33, 17);
        let a = plane(w, h, |x, y| (x + y) as u8);
        // Half of the pixels 10 brighter, the other half 20 darker.
        let b = plane(w, h, |x, y| {
            let v = (x + y) as u8 + 30;
            if x % 2 == 0 { v + 10 } else { v - 20 }
        });
        let la = Luma::new(&a, w, w, h, Layout::Plane).unwrap();
        let lb = Luma::new(&b, w, w, h, Layout::Plane).unwrap();
        let s = analyze(&lb, Some(&la)).unwrap();
        let even = w.div_ceil(2) * h;
        let odd = (w / 2) * h;
        let expected = (40 * even + 10 * odd) as f64 / (255.0 * (w * h) as f64);
        assert_eq!(s.motion(), expected);
        assert_eq!(analyze(&la, Some(&la)).unwrap().motion(), 0.0);
        // A previous frame of another size: as for a first frame.
        let small = Luma::new(&a, w, w - 1, h, Layout::Plane).unwrap();
        assert_eq!(
            analyze(&lb, Some(&small)).unwrap(),
            analyze(&lb, None).unwrap()
        );
    }

    #[test]
    fn stride_padding_is_ignored() {
        let (w, h, stride) = (10, 5, 16);
        let data = plane(stride, h, |x, _| if x < w { 50 } else { 255 });
        let s = analyze(
            &Luma::new(&data, stride, w, h, Layout::Plane).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!((s.luma_min(), s.luma_max()), (50, 50));
        assert_eq!(s.pixels(), 50);
    }

    #[test]
    fn packed_and_rgb_layouts_read_luma() {
        let (w, h) = (6, 4);
        // UYVY: luma at odd bytes.
        let uyvy: Vec<u8> = (0..h * w * 2)
            .map(|i| if i % 2 == 1 { 77 } else { 128 })
            .collect();
        let l = Luma::new(&uyvy, w * 2, w, h, Layout::Packed { offset: 1, step: 2 }).unwrap();
        let s = analyze(&l, None).unwrap();
        assert_eq!((s.luma_min(), s.luma_max()), (77, 77));
        // xRGB: white and black give studio range 235 and 16.
        let mut xrgb = vec![0u8; w * 4 * h];
        for px in xrgb.chunks_mut(4).step_by(2) {
            px[1..].copy_from_slice(&[255, 255, 255]);
        }
        let rgb = Layout::Rgb {
            r: 1,
            g: 2,
            b: 3,
            step: 4,
        };
        let s = analyze(&Luma::new(&xrgb, w * 4, w, h, rgb).unwrap(), None).unwrap();
        assert_eq!((s.luma_min(), s.luma_max()), (16, 235));
    }

    #[test]
    fn bt601_luma_of_primaries() {
        assert_eq!(luma_of_rgb(0, 0, 0), 16);
        assert_eq!(luma_of_rgb(255, 255, 255), 235);
        // 16 + 219 x 0.299 = 81.5; 16 + 219 x 0.587 = 144.6; 16 + 219 x 0.114 = 41.0
        assert_eq!(luma_of_rgb(255, 0, 0), 81);
        assert_eq!(luma_of_rgb(0, 255, 0), 145);
        assert_eq!(luma_of_rgb(0, 0, 255), 41);
    }

    #[test]
    fn short_buffers_are_refused() {
        assert!(Luma::new(&[0; 10], 4, 4, 3, Layout::Plane).is_err());
        assert!(Luma::new(&[0; 12], 4, 5, 3, Layout::Plane).is_err());
        assert!(Luma::new(&[0; 12], 4, 4, 3, Layout::Plane).is_ok());
        assert!(Luma::new(&[], 0, 0, 0, Layout::Plane).is_err());
    }

    #[test]
    fn tiny_frames_have_no_interior() {
        let s = sums(&[10, 20, 30, 40], 2, 2);
        assert_eq!(s.sharpness(), 0.0);
        assert_eq!(s.laplacian_n, 0);
    }
}
