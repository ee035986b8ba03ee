// SPDX-License-Identifier: MPL-2.0
//! With every debug category at TRACE, no log line ever holds an
//! `extra-headers` value. Its own binary: it replaces the log functions,
//! which GStreamer does not allow while other threads are logging (other
//! tests of a shared binary would be).

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;
#[path = "common/remote.rs"]
mod remote_kit;

use std::sync::{Arc, Mutex};

use common::element;
use gst::prelude::*;
use oip_server::{MODEL, TestServer};
use remote_kit::*;

#[test]
fn header_values_never_reach_the_log() {
    let _w = common::begin("header_values_never_reach_the_log", 120);
    let secret = "l0g-test-s3cret";
    let token = format!("Bearer {secret}");
    let lines = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
    let sink = lines.clone();
    let log = gst::log::add_log_function(move |cat, level, file, func, line, _obj, msg| {
        let text = msg.get().map(|m| m.to_string()).unwrap_or_default();
        let mut l = sink.lock().unwrap();
        l.0 += 1;
        if text.contains(secret) {
            l.1.push(format!(
                "{} {level:?} {file}:{line} {func}: {text}",
                cat.name()
            ));
        }
    });
    // Only ours: TRACE on stderr would drown the test output (this
    // binary logs nothing to stderr from here on; gstreamer-rs cannot put
    // the default back).
    gst::log::remove_default_log_function();
    gst::log::set_active(true);
    gst::log::set_default_threshold(gst::DebugLevel::Trace);
    gst::log::set_threshold_for_name("*", gst::DebugLevel::Trace);

    let a = TestServer::start();
    a.require_header("authorization", &token);
    let e = element(&[
        ("processor", "remote"),
        ("servers", &a.url()),
        ("model", MODEL),
        ("workers", "2"),
    ]);
    // Set as an application would, while the log runs.
    let headers = gst::Structure::builder("headers")
        .field("authorization", token.as_str())
        .field("x-tag", gst::Array::new(["a", secret]))
        .build();
    e.set_property("extra-headers", &headers);
    // Read back, as gst-inspect or a UI would.
    assert_eq!(e.property::<gst::Structure>("extra-headers"), headers);
    let common::Fixture { mut h, .. } = common::Fixture::around(e.clone());
    h.set_src_caps_str(CAPS);
    push(&mut h, 0..10);
    pull_enriched(&mut h, 0, 10);
    // Changed while running, then stopped and started again.
    e.set_property("extra-headers", &headers);
    e.set_state(gst::State::Null).unwrap();
    drop(h);

    gst::log::set_threshold_for_name("*", gst::DebugLevel::None);
    gst::log::set_default_threshold(gst::DebugLevel::None);
    gst::log::remove_log_function(log);
    let (count, leaks) = std::mem::take(&mut *lines.lock().unwrap());
    // The log did run at TRACE.
    assert!(count > 100, "only {count} log lines");
    assert!(
        leaks.is_empty(),
        "the secret reached the log:\n{}",
        leaks.join("\n")
    );
}
