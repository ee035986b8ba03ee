// SPDX-License-Identifier: MPL-2.0
//! The src pad's task: pops what the engine releases in order and pushes
//! it downstream; pausing, resuming and restarting the task.

use std::sync::atomic::Ordering;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::frame::Frame;
use super::disposition::{Disposition, FrameId, dispose};
use super::state::{FrameEngine, Serialized, Tag};
use super::{CAT, ParallelFilter};
use crate::engine::{Halt, Output, Processed, Skip, lock};

impl ParallelFilter {
    /// FLUSH_STOP: the engine takes frames again and the task runs again.
    /// Under `task_lock`, as the src pad's deactivation: either it already
    /// halted the engine and nothing restarts, or it comes after and stops
    /// what this starts. False if the task cannot start.
    pub(super) fn restart_after_flush(&self, engine: &FrameEngine) -> bool {
        let _guard = lock(&self.task_lock);
        if self.srcpad.mode() != gst::PadMode::Push {
            return true;
        }
        engine.flush_stop();
        if let Err(err) = self.start_task() {
            gst::error!(CAT, imp = self, "Cannot restart task: {err}");
            return false;
        }
        true
    }

    pub(super) fn start_task(&self) -> Result<(), glib::BoolError> {
        let weak = self.obj().downgrade();
        self.srcpad.start_task(move || {
            if let Some(obj) = weak.upgrade() {
                obj.imp().src_loop();
            }
        })
    }

    pub(super) fn src_loop(&self) {
        let Some(engine) = self.engine() else {
            let _ = self.srcpad.pause_task();
            return;
        };
        match engine.pop() {
            Err(halt) => {
                gst::debug!(CAT, imp = self, "Halted: {halt:?}");
                self.pause_if_halted(&engine);
            }
            Ok(Output::Item { pos, item }) => match item {
                Serialized::Event(event) => {
                    gst::log!(CAT, imp = self, "Releasing {event:?} (position {pos})");
                    // After EOS the task keeps waiting: a STREAM_START may
                    // already be queued behind it, and the sink pad itself
                    // refuses data until then.
                    if !self.srcpad.push_event(event) {
                        gst::debug!(CAT, imp = self, "Downstream refused event at {pos}");
                    }
                }
                // Popping it is the release: the waiter sees it gone.
                Serialized::Barrier => gst::log!(CAT, imp = self, "Releasing barrier at {pos}"),
            },
            Ok(Output::Frame(processed))
                if lock(&self.state).eos_epoch == Some(processed.tag.epoch) =>
            {
                // Downstream said EOS for this segment: drop the rest of it.
                gst::log!(
                    CAT,
                    imp = self,
                    "Downstream is EOS, dropping #{}",
                    processed.seq
                );
                drop(processed);
            }
            Ok(Output::Frame(processed)) => self.push_frame(&engine, processed),
        }
    }

    pub(super) fn push_frame(&self, engine: &FrameEngine, processed: Processed<Frame, Tag>) {
        if let Some(skip) = processed.skipped {
            self.push_unprocessed(engine, processed, skip);
            return;
        }
        let Processed {
            seq,
            mut tag,
            result,
            worker,
            processing_time,
            admitted,
            leaving,
            ..
        } = processed;
        let (on_error, post_messages) = {
            let s = lock(&self.settings);
            (s.on_error, s.post_messages)
        };
        let frame = FrameId {
            seq,
            pts: tag.pts,
            worker,
        };
        // Not kept across the push: downstream would get a shared buffer
        // and copy it to write.
        let original = tag.original.take();
        let buffer = match dispose(result.map(|f| f.buffer), on_error, original, frame) {
            Disposition::Push(buffer) => buffer,
            Disposition::PassOriginal { original, warning } => {
                self.warn_failure(&warning);
                original
            }
            Disposition::Drop { warning } => {
                self.warn_failure(&warning);
                drop(leaving);
                if let Some(pts) = tag.pts {
                    let gap = gst::event::Gap::builder(pts).duration(tag.duration).build();
                    let _ = self.srcpad.push_event(gap);
                }
                return;
            }
            Disposition::Fail { text, debug } => {
                // Counted before the error is posted, so the stats are
                // complete for whoever reacts to the error.
                drop(leaving);
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{text}"), ["{debug}"]);
                engine.halt(Halt::Error);
                self.pause_if_halted(engine);
                return;
            }
        };
        if post_messages {
            self.post_frame_message(&tag, &buffer, seq, worker, processing_time);
        }
        self.qos.count_processed();
        gst::log!(CAT, imp = self, "Pushing #{seq} {buffer:?}");
        // Latency ends at the src pad, not after a syncing sink's wait.
        let latency = admitted.elapsed();
        let result = self.srcpad.push(buffer);
        leaving.left(result.is_ok(), latency);
        if let Err(err) = result {
            self.handle_push_error(engine, err, tag.epoch);
        }
    }

    /// Pushes a frame let through unprocessed, as it entered: no result,
    /// no message (a QoS message if it was late).
    fn push_unprocessed(&self, engine: &FrameEngine, processed: Processed<Frame, Tag>, skip: Skip) {
        let Processed {
            seq,
            mut tag,
            result,
            admitted,
            leaving,
            ..
        } = processed;
        // Not kept across the push, as for a processed frame.
        tag.original = None;
        // Never went to a worker, so it cannot have failed.
        let Ok(frame) = result else {
            return;
        };
        if skip == Skip::Late {
            let msg = self.qos.late_message(self.obj().upcast_ref(), &tag);
            let _ = self.obj().post_message(msg);
        }
        gst::log!(
            CAT,
            imp = self,
            "Pushing #{seq} unprocessed ({skip:?}) {:?}",
            frame.buffer
        );
        let latency = admitted.elapsed();
        let result = self.srcpad.push(frame.buffer);
        leaving.left(result.is_ok(), latency);
        if let Err(err) = result {
            self.handle_push_error(engine, err, tag.epoch);
        }
    }

    pub(super) fn handle_push_error(&self, engine: &FrameEngine, err: gst::FlowError, epoch: u64) {
        if err == gst::FlowError::Eos {
            // As queue does: refuse and drop the rest of this segment but
            // keep going, so upstream's EOS or a new segment reaches
            // downstream.
            gst::debug!(CAT, imp = self, "Downstream is EOS");
            lock(&self.state).eos_epoch = Some(epoch);
            return;
        }
        gst::debug!(CAT, imp = self, "Push failed: {err:?}, pausing");
        engine.halt(err.into());
        self.pause_if_halted(engine);
        // Upstream learns about the error from its next chain call, unless
        // EOS already went in: then nobody would report it.
        let eos = lock(&self.state).eos;
        if eos && is_fatal(err) {
            self.post_flow_error(err);
            let _ = self.srcpad.push_event(gst::event::Eos::new());
        }
    }

    /// Pauses the task from inside it, unless a RECONFIGURE resumed the
    /// engine since it halted: checking and pausing under `task_lock`, like
    /// resuming and restarting, means the restart can never be lost.
    pub(super) fn pause_if_halted(&self, engine: &FrameEngine) {
        let _guard = lock(&self.task_lock);
        if engine.halted().is_some() {
            let _ = self.srcpad.pause_task();
        }
    }

    pub(super) fn post_flow_error(&self, err: gst::FlowError) {
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Internal data stream error."),
            ["streaming stopped, reason {}", flow_name(err)]
        );
    }

    /// Restarts the task if the engine was halted by `halt`. Under
    /// `task_lock`, so the task cannot pause itself in between; a
    /// deactivation in between halts with Flushing and nothing restarts.
    pub(super) fn resume_task(&self, engine: &FrameEngine, halt: Halt) {
        let _guard = lock(&self.task_lock);
        if engine.resume_from(halt) {
            gst::debug!(CAT, imp = self, "Resuming after {halt:?}");
            if let Err(err) = self.start_task() {
                gst::error!(CAT, imp = self, "Cannot restart task: {err}");
            }
        }
    }

    pub(super) fn src_activatemode(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "Only push mode is supported"));
        }
        if active {
            let Some(engine) = self.engine() else {
                return Err(gst::loggable_error!(CAT, "Not started"));
            };
            engine.flush_stop();
            self.start_task()
                .map_err(|e| gst::loggable_error!(CAT, "Cannot start task: {e}"))
        } else {
            if let Some(engine) = self.engine() {
                // Under task_lock: a RECONFIGURE cannot restart the task now.
                let _guard = lock(&self.task_lock);
                engine.flush_start();
            }
            // The engine is halted, so the task's pop returns and it can join.
            pad.stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "Cannot stop task: {e}"))
        }
    }

    pub(super) fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "Handling {event:?}");
        if let gst::EventView::Qos(q) = event.view() {
            let (_, proportion, diff, timestamp) = q.get();
            gst::log!(
                CAT,
                obj = pad,
                "QoS: proportion {proportion}, diff {diff}, timestamp {}",
                timestamp.display()
            );
            self.qos.update(proportion, diff, timestamp);
        }
        if event.type_() == gst::EventType::Reconfigure
            && let Some(engine) = self.engine()
        {
            // Downstream may want other caps than the processor chose.
            if lock(&self.state).processor.changes_caps() {
                self.renegotiate.store(true, Ordering::Release);
            }
            // Linked again: resume pushing what is waiting.
            self.resume_task(&engine, Halt::NotLinked);
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }
}

/// GStreamer's name of a flow return, as in its own error messages.
pub(super) fn flow_name(err: gst::FlowError) -> &'static str {
    match err {
        gst::FlowError::NotLinked => "not-linked",
        gst::FlowError::Flushing => "flushing",
        gst::FlowError::Eos => "eos",
        gst::FlowError::NotNegotiated => "not-negotiated",
        gst::FlowError::Error => "error",
        gst::FlowError::NotSupported => "not-supported",
        _ => "custom-error",
    }
}

/// A flow error that stops the stream for good (not a flush, not EOS).
pub(super) fn is_fatal(err: gst::FlowError) -> bool {
    !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos)
}
