// SPDX-License-Identifier: MPL-2.0
//! `processor=remote` members of one `context` (docs/remote.md, In a
//! context): with the same servers they share the servers' state and
//! per-server caps, their waiting batches go in one request with each
//! frame's outputs back in its own stream, such a request outlives a
//! member flushing, and a member seeking never disturbs the others' frames.
//!
//! Tests wait on what the element or the servers did, never on time; the
//! watchdog bounds each one.

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;
#[path = "common/remote.rs"]
mod remote_kit;

use common::pipeline::{Pipeline, assert_increasing};
use common::{stat, wait_until};
use gst::prelude::*;
use gst_check::Harness;
use oip_server::{MODEL, TestServer};
use remote_kit::*;

/// Frames of a member waiting for a server slot.
fn waiting(e: &gst::Element) -> u64 {
    stat(&e.property::<gst::Structure>("stats"), "waiting-for-server")
}

fn requests(e: &gst::Element) -> u64 {
    servers_stats(e)[0].get::<u64>("requests").unwrap()
}

#[test]
fn members_with_the_same_servers_share_their_state_and_caps() {
    let _w = common::begin("remote_context_share", 60);
    let a = TestServer::start();
    let member = |context| {
        harness(
            &[&a],
            &[
                ("context", context),
                ("workers", "8"),
                ("max-requests-per-server", "1"),
            ],
        )
    };
    let (mut h1, e1, _b1) = member("rc-share");
    let (mut h2, e2, _b2) = member("rc-share");
    let (mut h3, e3, _b3) = member("rc-share-other");
    wait_up(&e1, 1);
    wait_up(&e3, 1);
    // Already up: the second member's servers are the first's.
    assert!(servers_stats(&e2)[0].get::<bool>("up").unwrap());
    a.set_hold(true);
    push(&mut h1, 0..3);
    push(&mut h2, 100..103);
    // One request in flight, the others waiting for its slot.
    wait_until("5 frames of the context waiting", || {
        waiting(&e1) + waiting(&e2) == 5
    });
    // A cap of 1 for the whole context: one request of six sent.
    wait_until("the request at the server", || a.received() == 1);
    assert_eq!(servers_stats(&e1)[0].get::<u32>("in-flight").unwrap(), 1);
    assert_eq!(servers_stats(&e2)[0].get::<u32>("in-flight").unwrap(), 1);
    // Another context has servers (and a cap) of its own.
    push(&mut h3, 0..1);
    wait_until("the other context's request", || a.received() == 2);
    a.set_hold(false);
    pull_enriched(&mut h1, 0, 3);
    pull_enriched(&mut h2, 100, 3);
    pull_enriched(&mut h3, 0, 1);
    // One set of counters for the two members.
    assert_eq!(requests(&e1), 6);
    assert_eq!(requests(&e2), 6);
    assert_eq!(requests(&e3), 1);
    assert_eq!(waiting(&e1) + waiting(&e2) + waiting(&e3), 0);
}

/// A member in `context` sending batches of up to 8 frames, one request
/// at a time on the server.
fn batching(context: &str, server: &TestServer) -> (Harness, gst::Element, gst::Bus) {
    let props = [
        ("context", context),
        ("workers", "8"),
        ("batch-size", "8"),
        ("max-requests-per-server", "1"),
    ];
    harness(&[server], &props)
}

#[test]
fn waiting_batches_of_members_go_in_one_request_each_to_its_own_stream() {
    let _w = common::begin("remote_context_batch", 60);
    let a = TestServer::start();
    let (mut h1, e1, _b1) = batching("rc-batch", &a);
    let (mut h2, e2, _b2) = batching("rc-batch", &a);
    wait_up(&e1, 1);
    a.set_hold(true);
    push(&mut h1, 0..1);
    wait_until("the first request at the server", || a.received() == 1);
    // Frames of both members, each in a batch of its member's, all
    // waiting for the one slot.
    push(&mut h1, 1..3);
    push(&mut h2, 100..103);
    wait_until("5 frames waiting", || {
        waiting(&e1) == 2 && waiting(&e2) == 3
    });
    a.set_hold(false);
    // Each frame's `mean` is its own bytes': its slice came back to it.
    pull_enriched(&mut h1, 0, 3);
    pull_enriched(&mut h2, 100, 3);
    assert_eq!(a.batches(), [1, 5]);
    // Each member counts only its own frames.
    wait_until("each member's 3 frames out", || {
        stat(&e1.property("stats"), "frames-out") == 3
            && stat(&e2.property("stats"), "frames-out") == 3
    });
}

fn flush(h: &mut Harness) {
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
}

#[test]
fn a_request_of_several_members_outlives_the_one_that_sent_it() {
    let _w = common::begin("remote_context_flush", 60);
    let a = TestServer::start();
    let (mut h1, e1, _b1) = batching("rc-flush", &a);
    let (mut h2, e2, _b2) = batching("rc-flush", &a);
    let (mut h3, _e3, _b3) = batching("rc-flush", &a);
    wait_up(&e1, 1);
    // The second member's next frame is its #1: a request's id tells
    // which member sent it.
    push(&mut h2, 99..100);
    pull_enriched(&mut h2, 99, 1);
    a.set_hold(true);
    push(&mut h3, 0..1);
    wait_until("the third member's request", || a.received() == 2);
    push(&mut h1, 0..1);
    push(&mut h2, 100..101);
    wait_until("a frame of each waiting", || {
        waiting(&e1) == 1 && waiting(&e2) == 1
    });
    // The slot frees: one of the two takes the other along.
    flush(&mut h3);
    wait_until("the request of both", || a.arrived().len() == 3);
    let sender = a.arrived()[2];
    // The sender flushes; the other's frame still gets that answer.
    if sender == 0 {
        flush(&mut h1);
        a.set_hold(false);
        pull_enriched(&mut h2, 100, 1);
    } else {
        flush(&mut h2);
        a.set_hold(false);
        pull_enriched(&mut h1, 0, 1);
    }
    // Sent once.
    assert_eq!(a.received(), 3);
    assert!(a.batches().contains(&2), "{:?}", a.batches());
}

/// A member's frames through `remote` in `context`: 8x4 RGB, batches of
/// up to 4, one request at a time on the server.
fn member(context: &str, url: &str, n: u32, pattern: &str) -> Pipeline {
    Pipeline::launch(&format!(
        "videotestsrc num-buffers={n} pattern={pattern} ! \
         video/x-raw,format=RGB,width=8,height=4,framerate=30/1 ! \
         parallelfilter name=pf context={context} processor=remote servers={url} \
         model={MODEL} workers=8 batch-size=4 max-requests-per-server=1 ! fakesink name=sink"
    ))
}

#[test]
fn a_member_seeking_leaves_the_others_frames_alone() {
    let _w = common::begin("remote_context_seek", 120);
    let a = TestServer::start();
    a.set_latency(std::time::Duration::from_millis(2));
    let url = a.url();
    let busy = member("rc-seek", &url, 100_000, "white");
    let other = member("rc-seek", &url, 300, "snow");
    busy.play();
    busy.next_buffer();
    other.play();
    for _ in 0..5 {
        busy.pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::ClockTime::ZERO,
            )
            .unwrap();
        busy.next_buffer();
    }
    assert!(other.wait_end().is_none());
    let frames = other.frames();
    assert_eq!(frames.len(), 300);
    assert_increasing(&other.buffer_pts());
    for f in &frames {
        // The server's mean of this very frame's bytes.
        let own = f.data.iter().map(|&b| f64::from(b)).sum::<f64>() / f.data.len() as f64;
        let r = result(&f.buffer);
        assert!((r.mean - own).abs() < 1e-3, "{:?}: {r:?} vs {own}", f.pts);
    }
    busy.stop();
    other.stop();
}
