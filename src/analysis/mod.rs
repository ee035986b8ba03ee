// SPDX-License-Identifier: MPL-2.0
//! The analysis pass of `processor=analyze` and `overlay`: luma statistics,
//! sharpness and motion per frame (pure kernels on slices in [`kernel`]),
//! their typed form [`AnalysisResult`], and the overlay drawing.

pub mod font;
pub mod kernel;
pub mod overlay;
mod result;

pub use result::{AnalysisResult, HISTOGRAM_BINS};

/// Name of the analysis results structure: in the [`ANALYSIS_META`] meta
/// and in the element message that carries them.
pub const MESSAGE_NAME: &str = "parallelfilter-analysis";
/// Custom meta carrying the analysis results (structure [`MESSAGE_NAME`]).
pub const ANALYSIS_META: &str = "GstParallelFilterAnalysisMeta";
