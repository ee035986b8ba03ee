// SPDX-License-Identifier: MPL-2.0
//! The sink pad: frames in (admission), serialized events in stream
//! order, flushing, and draining for serialized queries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::OnError;
use super::super::frame::{Frame, StreamInfo};
use super::src_task::is_fatal;
use super::state::{Serialized, Tag};
use super::{CAT, ParallelFilter};
use crate::engine::{Admission, Halt, lock};

impl ParallelFilter {
    pub(super) fn sink_chain(
        &self,
        pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        gst::log!(CAT, obj = pad, "Handling {buffer:?}");
        let renegotiate = if self.renegotiate.swap(false, Ordering::AcqRel) {
            let state = lock(&self.state);
            match &state.engine {
                Some(engine) => state
                    .hooks
                    .clone()
                    .zip(state.stream.clone())
                    .map(|(hooks, stream)| (engine.clone(), hooks, stream)),
                None => None,
            }
        } else {
            None
        };
        if let Some((engine, hooks, stream)) = renegotiate {
            self.renegotiate(&engine, &hooks, &stream)?;
        }
        let (engine, segment, epoch, stream, previous, caps_changed) = {
            let mut state = lock(&self.state);
            let engine = state.engine.clone().ok_or(gst::FlowError::Flushing)?;
            if state.eos_epoch == Some(state.epoch) {
                return Err(gst::FlowError::Eos);
            }
            let stream = match state.stream.clone() {
                Some(stream) => stream,
                // Only without caps: building the processor's caps costs.
                None if state.hooks.as_ref().is_none_or(|p| p.caps().is_none()) => {
                    // passthrough and delay never look at the caps.
                    let stream =
                        Arc::new(StreamInfo::new(gst::Caps::new_empty_simple("video/x-raw")));
                    state.stream = Some(stream.clone());
                    stream
                }
                None => {
                    drop(state);
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Got a buffer before caps: {buffer:?}")
                    );
                    return Err(gst::FlowError::NotNegotiated);
                }
            };
            let previous = if state.hooks.as_ref().is_some_and(|p| p.needs_previous()) {
                state.previous.replace(buffer.clone())
            } else {
                None
            };
            let caps_changed = stream.output.is_some();
            (
                engine,
                state.segment.clone(),
                state.epoch,
                stream,
                previous,
                caps_changed,
            )
        };
        let on_error = lock(&self.settings).on_error;
        let tag = Tag {
            pts: buffer.pts(),
            duration: buffer.duration(),
            running_time: buffer.pts().and_then(|pts| segment.to_running_time(pts)),
            segment,
            epoch,
            passable: !caps_changed,
            // The original cannot stand in for a frame whose caps the
            // processor changes.
            original: (on_error == OnError::Pass && !caps_changed).then(|| buffer.clone()),
        };
        let bytes = buffer.size() as u64;
        let frame = Frame {
            buffer,
            stream,
            segment: tag.segment.clone(),
            previous,
        };
        let passable = tag.passable;
        match engine.submit(frame, tag, bytes, passable) {
            Ok(Admission::Queued { seq }) => {
                gst::trace!(CAT, obj = pad, "Queued as #{seq}");
                Ok(gst::FlowSuccess::Ok)
            }
            Ok(Admission::Passed { seq, skip }) => {
                gst::trace!(CAT, obj = pad, "#{seq} passes unprocessed ({skip:?})");
                Ok(gst::FlowSuccess::Ok)
            }
            Ok(Admission::Dropped) => {
                gst::debug!(CAT, obj = pad, "Full and leaky: dropped a frame");
                Ok(gst::FlowSuccess::Ok)
            }
            Err(err) => {
                gst::debug!(CAT, obj = pad, "Refusing buffer: {err:?}");
                Err(err.into())
            }
        }
    }

    pub(super) fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;

        gst::log!(CAT, obj = pad, "Handling {event:?}");
        match event.view() {
            EventView::FlushStart(_) => {
                // Downstream first, to free a task stuck in a push.
                let ret = self.srcpad.push_event(event);
                if let Some(engine) = self.engine() {
                    engine.flush_start();
                }
                let _ = self.srcpad.pause_task();
                gst::debug!(CAT, obj = pad, "Flushing");
                return ret;
            }
            EventView::FlushStop(_) => {
                let engine = self.engine();
                if let Some(engine) = &engine
                    && engine.halted() != Some(Halt::Flushing)
                {
                    // FLUSH_STOP without FLUSH_START: stop the task first,
                    // so nothing it holds goes out after this event.
                    engine.flush_start();
                    let _ = self.srcpad.pause_task();
                }
                let hooks = {
                    let mut state = lock(&self.state);
                    state.flush();
                    state.hooks.clone()
                };
                self.qos.reset();
                if let Some(hooks) = hooks {
                    hooks.flush();
                }
                let ret = self.srcpad.push_event(event);
                // Sticky events still queued were discarded and upstream will
                // not resend them: carry the current ones (but the segment
                // and EOS) over, as queue does.
                let src_caps = lock(&self.state).changed_src_caps();
                self.sinkpad.sticky_events_foreach(|ev| {
                    match (ev.type_(), &src_caps) {
                        (gst::EventType::Segment | gst::EventType::Eos, _) => {}
                        (gst::EventType::Caps, Some(caps)) => {
                            let _ = self.srcpad.store_sticky_event(&gst::event::Caps::new(caps));
                        }
                        _ => {
                            let _ = self.srcpad.store_sticky_event(ev);
                        }
                    }
                    std::ops::ControlFlow::Continue(gst::EventForeachAction::Keep)
                });
                if let Some(engine) = &engine
                    && !self.restart_after_flush(engine)
                {
                    return false;
                }
                gst::debug!(CAT, obj = pad, "Flush stopped, sequence restarts at 0");
                return ret;
            }
            _ => {}
        }
        if !event.is_serialized() {
            return gst::Pad::event_default(pad, Some(&*self.obj()), event);
        }
        let Some(engine) = self.engine() else {
            return false;
        };
        let mut replacement = None;
        match event.view() {
            EventView::Segment(e) => {
                let Ok(segment) = e.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "Only TIME segments are supported, got {:?}",
                            e.segment().format()
                        )
                    );
                    return false;
                };
                let mut state = lock(&self.state);
                state.segment = segment;
                state.epoch += 1;
            }
            EventView::Caps(e) => match self.sink_caps(e) {
                Ok(src_event) => replacement = src_event,
                Err(err) => {
                    self.post_error_message(err);
                    return false;
                }
            },
            // A new stream after EOS.
            EventView::StreamStart(_) => {
                let mut state = lock(&self.state);
                state.eos = false;
                state.epoch += 1;
            }
            EventView::Eos(_) => lock(&self.state).eos = true,
            _ => {}
        }
        let event = replacement.unwrap_or(event);
        let is_eos = event.type_() == gst::EventType::Eos;
        match engine.submit_item(Serialized::Event(event)) {
            Ok(id) => {
                gst::trace!(CAT, obj = pad, "Queued event at position {}", id.pos);
                true
            }
            Err(err) => {
                if is_eos && is_fatal(err.into()) {
                    // Upstream is done and will not see this error.
                    self.post_flow_error(err.into());
                }
                gst::debug!(CAT, obj = pad, "Refusing event: {err:?}");
                false
            }
        }
    }

    /// Waits until everything that entered before now has been pushed.
    pub(super) fn drain(&self) -> bool {
        let Some(engine) = self.engine() else {
            return false;
        };
        // A flush, teardown or downstream error wakes us with Err, so the
        // upstream thread never hangs here.
        engine
            .submit_item(Serialized::Barrier)
            .and_then(|id| engine.wait_released(id))
            .is_ok()
    }

    pub(super) fn sink_activatemode(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "Only push mode is supported"));
        }
        if !active {
            if let Some(engine) = self.engine() {
                engine.flush_start();
            }
            // Wait for a chain call in progress to return.
            let _stream_lock = pad.stream_lock();
        }
        Ok(())
    }
}
