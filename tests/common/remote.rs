// SPDX-License-Identifier: MPL-2.0
//! `processor=remote` in a Harness against the test server: the fixture,
//! frames whose `mean` is known, and reading each frame's result.
#![allow(dead_code)]

use gst::prelude::*;
use gst_check::Harness;

use crate::common::{FRAME, Fixture, buffer_with, fixture, wait_until};
use crate::oip_server::{MODEL, TestServer};

pub const CAPS: &str = "video/x-raw,format=RGB,width=8,height=4,framerate=30/1";
pub const FRAME_BYTES: usize = 8 * 4 * 3;

pub fn harness(
    servers: &[&TestServer],
    props: &[(&str, &str)],
) -> (Harness, gst::Element, gst::Bus) {
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    harness_urls(&urls, props)
}

/// The fixture for these server URLs (REST or gRPC).
pub fn harness_urls(urls: &[String], props: &[(&str, &str)]) -> (Harness, gst::Element, gst::Bus) {
    let urls = urls.join(",");
    let mut all = vec![
        ("processor", "remote"),
        ("servers", urls.as_str()),
        ("model", MODEL),
    ];
    all.extend_from_slice(props);
    let Fixture { mut h, e, bus, .. } = fixture(&all);
    h.set_src_caps_str(CAPS);
    (h, e, bus)
}

/// Frame `i`: every byte is `i % 200`, so the model's `mean` is that.
pub fn frame(i: u64) -> gst::Buffer {
    buffer_with(vec![(i % 200) as u8; FRAME_BYTES], FRAME * i)
}

#[derive(Debug)]
pub struct Result {
    pub server: String,
    pub attempts: u32,
    pub mean: f64,
    pub id: i64,
}

pub fn result(buffer: &gst::BufferRef) -> Result {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, "GstParallelFilterInferenceMeta")
        .expect("no inference meta");
    let s = meta.structure();
    assert_eq!(s.name(), "parallelfilter-inference");
    assert_eq!(s.get::<&str>("model").unwrap(), MODEL);
    let outputs = s.get::<gst::Array>("outputs").unwrap();
    let output = |name: &str| {
        outputs
            .iter()
            .map(|o| o.get::<gst::Structure>().unwrap())
            .find(|o| o.get::<&str>("name").unwrap() == name)
            .unwrap_or_else(|| panic!("no output {name} in {s}"))
    };
    let first = |o: gst::Structure| o.get::<gst::Array>("data").unwrap().as_slice()[0].clone();
    let mean = output("mean");
    assert_eq!(mean.get::<&str>("datatype").unwrap(), "FP32");
    assert_eq!(
        mean.get::<gst::Array>("shape").unwrap().as_slice()[0]
            .get::<i64>()
            .unwrap(),
        1
    );
    Result {
        server: s.get::<String>("server").unwrap(),
        attempts: s.get::<u32>("attempts").unwrap(),
        mean: first(mean).get::<f64>().unwrap(),
        id: first(output("id")).get::<i64>().unwrap(),
    }
}

/// Pulls `n` buffers and checks they are frames `from..from+n`, in order,
/// each enriched with its own result.
pub fn pull_enriched(h: &mut Harness, from: u64, n: u64) -> Vec<Result> {
    (from..from + n)
        .map(|i| {
            let b = h.pull().expect("no buffer");
            assert_eq!(b.pts(), Some(FRAME * i));
            let r = result(&b);
            assert_eq!(r.mean, (i % 200) as f64, "frame {i}: {r:?}");
            r
        })
        .collect()
}

pub fn servers_stats(e: &gst::Element) -> Vec<gst::Structure> {
    e.property::<gst::Structure>("stats")
        .get::<gst::Array>("servers")
        .expect("no servers in stats")
        .iter()
        .map(|v| v.get::<gst::Structure>().unwrap())
        .collect()
}

/// Waits until the element sees `n` servers up.
pub fn wait_up(e: &gst::Element, n: usize) {
    wait_until(&format!("{n} servers up"), || {
        servers_stats(e)
            .iter()
            .filter(|s| s.get::<bool>("up").unwrap())
            .count()
            >= n
    });
}

pub fn push(h: &mut Harness, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
    }
}

/// GAP events (frames dropped per `on-error`) among the pulled events.
pub fn gaps(h: &mut Harness) -> usize {
    let mut n = 0;
    while let Some(ev) = h.try_pull_event() {
        n += usize::from(ev.type_() == gst::EventType::Gap);
    }
    n
}

/// The text of the next error on `bus`: its message and debug text.
pub fn first_error_on(bus: &gst::Bus) -> String {
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error])
        .expect("no error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    format!("{} {:?}", err.error(), err.debug())
}
