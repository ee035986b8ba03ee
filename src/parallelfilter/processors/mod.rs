// SPDX-License-Identifier: MPL-2.0
//! The processors: what workers do to each frame, one module per
//! `processor` nick.
//!
//! | nick | module | work |
//! |---|---|---|
//! | `passthrough` | [`passthrough`] | none: measures the element's own cost |
//! | `delay` | [`delay`] | an asynchronous wait per frame |
//! | `analyze`, `overlay` | [`analyze`] | the analysis pass ([`crate::analysis`]), drawn for `overlay` |
//! | `filter` | [`filter`] | one instance of a gst-launch chain per busy worker |
//! | `custom` | [`custom`] | the application's closure or `process-frame` handlers |
//! | `remote` | [`remote`] | requests to Open Inference Protocol servers |
//!
//! Each implements the engine's [`Processor`](crate::engine::Processor)
//! and the element's [`FrameProcessor`](super::frame::FrameProcessor)
//! hooks. They depend on the element's public types and on
//! [`crate::analysis`], never on the element's implementation.

pub(crate) mod analyze;
pub(crate) mod custom;
pub(crate) mod delay;
pub(crate) mod filter;
pub(crate) mod passthrough;
pub(crate) mod remote;

pub(crate) use delay::Delay;
pub(crate) use passthrough::Passthrough;

use super::ProcessorKind;

impl ProcessorKind {
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
}
