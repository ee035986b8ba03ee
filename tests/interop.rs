// SPDX-License-Identifier: MPL-2.0
//! Interoperability with a real Open Inference Protocol server (MLServer
//! with the tiny runtime in tests/interop/model). Ignored by default:
//! `tests/interop/run.sh` installs MLServer into a virtualenv, starts two
//! servers and runs these tests with
//! `PARALLELFILTER_OIP_SERVERS=url1,url2` and
//! `PARALLELFILTER_OIP_KILL_PID=<pid of the first server>`.

mod common;

use gst::prelude::*;
use gst_check::Harness;

const CAPS: &str = "video/x-raw,format=RGB,width=8,height=4,framerate=30/1";
const FRAME: gst::ClockTime = gst::ClockTime::from_nseconds(33_333_333);
const MODEL: &str = "test-model";

fn servers() -> String {
    std::env::var("PARALLELFILTER_OIP_SERVERS")
        .expect("set PARALLELFILTER_OIP_SERVERS (see tests/interop/run.sh)")
}

/// The same servers' gRPC ports.
fn grpc_servers() -> String {
    std::env::var("PARALLELFILTER_OIP_GRPC_SERVERS")
        .expect("set PARALLELFILTER_OIP_GRPC_SERVERS (see tests/interop/run.sh)")
}

fn harness(props: &[(&str, &str)]) -> (Harness, gst::Element) {
    harness_on(servers(), props)
}

fn harness_on(servers: String, props: &[(&str, &str)]) -> (Harness, gst::Element) {
    let mut builder = gst::ElementFactory::make("parallelfilter")
        .property_from_str("processor", "remote")
        .property("servers", servers)
        .property("model", MODEL);
    for (name, value) in props {
        builder = builder.property_from_str(name, value);
    }
    let e = builder.build().unwrap();
    let mut h = Harness::with_element(&e, Some("sink"), Some("src"));
    h.set_src_caps_str(CAPS);
    (h, e)
}

const BYTES: usize = 8 * 4 * 3;

/// Frame `i`'s pixels: a different ramp per frame, so a frame given
/// another frame's row (or a whole batch's mean) is caught.
fn pixels(i: u64) -> Vec<u8> {
    (0..BYTES as u64)
        .map(|j| ((i * 7 + j) % 251) as u8)
        .collect()
}

fn frame(i: u64) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(pixels(i));
    {
        let b = b.get_mut().unwrap();
        b.set_pts(FRAME * i);
        b.set_duration(FRAME);
    }
    b
}

/// Checks that `b` is frame `i` with exactly one inference result, equal
/// to the model's answer computed here; returns the server that answered.
fn check(b: &gst::BufferRef, i: u64) -> String {
    assert_eq!(b.pts(), Some(FRAME * i), "frame {i} out of order");
    let metas = b
        .iter_meta::<gst::Meta>()
        .filter(|m| m.api().name().contains("GstParallelFilterInferenceMeta"))
        .count();
    assert_eq!(metas, 1, "frame {i}: {metas} inference results");
    let meta = gst::meta::CustomMeta::from_buffer(b, "GstParallelFilterInferenceMeta").unwrap();
    let s = meta.structure();
    let outputs = s.get::<gst::Array>("outputs").unwrap();
    let output = |name: &str| {
        let o = outputs
            .iter()
            .map(|o| o.get::<gst::Structure>().unwrap())
            .find(|o| o.get::<&str>("name").unwrap() == name)
            .unwrap_or_else(|| panic!("frame {i}: no {name} in {s}"));
        let shape = o.get::<gst::Array>("shape").unwrap();
        assert_eq!(
            shape.as_slice()[0].get::<i64>().unwrap(),
            1,
            "frame {i}: {s}"
        );
        o.get::<gst::Array>("data").unwrap().as_slice()[0].clone()
    };
    let reference = pixels(i).iter().map(|&x| f64::from(x)).sum::<f64>() / BYTES as f64;
    let mean = output("mean").get::<f64>().unwrap();
    // The model answers FP32.
    assert!(
        (mean - reference).abs() < 1e-3,
        "frame {i}: mean {mean}, expected {reference}: {s}"
    );
    assert_eq!(
        output("nbytes").get::<i64>().unwrap(),
        BYTES as i64,
        "frame {i}: {s}"
    );
    s.get::<String>("server").unwrap()
}

/// Pushes `n` frames with `props`, checks every frame's own result in
/// order, and returns the stats.
fn run_frames(servers: String, props: &[(&str, &str)], n: u64) -> gst::Structure {
    let (mut h, e) = harness_on(servers, props);
    for i in 0..n {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    for i in 0..n {
        check(&h.pull().expect("no buffer"), i);
    }
    e.property::<gst::Structure>("stats")
}

fn one_per_request(servers: String) {
    let stats = run_frames(servers, &[("workers", "4")], 64);
    assert_eq!(stats.get::<u64>("batches").unwrap(), 0);
}

fn in_batches(servers: String) {
    let stats = run_frames(
        servers,
        &[
            ("workers", "2"),
            ("batch-size", "4"),
            ("batch-timeout", "50000000"),
        ],
        64,
    );
    eprintln!("stats: {stats}");
    let batches = stats.get::<u64>("batches").unwrap();
    assert!(
        (16..64).contains(&batches),
        "{batches} batches for 64 frames"
    );
    assert!(stats.get::<f64>("avg-batch-size").unwrap() > 1.0);
}

#[test]
#[ignore = "needs MLServer: tests/interop/run.sh"]
fn rest_frames() {
    let _w = common::begin("rest_frames", 120);
    one_per_request(servers());
}

#[test]
#[ignore = "needs MLServer: tests/interop/run.sh"]
fn rest_batches() {
    let _w = common::begin("rest_batches", 120);
    in_batches(servers());
}

#[test]
#[ignore = "needs MLServer: tests/interop/run.sh"]
fn grpc_frames() {
    let _w = common::begin("grpc_frames", 120);
    one_per_request(grpc_servers());
}

#[test]
#[ignore = "needs MLServer: tests/interop/run.sh"]
fn grpc_batches() {
    let _w = common::begin("grpc_batches", 120);
    in_batches(grpc_servers());
}

/// One REST and one gRPC port of the two servers: both answer.
#[test]
#[ignore = "needs MLServer: tests/interop/run.sh"]
fn mixed_rest_and_grpc() {
    let _w = common::begin("mixed_rest_and_grpc", 120);
    let rest = servers().split(',').next().unwrap().to_string();
    let grpc = grpc_servers().split(',').nth(1).unwrap().to_string();
    let (mut h, _e) = harness_on(format!("{rest},{grpc}"), &[("workers", "4")]);
    let mut answered = std::collections::BTreeMap::<String, u64>::new();
    for i in 0..64 {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
    }
    for i in 0..64 {
        *answered
            .entry(check(&h.pull().expect("no buffer"), i))
            .or_default() += 1;
    }
    eprintln!("frames answered per server: {answered:?}");
    assert_eq!(answered.len(), 2, "{answered:?}");
}

#[test]
#[ignore = "needs MLServer: tests/interop/run.sh"]
fn one_server_killed_mid_stream() {
    let _w = common::begin("one_server_killed_mid_stream", 120);
    let pid = std::env::var("PARALLELFILTER_OIP_KILL_PID").expect("PARALLELFILTER_OIP_KILL_PID");
    let first = servers().split(',').next().unwrap().trim().to_string();
    let (mut h, e) = harness(&[("workers", "8")]);
    const N: u64 = 300;
    const AHEAD: u64 = 8;
    const KILL_AT: u64 = 100;
    let mut answered = std::collections::BTreeMap::<String, (u64, u64)>::new();
    let mut pulled = 0;
    let mut pull = |h: &mut Harness, pulled: &mut u64| {
        let b = h.pull().expect("no buffer");
        let server = check(&b, *pulled);
        let e = answered.entry(server).or_default();
        if *pulled < KILL_AT {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
        *pulled += 1;
        if *pulled == KILL_AT {
            let status = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .expect("kill");
            assert!(status.success(), "cannot kill server {pid}");
            eprintln!("killed the first server ({first}, pid {pid}) after {KILL_AT} frames");
        }
    };
    for i in 0..N {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
        if i >= AHEAD {
            pull(&mut h, &mut pulled);
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    while pulled < N {
        pull(&mut h, &mut pulled);
    }
    assert!(
        h.pull_until_eos().unwrap().is_none(),
        "more frames than pushed"
    );
    eprintln!("frames answered per server (before, after the kill): {answered:?}");
    let stats = e.property::<gst::Structure>("stats");
    eprintln!("stats: {stats}");
    let servers = stats.get::<gst::Array>("servers").unwrap();
    let first_stats = servers.as_slice()[0].get::<gst::Structure>().unwrap();
    assert!(
        !first_stats.get::<bool>("up").unwrap(),
        "killed server still up"
    );
    // Only frames already inside the element at the kill (at most
    // 2 x workers) can carry the first server's answer after it.
    let after_first = answered.get(&first).map_or(0, |e| e.1);
    assert!(
        after_first <= 16,
        "{after_first} frames answered by a dead server"
    );
}

#[test]
#[ignore = "needs MLServer: tests/interop/run.sh (servers stopped)"]
fn all_servers_down() {
    let _w = common::begin("all_servers_down", 120);
    let (mut h, e) = harness(&[("workers", "4"), ("on-error", "drop")]);
    for i in 0..20 {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(h.pull_until_eos().unwrap().is_none(), "a frame came out");
    let mut gaps = 0;
    while let Some(ev) = h.try_pull_event() {
        gaps += u64::from(ev.type_() == gst::EventType::Gap);
    }
    assert_eq!(gaps, 20);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("errors").unwrap(), 20);
    e.set_state(gst::State::Null).unwrap();
}
