// SPDX-License-Identifier: MPL-2.0
//! `processor=remote` against the in-tree Open Inference Protocol test
//! server: results, order, binary and JSON tensors, failover on 5xx,
//! dropped connections, hangs and stopped servers, a server coming back,
//! all servers down, a failure on the only server, the frame's time budget
//! (also set in PLAYING), the per-server cap (fixed, or adapted to each
//! server's latency and capacity), readiness, flushing and state
//! changes with hung requests, the formats answered before start, an
//! oversized answer, a server without the model.
//!
//! Tests wait on what the element or the servers did (stats, counters,
//! pulled buffers), never on time; the watchdog bounds each one.

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;
#[path = "common/remote.rs"]
mod remote_kit;

use std::time::Duration;

use common::{FRAME, Fixture, Pipeline, caps_formats, element, fixture, wait_until};
use gst::prelude::*;
use gst_check::Harness;
use oip_server::{Fault, INPUT_NAME, MODEL, TestServer};
use remote_kit::*;

#[test]
fn frames_enriched_in_order_binary_and_json() {
    let _w = common::begin("frames_enriched_in_order_binary_and_json", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    b.set_binary(false);
    // Latency on A makes the balancer spread the load.
    a.set_latency(Duration::from_millis(5));
    let (mut h, e, _bus) = harness(&[&a, &b], &[("workers", "8")]);
    push(&mut h, 0..60);
    let results = pull_enriched(&mut h, 0, 60);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.attempts, 1);
        assert_eq!(r.id, i as i64);
        assert!(r.server == a.url() || r.server == b.url());
    }
    assert_eq!(a.answered() + b.answered(), 60);
    assert!(b.answered() > 0, "the idle server got nothing");
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(a.control.binary.load(SeqCst), a.answered());
    assert_eq!(b.control.binary.load(SeqCst), 0);
    // The input is named as the model's metadata says.
    assert!(
        a.control
            .inputs
            .lock()
            .unwrap()
            .iter()
            .all(|(n, _)| n == INPUT_NAME)
    );
    let stats = servers_stats(&e);
    assert_eq!(stats.len(), 2);
    let requests: u64 = stats
        .iter()
        .map(|s| s.get::<u64>("requests").unwrap())
        .sum();
    assert_eq!(requests, 60);
    assert!(stats.iter().all(|s| s.get::<u64>("failures").unwrap() == 0));
    assert!(stats[0].get::<u64>("avg-latency").unwrap() > 0);
}

/// Server A fails every request with `fault`; every frame still gets
/// exactly one result, from B, and A is counted as failing.
fn failover(fault: Fault, props: &[(&str, &str)]) {
    let (a, b) = (TestServer::start(), TestServer::start());
    let (mut h, e, _bus) = harness(&[&a, &b], props);
    wait_up(&e, 2);
    a.set_fault(fault, u64::MAX);
    push(&mut h, 0..20);
    let results = pull_enriched(&mut h, 0, 20);
    assert!(results.iter().all(|r| r.server == b.url()));
    // With both up and idle the first request goes to A (frames start
    // concurrently, so not necessarily frame 0's).
    assert!(results.iter().any(|r| r.attempts == 2));
    // A retry goes elsewhere: A is down when it is made.
    assert!(results.iter().all(|r| r.attempts <= 3));
    assert_eq!(b.answered(), 20);
    let stats = servers_stats(&e);
    assert!(stats[0].get::<u64>("failures").unwrap() >= 1);
    assert_eq!(stats[1].get::<u64>("failures").unwrap(), 0);
}

#[test]
fn failover_on_5xx() {
    let _w = common::begin("failover_on_5xx", 60);
    failover(Fault::Status(503), &[("workers", "4")]);
}

#[test]
fn failover_on_model_missing_from_a_server() {
    let _w = common::begin("failover_on_model_missing_from_a_server", 60);
    failover(Fault::Status(404), &[("workers", "4")]);
}

#[test]
fn failover_on_dropped_connection() {
    let _w = common::begin("failover_on_dropped_connection", 60);
    failover(Fault::Drop, &[("workers", "4")]);
}

#[test]
fn failover_on_hang_within_timeout() {
    let _w = common::begin("failover_on_hang_within_timeout", 60);
    // An attempt may use 3/4 of what is left: a hung request is abandoned
    // after 3 s, leaving 1 s for the retry.
    failover(Fault::Hang, &[("workers", "4"), ("timeout", "4000000000")]);
}

#[test]
fn stopped_server_is_avoided_and_used_again_when_back() {
    let _w = common::begin("stopped_server_is_avoided_and_used_again_when_back", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let (mut h, e, _bus) = harness(&[&a, &b], &[("workers", "4")]);
    wait_up(&e, 2);
    a.stop();
    push(&mut h, 0..20);
    let results = pull_enriched(&mut h, 0, 20);
    assert!(results.iter().all(|r| r.server == b.url()));
    assert!(!servers_stats(&e)[0].get::<bool>("up").unwrap());
    a.restart();
    wait_up(&e, 2);
    // Frames one at a time: with both idle, A (first) answers.
    let mut i = 20;
    loop {
        push(&mut h, i..i + 1);
        let r = pull_enriched(&mut h, i, 1).remove(0);
        i += 1;
        if r.server == a.url() {
            break;
        }
    }
    assert!(a.answered() >= 1);
}

fn all_down(on_error: &str) -> (Harness, gst::Element, gst::Bus, [TestServer; 2]) {
    let (a, b) = (TestServer::start(), TestServer::start());
    a.stop();
    b.stop();
    let (mut h, e, bus) = harness(&[&a, &b], &[("workers", "4"), ("on-error", on_error)]);
    for i in 0..5 {
        let ret = h.push(frame(i));
        // With on-error=fail the first failure stops the stream.
        if on_error != "fail" {
            assert_eq!(ret, Ok(gst::FlowSuccess::Ok));
        }
    }
    (h, e, bus, [a, b])
}

#[test]
fn all_servers_down_drops_with_gaps() {
    let _w = common::begin("all_servers_down_drops_with_gaps", 60);
    let (mut h, e, _bus, _servers) = all_down("drop");
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(h.pull_until_eos().unwrap().is_none(), "a frame came out");
    assert_eq!(gaps(&mut h), 5);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("errors").unwrap(), 5);
}

#[test]
fn all_servers_down_passes_originals() {
    let _w = common::begin("all_servers_down_passes_originals", 60);
    let (mut h, _e, _bus, _servers) = all_down("pass");
    for i in 0..5 {
        let b = h.pull().unwrap();
        assert_eq!(b.pts(), Some(FRAME * i));
        assert!(gst::meta::CustomMeta::from_buffer(&b, "GstParallelFilterInferenceMeta").is_err());
    }
}

#[test]
fn all_servers_down_fails_with_clear_error() {
    let _w = common::begin("all_servers_down_fails_with_clear_error", 60);
    let (_h, _e, bus, servers) = all_down("fail");
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(40), &[gst::MessageType::Error])
        .expect("no error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
    assert!(debug.contains("servers are down"), "{debug}");
    // Each server and why it is down (refused, or reset when the stop
    // caught a connection being accepted).
    for s in &servers {
        assert!(debug.contains(&format!("{} down (", s.url())), "{debug}");
    }
    assert_eq!(debug.matches("os error").count(), 2, "{debug}");
}

#[test]
fn client_errors_are_not_retried() {
    let _w = common::begin("client_errors_are_not_retried", 60);
    let a = TestServer::start();
    let (mut h, e, _bus) = harness(&[&a], &[("workers", "2"), ("on-error", "drop")]);
    wait_up(&e, 1);
    a.set_fault(Fault::Status(400), u64::MAX);
    push(&mut h, 0..4);
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(h.pull_until_eos().unwrap().is_none());
    assert_eq!(a.received(), 4);
    let s = &servers_stats(&e)[0];
    assert!(s.get::<bool>("up").unwrap(), "a 4xx marked the server down");
    assert_eq!(s.get::<u64>("failures").unwrap(), 4);
}

#[test]
fn flush_and_stop_cancel_hung_requests() {
    let _w = common::begin("flush_and_stop_cancel_hung_requests", 60);
    let a = TestServer::start();
    // A timeout of an hour: only cancellation can end the hung requests.
    let (mut h, e, _bus) = harness(&[&a], &[("workers", "4"), ("timeout", "3600000000000")]);
    wait_up(&e, 1);
    a.set_fault(Fault::Hang, u64::MAX);
    push(&mut h, 0..4);
    wait_until("4 requests at the server", || a.received() >= 4);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    // The dropped requests give their slots back.
    wait_until("no request in flight", || {
        servers_stats(&e)[0].get::<u32>("in-flight").unwrap() == 0
    });
    a.clear_fault();
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    push(&mut h, 10..11);
    let b = h.pull().unwrap();
    assert_eq!(result(&b).mean, 10.0);
    // A state change with requests hung on the server returns.
    a.set_fault(Fault::Hang, u64::MAX);
    let before = a.received();
    push(&mut h, 11..13);
    wait_until("2 more requests at the server", || {
        a.received() >= before + 2
    });
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn post_messages_carry_the_inference() {
    let _w = common::begin("post_messages_carry_the_inference", 60);
    let a = TestServer::start();
    let (mut h, _e, bus) = harness(&[&a], &[("workers", "2"), ("post-messages", "true")]);
    push(&mut h, 0..3);
    pull_enriched(&mut h, 0, 3);
    let msgs: Vec<gst::Structure> = bus
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(m) => m.structure().map(|s| s.to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(msgs.len(), 3);
    for (i, s) in msgs.iter().enumerate() {
        assert_eq!(s.name(), "parallelfilter-inference");
        assert_eq!(
            s.get::<u64>("timestamp").unwrap(),
            (FRAME * i as u64).nseconds()
        );
        assert_eq!(s.get::<String>("server").unwrap(), a.url());
        assert_eq!(s.get::<u32>("attempts").unwrap(), 1);
        assert!(s.get::<gst::Array>("outputs").unwrap().len() == 3);
    }
}

#[test]
fn analysis_payload_is_fp32_features() {
    let _w = common::begin("analysis_payload_is_fp32_features", 60);
    let a = TestServer::start();
    let (mut h, _e, _bus) = harness(&[&a], &[("workers", "2"), ("payload", "analysis")]);
    push(&mut h, 0..2);
    for _ in 0..2 {
        let b = h.pull().unwrap();
        let meta =
            gst::meta::CustomMeta::from_buffer(&b, "GstParallelFilterInferenceMeta").unwrap();
        let outputs = meta.structure().get::<gst::Array>("outputs").unwrap();
        let nbytes = outputs
            .iter()
            .map(|o| o.get::<gst::Structure>().unwrap())
            .find(|o| o.get::<&str>("name").unwrap() == "nbytes")
            .unwrap()
            .get::<gst::Array>("data")
            .unwrap()
            .as_slice()[0]
            .get::<i64>()
            .unwrap();
        // 7 scalar features and a 16-bin histogram, 4 bytes each.
        assert_eq!(nbytes, 23 * 4);
    }
}

#[test]
fn missing_servers_fail_the_state_change() {
    let _w = common::begin("missing_servers_fail_the_state_change", 60);
    let e = element(&[("processor", "remote"), ("model", MODEL)]);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    assert!(e.set_state(gst::State::Paused).is_err());
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("no error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert!(err.error().message().contains("servers"), "{}", err.error());
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn large_frames_binary_and_json() {
    let _w = common::begin("large_frames_binary_and_json", 60);
    for binary in [true, false] {
        large_frames(binary);
    }
}

fn large_frames(binary: bool) {
    let a = TestServer::start();
    a.set_binary(binary);
    let urls = a.url();
    let Fixture { mut h, .. } = fixture(&[
        ("processor", "remote"),
        ("servers", &urls),
        ("model", MODEL),
        ("workers", "4"),
    ]);
    // I420 320x240: above the size encoded on the blocking pool.
    h.set_src_caps_str("video/x-raw,format=I420,width=320,height=240,framerate=30/1");
    let size = 320 * 240 * 3 / 2;
    for i in 0..8u64 {
        let mut buf = gst::Buffer::from_mut_slice(vec![(i * 10) as u8; size]);
        buf.get_mut().unwrap().set_pts(FRAME * i);
        assert_eq!(h.push(buf), Ok(gst::FlowSuccess::Ok));
    }
    for i in 0..8u64 {
        let buf = h.pull().unwrap();
        let r = result(&buf);
        assert_eq!(r.mean, (i * 10) as f64);
        let meta =
            gst::meta::CustomMeta::from_buffer(&buf, "GstParallelFilterInferenceMeta").unwrap();
        let nbytes = meta
            .structure()
            .get::<gst::Array>("outputs")
            .unwrap()
            .iter()
            .map(|o| o.get::<gst::Structure>().unwrap())
            .find(|o| o.get::<&str>("name").unwrap() == "nbytes")
            .unwrap()
            .get::<gst::Array>("data")
            .unwrap()
            .as_slice()[0]
            .get::<i64>()
            .unwrap();
        // Planar YUV goes as [1, N], N = the three planes without padding.
        assert_eq!(nbytes, size as i64);
    }
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(a.control.binary.load(SeqCst), if binary { 8 } else { 0 });
}

/// Pushes EOS and pulls every buffer before it.
fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    assert!(h.push_event(gst::event::Eos::new()));
    let mut out = Vec::new();
    while let Some(b) = h.pull_until_eos().unwrap() {
        out.push(b);
    }
    out
}

fn check_enriched(buffers: &[gst::Buffer], n: u64) -> Vec<Result> {
    assert_eq!(buffers.len() as u64, n, "frames were dropped");
    buffers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            assert_eq!(b.pts(), Some(FRAME * i as u64));
            let r = result(b);
            assert_eq!(r.mean, (i % 200) as f64, "frame {i}: {r:?}");
            r
        })
        .collect()
}

#[test]
fn one_failure_on_the_only_server_is_retried() {
    let _w = common::begin("one_failure_on_the_only_server_is_retried", 60);
    let a = TestServer::start();
    let (mut h, e, _bus) = harness(
        &[&a],
        &[
            ("workers", "4"),
            ("timeout", "30000000000"),
            ("on-error", "drop"),
        ],
    );
    wait_up(&e, 1);
    // One failed request makes the server suspect, not down: frames wait
    // for its probe instead of failing as if every server were down.
    a.set_fault(Fault::Status(503), 1);
    push(&mut h, 0..20);
    let results = check_enriched(&pull_all(&mut h), 20);
    assert_eq!(results.iter().filter(|r| r.attempts == 2).count(), 1);
    let s = &servers_stats(&e)[0];
    assert_eq!(s.get::<u64>("failures").unwrap(), 1);
}

#[test]
fn slow_server_gets_most_of_the_budget() {
    let _w = common::begin("slow_server_gets_most_of_the_budget", 60);
    let a = TestServer::start();
    a.set_latency(Duration::from_secs(1));
    // 4 attempts in 3 s: equal shares (750 ms) would never see an answer;
    // the first attempt may use 3/4 of the budget.
    let (mut h, e, _bus) = harness(
        &[&a],
        &[
            ("workers", "4"),
            ("timeout", "3000000000"),
            ("retries", "3"),
            ("on-error", "drop"),
        ],
    );
    wait_up(&e, 1);
    push(&mut h, 0..4);
    let results = check_enriched(&pull_all(&mut h), 4);
    assert!(results.iter().all(|r| r.attempts == 1), "{results:?}");
    let s = &servers_stats(&e)[0];
    assert_eq!(s.get::<u64>("failures").unwrap(), 0);
    assert!(s.get::<bool>("up").unwrap());
}

#[test]
fn out_of_budget_is_the_frames_error_not_the_servers() {
    let _w = common::begin("out_of_budget_is_the_frames_error_not_the_servers", 60);
    let a = TestServer::start();
    let (mut h, e, _bus) = harness(
        &[&a],
        &[
            ("workers", "4"),
            ("timeout", "300000000"),
            ("retries", "0"),
            ("on-error", "drop"),
        ],
    );
    wait_up(&e, 1);
    a.set_fault(Fault::Hang, u64::MAX);
    push(&mut h, 0..3);
    assert!(pull_all(&mut h).is_empty());
    // The remote's budget ends before the engine's timeout: the frames
    // fail with the remote's error, never as engine timeouts.
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("errors").unwrap(), 3);
    assert_eq!(stats.get::<u64>("timeouts").unwrap(), 0);
    // A frame running out of time does not make the server suspect.
    let s = &servers_stats(&e)[0];
    assert!(s.get::<bool>("up").unwrap());
    assert_eq!(s.get::<u64>("failures").unwrap(), 3);
}

#[test]
fn timeout_set_in_playing_applies() {
    let _w = common::begin("timeout_set_in_playing_applies", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let (mut h, e, _bus) = harness(&[&a, &b], &[("workers", "2"), ("on-error", "drop")]);
    wait_up(&e, 2);
    // Set after start: the first attempt (on A, the first idle server) is
    // bounded by 3/4 of it, leaving time for B.
    e.set_property("timeout", 4_000_000_000u64);
    a.set_fault(Fault::Hang, u64::MAX);
    push(&mut h, 0..1);
    let results = check_enriched(&pull_all(&mut h), 1);
    assert_eq!(results[0].server, b.url());
    assert_eq!(results[0].attempts, 2);
}

#[test]
fn model_name_is_percent_encoded() {
    let _w = common::begin("model_name_is_percent_encoded", 60);
    let a = TestServer::start();
    a.set_model("my model");
    let (mut h, _e, _bus) = harness(
        &[&a],
        &[
            ("workers", "2"),
            ("model", "my model"),
            ("on-error", "drop"),
        ],
    );
    push(&mut h, 0..2);
    let buffers = pull_all(&mut h);
    assert_eq!(buffers.len(), 2, "frames were dropped");
    for b in buffers {
        let meta =
            gst::meta::CustomMeta::from_buffer(&b, "GstParallelFilterInferenceMeta").unwrap();
        assert_eq!(meta.structure().get::<&str>("model").unwrap(), "my model");
    }
    assert_eq!(a.answered(), 2);
}

#[test]
fn server_url_with_a_query_fails_the_state_change() {
    let _w = common::begin("server_url_with_a_query_fails_the_state_change", 60);
    let e = element(&[
        ("processor", "remote"),
        ("servers", "http://127.0.0.1:1/?x=1"),
        ("model", MODEL),
    ]);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    assert!(e.set_state(gst::State::Paused).is_err());
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("no error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert!(err.error().message().contains("query"), "{}", err.error());
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn max_requests_per_server_is_a_cap() {
    let _w = common::begin("max_requests_per_server_is_a_cap", 60);
    let a = TestServer::start();
    // Answers that overlap once released: requests beyond the cap would
    // be seen at the server together with the held ones.
    a.set_latency(Duration::from_millis(50));
    let (mut h, e, _bus) = harness(&[&a], &[("workers", "8"), ("max-requests-per-server", "2")]);
    wait_up(&e, 1);
    a.set_hold(true);
    push(&mut h, 0..8);
    wait_until("2 requests at the server", || a.received() >= 2);
    assert_eq!(servers_stats(&e)[0].get::<u32>("in-flight").unwrap(), 2);
    a.set_hold(false);
    check_enriched(&pull_all(&mut h), 8);
    assert_eq!(a.max_concurrent(), 2);
    assert_eq!(a.received(), 8);
}

/// Pushes frames `0..n` and pulls them (the harness keeps the output, so
/// pushing never waits for pulls), each enriched and in order.
fn run_through(h: &mut Harness, n: u64) -> Vec<Result> {
    push(h, 0..n);
    pull_enriched(h, 0, n)
}

fn server_stat(e: &gst::Element, server: usize, field: &str) -> u64 {
    let s = &servers_stats(e)[server];
    s.get::<u32>(field)
        .map(u64::from)
        .or_else(|_| s.get::<u64>(field))
        .unwrap_or_else(|_| panic!("no {field} in {s}"))
}

#[test]
fn adaptive_limits_follow_each_servers_capacity() {
    let _w = common::begin("adaptive_limits_follow_each_servers_capacity", 120);
    const K: u64 = 4;
    let (a, b) = (TestServer::start(), TestServer::start());
    for s in [&a, &b] {
        s.set_capacity(Some(K as usize));
        s.set_latency(Duration::from_millis(20));
    }
    // max-requests-per-server=0 (the default): adaptive, up to workers.
    let (mut h, e, _bus) = harness(&[&a, &b], &[("workers", "32")]);
    wait_up(&e, 2);
    run_through(&mut h, 400);
    // A cap of `workers` would let each server's limit be 32 and about 16
    // requests queue at each. The limit probes above K and falls back
    // (between 4 and 9 in practice), so the bound leaves room for timing.
    for (i, s) in [&a, &b].iter().enumerate() {
        let limit = server_stat(&e, i, "limit");
        assert!(
            (1..=3 * K).contains(&limit),
            "server {i}: limit {limit}, max at the server {}",
            s.max_concurrent()
        );
        assert!(s.answered() > 0, "server {i} got nothing");
    }
    assert_eq!(a.answered() + b.answered(), 400);
}

#[test]
fn a_slow_server_gets_fewer_requests() {
    let _w = common::begin("a_slow_server_gets_fewer_requests", 120);
    let (fast, slow) = (TestServer::start(), TestServer::start());
    for s in [&fast, &slow] {
        s.set_capacity(Some(4));
    }
    fast.set_latency(Duration::from_millis(10));
    slow.set_latency(Duration::from_millis(100));
    let (mut h, e, _bus) = harness(&[&fast, &slow], &[("workers", "32")]);
    wait_up(&e, 2);
    let results = run_through(&mut h, 300);
    let on = |s: &TestServer| results.iter().filter(|r| r.server == s.url()).count();
    let (f, sl) = (on(&fast), on(&slow));
    assert_eq!(f + sl, 300);
    assert!(f > 3 * sl, "fast answered {f}, slow {sl}");
}

#[test]
fn an_explicit_max_requests_per_server_is_exact() {
    let _w = common::begin("an_explicit_max_requests_per_server_is_exact", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    for s in [&a, &b] {
        s.set_capacity(Some(8));
        s.set_latency(Duration::from_millis(5));
    }
    let (mut h, e, _bus) = harness(
        &[&a, &b],
        &[("workers", "16"), ("max-requests-per-server", "2")],
    );
    wait_up(&e, 2);
    run_through(&mut h, 100);
    for (i, s) in [&a, &b].iter().enumerate() {
        assert!(
            s.max_concurrent() <= 2,
            "server {i}: {}",
            s.max_concurrent()
        );
        assert_eq!(server_stat(&e, i, "limit"), 2);
    }
}

#[test]
fn server_whose_model_is_not_ready_is_not_used() {
    let _w = common::begin("server_whose_model_is_not_ready_is_not_used", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    a.set_model_ready(false);
    let (mut h, e, _bus) = harness(&[&a, &b], &[("workers", "4")]);
    push(&mut h, 0..10);
    let results = pull_enriched(&mut h, 0, 10);
    assert!(results.iter().all(|r| r.server == b.url()));
    assert_eq!(a.received(), 0);
    assert!(!servers_stats(&e)[0].get::<bool>("up").unwrap());
    // Once the model is ready, the server is used.
    a.set_model_ready(true);
    wait_up(&e, 2);
    push(&mut h, 10..11);
    assert_eq!(pull_enriched(&mut h, 10, 1)[0].server, a.url());
}

/// Formats `remote` takes (`payload=frame`).
const REMOTE_FORMATS: &[&str] = &[
    "RGB", "BGR", "RGBA", "BGRA", "ARGB", "ABGR", "RGBx", "BGRx", "xRGB", "xBGR", "GRAY8", "I420",
    "YV12", "NV12", "NV21", "Y42B", "Y444",
];

#[test]
fn unsupported_format_fails_at_link_time_naming_it() {
    let _w = common::begin("unsupported_format_fails_at_link_time_naming_it", 60);
    for format in ["YUY2", "Y41B", "AYUV"] {
        // No server is contacted: linking happens before start.
        let launch = format!(
            "videotestsrc num-buffers=1 ! video/x-raw,format={format} ! \
             parallelfilter processor=remote servers=http://127.0.0.1:9 model={MODEL} ! fakesink"
        );
        match gst::parse::launch(&launch) {
            Ok(_) => panic!("{format}: linked a format remote cannot take"),
            Err(err) => assert!(err.to_string().contains(format), "{format}: {err}"),
        }
    }
    // A capsfilter element links the same way, only GStreamer's message
    // does not name the caps.
    assert!(
        gst::parse::launch(&format!(
            "videotestsrc ! capsfilter caps=video/x-raw,format=YUY2 ! \
             parallelfilter processor=remote servers=http://127.0.0.1:9 model={MODEL} ! fakesink"
        ))
        .is_err()
    );
}

#[test]
fn caps_queries_before_start_answer_the_remote_formats() {
    let _w = common::begin("caps_queries_before_start_answer_the_remote_formats", 60);
    let e = element(&[("processor", "remote")]);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let sink = e.static_pad("sink").unwrap();
    let yuy2: gst::Caps = "video/x-raw,format=YUY2,width=64,height=48,framerate=25/1"
        .parse()
        .unwrap();
    let rgb: gst::Caps = "video/x-raw,format=RGB,width=64,height=48,framerate=25/1"
        .parse()
        .unwrap();
    for state in [gst::State::Null, gst::State::Ready] {
        e.set_state(state).unwrap();
        assert_eq!(
            caps_formats(&sink.query_caps(None)),
            REMOTE_FORMATS,
            "{state:?}"
        );
        assert!(!sink.query_accept_caps(&yuy2), "{state:?}");
        assert!(sink.query_accept_caps(&rgb), "{state:?}");
    }
    // The refusal names the format and the processor on the bus, once
    // (posted from the query, so already there).
    let msg = bus
        .pop_filtered(&[gst::MessageType::Warning])
        .expect("a warning naming the format");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    let text = w.error().to_string();
    assert!(text.contains("YUY2") && text.contains("remote"), "{text}");
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn without_a_capsfilter_a_supported_format_is_negotiated() {
    let _w = common::begin("without_a_capsfilter_a_supported_format_is_negotiated", 60);
    let a = TestServer::start();
    let p = Pipeline::launch(&format!(
        "videotestsrc num-buffers=3 ! parallelfilter name=pf processor=remote servers={} \
         model={MODEL} ! fakesink",
        a.url()
    ));
    if let Some(err) = p.run() {
        panic!("{}", err.text());
    }
    let pf = p.pf();
    let caps = pf.static_pad("sink").unwrap().current_caps().unwrap();
    let format = caps.structure(0).unwrap().get::<String>("format").unwrap();
    assert!(REMOTE_FORMATS.contains(&format.as_str()), "{caps}");
    assert_eq!(a.answered(), 3);
    p.stop();
}

#[test]
fn oversized_response_is_the_frames_error_at_once() {
    let _w = common::begin("oversized_response_is_the_frames_error_at_once", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let (mut h, e, _bus) = harness(&[&a, &b], &[("workers", "1"), ("on-error", "drop")]);
    wait_up(&e, 2);
    a.set_fault(Fault::Oversize, u64::MAX);
    // With both idle the frame goes to A; B would send as big an answer,
    // so it is not retried there.
    push(&mut h, 0..1);
    assert!(pull_all(&mut h).is_empty(), "the frame was retried");
    assert_eq!((a.received(), b.received()), (1, 0));
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("errors").unwrap(), 1);
    // Not a server outage: A stays ready.
    let s = &servers_stats(&e)[0];
    assert!(s.get::<bool>("up").unwrap(), "A was marked suspect or down");
    assert_eq!(s.get::<u64>("failures").unwrap(), 1);

    drop(h);
    // The error says why.
    let (mut h, e, bus) = harness(&[&a], &[("workers", "1")]);
    wait_up(&e, 1);
    push(&mut h, 0..1);
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error])
        .expect("no error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let text = format!("{} {:?}", err.error(), err.debug());
    assert!(text.contains("over the 4 MiB limit"), "{text}");
    assert!(text.contains(&a.url()), "{text}");
    assert_eq!(a.received(), 2);
}

/// The text of the first error `remote` posts for a frame, asking `servers`
/// for `model`.
fn first_error(servers: &[&TestServer], model: &str) -> String {
    let (mut h, _e, bus) = harness(servers, &[("workers", "1"), ("model", model)]);
    push(&mut h, 0..1);
    first_error_on(&bus)
}

#[test]
fn model_missing_on_a_server_is_named_with_what_it_serves() {
    let _w = common::begin("model_missing_on_a_server_is_named_with_what_it_serves", 60);
    let a = TestServer::start();
    a.set_other_models(&["resnet-50", "yolo"]);
    let text = first_error(&[&a], "resnet");
    let expected = format!(
        "model 'resnet' not found on {} (it serves: {MODEL}, resnet-50, yolo)",
        a.url()
    );
    assert!(text.contains(&expected), "{text}");
    assert!(!text.contains("down"), "{text}");
    // Without a repository index: not found, without the list.
    let b = TestServer::start();
    b.set_index(false);
    let text = first_error(&[&b], "resnet");
    assert!(
        text.contains(&format!("model 'resnet' not found on {}", b.url())),
        "{text}"
    );
    assert!(!text.contains("serves") && !text.contains("down"), "{text}");
}

#[test]
fn server_down_and_model_missing_are_told_apart() {
    let _w = common::begin("server_down_and_model_missing_are_told_apart", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    a.stop();
    let text = first_error(&[&a, &b], "resnet");
    assert!(text.contains(&format!("{} down (", a.url())), "{text}");
    let expected = format!(
        "model 'resnet' not found on {} (it serves: {MODEL})",
        b.url()
    );
    assert!(text.contains(&expected), "{text}");
    assert!(!text.contains("servers are down"), "{text}");
    // A model the server has but not ready: its state from the index.
    let c = TestServer::start();
    c.set_model_ready(false);
    let text = first_error(&[&c], MODEL);
    let expected = format!(
        "model '{MODEL}' not ready on {} (UNAVAILABLE: not ready)",
        c.url()
    );
    assert!(text.contains(&expected), "{text}");
}
