// SPDX-License-Identifier: MPL-2.0
//! The `parallelfilter` element.
//!
//! Processes video frames concurrently in a bounded worker pool and pushes
//! them out in input order, with serialized events and queries kept in place.
//!
//! ```text
//! gst-launch-1.0 videotestsrc num-buffers=100 ! \
//!     parallelfilter processor=delay delay-min=10000000 delay-max=30000000 workers=16 ! \
//!     fakevideosink
//! ```

use gst::glib;
use gst::prelude::*;

pub(crate) mod analyze;
mod custom;
mod filter;
mod flow;
mod frame;
mod imp;
mod processors;
mod remote;
mod timer;

pub use custom::{CustomProcessor, FrameContext, PROCESS_FRAME_SIGNAL};
pub use frame::{Frame, StreamInfo};

glib::wrapper! {
    /// The `parallelfilter` element.
    ///
    /// With `processor=custom`, the application's processor does the
    /// per-frame work: a Rust closure ([`ParallelFilter::set_processor`],
    /// [`ParallelFilter::set_async_processor`],
    /// [`ParallelFilter::set_custom_processor`]) or, without one, the
    /// handlers of the `process-frame` signal.
    ///
    /// # Signals
    ///
    /// `process-frame(buffer: GstBuffer, seq: guint64) -> gboolean`: emitted
    /// on a worker thread with the writable buffer and the frame's sequence
    /// number, for up to `workers` frames at once, so handlers run
    /// concurrently on several threads and must be thread-safe. Returning
    /// FALSE is a processing error, handled by `on-error`; with several
    /// handlers, the first FALSE stops the emission. The frame's caps are
    /// the sink pad's caps when the frame entered the element: its current
    /// caps, unless new caps arrived while the frame was being processed.
    pub struct ParallelFilter(ObjectSubclass<imp::ParallelFilter>) @extends gst::Element, gst::Object;
}

impl ParallelFilter {
    /// A new `parallelfilter` with default settings, outside any factory
    /// (the same as `gst::ElementFactory::make("parallelfilter")` once the
    /// plugin is registered, then a downcast).
    pub fn new() -> Self {
        glib::Object::new()
    }
}

impl Default for ParallelFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// Name of the per-frame element message structure.
pub const MESSAGE_NAME: &str = "parallelfilter-analysis";
/// Custom meta carrying the analysis results (structure [`MESSAGE_NAME`]).
pub const ANALYSIS_META: &str = "GstParallelFilterAnalysisMeta";
/// Custom meta carrying remote inference results (structure
/// [`INFERENCE_NAME`]).
pub const INFERENCE_META: &str = "GstParallelFilterInferenceMeta";
/// Name of the inference results structure.
pub const INFERENCE_NAME: &str = "parallelfilter-inference";
/// Name of the `stats` structure.
pub const STATS_NAME: &str = "parallelfilter-stats";

/// What to do with a new frame when the element is full (`leaky`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstParallelFilterLeaky")]
pub enum Leaky {
    #[default]
    #[enum_value(name = "Not leaky: block upstream", nick = "no")]
    No = 0,
    #[enum_value(name = "Leaky on upstream: drop the new frame", nick = "upstream")]
    Upstream = 1,
    #[enum_value(
        name = "Leaky on downstream: drop the oldest frame not yet started",
        nick = "downstream"
    )]
    Downstream = 2,
}

/// What the workers do to each frame (`processor`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstParallelFilterProcessor")]
pub enum ProcessorKind {
    #[enum_value(name = "Passthrough: frames leave untouched", nick = "passthrough")]
    Passthrough = 0,
    #[enum_value(name = "Delay: asynchronous wait per frame", nick = "delay")]
    Delay = 1,
    #[default]
    #[enum_value(name = "Analyze: analysis results as metadata", nick = "analyze")]
    Analyze = 2,
    #[enum_value(name = "Overlay: analysis drawn onto the frame", nick = "overlay")]
    Overlay = 3,
    #[enum_value(
        name = "Filter: N instances of the filter description",
        nick = "filter"
    )]
    Filter = 4,
    #[enum_value(
        name = "Custom: set by the application (Rust API or the process-frame signal)",
        nick = "custom"
    )]
    Custom = 5,
    #[enum_value(name = "Remote: Open Inference Protocol servers", nick = "remote")]
    Remote = 6,
}

impl ProcessorKind {
    /// Whether the output caps can differ from the input caps, so caps
    /// must not be proxied from one pad to the other.
    pub fn changes_caps(self) -> bool {
        self == ProcessorKind::Filter
    }

    /// Caps the kind accepts, known before it is built (in READY, for
    /// CAPS and ACCEPT_CAPS queries); `None`: any raw video, or only known
    /// once the processor runs.
    pub(crate) fn static_caps(self) -> Option<gst::Caps> {
        match self {
            ProcessorKind::Analyze | ProcessorKind::Overlay => Some(analyze::caps()),
            ProcessorKind::Remote => Some(remote::caps()),
            _ => None,
        }
    }

    pub fn nick(self) -> &'static str {
        match self {
            ProcessorKind::Passthrough => "passthrough",
            ProcessorKind::Delay => "delay",
            ProcessorKind::Analyze => "analyze",
            ProcessorKind::Overlay => "overlay",
            ProcessorKind::Filter => "filter",
            ProcessorKind::Custom => "custom",
            ProcessorKind::Remote => "remote",
        }
    }
}

/// What happens on a processing error, panic or timeout (`on-error`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstParallelFilterOnError")]
pub enum OnError {
    #[default]
    #[enum_value(name = "Fail: post an error and stop", nick = "fail")]
    Fail = 0,
    #[enum_value(name = "Drop the frame and push a GAP event", nick = "drop")]
    Drop = 1,
    #[enum_value(name = "Pass the original unprocessed frame", nick = "pass")]
    Pass = 2,
}

/// What the `remote` processor sends as its input tensor (`payload`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstParallelFilterPayload")]
pub enum Payload {
    #[default]
    #[enum_value(name = "The frame's pixels as a UINT8 tensor", nick = "frame")]
    Frame = 0,
    #[enum_value(name = "The analysis fields as an FP32 tensor", nick = "analysis")]
    Analysis = 1,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "parallelfilter",
        gst::Rank::NONE,
        ParallelFilter::static_type(),
    )
}
