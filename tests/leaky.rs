// SPDX-License-Identifier: MPL-2.0
//! The admission bound when full (docs/semantics.md, Rules: Backpressure,
//! Leaky): `leaky=upstream` drops the new frame, `leaky=downstream` the
//! oldest not started, neither blocks; `max-size-bytes` bounds too.

mod common;

use common::{
    Fixture, HOUR, Item, MS, Pipeline, assert_increasing, frame, push_ok, start, stat, stats,
};
use gst::prelude::*;

/// 20 frames into 4 places with 2 workers and hour-long processing: no push
/// may block. Then the frames not started yet are released (a 1 ms timeout
/// with on-error=pass for frames starting from now, and more workers to
/// start them), the stuck ones stay. Returns the values that came out.
fn leaky_harness_run(leaky: &str) -> Vec<u64> {
    let hour = HOUR.to_string();
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
        ("max-size-buffers", "4"),
        ("leaky", leaky),
        ("on-error", "pass"),
        ("ordered", "false"),
    ]);
    // All on the test thread: a blocking chain would hang the test.
    for i in 0..20 {
        push_ok(&mut h, frame(i));
    }
    // At most 2 frames have started, so each push past the fourth dropped
    // exactly one frame (the new one, or the oldest not started).
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 20, "{s}");
    assert_eq!(stat(&s, "dropped"), 16, "{s}");
    assert_eq!(stat(&s, "in-flight"), 4, "{s}");

    e.set_property("timeout", MS);
    e.set_property("workers", 8u32);
    // Frames not started by the 2 first workers are among the last 2 of
    // the 4 kept ones; wait for those, then stop everything with a flush.
    let kept: Vec<u64> = match leaky {
        "upstream" => vec![2, 3],
        _ => vec![18, 19],
    };
    let mut out = Vec::new();
    while !kept.iter().all(|k| out.contains(k)) {
        if let Some(v) = rec.next().value() {
            out.push(v);
        }
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    out.extend(
        rec.until(|i| *i == Item::FlushStart)
            .iter()
            .filter_map(|i| i.value()),
    );
    out
}

/// A live source at 100 fps into one worker taking 50 ms a frame.
fn leaky_pipeline_run(leaky: &str) {
    let p = Pipeline::launch(&format!(
        "videotestsrc is-live=true num-buffers=40 ! video/x-raw,width=64,height=48,framerate=100/1 ! \
         parallelfilter name=pf processor=delay delay-min=50000000 delay-max=50000000 workers=1 \
         max-size-buffers=2 leaky={leaky} ! fakesink name=sink"
    ));
    p.run_to_eos();
    p.stop();
    let s = p.stats();
    let (fin, out, dropped) = (
        stat(&s, "frames-in"),
        stat(&s, "frames-out"),
        stat(&s, "dropped"),
    );
    assert_eq!(fin, 40);
    assert!(dropped > 0, "{leaky}: nothing dropped");
    assert_eq!(fin, out + dropped);
    assert_eq!(p.buffer_pts().len() as u64, out);
    assert_increasing(&p.buffer_pts());
    assert!(stat(&s, "max-in-flight") <= 2);
}

#[test]
fn leaky_upstream_drops_new_frames() {
    let _wd = common::begin("leaky_upstream_drops_new_frames", 60);
    let out = leaky_harness_run("upstream");
    // The element kept the first 4 frames.
    let mut sorted = out.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), out.len(), "duplicates in {out:?}");
    assert!(out.iter().all(|v| *v < 4), "{out:?}");
}

#[test]
fn leaky_upstream_drops_and_never_blocks() {
    let _wd = common::begin("leaky_upstream", 60);
    leaky_pipeline_run("upstream");
}

#[test]
fn leaky_downstream_drops_oldest_queued() {
    let _wd = common::begin("leaky_downstream_drops_oldest_queued", 60);
    let out = leaky_harness_run("downstream");
    // The element kept the newest frames not started (plus the started
    // ones, stuck for an hour).
    let mut sorted = out.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), out.len(), "duplicates in {out:?}");
    assert!(out.iter().all(|v| *v >= 16), "{out:?}");
}

#[test]
fn leaky_downstream_drops_and_never_blocks() {
    let _wd = common::begin("leaky_downstream", 60);
    leaky_pipeline_run("downstream");
}

#[test]
fn max_size_bytes_bounds_the_element() {
    let _wd = common::begin("max_size_bytes", 60);
    let hour = HOUR.to_string();
    // Each frame carries 8 bytes: 24 bytes hold three frames.
    let Fixture { mut h, e, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "8"),
        ("max-size-bytes", "24"),
        ("leaky", "upstream"),
    ]);
    for i in 0..10 {
        push_ok(&mut h, frame(i));
    }
    let s = stats(&e);
    assert_eq!(stat(&s, "in-flight"), 3, "{s}");
    assert_eq!(stat(&s, "dropped"), 7, "{s}");
}
