// SPDX-License-Identifier: MPL-2.0
//! What the element tells the application: latency, stats, per-frame
//! messages and failure warnings.

use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::{FRAME_MESSAGE_NAME, STATS_NAME};
use super::settings::latency_of;
use super::state::Tag;
use super::{CAT, ParallelFilter};
use crate::engine::{self, lock};

impl ParallelFilter {
    /// Latency added now: the running processor's, or the configured one's
    /// before start; the timeout can change at any time.
    pub(super) fn latency(&self) -> gst::ClockTime {
        let (running, extra, batches) = {
            let state = lock(&self.state);
            let extra = state
                .hooks
                .as_ref()
                .map_or(gst::ClockTime::ZERO, |p| p.extra_latency());
            let batches = state.hooks.as_ref().is_some_and(|p| p.batches());
            let running = state
                .engine
                .is_some()
                .then_some((state.processor, state.delay_bound));
            (running, extra, batches)
        };
        let s = lock(&self.settings);
        let (processor, delay_bound) = running.unwrap_or((s.processor, s.delay_bound()));
        // A frame may wait that long for its batch to fill.
        let batch_wait = if batches && s.batch_size > 1 {
            gst::ClockTime::from_nseconds(s.batch_timeout)
        } else {
            gst::ClockTime::ZERO
        };
        latency_of(processor, delay_bound, s.timeout)
            .saturating_add(extra)
            .saturating_add(batch_wait)
    }

    pub(super) fn stats_structure(&self) -> gst::Structure {
        let (stats, hooks, last_processor_stats) = {
            let state = lock(&self.state);
            let stats = match &state.engine {
                Some(engine) => engine.stats(),
                None => state.last_stats.clone().unwrap_or_else(|| engine::Stats {
                    // Not started: the count it would start with.
                    workers: lock(&self.settings).engine_config().initial_workers() as u32,
                    ..engine::Stats::default()
                }),
            };
            (
                stats,
                state.hooks.clone(),
                state.last_processor_stats.clone(),
            )
        };
        let ns = |d: Duration| d.as_nanos() as u64;
        let mut s = gst::Structure::builder(STATS_NAME)
            .field("frames-in", stats.frames_in)
            .field("frames-out", stats.frames_out)
            .field("dropped", stats.dropped)
            .field("errors", stats.errors)
            .field("timeouts", stats.timeouts)
            .field("skipped", stats.skipped)
            .field("batches", stats.batches)
            .field("avg-batch-size", stats.avg_batch_size())
            .field("in-flight", stats.in_flight)
            .field("max-in-flight", stats.max_in_flight)
            .field("reorder-depth", stats.reorder_depth)
            .field("max-reorder-depth", stats.max_reorder_depth)
            .field("workers", stats.workers)
            .field("blocked-upstream", stats.blocked_upstream)
            .field("avg-processing-time", ns(stats.avg_processing_time))
            .field("max-processing-time", ns(stats.max_processing_time))
            .field("avg-latency", ns(stats.avg_latency))
            .field("max-latency", ns(stats.max_latency))
            .field("per-worker", gst::Array::new(stats.per_worker))
            .build();
        match (hooks, last_processor_stats) {
            (Some(hooks), _) => hooks.stats(&mut s),
            (None, Some(last)) => {
                for (name, value) in last.iter() {
                    s.set_value(name, value.clone());
                }
            }
            (None, None) => {}
        }
        s
    }

    /// Timing fields first, from the frame's own segment, then the
    /// processor's results (or seq, worker and processing-time).
    pub(super) fn post_frame_message(
        &self,
        tag: &Tag,
        buffer: &gst::BufferRef,
        seq: u64,
        worker: usize,
        processing: Duration,
    ) {
        let results = self
            .hooks()
            .and_then(|p| p.message(buffer))
            .unwrap_or_else(|| {
                gst::Structure::builder(FRAME_MESSAGE_NAME)
                    .field("seq", seq)
                    .field("worker", worker as u32)
                    .field("processing-time", processing.as_nanos() as u64)
                    .build()
            });
        let running_time = tag.pts.and_then(|pts| tag.segment.to_running_time(pts));
        let stream_time = tag.pts.and_then(|pts| tag.segment.to_stream_time(pts));
        let mut s = gst::Structure::builder(results.name())
            .field("timestamp", tag.pts.map_or(u64::MAX, |t| t.nseconds()))
            .field(
                "stream-time",
                stream_time.map_or(u64::MAX, |t| t.nseconds()),
            )
            .field(
                "running-time",
                running_time.map_or(u64::MAX, |t| t.nseconds()),
            )
            .field("duration", tag.duration.map_or(u64::MAX, |t| t.nseconds()))
            .build();
        for (name, value) in results.iter() {
            if !s.has_field(name) {
                s.set_value(name, value.clone());
            }
        }
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    /// A failure that on-error lets the stream survive still reaches the
    /// bus: the first one, then at most one a second, saying how many
    /// went unreported in between (the `errors` stat counts them all).
    pub(super) fn warn_failure(&self, text: &str) {
        gst::warning!(CAT, imp = self, "{text}");
        let unreported = {
            let mut state = lock(&self.state);
            let now = Instant::now();
            if state
                .last_failure_warning
                .is_some_and(|last| now.duration_since(last) < FAILURE_WARNING_INTERVAL)
            {
                state.unreported_failures += 1;
                return;
            }
            state.last_failure_warning = Some(now);
            std::mem::take(&mut state.unreported_failures)
        };
        match unreported {
            0 => gst::element_imp_warning!(self, gst::StreamError::Failed, ("{text}")),
            n => gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("{text} ({n} more failures since the last warning)")
            ),
        }
    }
}

/// At most one bus warning a second for failures on-error lets through.
const FAILURE_WARNING_INTERVAL: Duration = Duration::from_secs(1);
