// SPDX-License-Identifier: MPL-2.0
//! Flushing (docs/semantics.md, Rules: Flushing; Flushing seeks): FLUSH_START
//! unblocks upstream (a chain call, a drain query) and discards everything
//! inside; nothing from before a flush comes out after it; flushing seeks
//! in PLAYING and PAUSED.

mod common;

use std::sync::mpsc;

use common::{
    FRAME, Fixture, Frame, HOUR, Item, MS, Mark, Pipeline, Rng, assert_increasing, buffer, frame,
    frame_messages, frames, push_ok, start, stat, stats, time_segment, wait_blocked_upstream,
};
use gst::prelude::*;

#[test]
fn drain_query_released_by_flush() {
    let _wd = common::begin("drain_query_released_by_flush", 60);
    let hour = HOUR.to_string();
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
    ]);
    push_ok(&mut h, frame(0));
    let upstream = h.srcpad().unwrap();
    let (tx, rx) = mpsc::channel();
    let querier = std::thread::spawn(move || {
        tx.send(()).unwrap();
        let mut drain = gst::query::Drain::new();
        upstream.peer_query(&mut drain)
    });
    rx.recv().unwrap();
    drop(rx);
    // The drain waits behind a frame stuck for an hour; the flush makes it
    // fail instead of hanging.
    wait_blocked_upstream(&e);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(!querier.join().unwrap(), "drain answered during a flush");
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert_eq!(rec.received(), vec![Item::FlushStart, Item::FlushStop]);
}

#[test]
fn flush_unblocks_chain_and_discards_everything() {
    let _wd = common::begin("flush_unblocks_chain_and_discards_everything", 60);
    let hour = HOUR.to_string();
    let Fixture {
        mut h, e, rec, bus, ..
    } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
        ("max-size-buffers", "4"),
        ("post-messages", "true"),
    ]);
    // Pre-flush frames carry values 1000.. and PTS from 100 s.
    let old = |i: u64| buffer(1000 + i, gst::ClockTime::from_seconds(100) + FRAME * i);
    for i in 0..4 {
        push_ok(&mut h, old(i));
    }
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 4, "{s}");
    assert_eq!(stat(&s, "in-flight"), 4, "{s}");

    // The fifth frame finds the element full and blocks upstream.
    let upstream = h.srcpad().unwrap();
    let fifth = old(4);
    let (tx, rx) = mpsc::channel();
    let pusher = std::thread::spawn(move || {
        tx.send(()).unwrap();
        upstream.push(fifth)
    });
    rx.recv().unwrap();
    wait_blocked_upstream(&e);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert_eq!(pusher.join().unwrap(), Err(gst::FlowError::Flushing));
    let s = stats(&e);
    assert_eq!(stat(&s, "in-flight"), 0, "flush left frames inside: {s}");
    assert!(h.push_event(gst::event::FlushStop::new(true)));

    // Frames entering from now on time out at once and leave unprocessed,
    // so the post-flush stream flows while nothing old can finish.
    e.set_property("timeout", MS);
    e.set_property_from_str("on-error", "pass");
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    for i in 0..6 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));

    let mut expected = vec![
        Item::FlushStart,
        Item::FlushStop,
        Item::Segment(time_segment().upcast()),
    ];
    expected.extend(frames(0..6));
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    // Messages only for what was pushed.
    let timestamps: Vec<u64> = frame_messages(&bus)
        .iter()
        .map(|s| s.get::<u64>("timestamp").unwrap())
        .collect();
    let pushed: Vec<u64> = (0..6).map(|i| (FRAME * i).nseconds()).collect();
    assert_eq!(timestamps, pushed);
}

#[test]
fn flush_mid_stream_never_leaks_old_frames() {
    let _wd = common::begin("flush_mid_stream_never_leaks_old_frames", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "8"),
        ("max-size-buffers", "16"),
    ]);
    // Round r pushes frames carrying r * 1000 + i; a flush ends each round
    // with frames in processing, waiting for reorder, and being pushed.
    const ROUNDS: u64 = 20;
    let mut rng = Rng(3);
    let mut counts = Vec::new();
    for round in 0..ROUNDS {
        let n = 5 + rng.below(40);
        counts.push(n);
        for i in 0..n {
            push_ok(&mut h, buffer(round * 1000 + i, FRAME * i));
        }
        if round + 1 < ROUNDS {
            assert!(h.push_event(gst::event::FlushStart::new()));
            assert!(h.push_event(gst::event::FlushStop::new(true)));
            assert!(h.push_event(gst::event::Segment::new(&time_segment())));
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let got = rec.until_eos();

    // Between two flushes only the current round's frames, in order and
    // with no gap (a prefix of what was pushed); the last round complete.
    let mut round = 0;
    let mut next = 0;
    let mut seen_flush_start = false;
    for item in &got {
        match item {
            // A push that passed the src pad's flushing check just before
            // FLUSH_START went out can reach the recording probe after it
            // (two threads); the flushing peer refuses it. It must still be
            // the current round's next frame.
            Item::Buffer(Mark { pts, value }) => {
                assert_eq!(*value, round * 1000 + next, "in round {round}: {got:?}");
                assert_eq!(*pts, Some(FRAME * next));
                next += 1;
            }
            Item::FlushStart => seen_flush_start = true,
            Item::FlushStop => {
                assert!(seen_flush_start);
                seen_flush_start = false;
                round += 1;
                next = 0;
            }
            Item::Segment(_) | Item::Eos => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(round, ROUNDS - 1);
    assert_eq!(next, counts[round as usize], "last round incomplete");
}

// Flushing seeks in pipelines ----------------------------------------------

/// Buffers after the last FLUSH_STOP: the new segment first, then only
/// post-seek frames, in order.
fn assert_clean_after_seek(recs: &[Item<Frame>], target: gst::ClockTime) {
    let last_flush = recs
        .iter()
        .rposition(|r| *r == Item::FlushStop)
        .expect("no flush reached the sink");
    let after = &recs[last_flush + 1..];
    let seg = after
        .iter()
        .position(|r| matches!(r, Item::Segment(_)))
        .expect("no segment after flush");
    match &after[seg] {
        Item::Segment(s) => assert_eq!(
            s.downcast_ref::<gst::ClockTime>().unwrap().start(),
            Some(target)
        ),
        _ => unreachable!(),
    }
    assert!(
        !after[..seg].iter().any(|r| r.is_buffer()),
        "buffer before the new segment"
    );
    let pts: Vec<_> = after
        .iter()
        .filter_map(|r| r.buffer().map(|f| f.pts.unwrap()))
        .collect();
    assert!(!pts.is_empty());
    assert_eq!(pts[0], target, "first frame after the seek");
    assert_increasing(&pts);
}

#[test]
fn flushing_seek_in_playing_with_frames_in_flight() {
    let _wd = common::begin("seek_playing", 60);
    let p = Pipeline::launch(
        "videotestsrc ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=5000000 delay-max=60000000 \
         workers=4 post-messages=true ! fakesink name=sink",
    );
    p.play();
    for _ in 0..10 {
        p.next_buffer();
    }
    // Frames are in flight in the workers now.
    let target = gst::ClockTime::from_seconds(10);
    p.pipeline
        .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
        .unwrap();
    while p.next_buffer().pts.unwrap() < target + gst::ClockTime::from_mseconds(300) {}
    p.stop();
    assert_clean_after_seek(&p.records(), target);
    // The sequence restarts at 0 with the first post-seek frame.
    let msgs = p.frame_messages();
    let first = msgs
        .iter()
        .find(|m| m.get::<u64>("timestamp").unwrap() == target.nseconds())
        .expect("message of the first post-seek frame");
    assert_eq!(first.get::<u64>("seq").unwrap(), 0);
}

#[test]
fn flushing_seek_in_paused() {
    let _wd = common::begin("seek_paused", 60);
    let p = Pipeline::launch(
        "videotestsrc ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=20000000 delay-max=40000000 \
         workers=4 ! fakesink name=sink",
    );
    p.pipeline.set_state(gst::State::Paused).unwrap();
    let (res, _, _) = p.pipeline.state(gst::ClockTime::from_seconds(30));
    res.unwrap();
    for target in [4, 1, 7].map(gst::ClockTime::from_seconds) {
        p.pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
            .unwrap();
        let (res, state, _) = p.pipeline.state(gst::ClockTime::from_seconds(30));
        res.unwrap();
        assert_eq!(state, gst::State::Paused);
        let sample = p
            .sink()
            .property::<Option<gst::Sample>>("last-sample")
            .unwrap();
        assert_eq!(sample.buffer().unwrap().pts(), Some(target));
        assert_clean_after_seek(&p.records(), target);
    }
    p.stop();
}
