// SPDX-License-Identifier: MPL-2.0
//! State and configuration (docs/semantics.md, Rules: State changes):
//! `workers` changing while frames flow, stopping with frames stuck and
//! upstream blocked, hundreds of state cycles, a processor that cannot
//! start, and bad input (a non-TIME segment).

mod common;

use std::sync::{Mutex, mpsc};

use common::{
    Fixture, HOUR, Item, MS, Pipeline, WAIT, error_message, frame, frames, per_worker, push_ok,
    start, stat, stats, wait_blocked_upstream,
};
use gst::prelude::*;

#[test]
fn workers_change_while_flowing() {
    let _wd = common::begin("workers_change_while_flowing", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(4 * MS).to_string()),
        ("workers", "8"),
    ]);
    let schedule = [(60, 2u32), (120, 16), (180, 1), (220, 5)];
    for i in 0..300 {
        if let Some((_, w)) = schedule.iter().find(|(at, _)| *at == i) {
            e.set_property("workers", *w);
        }
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..300);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "workers"), 5, "{s}");
    assert_eq!(stat(&s, "frames-out"), 300, "{s}");
    assert_eq!(per_worker(&s).iter().sum::<u64>(), 300, "{s}");
}

// Stopping ----------------------------------------------------------------

#[test]
fn stop_with_frames_stuck_and_chain_blocked() {
    let _wd = common::begin("stop_with_frames_stuck_and_chain_blocked", 60);
    let hour = HOUR.to_string();
    let Fixture { mut h, e, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
        ("max-size-buffers", "3"),
    ]);
    for i in 0..3 {
        push_ok(&mut h, frame(i));
    }
    let upstream = h.srcpad().unwrap();
    let (tx, rx) = mpsc::channel();
    let pusher = std::thread::spawn(move || {
        tx.send(()).unwrap();
        upstream.push(frame(3))
    });
    rx.recv().unwrap();
    wait_blocked_upstream(&e);
    assert_eq!(
        e.set_state(gst::State::Null),
        Ok(gst::StateChangeSuccess::Success)
    );
    assert_eq!(pusher.join().unwrap(), Err(gst::FlowError::Flushing));
    // And it starts again.
    assert_eq!(
        e.set_state(gst::State::Playing),
        Ok(gst::StateChangeSuccess::Success)
    );
}

/// [`stop_with_frames_stuck_and_chain_blocked`] in a whole pipeline,
/// hundreds of times.
#[test]
fn hundreds_of_state_cycles_with_frames_stuck_in_processing() {
    let _wd = common::begin("state_cycles", 120);
    let p = Pipeline::launch(
        "videotestsrc ! video/x-raw,width=32,height=24 ! \
         parallelfilter name=pf processor=delay delay-min=10000000000 delay-max=10000000000 \
         workers=2 ! fakesink name=sink",
    );
    let (tx, entered) = mpsc::channel();
    let tx = Mutex::new(tx);
    p.pf()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = tx.lock().unwrap().send(());
            gst::PadProbeReturn::Ok
        });
    // 200 NULL <-> PLAYING cycles, and 100 NULL <-> PAUSED among them.
    for i in 0..300 {
        let target = if i % 3 == 2 {
            gst::State::Paused
        } else {
            gst::State::Playing
        };
        p.pipeline.set_state(target).unwrap();
        // When the second frame reaches the sink pad, the first chain call
        // has returned: a frame is inside, stuck in a 10 s delay.
        entered.recv_timeout(WAIT).unwrap();
        entered.recv_timeout(WAIT).unwrap();
        p.pipeline.set_state(gst::State::Null).unwrap();
        while entered.try_recv().is_ok() {}
        let s = p.stats();
        assert!(stat(&s, "frames-in") >= 1);
    }
    assert!(p.buffer_pts().is_empty(), "nothing finished its 10 s delay");
}

#[test]
fn misconfigured_processor_fails_at_start_with_one_clear_error() {
    // Every processor is available now: processor=filter without its
    // description stands for a processor that cannot run.
    let _wd = common::begin("misconfigured", 60);
    let p = Pipeline::launch(
        "videotestsrc num-buffers=3 ! parallelfilter name=pf processor=filter ! fakesink name=sink",
    );
    assert!(p.pipeline.set_state(gst::State::Playing).is_err());
    let err = p.wait_end().expect("an error");
    p.stop();
    assert_eq!(err.src.as_deref(), Some("pf"));
    assert!(
        err.text().contains("needs the filter property"),
        "{}",
        err.text()
    );
    let from_pf = p.error_sources().iter().filter(|s| *s == "pf").count();
    assert_eq!(from_pf, 1, "one clear error, not one per retry");
}

// Bad input -----------------------------------------------------------------

#[test]
fn non_time_segment_refused() {
    let _wd = common::begin("non_time_segment_refused", 60);
    let Fixture { h, bus, .. } = start(&[("processor", "passthrough")]);
    let segment = gst::FormattedSegment::<gst::format::Bytes>::new();
    let sink = h.srcpad().unwrap().peer().unwrap();
    assert!(!sink.send_event(gst::event::Segment::new(&segment)));
    let (err, debug) = error_message(&bus);
    assert!(err.matches(gst::StreamError::Format), "{err:?} {debug}");
    let text = format!("{} {debug}", err.message());
    assert!(text.contains("TIME"), "{text}");
}
