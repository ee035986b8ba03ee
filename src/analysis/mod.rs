// SPDX-License-Identifier: MPL-2.0
//! The analysis pass of `processor=analyze` and `overlay`: luma statistics,
//! sharpness and motion per frame (pure kernels on slices in [`kernel`]),
//! their typed form [`AnalysisResult`], and the overlay drawing.

pub mod font;
pub mod kernel;
pub mod overlay;
mod result;

pub use result::{AnalysisResult, HISTOGRAM_BINS};
