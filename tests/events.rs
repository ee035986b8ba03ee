// SPDX-License-Identifier: MPL-2.0
//! Serialized events and queries (docs/semantics.md, Rules: Order,
//! Queries, EOS): each keeps its place among the frames, EOS drains
//! everything before it, a new stream may follow EOS, sticky events
//! survive a flush.

mod common;

use common::{
    CAPS, Fixture, HOUR, Item, MS, Pipeline, SECOND, assert_increasing, frame, frame_item, frames,
    per_worker, push_mixed_stream, push_ok, start, stat, stats, time_segment,
};
use gst::prelude::*;

#[test]
fn serialized_events_keep_their_place() {
    let _wd = common::begin("serialized_events_keep_their_place", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "8"),
    ]);
    let pushed = push_mixed_stream(&mut h, 1);
    assert!(
        pushed
            .iter()
            .filter(|i| matches!(i, Item::Custom(_)))
            .count()
            > 20
    );
    assert_eq!(rec.until_eos(), pushed);
}

// EOS drain --------------------------------------------------------------

#[test]
fn eos_waits_for_frames_in_processing() {
    let _wd = common::begin("eos_waits_for_frames_in_processing", 60);
    // Room for every frame, so EOS enters while frames are still being
    // processed (20-60 ms each); the order must not depend on that.
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(20 * MS).to_string()),
        ("delay-max", &(60 * MS).to_string()),
        ("workers", "64"),
        ("max-size-buffers", "64"),
    ]);
    for i in 0..50 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..50);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 50, "{s}");
    assert_eq!(stat(&s, "in-flight"), 0, "{s}");
}

/// [`eos_waits_for_frames_in_processing`] in a whole pipeline, with the
/// per-frame messages and stats.
#[test]
fn eos_drains_every_frame_in_order() {
    let _wd = common::begin("eos_drain", 60);
    let p = Pipeline::launch(
        "videotestsrc num-buffers=60 ! video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf processor=delay delay-max=20000000 seed=7 workers=8 \
         post-messages=true ! fakesink name=sink",
    );
    p.run_to_eos();
    let recs = p.records();
    assert_eq!(recs.last(), Some(&Item::Eos));
    let pts = p.buffer_pts();
    assert_eq!(pts.len(), 60);
    assert_increasing(&pts);
    let msgs = p.frame_messages();
    let seqs: Vec<u64> = msgs.iter().map(|m| m.get::<u64>("seq").unwrap()).collect();
    assert_eq!(seqs, (0..60).collect::<Vec<_>>());
    let ts: Vec<u64> = msgs
        .iter()
        .map(|m| m.get::<u64>("timestamp").unwrap())
        .collect();
    assert_eq!(ts, pts.iter().map(|t| t.nseconds()).collect::<Vec<_>>());
    let s = p.stats();
    assert_eq!(stat(&s, "frames-in"), 60);
    assert_eq!(stat(&s, "frames-out"), 60);
    assert_eq!(stat(&s, "dropped"), 0);
    assert!(stat(&s, "max-in-flight") <= 16);
    let total: u64 = per_worker(&s).iter().sum();
    assert_eq!(total, 60);
    p.stop();
}

#[test]
fn new_stream_after_eos() {
    let _wd = common::begin("new_stream_after_eos", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &MS.to_string()),
        ("workers", "4"),
    ]);
    // Upstream starts the next stream right after EOS, without waiting
    // for EOS to come out: STREAM_START clears the EOS state.
    let mut expected = Vec::new();
    for round in 0..10 {
        if round > 0 {
            assert!(h.push_event(gst::event::StreamStart::new(&format!("s{round}"))));
            assert!(h.push_event(gst::event::Caps::new(&CAPS.parse::<gst::Caps>().unwrap())));
            assert!(h.push_event(gst::event::Segment::new(&time_segment())));
        }
        for i in 0..5 {
            push_ok(&mut h, frame(round * 100 + i));
            expected.push(frame_item(round * 100 + i));
        }
        assert!(h.push_event(gst::event::Eos::new()));
        expected.push(Item::Eos);
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let item = rec.next();
        if item.is_buffer() || item == Item::Eos {
            got.push(item);
        }
    }
    assert_eq!(got, expected);
}

// Serialized queries ------------------------------------------------------

#[test]
fn serialized_queries_wait_for_earlier_frames() {
    let _wd = common::begin("serialized_queries_wait_for_earlier_frames", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &MS.to_string()),
        ("delay-max", &(10 * MS).to_string()),
        ("workers", "8"),
    ]);
    let upstream = h.srcpad().unwrap();
    for i in 0..20 {
        push_ok(&mut h, frame(i));
    }
    let mut drain = gst::query::Drain::new();
    // The harness's sink has no answer for DRAIN; only the order matters.
    upstream.peer_query(&mut drain);
    // Answered: everything before it, then the query itself, went out.
    let mut expected = frames(0..20);
    expected.push(Item::Query(gst::QueryType::Drain));
    assert_eq!(rec.received(), expected);

    for i in 20..40 {
        push_ok(&mut h, frame(i));
    }
    let caps = CAPS.parse::<gst::Caps>().unwrap();
    let mut allocation = gst::query::Allocation::new(Some(&caps), true);
    assert!(
        upstream.peer_query(&mut allocation),
        "allocation query not answered by downstream"
    );
    let mut expected = frames(20..40);
    expected.push(Item::Query(gst::QueryType::Allocation));
    assert_eq!(rec.received(), expected);

    for i in 40..50 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(40..50);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
}

// Sticky events -------------------------------------------------------------

#[test]
fn flush_keeps_sticky_events_that_were_still_queued() {
    let _wd = common::begin("flush_sticky", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &HOUR.to_string()),
        ("delay-max", &HOUR.to_string()),
        ("timeout", &(10 * SECOND).to_string()),
        ("on-error", "pass"),
    ]);
    push_ok(&mut h, frame(0));
    // New caps wait behind the stuck frame, then a seek flushes them away.
    let caps8: gst::Caps = "video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1"
        .parse()
        .unwrap();
    assert!(h.push_event(gst::event::Caps::new(&caps8)));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    e.set_property("timeout", MS);
    push_ok(&mut h, frame(1));
    let items = rec.until(|i| i.is_buffer());
    assert!(items.contains(&Item::Caps(caps8.clone())), "{items:?}");
    assert_eq!(e.static_pad("src").unwrap().current_caps(), Some(caps8));
}
