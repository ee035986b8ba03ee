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

use std::fmt;
use std::future::Future;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

mod flow;
mod frame;
mod imp;
mod processors;

pub use frame::{Frame, StreamInfo};
pub use processors::custom::{CustomProcessor, FrameContext, PROCESS_FRAME_SIGNAL};

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

impl ParallelFilter {
    /// Sets a synchronous, CPU-bound per-frame closure and selects
    /// `processor=custom`; see [`CustomProcessor::new`]. It is called
    /// from several threads at once.
    ///
    /// Like the other processor settings it is taken at start (READY to
    /// PAUSED): set while running, it takes effect at the next start.
    ///
    /// ```
    /// use gst_video::prelude::*;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// gst::init()?;
    /// gstparallel::plugin_register_static()?;
    /// let pf = gstparallel::ParallelFilter::new();
    /// pf.set_processor(|buffer, ctx| {
    ///     // Darken the picture: for 8-bit formats, halve every byte.
    ///     let mut frame = ctx.map(buffer).map_err(|e| e.to_string())?;
    ///     for plane in 0..frame.n_planes() {
    ///         frame.plane_data_mut(plane).map_err(|e| e.to_string())?
    ///             .iter_mut()
    ///             .for_each(|b| *b /= 2);
    ///     }
    ///     Ok::<_, String>(())
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_processor<F, E>(&self, f: F)
    where
        F: Fn(&mut gst::BufferRef, &FrameContext) -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.set_custom_processor(CustomProcessor::new(f))
    }

    /// Sets an asynchronous, I/O-bound per-frame closure and selects
    /// `processor=custom`; see [`CustomProcessor::new_async`]. Taken at
    /// start, like [`ParallelFilter::set_processor`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// gst::init()?;
    /// gstparallel::plugin_register_static()?;
    /// let pf = gstparallel::ParallelFilter::new();
    /// pf.set_async_processor(|buffer, ctx| async move {
    ///     // Stands for a request to a service: no thread waits here.
    ///     tokio::time::sleep(Duration::from_millis(10 + ctx.seq() % 20)).await;
    ///     Ok::<_, String>(buffer)
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_async_processor<F, Fut, E>(&self, f: F)
    where
        F: Fn(gst::Buffer, FrameContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<gst::Buffer, E>> + Send + 'static,
        E: fmt::Display,
    {
        self.set_custom_processor(CustomProcessor::new_async(f))
    }

    /// Sets `processor` and selects `processor=custom`. Taken at start:
    /// set while running, it takes effect at the next start.
    pub fn set_custom_processor(&self, processor: CustomProcessor) {
        self.imp().set_custom(Some(processor));
        self.set_property("processor", ProcessorKind::Custom);
    }

    /// Removes the Rust processor: with `processor=custom`, the
    /// `process-frame` handlers process the frames from the next start on.
    pub fn clear_custom_processor(&self) {
        self.imp().set_custom(None);
    }
}

pub use crate::analysis::{ANALYSIS_META, MESSAGE_NAME};

/// Name of the per-frame element message of a processor without results
/// of its own (`passthrough`, `delay`, `filter`, `custom`): `seq`, `worker`
/// and `processing-time` after the timing fields. Equal to
/// [`MESSAGE_NAME`] because applications already match on that name; a
/// constant of its own because these messages carry no analysis.
pub const FRAME_MESSAGE_NAME: &str = "parallelfilter-analysis";
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
    #[enum_value(
        name = "Pass: process a frame only when a worker is free, let the others through unprocessed",
        nick = "pass"
    )]
    Pass = 3,
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
