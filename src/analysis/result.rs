// SPDX-License-Identifier: MPL-2.0
//! The analysis results as a typed struct, and their `gst::Structure` form
//! (the `GstParallelFilterAnalysisMeta` custom meta and the element
//! message `parallelfilter-analysis`).

use gst::glib;

use super::kernel::Sums;
use super::{ANALYSIS_META, MESSAGE_NAME};

/// Number of histogram bins.
pub const HISTOGRAM_BINS: usize = 16;

/// The structure's field names (the contract in docs/analysis.md), for whoever reads
/// or writes them: one list, so a reader cannot drift from the writer.
pub(crate) mod field {
    pub const TIMESTAMP: &str = "timestamp";
    pub const DURATION: &str = "duration";
    pub const SEQ: &str = "seq";
    pub const WORKER: &str = "worker";
    pub const PROCESSING_TIME: &str = "processing-time";
    pub const LUMA_AVERAGE: &str = "luma-average";
    pub const LUMA_VARIANCE: &str = "luma-variance";
    pub const LUMA_MIN: &str = "luma-min";
    pub const LUMA_MAX: &str = "luma-max";
    pub const HISTOGRAM: &str = "histogram";
    pub const SHARPNESS: &str = "sharpness";
    pub const MOTION: &str = "motion";
    pub const SCENE_CHANGE: &str = "scene-change";
}

/// The measures that are one number each, in the order `remote`'s
/// `payload=analysis` sends them (the histogram's bins follow): see
/// [`AnalysisResult::scalars`].
pub(crate) const SCALAR_FIELDS: [&str; 7] = [
    field::LUMA_AVERAGE,
    field::LUMA_VARIANCE,
    field::LUMA_MIN,
    field::LUMA_MAX,
    field::SHARPNESS,
    field::MOTION,
    field::SCENE_CHANGE,
];

/// One frame's analysis, as `processor=analyze` and `overlay` attach it to
/// the buffer. Field names in the structure are the contract's (docs/analysis.md): `timestamp`,
/// `duration`, `seq`, `worker`, `processing-time`, `luma-average`,
/// `luma-variance`, `luma-min`, `luma-max`, `histogram`, `sharpness`,
/// `motion`, `scene-change`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisResult {
    /// Buffer PTS (`GST_CLOCK_TIME_NONE` in the structure when unset).
    pub timestamp: Option<gst::ClockTime>,
    /// Buffer duration.
    pub duration: Option<gst::ClockTime>,
    /// Input sequence number, 0 for the first frame after start or flush.
    pub seq: u64,
    /// Worker that processed the frame.
    pub worker: u32,
    /// Time spent processing the frame.
    pub processing_time: gst::ClockTime,
    /// Mean luma, 0..1, as `videoanalyse`'s `luma-average`.
    pub luma_average: f64,
    /// Luma variance on the 0..1 scale, as `videoanalyse`'s `luma-variance`.
    pub luma_variance: f64,
    pub luma_min: u8,
    pub luma_max: u8,
    /// Luma histogram, 16 equal bins; sums to the number of pixels.
    pub histogram: [u32; HISTOGRAM_BINS],
    /// Variance of the 4-neighbour Laplacian of luma (0..1 scale) over the
    /// interior pixels.
    pub sharpness: f64,
    /// Mean absolute luma difference to the previous input frame, 0..1.
    pub motion: f64,
    /// `motion` above the element's `scene-threshold`.
    pub scene_change: bool,
}

impl AnalysisResult {
    /// The measures of a frame from its luma sums. The frame's own fields
    /// (`timestamp`, `duration`, `seq`, `worker`, `processing-time`) are
    /// left unset (0, none) for the caller.
    pub(crate) fn measured(sums: &Sums, scene_threshold: f64) -> Self {
        let motion = sums.motion();
        AnalysisResult {
            timestamp: None,
            duration: None,
            seq: 0,
            worker: 0,
            processing_time: gst::ClockTime::ZERO,
            luma_average: sums.luma_average(),
            luma_variance: sums.luma_variance(),
            luma_min: sums.luma_min(),
            luma_max: sums.luma_max(),
            histogram: sums.histogram16(),
            sharpness: sums.sharpness(),
            motion,
            scene_change: motion > scene_threshold,
        }
    }

    /// The values of [`SCALAR_FIELDS`], in that order, as the structure
    /// holds them: luma bounds on 0..255, scene-change 0 or 1.
    pub(crate) fn scalars(&self) -> [f64; SCALAR_FIELDS.len()] {
        [
            self.luma_average,
            self.luma_variance,
            f64::from(self.luma_min),
            f64::from(self.luma_max),
            self.sharpness,
            self.motion,
            f64::from(u8::from(self.scene_change)),
        ]
    }

    /// The results attached to `buffer`, if any.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<Result<Self, glib::BoolError>> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, ANALYSIS_META).ok()?;
        Some(Self::try_from(meta.structure()))
    }

    /// Attaches the results to `buffer` as the analysis custom meta,
    /// replacing what a previous pass attached.
    pub fn attach(&self, buffer: &mut gst::BufferRef) -> Result<(), glib::BoolError> {
        if let Ok(old) = gst::meta::CustomMeta::from_mut_buffer(buffer, ANALYSIS_META) {
            old.remove()?;
        }
        let mut meta = gst::meta::CustomMeta::add(buffer, ANALYSIS_META)?;
        let s = meta.mut_structure();
        s.set_name(MESSAGE_NAME);
        self.write_fields(s);
        Ok(())
    }

    /// The contract's fields in their order: written straight into the
    /// meta per frame, with no intermediate structure.
    fn write_fields(&self, s: &mut gst::StructureRef) {
        s.set(field::TIMESTAMP, clock_time_ns(self.timestamp));
        s.set(field::DURATION, clock_time_ns(self.duration));
        s.set(field::SEQ, self.seq);
        s.set(field::WORKER, self.worker);
        s.set(field::PROCESSING_TIME, self.processing_time.nseconds());
        s.set(field::LUMA_AVERAGE, self.luma_average);
        s.set(field::LUMA_VARIANCE, self.luma_variance);
        s.set(field::LUMA_MIN, u32::from(self.luma_min));
        s.set(field::LUMA_MAX, u32::from(self.luma_max));
        s.set(field::HISTOGRAM, gst::Array::new(self.histogram));
        s.set(field::SHARPNESS, self.sharpness);
        s.set(field::MOTION, self.motion);
        s.set(field::SCENE_CHANGE, self.scene_change);
    }
}

fn clock_time_ns(t: Option<gst::ClockTime>) -> u64 {
    t.map_or(u64::MAX, |t| t.nseconds())
}

fn clock_time_of(ns: u64) -> Option<gst::ClockTime> {
    (ns != u64::MAX).then(|| gst::ClockTime::from_nseconds(ns))
}

impl From<AnalysisResult> for gst::Structure {
    fn from(r: AnalysisResult) -> Self {
        let mut s = gst::Structure::new_empty(MESSAGE_NAME);
        r.write_fields(&mut s);
        s
    }
}

impl TryFrom<&gst::StructureRef> for AnalysisResult {
    type Error = glib::BoolError;

    fn try_from(s: &gst::StructureRef) -> Result<Self, Self::Error> {
        if s.name() != MESSAGE_NAME {
            return Err(glib::bool_error!(
                "structure is '{}', not '{MESSAGE_NAME}'",
                s.name()
            ));
        }
        let get_err = |e: gst::structure::GetError<_>| glib::bool_error!("{e}");
        let luma = |name: &str| -> Result<u8, glib::BoolError> {
            let v: u32 = s.get(name).map_err(get_err)?;
            u8::try_from(v).map_err(|_| glib::bool_error!("{name} {v} out of 0..255"))
        };
        let array: gst::Array = s.get(field::HISTOGRAM).map_err(get_err)?;
        if array.len() != HISTOGRAM_BINS {
            return Err(glib::bool_error!(
                "histogram has {} bins, not {HISTOGRAM_BINS}",
                array.len()
            ));
        }
        let mut histogram = [0u32; HISTOGRAM_BINS];
        for (bin, v) in histogram.iter_mut().zip(array.iter()) {
            *bin = v.get().map_err(|e| glib::bool_error!("histogram: {e}"))?;
        }
        Ok(AnalysisResult {
            timestamp: clock_time_of(s.get(field::TIMESTAMP).map_err(get_err)?),
            duration: clock_time_of(s.get(field::DURATION).map_err(get_err)?),
            seq: s.get(field::SEQ).map_err(get_err)?,
            worker: s.get(field::WORKER).map_err(get_err)?,
            processing_time: gst::ClockTime::from_nseconds(
                s.get(field::PROCESSING_TIME).map_err(get_err)?,
            ),
            luma_average: s.get(field::LUMA_AVERAGE).map_err(get_err)?,
            luma_variance: s.get(field::LUMA_VARIANCE).map_err(get_err)?,
            luma_min: luma(field::LUMA_MIN)?,
            luma_max: luma(field::LUMA_MAX)?,
            histogram,
            sharpness: s.get(field::SHARPNESS).map_err(get_err)?,
            motion: s.get(field::MOTION).map_err(get_err)?,
            scene_change: s.get(field::SCENE_CHANGE).map_err(get_err)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AnalysisResult {
        AnalysisResult {
            timestamp: Some(gst::ClockTime::from_mseconds(40)),
            duration: None,
            seq: 7,
            worker: 3,
            processing_time: gst::ClockTime::from_useconds(1234),
            luma_average: 0.25,
            luma_variance: 0.0625,
            luma_min: 16,
            luma_max: 235,
            histogram: std::array::from_fn(|i| i as u32 * 100),
            sharpness: 0.01,
            motion: 0.5,
            scene_change: true,
        }
    }

    #[test]
    fn structure_round_trip() {
        gst::init().unwrap();
        let r = sample();
        let s = gst::Structure::from(r.clone());
        assert_eq!(s.name(), MESSAGE_NAME);
        assert_eq!(s.get::<u64>("duration").unwrap(), u64::MAX);
        assert_eq!(s.get::<u32>("luma-max").unwrap(), 235);
        assert_eq!(s.fields().count(), 13);
        assert_eq!(AnalysisResult::try_from(s.as_ref()).unwrap(), r);
    }

    #[test]
    fn scalars_follow_their_field_names() {
        gst::init().unwrap();
        let r = sample();
        let s = gst::Structure::from(r.clone());
        let by_name = SCALAR_FIELDS.map(|f| {
            s.get::<f64>(f)
                .or_else(|_| s.get::<u32>(f).map(f64::from))
                .or_else(|_| s.get::<bool>(f).map(|b| f64::from(u8::from(b))))
                .unwrap()
        });
        assert_eq!(by_name, r.scalars());
    }

    #[test]
    fn wrong_structures_are_refused() {
        gst::init().unwrap();
        let mut s = gst::Structure::from(sample());
        s.set("luma-max", 300u32);
        assert!(AnalysisResult::try_from(s.as_ref()).is_err());
        let mut s = gst::Structure::from(sample());
        s.set("histogram", gst::Array::new([1u32, 2]));
        assert!(AnalysisResult::try_from(s.as_ref()).is_err());
        let mut s = gst::Structure::from(sample());
        s.remove_field("motion");
        assert!(AnalysisResult::try_from(s.as_ref()).is_err());
        let mut s = gst::Structure::from(sample());
        s.set_name("other");
        assert!(AnalysisResult::try_from(s.as_ref()).is_err());
    }
}
