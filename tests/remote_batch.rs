// SPDX-License-Identifier: MPL-2.0
//! `processor=remote` with `batch-size` > 1: frames go to the server in
//! batches along the first dimension, each frame gets its own slice of the
//! outputs, a model without the batch dimension is an error naming it, and
//! a failed batch is retried whole on another server.
//!
//! Tests wait on what the element or the servers did, never on time; the
//! watchdog bounds each one.

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;
#[path = "common/remote.rs"]
mod remote_kit;

use gst::prelude::*;
use oip_server::{Fault, TestServer};
use remote_kit::*;

/// Long enough that a batch waiting it out hangs the test: batches close
/// when full or at EOS only.
const FULL_BATCHES: (&str, &str) = ("batch-timeout", "600000000000");

#[test]
fn frames_go_in_batches_and_each_gets_its_own_slice() {
    let _w = common::begin("frames_go_in_batches", 60);
    let a = TestServer::start();
    let (mut h, e, _bus) = harness(
        &[&a],
        &[("workers", "2"), ("batch-size", "4"), FULL_BATCHES],
    );
    push(&mut h, 0..22);
    // EOS sends the last two at once.
    assert!(h.push_event(gst::event::Eos::new()));
    let results = pull_enriched(&mut h, 0, 22);
    for (i, r) in results.iter().enumerate() {
        // The id output is the request's id (the batch's first frame)
        // plus the frame's row: each frame got its own row.
        assert_eq!(r.id, i as i64, "{r:?}");
        assert_eq!(r.attempts, 1);
    }
    let mut sizes = a.batches();
    sizes.sort();
    assert_eq!(sizes, [2, 4, 4, 4, 4, 4]);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("batches").unwrap(), 6);
    let avg = stats.get::<f64>("avg-batch-size").unwrap();
    assert!((avg - 22.0 / 6.0).abs() < 1e-9, "{avg}");
    // A request per batch, as the server counts them.
    assert_eq!(servers_stats(&e)[0].get::<u64>("requests").unwrap(), 6);
}

#[test]
fn json_tensors_are_batched_too() {
    let _w = common::begin("json_tensors_are_batched_too", 60);
    let a = TestServer::start();
    a.set_binary(false);
    let (mut h, _e, _bus) = harness(
        &[&a],
        &[("workers", "1"), ("batch-size", "3"), FULL_BATCHES],
    );
    push(&mut h, 0..6);
    let results = pull_enriched(&mut h, 0, 6);
    assert!(results.iter().enumerate().all(|(i, r)| r.id == i as i64));
    assert_eq!(a.batches(), [3, 3]);
}

#[test]
fn a_model_without_the_batch_dimension_is_an_error_naming_it() {
    let _w = common::begin("model_without_batch_dimension", 60);
    let a = TestServer::start();
    a.set_unbatched(true);
    let (mut h, _e, bus) = harness(
        &[&a],
        &[("workers", "1"), ("batch-size", "4"), FULL_BATCHES],
    );
    push(&mut h, 0..4);
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error])
        .expect("no error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let text = format!("{} {:?}", err.error(), err.debug());
    assert!(text.contains("model 'test-model'"), "{text}");
    assert!(text.contains("batch dimension"), "{text}");
    // Not the server's fault: asked once, not retried elsewhere.
    assert_eq!(a.received(), 1);
}

#[test]
fn a_failed_batch_is_retried_whole_on_another_server() {
    let _w = common::begin("failed_batch_retried_whole", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let (mut h, e, _bus) = harness(
        &[&a, &b],
        &[("workers", "1"), ("batch-size", "4"), FULL_BATCHES],
    );
    wait_up(&e, 2);
    a.set_fault(Fault::Status(503), u64::MAX);
    push(&mut h, 0..8);
    let results = pull_enriched(&mut h, 0, 8);
    assert!(results.iter().all(|r| r.server == b.url()), "{results:?}");
    assert_eq!(b.batches(), [4, 4]);
    // A got a whole batch and failed it; the retry took all four frames.
    assert!(a.received() >= 1);
    assert!(results.iter().any(|r| r.attempts == 2), "{results:?}");
}

#[test]
fn a_batch_failing_everywhere_fails_each_frame_per_on_error() {
    let _w = common::begin("batch_failing_everywhere", 60);
    let a = TestServer::start();
    let (mut h, e, _bus) = harness(
        &[&a],
        &[
            ("workers", "1"),
            ("batch-size", "4"),
            ("on-error", "drop"),
            ("retries", "1"),
            FULL_BATCHES,
        ],
    );
    wait_up(&e, 1);
    // Client errors: never retried, every frame of the batch fails.
    a.set_fault(Fault::Status(400), 1);
    push(&mut h, 0..8);
    let results = pull_enriched(&mut h, 4, 4);
    assert!(results.iter().all(|r| r.attempts == 1));
    assert_eq!(gaps(&mut h), 4);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("errors").unwrap(), 4);
}
