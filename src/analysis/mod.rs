// SPDX-License-Identifier: MPL-2.0
//! The analysis pass of `processor=analyze` and `overlay`: luma statistics,
//! sharpness and motion per frame (pure kernels on slices in [`kernel`],
//! fed from video frames by `luma`), their typed form [`AnalysisResult`]
//! with its structure names, and the overlay drawing.
//!
//! The element and its processors build on this module; it knows nothing
//! of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

pub mod font;
pub mod kernel;
pub mod luma;
pub mod overlay;
mod result;

pub use result::{AnalysisResult, HISTOGRAM_BINS};
pub(crate) use result::{SCALAR_FIELDS, field};

/// Name of the analysis results structure: in the [`ANALYSIS_META`] meta
/// and in the element message that carries them.
pub const MESSAGE_NAME: &str = "parallelfilter-analysis";
/// Custom meta carrying the analysis results (structure [`MESSAGE_NAME`]).
pub const ANALYSIS_META: &str = "GstParallelFilterAnalysisMeta";

pub(crate) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "parallelfilter-analysis",
        gst::DebugColorFlags::empty(),
        Some("parallelfilter analyze and overlay processors"),
    )
});

/// The `scene-threshold` property, shared with the running processor so
/// that changes apply from the next frame on.
#[derive(Debug, Clone)]
pub(crate) struct SceneThreshold(Arc<AtomicU64>);

impl SceneThreshold {
    pub(crate) fn new(value: f64) -> Self {
        SceneThreshold(Arc::new(AtomicU64::new(value.to_bits())))
    }

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}
