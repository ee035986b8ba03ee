// SPDX-License-Identifier: MPL-2.0
//! Latency (docs/semantics.md, Rules: Latency): upstream's latency plus the
//! longest a frame can take, following `timeout`, saturating, and enough
//! for a live sink to get every frame in time.

mod common;

use common::{Fixture, MS, Pipeline, WAIT, fixture};
use gst::prelude::*;

fn latency(props: &[(&str, &str)]) -> (bool, gst::ClockTime, Option<gst::ClockTime>) {
    let Fixture { mut h, .. } = fixture(props);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    let mut q = gst::query::Latency::new();
    assert!(h.sinkpad().unwrap().peer_query(&mut q));
    let (live, min, max) = q.result();
    assert_eq!(h.query_latency(), Some(min));
    (live, min, max)
}

#[test]
fn latency_adds_processing_bound() {
    let _wd = common::begin("latency_adds_processing_bound", 60);
    let ms = gst::ClockTime::from_mseconds;
    let delay = [
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(30 * MS).to_string()),
    ];
    let (live, min, max) = latency(&delay);
    assert!(live);
    assert_eq!(min, ms(40));
    if let Some(max) = max {
        assert!(max >= min);
    }

    let (live, min, _) = latency(&[("processor", "passthrough")]);
    assert!(live);
    assert_eq!(min, ms(10));

    let timeout = (5 * MS).to_string();
    let mut capped = delay.to_vec();
    capped.push(("timeout", &timeout));
    let (_, min, _) = latency(&capped);
    assert_eq!(min, ms(15));
}

#[test]
fn latency_follows_timeout_changes() {
    let _wd = common::begin("latency_follows_timeout_changes", 60);
    let Fixture { mut h, e, bus, .. } = fixture(&[
        ("processor", "delay"),
        ("delay-max", &(30 * MS).to_string()),
    ]);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(40)));
    e.set_property("timeout", 5 * MS);
    bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(WAIT.as_secs()),
        &[gst::MessageType::Latency],
    )
    .expect("no LATENCY message after changing timeout");
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(15)));
}

#[test]
fn huge_latencies_saturate() {
    let _wd = common::begin("huge_latencies", 60);
    let max = (i64::MAX as u64).to_string();
    let Fixture { mut h, .. } = fixture(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &max),
    ]);
    h.set_upstream_latency(gst::ClockTime::MAX);
    let mut q = gst::query::Latency::new();
    assert!(h.sinkpad().unwrap().peer_query(&mut q));
    let (_, min, max_latency) = q.result();
    assert_eq!(min, gst::ClockTime::MAX);
    assert_eq!(max_latency, None);
}

#[test]
fn live_pipeline_reports_latency_and_nothing_is_late() {
    let _wd = common::begin("live_latency", 60);
    // 120 ms per frame at 30 fps: several frame durations, more than the
    // sink's own slack, so frames would be dropped as late if the element
    // did not add its latency. 8 workers keep up (30 fps x 120 ms = 3.6).
    let p = Pipeline::launch(
        "videotestsrc is-live=true num-buffers=30 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=120000000 delay-max=120000000 workers=8 ! \
         fakesink name=sink sync=true qos=true",
    );
    p.run_to_eos();
    let mut q = gst::query::Latency::new();
    assert!(p.pipeline.query(&mut q));
    let (live, min, _) = q.result();
    assert!(live);
    assert!(
        min >= gst::ClockTime::from_nseconds(120 * MS),
        "min latency {min}"
    );
    let stats = p.sink().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("rendered").unwrap(), 30);
    assert_eq!(stats.get::<u64>("dropped").unwrap(), 0);
    p.stop();
}
