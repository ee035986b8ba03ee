// SPDX-License-Identifier: MPL-2.0
//! Caps: negotiation with the processor when caps arrive or downstream
//! asks for others, and the CAPS and ACCEPT_CAPS queries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::frame::{SharedProcessor, StreamInfo};
use super::state::{FrameEngine, Serialized};
use super::{CAT, ParallelFilter};
use crate::engine::lock;

impl ParallelFilter {
    /// Runs the processor's negotiation for `caps`, posting a LATENCY
    /// message if its latency changed; the src caps.
    /// The caps of the frames entering from now on, and the src caps they
    /// leave with: the one place both are set. New input caps drop the
    /// previous frame (motion compares like with like); the same caps again
    /// (a renegotiation that kept them) keep it.
    pub(super) fn set_stream(&self, caps: &gst::Caps, src_caps: &gst::Caps) {
        let output = (src_caps != caps).then(|| src_caps.clone());
        let mut state = lock(&self.state);
        if state.stream.as_ref().is_none_or(|s| &s.caps != caps) {
            state.previous = None;
        }
        state.stream = Some(Arc::new(StreamInfo::with_output(caps.clone(), output)));
    }

    pub(super) fn negotiate(
        &self,
        hooks: &SharedProcessor,
        caps: &gst::Caps,
    ) -> Result<gst::Caps, gst::ErrorMessage> {
        let latency_before = self.latency();
        let src_caps = hooks.set_caps(caps)?;
        // A wrapped chain's latency can depend on the caps.
        if self.latency() != latency_before {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
        Ok(src_caps)
    }

    /// Downstream asked for other caps: negotiates again for the current
    /// input caps; new src caps go out in stream order, before the next
    /// frame, and the frames from here on carry them.
    pub(super) fn renegotiate(
        &self,
        engine: &FrameEngine,
        hooks: &SharedProcessor,
        stream: &StreamInfo,
    ) -> Result<(), gst::FlowError> {
        let caps = &stream.caps;
        let src_caps = match self.negotiate(hooks, caps) {
            Ok(src_caps) => src_caps,
            // Not for these input caps: upstream saw the RECONFIGURE too
            // and its new caps will come; until then frames keep the caps
            // they have, as with any other element.
            Err(err) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "Keeping src caps {}: {err}",
                    stream.output_caps()
                );
                return Ok(());
            }
        };
        if &src_caps == stream.output_caps() {
            return Ok(());
        }
        gst::debug!(CAT, imp = self, "Renegotiated src caps {src_caps:?}");
        self.set_stream(caps, &src_caps);
        engine
            .submit_item(Serialized::Event(gst::event::Caps::new(&src_caps)))
            .map(|_| ())
            .map_err(Into::into)
    }

    /// Whether the running processor's output caps can differ from its
    /// input caps.
    pub(super) fn transforms_caps(&self) -> bool {
        let state = lock(&self.state);
        state.engine.is_some() && state.processor.changes_caps()
    }

    /// The caps the processor accepts when it restricts them: the running
    /// processor's, or before start those of the configured kind.
    pub(super) fn restricted_caps(&self) -> Option<gst::Caps> {
        match self.hooks() {
            Some(hooks) => hooks.caps(),
            None => lock(&self.settings).processor.static_caps(),
        }
    }

    /// Upstream's not-negotiated error does not say which format the
    /// processor refused, so name it on the bus. A warning, not an error:
    /// queries can be speculative (autoplugging tries formats). Once per
    /// format, and at most 16 formats, so a probing upstream cannot flood
    /// the bus.
    pub(super) fn warn_unsupported(&self, offered: &gst::CapsRef, supported: &gst::Caps) {
        let mut formats: Vec<String> = offered
            .iter()
            .filter_map(|s| {
                s.value("format")
                    .ok()
                    .map(|v| v.serialize().map(String::from))
            })
            .filter_map(Result::ok)
            .collect();
        formats.dedup();
        let format = if formats.is_empty() {
            offered.to_string()
        } else {
            formats.join(", ")
        };
        {
            let mut state = lock(&self.state);
            if state.refused_formats.contains(&format) || state.refused_formats.len() >= 16 {
                return;
            }
            state.refused_formats.push(format.clone());
        }
        let nick = lock(&self.settings).processor.nick();
        gst::element_imp_warning!(
            self,
            gst::CoreError::Negotiation,
            ("Format {format} is not supported by processor {nick}"),
            ["supported: {supported}"]
        );
    }

    /// A CAPS query when the processor restricts or transforms the caps:
    /// the processor's answer, or what the peer of `other` accepts within
    /// the processor's caps. ACCEPT_CAPS on the sink pad: within the
    /// processor's CAPS answer when it transforms caps, else within its
    /// caps and accepted downstream.
    pub(super) fn caps_query(&self, other: &gst::Pad, query: &mut gst::QueryRef) -> Option<bool> {
        let direction = if other == &self.srcpad {
            gst::PadDirection::Sink
        } else {
            gst::PadDirection::Src
        };
        if let gst::QueryViewMut::AcceptCaps(q) = query.view_mut() {
            if direction != gst::PadDirection::Sink {
                return None;
            }
            let caps = q.caps_owned();
            let hooks = self.hooks();
            if let Some(allowed) = hooks
                .as_ref()
                .and_then(|h| h.query_caps(direction, Some(&caps)))
            {
                q.set_result(caps.is_subset(&allowed));
                return Some(true);
            }
            // PROXY_CAPS would only ask downstream.
            let allowed = self.restricted_caps()?;
            let supported = caps.is_subset(&allowed);
            if !supported {
                self.warn_unsupported(&caps, &allowed);
            }
            let accepted = supported && other.peer_query_accept_caps(&caps);
            gst::debug!(CAT, imp = self, "Accept caps {caps:?}: {accepted}");
            q.set_result(accepted);
            return Some(true);
        }
        let gst::QueryViewMut::Caps(q) = query.view_mut() else {
            return None;
        };
        let caps = match self.hooks() {
            Some(hooks) => {
                if let Some(caps) = hooks.query_caps(direction, q.filter_owned().as_ref()) {
                    q.set_result(&caps);
                    return Some(true);
                }
                hooks.caps()?
            }
            None => {
                let kind = lock(&self.settings).processor;
                if kind.changes_caps() {
                    // Not started yet: anything the template allows, not the
                    // other side's caps, so that linking works before the
                    // chain exists.
                    let template = gst::Caps::builder("video/x-raw").build();
                    let caps = match q.filter() {
                        Some(f) => f.intersect_with_mode(&template, gst::CapsIntersectMode::First),
                        None => template,
                    };
                    q.set_result(&caps);
                    return Some(true);
                }
                kind.static_caps()?
            }
        };
        let filter = match q.filter() {
            Some(offered) => {
                let filter = offered.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
                if filter.is_empty() && !offered.is_empty() && direction == gst::PadDirection::Sink
                {
                    self.warn_unsupported(offered, &caps);
                }
                filter
            }
            None => caps.clone(),
        };
        let peer = other.peer_query_caps(Some(&filter));
        q.set_result(&peer.intersect_with_mode(&caps, gst::CapsIntersectMode::First));
        Some(true)
    }
}

impl ParallelFilter {
    /// New caps from upstream: the processor negotiates, and the CAPS event
    /// to queue in their place when the src caps differ.
    pub(super) fn sink_caps(
        &self,
        event: &gst::event::Caps,
    ) -> Result<Option<gst::Event>, gst::ErrorMessage> {
        let caps = event.caps_owned();
        gst::debug!(CAT, imp = self, "Caps {caps:?}");
        // Negotiated with downstream as it is from now on; a RECONFIGURE
        // during the negotiation still counts.
        self.renegotiate.store(false, Ordering::Release);
        let src_caps = match self.hooks() {
            Some(hooks) => self.negotiate(&hooks, &caps)?,
            None => caps.clone(),
        };
        self.set_stream(&caps, &src_caps);
        if src_caps == caps {
            return Ok(None);
        }
        gst::debug!(CAT, imp = self, "Src caps {src_caps:?}");
        Ok(Some(
            gst::event::Caps::builder(&src_caps)
                .seqnum(event.seqnum())
                .build(),
        ))
    }
}
