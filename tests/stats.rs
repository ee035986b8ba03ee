// SPDX-License-Identifier: MPL-2.0
//! What the element reports (docs/semantics.md, Stats; Per-frame
//! messages): the `stats` counters, and one message per frame in output
//! order with its timing fields and `seq`.

mod common;

use common::{
    FRAME, Fixture, MS, buffer, custom, frame, frame_item, frame_messages, per_worker, push_ok,
    start, stat, stats, time_segment,
};

#[test]
fn stats_after_eos() {
    let _wd = common::begin("stats_after_eos", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(3 * MS).to_string()),
        ("workers", "4"),
        ("max-size-buffers", "6"),
    ]);
    for i in 0..100 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 100, "{s}");
    assert_eq!(stat(&s, "frames-out"), 100, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
    assert_eq!(
        stat(&s, "frames-in"),
        stat(&s, "frames-out") + stat(&s, "dropped")
    );
    assert_eq!(stat(&s, "errors"), 0, "{s}");
    assert_eq!(stat(&s, "timeouts"), 0, "{s}");
    assert_eq!(stat(&s, "in-flight"), 0, "{s}");
    assert_eq!(stat(&s, "reorder-depth"), 0, "{s}");
    assert_eq!(stat(&s, "workers"), 4, "{s}");
    let max_in_flight = stat(&s, "max-in-flight");
    assert!((1..=6).contains(&max_in_flight), "{s}");
    assert!(stat(&s, "max-reorder-depth") < 6, "{s}");
    let per_worker = per_worker(&s);
    assert!(per_worker.len() >= 4, "{s}");
    assert_eq!(per_worker.iter().sum::<u64>(), 100, "{s}");
    assert!(stat(&s, "avg-latency") <= stat(&s, "max-latency"), "{s}");
    assert!(
        stat(&s, "avg-processing-time") <= stat(&s, "max-processing-time"),
        "{s}"
    );
    // Still readable after stopping.
    drop(h);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 100, "{s}");
}

// Per-frame messages ---------------------------------------------------------

#[test]
fn frame_messages_in_output_order() {
    let _wd = common::begin("frame_messages_in_output_order", 60);
    let Fixture {
        mut h, rec, bus, ..
    } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "4"),
        ("post-messages", "true"),
    ]);
    let mut segment = time_segment();
    segment.set_start(gst::ClockTime::from_seconds(1));
    segment.set_time(gst::ClockTime::from_seconds(5));
    segment.set_base(gst::ClockTime::from_seconds(2));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let pts = |i: u64| gst::ClockTime::from_seconds(1) + FRAME * i;
    for i in 0..40 {
        push_ok(&mut h, buffer(i, pts(i)));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();
    let messages = frame_messages(&bus);
    assert_eq!(messages.len(), 40);
    for (i, s) in (0..).zip(&messages) {
        assert_eq!(s.get::<u64>("timestamp").unwrap(), pts(i).nseconds(), "{s}");
        assert_eq!(s.get::<u64>("duration").unwrap(), FRAME.nseconds(), "{s}");
        assert_eq!(
            s.get::<u64>("running-time").unwrap(),
            (gst::ClockTime::from_seconds(2) + FRAME * i).nseconds(),
            "{s}"
        );
        assert_eq!(
            s.get::<u64>("stream-time").unwrap(),
            (gst::ClockTime::from_seconds(5) + FRAME * i).nseconds(),
            "{s}"
        );
        assert!(s.get::<u32>("worker").unwrap() < 4, "{s}");
        assert!(s.has_field("processing-time"), "{s}");
    }
}

#[test]
fn frame_message_seq_restarts_at_zero() {
    let _wd = common::begin("frame_message_seq_restarts_at_zero", 60);
    let Fixture {
        mut h, rec, bus, ..
    } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(2 * MS).to_string()),
        ("workers", "4"),
        ("post-messages", "true"),
    ]);
    for i in 0..5 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(custom(0)));
    push_ok(&mut h, frame(5));
    rec.until(|i| *i == frame_item(5));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    for i in 0..3 {
        push_ok(&mut h, frame(100 + i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();

    let messages = frame_messages(&bus);
    let seqs: Vec<u64> = messages
        .iter()
        .map(|s| s.get::<u64>("seq").unwrap())
        .collect();
    let timestamps: Vec<u64> = messages
        .iter()
        .map(|s| s.get::<u64>("timestamp").unwrap())
        .collect();
    let expected: Vec<u64> = (0..6)
        .chain(100..103)
        .map(|i| (FRAME * i).nseconds())
        .collect();
    assert_eq!(timestamps, expected);
    // seq counts frames: 0 for the first frame after start and after flush.
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5, 0, 1, 2]);
}
