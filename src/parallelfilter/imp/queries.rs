// SPDX-License-Identifier: MPL-2.0
//! Queries on both pads: serialized ones wait for the stream, CAPS and
//! ACCEPT_CAPS go to negotiation, LATENCY adds the element's own.

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{CAT, ParallelFilter};

impl ParallelFilter {
    pub(super) fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        gst::log!(CAT, obj = pad, "Handling {query:?}");
        if query.is_serialized() {
            // Allocation, drain and other serialized queries are answered
            // downstream once everything before them is out.
            if !self.drain() {
                gst::debug!(CAT, obj = pad, "Flushing, not forwarding {query:?}");
                return false;
            }
            if query.type_() == gst::QueryType::Allocation && self.transforms_caps() {
                // Downstream's answer is for other caps than upstream's.
                return false;
            }
            return self.srcpad.peer_query(query);
        }
        if let Some(answered) = self.caps_query(&self.srcpad, query) {
            return answered;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    pub(super) fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        gst::log!(CAT, obj = pad, "Handling {query:?}");
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            let own = self.latency();
            gst::debug!(
                CAT,
                obj = pad,
                "Upstream latency live {live} min {min} max {}, adding {own}",
                max.display()
            );
            // Saturate: an overflowing max means unbounded.
            q.set(
                live,
                min.saturating_add(own),
                max.and_then(|max| max.checked_add(own)),
            );
            return true;
        }
        if let Some(answered) = self.caps_query(&self.sinkpad, query) {
            return answered;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
}
