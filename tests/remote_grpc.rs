// SPDX-License-Identifier: MPL-2.0
//! `processor=remote` over KServe v2 gRPC (`grpc://`) against the test
//! server's gRPC side: results in order, batches, failover both ways in a
//! list mixing REST and gRPC, hangs, stopped servers, a server without the
//! model, an oversized answer, and the URL checks.
//!
//! Tests wait on what the element or the servers did, never on time; the
//! watchdog bounds each one.

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;
#[path = "common/remote.rs"]
mod remote_kit;

use gst::prelude::*;
use oip_server::{Fault, INPUT_NAME, TestServer};
use remote_kit::*;

#[test]
fn frames_enriched_in_order_over_grpc() {
    let _w = common::begin("frames_enriched_in_order_over_grpc", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    a.set_latency(std::time::Duration::from_millis(5));
    let (mut h, e, _bus) = harness_urls(&[a.grpc_url(), b.grpc_url()], &[("workers", "8")]);
    push(&mut h, 0..60);
    let results = pull_enriched(&mut h, 0, 60);
    for (i, r) in results.iter().enumerate() {
        assert_eq!((r.id, r.attempts), (i as i64, 1), "{r:?}");
        assert!(
            r.server == a.grpc_url() || r.server == b.grpc_url(),
            "{r:?}"
        );
    }
    assert_eq!(a.answered() + b.answered(), 60);
    assert!(b.answered() > 0, "the idle server got nothing");
    // Raw tensors, named as the model's metadata says.
    let inputs = a.control.inputs.lock().unwrap().clone();
    assert!(inputs.iter().all(|(n, _)| n == INPUT_NAME), "{inputs:?}");
    let stats = servers_stats(&e);
    let requests: u64 = stats
        .iter()
        .map(|s| s.get::<u64>("requests").unwrap())
        .sum();
    assert_eq!(requests, 60);
}

#[test]
fn batches_over_grpc() {
    let _w = common::begin("batches_over_grpc", 60);
    let a = TestServer::start();
    let (mut h, e, _bus) = harness_urls(
        &[a.grpc_url()],
        &[
            ("workers", "2"),
            ("batch-size", "4"),
            ("batch-timeout", "600000000000"),
        ],
    );
    push(&mut h, 0..10);
    assert!(h.push_event(gst::event::Eos::new()));
    let results = pull_enriched(&mut h, 0, 10);
    assert!(results.iter().enumerate().all(|(i, r)| r.id == i as i64));
    let mut sizes = a.batches();
    sizes.sort();
    assert_eq!(sizes, [2, 4, 4]);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("batches").unwrap(), 3);
}

/// A list of one gRPC and one REST server: both serve, and each takes
/// over when the other fails.
#[test]
fn mixed_rest_and_grpc_fail_over_both_ways() {
    let _w = common::begin("mixed_rest_and_grpc", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let urls = [a.grpc_url(), b.url()];
    let (mut h, e, _bus) = harness_urls(&urls, &[("workers", "4")]);
    wait_up(&e, 2);
    push(&mut h, 0..40);
    let results = pull_enriched(&mut h, 0, 40);
    assert!(results.iter().any(|r| r.server == urls[0]));
    assert!(results.iter().any(|r| r.server == urls[1]));

    // gRPC fails: REST answers.
    a.set_fault(Fault::Status(503), u64::MAX);
    push(&mut h, 40..60);
    let results = pull_enriched(&mut h, 40, 20);
    assert!(results.iter().all(|r| r.server == urls[1]), "{results:?}");
    a.clear_fault();

    // REST fails: gRPC answers, once the element sees it up again.
    wait_up(&e, 2);
    b.set_fault(Fault::Status(503), u64::MAX);
    push(&mut h, 60..80);
    let results = pull_enriched(&mut h, 60, 20);
    assert!(results.iter().all(|r| r.server == urls[0]), "{results:?}");
}

#[test]
fn a_hung_grpc_request_fails_over_within_the_timeout() {
    let _w = common::begin("grpc_hang_fails_over", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let urls = [a.grpc_url(), b.grpc_url()];
    let (mut h, e, _bus) = harness_urls(&urls, &[("workers", "2"), ("timeout", "2000000000")]);
    wait_up(&e, 2);
    a.set_fault(Fault::Hang, u64::MAX);
    push(&mut h, 0..6);
    let results = pull_enriched(&mut h, 0, 6);
    assert!(results.iter().all(|r| r.server == urls[1]), "{results:?}");
}

#[test]
fn stopped_grpc_servers_are_named_in_the_error() {
    let _w = common::begin("stopped_grpc_servers", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    a.stop();
    b.stop();
    let urls = [a.grpc_url(), b.grpc_url()];
    let (mut h, _e, bus) = harness_urls(&urls, &[("workers", "1")]);
    let _ = h.push(frame(0));
    let text = first_error_on(&bus);
    assert!(text.contains("servers are down"), "{text}");
    for u in &urls {
        assert!(text.contains(&format!("{u} down (")), "{text}");
    }
}

#[test]
fn a_grpc_server_without_the_model_is_named() {
    let _w = common::begin("grpc_server_without_the_model", 60);
    let a = TestServer::start();
    a.set_model("other-model");
    let (mut h, _e, bus) = harness_urls(&[a.grpc_url()], &[("workers", "1")]);
    let _ = h.push(frame(0));
    let text = first_error_on(&bus);
    assert!(
        text.contains(&format!("model 'test-model' not found on {}", a.grpc_url())),
        "{text}"
    );
}

#[test]
fn an_oversized_grpc_answer_is_the_frames_error_at_once() {
    let _w = common::begin("grpc_oversized_answer", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let (mut h, e, bus) = harness_urls(&[a.grpc_url(), b.grpc_url()], &[("workers", "1")]);
    wait_up(&e, 2);
    a.set_fault(Fault::Oversize, u64::MAX);
    b.set_fault(Fault::Oversize, u64::MAX);
    push(&mut h, 0..1);
    let text = first_error_on(&bus);
    assert!(text.contains("OutOfRange"), "{text}");
    // Not retried: any server would answer as much.
    assert_eq!(a.received() + b.received(), 1);
}

#[test]
fn grpc_urls_are_checked_at_start() {
    let _w = common::begin("grpc_urls_are_checked_at_start", 60);
    for (url, why) in [
        ("grpc://127.0.0.1", "has no port"),
        ("grpc://127.0.0.1:8001/v2", "has no path"),
    ] {
        let e = gst::ElementFactory::make("parallelfilter")
            .property_from_str("processor", "remote")
            .property("servers", url)
            .property("model", "m")
            .build()
            .unwrap();
        let bus = gst::Bus::new();
        e.set_bus(Some(&bus));
        assert!(e.set_state(gst::State::Paused).is_err(), "{url}");
        let text = first_error_on(&bus);
        assert!(text.contains(why), "{url}: {text}");
        let _ = e.set_state(gst::State::Null);
    }
}

/// A server whose readiness check never answers (a dead host behind an
/// open connection) is down after the probe's bound, not waited for.
#[test]
fn a_grpc_probe_without_an_answer_marks_the_server_down() {
    let _w = common::begin("grpc_probe_without_an_answer", 60);
    let a = TestServer::start();
    a.set_probe_hang(true);
    let url = a.grpc_url();
    let (mut h, _e, bus) = harness_urls(std::slice::from_ref(&url), &[("workers", "1")]);
    let _ = h.push(frame(0));
    let text = first_error_on(&bus);
    assert!(
        text.contains(&format!("{url} down (DeadlineExceeded: no answer within")),
        "{text}"
    );
}
