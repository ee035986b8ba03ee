// SPDX-License-Identifier: MPL-2.0
//! The Harness fixture: one element between a gst-check Harness's pads,
//! with a bus and a recorder on its src pad; the frames and events the
//! Harness tests push.

use gst::glib;
use gst::prelude::*;
use gst_check::Harness;

use super::recorder::{Item, Mark, Recorder};
use super::{Rng, WAIT, stat, stats, wait_until};

/// The Harness tests' caps: tiny frames, the data is the test's own.
pub const CAPS: &str = "video/x-raw,format=GRAY8,width=4,height=4,framerate=30/1";
/// One frame at 30 fps.
pub const FRAME: gst::ClockTime = gst::ClockTime::from_nseconds(33_333_333);

pub struct Fixture {
    pub h: Harness,
    pub e: gst::Element,
    pub rec: Recorder<Mark>,
    pub bus: gst::Bus,
}

impl Fixture {
    /// A harness around `e`, with a bus and a recorder; the element is
    /// PLAYING but nothing was pushed yet.
    pub fn around(e: gst::Element) -> Self {
        let bus = gst::Bus::new();
        e.set_bus(Some(&bus));
        let rec = Recorder::attach(&e.static_pad("src").unwrap());
        let h = Harness::with_element(&e, Some("sink"), Some("src"));
        Fixture { h, e, rec, bus }
    }
}

/// A `parallelfilter` with properties set from strings, in order.
pub fn element(props: &[(&str, &str)]) -> gst::Element {
    let mut builder = gst::ElementFactory::make("parallelfilter");
    for (name, value) in props {
        builder = builder.property_from_str(name, value);
    }
    builder.build().unwrap()
}

/// [`Fixture::around`] a configured element.
pub fn fixture(props: &[(&str, &str)]) -> Fixture {
    Fixture::around(element(props))
}

/// [`fixture`] plus caps and a TIME segment, checked to come out first.
pub fn start(props: &[(&str, &str)]) -> Fixture {
    let mut f = fixture(props);
    f.h.set_src_caps_str(CAPS);
    let preamble = f.rec.until(|i| matches!(i, Item::Segment(_)));
    assert_eq!(
        preamble,
        vec![
            Item::StreamStart,
            Item::Caps(CAPS.parse().unwrap()),
            Item::Segment(time_segment().upcast()),
        ]
    );
    f
}

pub fn time_segment() -> gst::FormattedSegment<gst::ClockTime> {
    gst::FormattedSegment::<gst::ClockTime>::new()
}

/// A buffer holding `data`, at `pts`, one frame long.
pub fn buffer_with(data: Vec<u8>, pts: gst::ClockTime) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(FRAME);
    }
    buffer
}

/// A buffer carrying `value` in its bytes.
pub fn buffer(value: u64, pts: gst::ClockTime) -> gst::Buffer {
    buffer_with(value.to_le_bytes().to_vec(), pts)
}

/// Frame `i` of a 30 fps stream, carrying `i`.
pub fn frame(i: u64) -> gst::Buffer {
    buffer(i, FRAME * i)
}

/// [`frame`] `i` as recorded.
pub fn frame_item(i: u64) -> Item<Mark> {
    Item::Buffer(Mark {
        pts: Some(FRAME * i),
        value: i,
    })
}

pub fn frames(range: std::ops::Range<u64>) -> Vec<Item<Mark>> {
    range.map(frame_item).collect()
}

/// A `test-item` custom downstream event.
pub fn custom(index: u64) -> gst::Event {
    gst::event::CustomDownstream::new(
        gst::Structure::builder("test-item")
            .field("index", index)
            .build(),
    )
}

pub fn push_ok(h: &mut Harness, buffer: gst::Buffer) {
    assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));
}

/// Pushes 150 frames with custom events at random places and a GAP, a TAG,
/// a SEGMENT update and a CAPS change at fixed ones, then EOS; returns what
/// was pushed after the preamble, in order.
pub fn push_mixed_stream(h: &mut Harness, seed: u64) -> Vec<Item<Mark>> {
    let mut rng = Rng(seed);
    let mut pushed = Vec::new();
    let mut index = 0;
    let push_event = |h: &mut Harness, event: gst::Event, pushed: &mut Vec<Item<Mark>>| {
        pushed.push(Item::of_event(&event));
        assert!(h.push_event(event));
    };
    for i in 0..150 {
        let events = match rng.below(4) {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        for _ in 0..events {
            push_event(h, custom(index), &mut pushed);
            index += 1;
        }
        match i {
            30 => push_event(
                h,
                gst::event::Gap::builder(FRAME * i).duration(FRAME).build(),
                &mut pushed,
            ),
            60 => {
                let mut tags = gst::TagList::new();
                tags.make_mut()
                    .add::<gst::tags::Title>(&"harness", gst::TagMergeMode::Append);
                push_event(h, gst::event::Tag::new(tags), &mut pushed);
            }
            90 => {
                let mut segment = time_segment();
                segment.set_base(gst::ClockTime::from_seconds(10));
                push_event(h, gst::event::Segment::new(&segment), &mut pushed);
            }
            120 => push_event(
                h,
                gst::event::Caps::new(
                    &"video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1"
                        .parse::<gst::Caps>()
                        .unwrap(),
                ),
                &mut pushed,
            ),
            _ => {}
        }
        pushed.push(frame_item(i));
        push_ok(h, frame(i));
    }
    push_event(h, gst::event::Eos::new(), &mut pushed);
    pushed
}

/// Waits until an upstream thread is blocked inside the element (stats
/// `blocked-upstream`), so a test exercises the blocked case for sure.
pub fn wait_blocked_upstream(e: &gst::Element) {
    wait_until("an upstream thread blocked in the element", || {
        stat(&stats(e), "blocked-upstream") > 0
    });
}

/// The next error message on `bus` (bounded wait): the error and its debug
/// text.
pub fn error_message(bus: &gst::Bus) -> (glib::Error, String) {
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(WAIT.as_secs()),
            &[gst::MessageType::Error],
        )
        .expect("no error message on the bus");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
    (err.error(), debug)
}

/// The element's per-frame messages posted so far.
pub fn frame_messages(bus: &gst::Bus) -> Vec<gst::Structure> {
    bus.iter()
        .filter_map(|msg| match msg.view() {
            gst::MessageView::Element(m) => m
                .structure()
                .filter(|s| s.name() == "parallelfilter-analysis")
                .map(|s| s.to_owned()),
            _ => None,
        })
        .collect()
}
