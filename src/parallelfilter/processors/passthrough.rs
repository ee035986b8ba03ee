// SPDX-License-Identifier: MPL-2.0
//! `passthrough`: frames leave untouched, so a run measures the element's
//! own cost.

use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::frame::FrameProcessor;

pub struct Passthrough;

impl<T: Send + 'static> Processor<T> for Passthrough {
    fn process(&self, frame: T, _ctx: WorkCtx) -> Work<T> {
        Work::Ready(Ok(frame))
    }
}

impl FrameProcessor for Passthrough {}
