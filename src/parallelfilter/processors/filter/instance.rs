// SPDX-License-Identifier: MPL-2.0
//! One instance of the chain: its private pipeline, the `feed` and
//! `collect` pads linked to the chain's free pads, and the answers to the
//! queries the chain asks through them.

use crate::engine::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use gst::glib;
use gst::prelude::*;

use super::CAT;
use super::chain::parse;
use crate::parallelfilter::frame::Frame;

/// What every instance shares: the element whose peers answer the chain's
/// queries.
#[derive(Default)]
pub(super) struct Shared {
    element: OnceLock<glib::WeakRef<gst::Element>>,
}

impl Shared {
    /// Called once at start, with the element.
    pub(super) fn attach(&self, element: &gst::Element) {
        let _ = self.element.set(element.downgrade());
    }

    fn pad(&self, name: &str) -> Option<gst::Pad> {
        self.element.get()?.upgrade()?.static_pad(name)
    }

    /// What downstream of the element accepts.
    fn downstream_caps(&self, filter: Option<&gst::Caps>) -> gst::Caps {
        match self.pad("src") {
            Some(pad) if pad.peer().is_some() => pad.peer_query_caps(filter),
            _ => filter.cloned().unwrap_or_else(gst::Caps::new_any),
        }
    }

    /// What upstream of the element can give.
    fn upstream_caps(&self, filter: Option<&gst::Caps>) -> gst::Caps {
        match self.pad("sink") {
            Some(pad) if pad.peer().is_some() => pad.peer_query_caps(filter),
            _ => filter.cloned().unwrap_or_else(gst::Caps::new_any),
        }
    }
}

/// What the chain gave back for one input.
#[derive(Default)]
struct Collected {
    /// The first output buffer; later ones are only counted.
    buffer: Option<gst::Buffer>,
    count: usize,
    /// The chain's current output caps.
    caps: Option<gst::Caps>,
    /// The chain announced caps since the last reset.
    announced: bool,
    /// The first error the chain posted since the last take.
    error: Option<String>,
}

/// State shared between an instance and its pads' functions.
struct Link {
    shared: Arc<Shared>,
    collected: Mutex<Collected>,
    /// Input caps currently set on the chain.
    input_caps: Mutex<Option<gst::Caps>>,
    /// While a frame is processed, the src caps it must leave with: the
    /// chain's downstream then accepts only these, so an instance that
    /// renegotiates for an earlier or later frame than downstream's current
    /// caps still gives what its place in the stream expects.
    target: Mutex<Option<gst::Caps>>,
    /// A CAPS query on the element's src pad is running through this
    /// instance: the chain's upstream is the element's upstream, not the
    /// caps the instance streams with.
    ask_upstream: AtomicBool,
}

pub(super) struct Instance {
    id: u64,
    pipeline: gst::Pipeline,
    feed: gst::Pad,
    collect: gst::Pad,
    link: Arc<Link>,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// `Pool::generation` the instance has caught up with (flushes).
    generation: u64,
}

fn error_text(msg: &gst::message::Error) -> String {
    let src = msg
        .src()
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "?".into());
    match msg.debug() {
        Some(debug) => format!("{src}: {} ({debug})", msg.error()),
        None => format!("{src}: {}", msg.error()),
    }
}

impl Instance {
    pub(super) fn new(id: u64, description: &str, shared: &Arc<Shared>) -> Result<Self, String> {
        let chain = parse(description)?;
        let pipeline = gst::Pipeline::builder()
            .name(format!("parallelfilter-instance{id}"))
            .build();
        // Frames are processed as fast as they come: no syncing, no clock.
        pipeline.use_clock(None::<&gst::Clock>);
        let link = Arc::new(Link {
            shared: shared.clone(),
            collected: Mutex::new(Collected::default()),
            input_caps: Mutex::new(None),
            target: Mutex::new(None),
            ask_upstream: AtomicBool::new(false),
        });
        // Only the first error matters; everything else is dropped here so
        // the bus never grows.
        let weak = Arc::downgrade(&link);
        pipeline
            .bus()
            .ok_or_else(|| "instance pipeline has no bus".to_string())?
            .set_sync_handler(move |_, msg| {
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        if let Some(link) = weak.upgrade() {
                            let mut c = lock(&link.collected);
                            if c.error.is_none() {
                                c.error = Some(error_text(e));
                            }
                        }
                    }
                    gst::MessageView::Warning(w) => {
                        gst::warning!(CAT, "instance {id}: {} ({:?})", w.error(), w.debug());
                    }
                    _ => {}
                }
                gst::BusSyncReply::Drop
            });
        pipeline
            .add(&chain.bin)
            .map_err(|e| format!("cannot add the filter to its pipeline: {e}"))?;

        let feed = gst::Pad::builder(gst::PadDirection::Src)
            .name("feed")
            .event_function(|_, _, _| true)
            .query_function({
                let link = link.clone();
                move |_, _, query| link.feed_query(query)
            })
            .build();
        let collect = gst::Pad::builder(gst::PadDirection::Sink)
            .name("collect")
            .chain_function({
                let link = link.clone();
                move |_, _, buffer| {
                    let mut c = lock(&link.collected);
                    c.count += 1;
                    if c.buffer.is_none() {
                        c.buffer = Some(buffer);
                    }
                    Ok(gst::FlowSuccess::Ok)
                }
            })
            .event_function({
                let link = link.clone();
                move |_, _, event| {
                    if let gst::EventView::Caps(c) = event.view() {
                        let mut collected = lock(&link.collected);
                        collected.caps = Some(c.caps_owned());
                        collected.announced = true;
                    }
                    true
                }
            })
            .query_function({
                let link = link.clone();
                move |_, _, query| link.collect_query(query)
            })
            .build();
        let instance = Instance {
            id,
            pipeline,
            feed,
            collect,
            link,
            segment: None,
            generation: 0,
        };
        // From here on, Drop shuts the pipeline down.
        instance
            .feed
            .link(&chain.sink)
            .map_err(|e| format!("cannot link to the filter's sink pad: {e:?}"))?;
        chain
            .src
            .link(&instance.collect)
            .map_err(|e| format!("cannot link to the filter's src pad: {e:?}"))?;
        instance
            .feed
            .set_active(true)
            .and_then(|_| instance.collect.set_active(true))
            .map_err(|e| format!("cannot activate pads: {e}"))?;
        if instance.pipeline.set_state(gst::State::Playing).is_err() {
            let why = instance
                .take_error()
                .unwrap_or_else(|| "state change failed".into());
            return Err(format!("cannot start the filter: {why}"));
        }
        let stream_start = gst::event::StreamStart::builder(&format!("parallelfilter/{id}"))
            .group_id(gst::GroupId::next())
            .build();
        if !instance.feed.push_event(stream_start) {
            return Err(format!(
                "the filter refused STREAM_START{}",
                instance.error_suffix()
            ));
        }
        gst::debug!(CAT, "Instance {id} of '{description}' ready");
        Ok(instance)
    }

    fn take_error(&self) -> Option<String> {
        lock(&self.link.collected).error.take()
    }

    fn error_suffix(&self) -> String {
        self.take_error()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    }

    fn input_caps(&self) -> Option<gst::Caps> {
        lock(&self.link.input_caps).clone()
    }

    /// Sets input caps (again); the chain's output caps, if it announced
    /// them now.
    pub(super) fn set_caps(&mut self, caps: &gst::Caps) -> Result<Option<gst::Caps>, String> {
        *lock(&self.link.input_caps) = Some(caps.clone());
        // Same caps again: the chain renegotiates with downstream at once
        // (or, if the pad skips an unchanged event, at its next buffer).
        let _ = self.collect.push_event(gst::event::Reconfigure::new());
        lock(&self.link.collected).announced = false;
        if !self.feed.push_event(gst::event::Caps::new(caps)) {
            *lock(&self.link.input_caps) = None;
            return Err(format!(
                "the filter does not accept caps {caps}{}",
                self.error_suffix()
            ));
        }
        let c = lock(&self.link.collected);
        Ok(c.caps.clone().filter(|_| c.announced))
    }

    /// The chain's output caps as it last announced them.
    fn output_caps(&self) -> Option<gst::Caps> {
        lock(&self.link.collected).caps.clone()
    }

    fn flush(&mut self) {
        gst::debug!(CAT, "Flushing instance {}", self.id);
        let _ = self.feed.push_event(gst::event::FlushStart::new());
        let _ = self.feed.push_event(gst::event::FlushStop::new(true));
        // FLUSH_STOP dropped the sticky segment.
        self.segment = None;
    }

    /// Back to what downstream accepts now, after a frame: for set_caps.
    pub(super) fn clear_target(&self) {
        *lock(&self.link.target) = None;
    }

    /// Runs one frame through the chain: exactly one buffer must come out.
    pub(super) fn process(&mut self, mut frame: Frame, generation: u64) -> Result<Frame, String> {
        if self.generation != generation {
            self.flush();
            self.generation = generation;
        }
        // Also when downstream asked for other src caps: the frame's
        // stream carries the caps it leaves with.
        let expected = frame.stream.output_caps();
        *lock(&self.link.target) = Some(expected.clone());
        let stale = self.output_caps().is_some_and(|output| &output != expected);
        if stale || self.input_caps().as_ref() != Some(&frame.stream.caps) {
            self.set_caps(&frame.stream.caps)?;
        }
        if self.segment.as_ref() != Some(&frame.segment) {
            if !self
                .feed
                .push_event(gst::event::Segment::new(frame.segment.upcast_ref()))
            {
                return Err(format!(
                    "the filter refused the segment{}",
                    self.error_suffix()
                ));
            }
            self.segment = Some(frame.segment.clone());
        }
        {
            let mut c = lock(&self.link.collected);
            c.buffer = None;
            c.count = 0;
        }
        // Moved, not shared: in-place elements then need no copy.
        let flow = self.feed.push(frame.buffer);
        let (buffer, count, error, output) = {
            let mut c = lock(&self.link.collected);
            (
                c.buffer.take(),
                std::mem::take(&mut c.count),
                c.error.take(),
                c.caps.clone(),
            )
        };
        // An error posted inside fails the frame even if the push went
        // through: the element said something went wrong.
        if let Some(error) = error {
            return Err(error);
        }
        if let Err(flow) = flow {
            return Err(format!("the filter returned {flow:?}"));
        }
        match (buffer, count) {
            (Some(buffer), 1) => {
                if let Some(output) = output.filter(|o| o != expected) {
                    return Err(format!(
                        "instance {} negotiated {output}, but {expected} went downstream",
                        self.id
                    ));
                }
                frame.buffer = buffer;
                Ok(frame)
            }
            (None, _) => Err("the filter gave no output buffer (it dropped the frame)".into()),
            (Some(_), n) => Err(format!(
                "the filter gave {n} output buffers for one input; the extras are discarded"
            )),
        }
    }

    /// The output caps for `input` (already set) when the chain did not
    /// announce any: what it can give for these input caps and downstream
    /// accepts, keeping what flows now where it still fits, else the input
    /// caps themselves where the chain can keep them, else the candidates
    /// fixated as close to the input as they allow.
    pub(super) fn choose_output(&self, input: &gst::Caps) -> Result<gst::Caps, String> {
        // Not upstream's range: fixating that gives 1x1 at 0/1.
        let possible = self
            .collect
            .peer()
            .map_or_else(gst::Caps::new_empty, |p| p.query_caps(None));
        let candidates = self.link.shared.downstream_caps(Some(&possible));
        if candidates.is_empty() {
            return Err(format!(
                "the filter gives nothing downstream accepts (it can give {possible} \
                 for {input})"
            ));
        }
        // ANY cannot be fixated (it would assert).
        if candidates.is_any() {
            return Err(format!(
                "the filter does not fix its output caps (it and downstream allow \
                 {candidates}); fix them in the description or downstream"
            ));
        }
        if let Some(current) = self.output_caps().filter(|c| c.is_subset(&candidates)) {
            return Ok(current);
        }
        let same = candidates.intersect_with_mode(input, gst::CapsIntersectMode::First);
        let mut caps = if same.is_empty() { candidates } else { same };
        caps.truncate();
        if let (Some(s), Some(near)) = (caps.make_mut().structure_mut(0), input.structure(0)) {
            for (name, value) in near.iter() {
                if s.has_field(name) && !s.value(name).is_ok_and(|v| v.is_fixed()) {
                    if let Ok(v) = value.get::<i32>() {
                        s.fixate_field_nearest_int(name, v);
                    } else if let Ok(v) = value.get::<gst::Fraction>() {
                        s.fixate_field_nearest_fraction(name, v);
                    } else if let Ok(v) = value.get::<&str>() {
                        s.fixate_field_str(name, v);
                    }
                }
            }
        }
        caps.fixate();
        if !caps.is_fixed() {
            return Err(format!("the filter does not fix its output caps: {caps}"));
        }
        Ok(caps)
    }

    /// A CAPS query on the element's pad of `direction`, through the chain.
    pub(super) fn query_caps(
        &self,
        direction: gst::PadDirection,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        match direction {
            // What the chain accepts, given what downstream accepts.
            gst::PadDirection::Sink => self.feed.peer().map(|p| p.query_caps(filter)),
            // What the chain gives, given what upstream gives.
            gst::PadDirection::Src => {
                self.link.ask_upstream.store(true, Ordering::SeqCst);
                let caps = self.collect.peer().map(|p| p.query_caps(filter));
                self.link.ask_upstream.store(false, Ordering::SeqCst);
                caps
            }
            _ => None,
        }
    }

    /// Latency the chain adds.
    pub(super) fn latency(&self) -> gst::ClockTime {
        let mut q = gst::query::Latency::new();
        if self.collect.peer_query(&mut q) {
            let (_, min, _) = q.result();
            min
        } else {
            gst::ClockTime::ZERO
        }
    }
}

impl Link {
    /// Queries from the chain towards its upstream (our `feed` pad).
    fn feed_query(&self, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                let current = lock(&self.input_caps).clone();
                let filter = q.filter_owned();
                let caps = match current {
                    Some(caps) if !self.ask_upstream.load(Ordering::SeqCst) => match &filter {
                        Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
                        None => caps,
                    },
                    _ => self.shared.upstream_caps(filter.as_ref()),
                };
                q.set_result(&caps);
                true
            }
            gst::QueryViewMut::Latency(q) => {
                q.set(false, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                true
            }
            _ => false,
        }
    }

    /// Queries from the chain towards its downstream (our `collect` pad):
    /// the element's downstream decides.
    fn collect_query(&self, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                let filter = q.filter_owned();
                let caps = match (lock(&self.target).clone(), &filter) {
                    (Some(target), Some(f)) => {
                        f.intersect_with_mode(&target, gst::CapsIntersectMode::First)
                    }
                    (Some(target), None) => target,
                    (None, _) => self.shared.downstream_caps(filter.as_ref()),
                };
                q.set_result(&caps);
                true
            }
            gst::QueryViewMut::AcceptCaps(q) => {
                let caps = q.caps_owned();
                let target = lock(&self.target).clone();
                let accepted = match (target, self.shared.pad("src")) {
                    (Some(target), _) => caps.is_subset(&target),
                    (None, Some(pad)) if pad.peer().is_some() => pad.peer_query_accept_caps(&caps),
                    _ => true,
                };
                q.set_result(accepted);
                true
            }
            _ => false,
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        let _ = self.feed.set_active(false);
        let _ = self.collect.set_active(false);
        if let Some(peer) = self.feed.peer() {
            let _ = self.feed.unlink(&peer);
        }
        if let Some(peer) = self.collect.peer() {
            let _ = peer.unlink(&self.collect);
        }
        gst::debug!(CAT, "Instance {} shut down", self.id);
    }
}
