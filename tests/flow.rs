// SPDX-License-Identifier: MPL-2.0
//! Downstream flow returns (docs/semantics.md, Rules: EOS): not-linked,
//! error, eos and flushing come back upstream from the next chain call;
//! the element posts the error itself when EOS already entered; linking
//! again resumes; a new stream flows after downstream's EOS; queries do not
//! hang behind a failed push.

mod common;

use common::{
    CAPS, FRAME, Fixture, MS, Pipeline, error_message, frame, push_ok, start, stat, time_segment,
};
use gst::prelude::*;

/// Pushes frames until a chain call fails; the element must report
/// `flow` from one of the next chain calls and keep reporting it.
fn check_flow_returned(flow: gst::FlowError) {
    let Fixture { mut h, e, .. } = start(&[("processor", "passthrough"), ("workers", "4")]);
    let src = e.static_pad("src").unwrap();
    src.unlink(&h.sinkpad().unwrap()).unwrap();
    // Keep the replacement sink alive until the end of the test.
    let _sink = (flow != gst::FlowError::NotLinked).then(|| {
        let sink = gst::Pad::builder(gst::PadDirection::Sink)
            .chain_function(move |_, _, _| Err(flow))
            .event_function(|_, _, _| true)
            .build();
        sink.set_active(true).unwrap();
        src.link(&sink).unwrap();
        sink
    });
    let mut result = Ok(gst::FlowSuccess::Ok);
    for i in 0..1000 {
        result = h.push(frame(i));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(flow));
    assert_eq!(h.push(frame(1000)), Err(flow), "error not kept");
}

#[test]
fn downstream_not_linked_returned_upstream() {
    let _wd = common::begin("downstream_not_linked_returned_upstream", 60);
    check_flow_returned(gst::FlowError::NotLinked);
}

/// [`downstream_not_linked_returned_upstream`] in a whole pipeline, where
/// the source posts the error.
#[test]
fn not_linked_downstream_reaches_upstream_as_an_error() {
    let _wd = common::begin("not_linked", 60);
    let p = Pipeline::launch(
        "videotestsrc ! parallelfilter name=pf processor=passthrough ! fakesink name=sink",
    );
    p.pf().unlink(p.sink());
    p.play();
    let err = p.wait_end().expect("expected an error, got EOS");
    assert!(
        format!("{:?}", err.debug).contains("not-linked"),
        "{:?}",
        err.debug
    );
    p.stop();
}

#[test]
fn downstream_error_returned_upstream() {
    let _wd = common::begin("downstream_error_returned_upstream", 60);
    check_flow_returned(gst::FlowError::Error);
}

#[test]
fn downstream_eos_returned_upstream() {
    let _wd = common::begin("downstream_eos_returned_upstream", 60);
    check_flow_returned(gst::FlowError::Eos);
}

/// Downstream's EOS in a whole pipeline: upstream's EOS still gets through.
#[test]
fn downstream_eos_still_lets_eos_through() {
    let _wd = common::begin("downstream_eos", 60);
    // identity returns EOS at the 10th buffer; upstream then sends EOS, which
    // must reach the sink although the element has frames queued.
    let p = Pipeline::launch(
        "videotestsrc num-buffers=100 ! video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf processor=delay delay-max=5000000 workers=4 ! \
         identity eos-after=10 ! fakesink name=sink",
    );
    p.run_to_eos();
    p.stop();
    // identity forwards 9 and returns EOS for the 10th (as without us).
    assert_eq!(p.buffer_pts().len(), 9);
    assert_eq!(p.records().last(), Some(&common::Item::Eos));
    let s = p.stats();
    assert_eq!(
        stat(&s, "frames-in"),
        stat(&s, "frames-out") + stat(&s, "dropped") + stat(&s, "in-flight")
    );
}

#[test]
fn downstream_flushing_returned_upstream() {
    let _wd = common::begin("downstream_flushing_returned_upstream", 60);
    check_flow_returned(gst::FlowError::Flushing);
}

#[test]
fn not_linked_after_eos_posts_error() {
    let _wd = common::begin("not_linked_after_eos_posts_error", 60);
    let Fixture { mut h, e, bus, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(5 * MS).to_string()),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "4"),
    ]);
    e.static_pad("src")
        .unwrap()
        .unlink(&h.sinkpad().unwrap())
        .unwrap();
    // Whether the push fails before or after EOS enters, upstream never
    // sees the flow return, so the element must post the error itself.
    let _ = h.push(frame(0));
    h.push_event(gst::event::Eos::new());
    let (err, debug) = error_message(&bus);
    assert!(err.matches(gst::StreamError::Failed), "{err:?} {debug}");
}

#[test]
fn not_linked_recovers_after_relink() {
    let _wd = common::begin("not_linked_recovers_after_relink", 60);
    let Fixture { mut h, e, rec, .. } = start(&[("processor", "passthrough"), ("workers", "2")]);
    let src = e.static_pad("src").unwrap();
    let sink = h.sinkpad().unwrap();
    let mut i = 0;
    // Each round opens the race window once; a lost restart leaves the
    // task paused and the next chain call blocked (watchdog).
    for round in 1..=200 {
        src.unlink(&sink).unwrap();
        loop {
            match h.push(frame(i)) {
                Ok(_) => i += 1,
                Err(err) => {
                    assert_eq!(err, gst::FlowError::NotLinked);
                    break;
                }
            }
            assert!(i < 1000 * round, "not-linked never returned");
        }
        // Linking sends RECONFIGURE to the element inside link(): it
        // must start pushing again.
        src.link(&sink).unwrap();
        let base = 1_000_000 * round;
        push_ok(&mut h, frame(base));
        push_ok(&mut h, frame(base + 1));
        let got: Vec<u64> = rec
            .until(|item| item.value() == Some(base + 1))
            .iter()
            .filter_map(|item| item.value())
            .filter(|v| *v >= base)
            .collect();
        assert_eq!(got, vec![base, base + 1], "round {round}");
    }
}

#[test]
fn new_stream_after_downstream_eos() {
    let _wd = common::begin("new_stream_after_downstream_eos", 60);
    let Fixture { mut h, e, .. } = start(&[("processor", "passthrough")]);
    let src = e.static_pad("src").unwrap();
    let real_sink = h.sinkpad().unwrap().clone();
    src.unlink(&real_sink).unwrap();
    let eos_sink = gst::Pad::builder(gst::PadDirection::Sink)
        .chain_function(|_, _, _| Err(gst::FlowError::Eos))
        .event_function(|_, _, _| true)
        .build();
    eos_sink.set_active(true).unwrap();
    src.link(&eos_sink).unwrap();
    let mut result = Ok(gst::FlowSuccess::Ok);
    for i in 0..100 {
        result = h.push(frame(i));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(gst::FlowError::Eos));
    // Downstream wants data again: a new stream must flow.
    src.unlink(&eos_sink).unwrap();
    src.link(&real_sink).unwrap();
    assert!(h.push_event(gst::event::StreamStart::new("second")));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    push_ok(&mut h, frame(1000));
    // Frames still queued when downstream said EOS go first (as in queue).
    let mut last = None;
    while last != Some(FRAME * 1000) {
        let pts = h.pull().unwrap().pts();
        assert!(pts > last, "out of order");
        last = pts;
    }
}

#[test]
fn serialized_query_returns_after_downstream_error() {
    let _wd = common::begin("query_after_downstream_error", 60);
    let Fixture { mut h, e, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(20 * MS).to_string()),
        ("delay-max", &(20 * MS).to_string()),
    ]);
    e.static_pad("src")
        .unwrap()
        .unlink(&h.sinkpad().unwrap())
        .unwrap();
    push_ok(&mut h, frame(0));
    // The frame fails to go out (not linked) before or after the query
    // enters; either way upstream must get an answer, not hang.
    let mut q = gst::query::Allocation::new(Some(&CAPS.parse::<gst::Caps>().unwrap()), true);
    assert!(!e.static_pad("sink").unwrap().query(&mut q));
    assert_eq!(h.push(frame(1)), Err(gst::FlowError::NotLinked));
}
