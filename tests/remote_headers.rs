// SPDX-License-Identifier: MPL-2.0
//! `processor=remote` with `extra-headers`: sent with every request,
//! probes included, arrays as repeated headers; a server refusing the
//! credentials (401) fails frames with a message saying so and is not
//! retried elsewhere; a field that cannot be a header fails the start
//! naming the field; server URLs with user info are refused. That no log
//! line holds a header's value is `log_secrets.rs`'s.
//!
//! Tests wait on what the element or the servers did, never on time; the
//! watchdog bounds each one.

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;
#[path = "common/remote.rs"]
mod remote_kit;

use common::element;
use gst::prelude::*;
use oip_server::{MODEL, TestServer};
use remote_kit::*;

const TOKEN: &str = "Bearer s3cret-t0ken-value";
const HEADERS: &str = "headers, authorization=\"Bearer s3cret-t0ken-value\", \
                       x-tag=<\"a\", \"b\">, x-count=(int)7";

/// Every value a request carried under `name`.
fn values(headers: &hyper::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn headers_go_with_every_request_and_probe() {
    let _w = common::begin("headers_go_with_every_request_and_probe", 60);
    let a = TestServer::start();
    a.require_header("authorization", TOKEN);
    let (mut h, _e, _bus) = harness(&[&a], &[("workers", "4"), ("extra-headers", HEADERS)]);
    push(&mut h, 0..10);
    pull_enriched(&mut h, 0, 10);
    let seen = a.seen_headers();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    // The probes' requests and the inferences.
    for path in [
        "/v2/health/ready",
        &format!("/v2/models/{MODEL}/ready"),
        "/v2",
        &format!("/v2/models/{MODEL}"),
        &format!("/v2/models/{MODEL}/infer"),
    ] {
        assert!(paths.contains(&path), "no request to {path}: {paths:?}");
    }
    for (path, headers) in &seen {
        let all = |name| values(headers, name);
        assert_eq!(all("authorization"), [TOKEN], "{path}");
        assert_eq!(all("x-tag"), ["a", "b"], "{path}");
        assert_eq!(all("x-count"), ["7"], "{path}");
    }
}

#[test]
fn without_the_credentials_frames_fail_saying_so() {
    let _w = common::begin("without_the_credentials_frames_fail_saying_so", 60);
    let a = TestServer::start();
    a.require_header("authorization", TOKEN);
    let (mut h, _e, bus) = harness(&[&a], &[("workers", "1")]);
    push(&mut h, 0..1);
    let text = first_error_on(&bus);
    let expected = format!(
        "{} down (server refused the credentials (401 Unauthorized): check extra-headers)",
        a.url()
    );
    assert!(text.contains(&expected), "{text}");
    // No inference request was sent: the probes found the server down.
    let infer = format!("/v2/models/{MODEL}/infer");
    assert!(a.seen_headers().iter().all(|(p, _)| *p != infer));
}

#[test]
fn a_refused_request_is_not_retried_elsewhere() {
    let _w = common::begin("a_refused_request_is_not_retried_elsewhere", 60);
    let (a, b) = (TestServer::start(), TestServer::start());
    let (mut h, e, bus) = harness(&[&a, &b], &[("workers", "1")]);
    wait_up(&e, 2);
    // Up, then the token is wanted: the request itself gets 401.
    a.require_header("authorization", TOKEN);
    b.require_header("authorization", TOKEN);
    push(&mut h, 0..1);
    let text = first_error_on(&bus);
    assert!(
        text.contains("server refused the credentials (401 Unauthorized): check extra-headers"),
        "{text}"
    );
    assert!(text.contains("after 1 attempt(s)"), "{text}");
    let infer = format!("/v2/models/{MODEL}/infer");
    let sent = |s: &TestServer| s.seen_headers().iter().filter(|(p, _)| *p == infer).count();
    assert_eq!(sent(&a) + sent(&b), 1);
}

/// Starting with `props` fails; the error's text.
fn start_error(props: &[(&str, &str)]) -> String {
    let mut all = vec![("processor", "remote"), ("model", MODEL)];
    all.extend_from_slice(props);
    let e = element(&all);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    assert!(e.set_state(gst::State::Paused).is_err());
    let text = first_error_on(&bus);
    e.set_state(gst::State::Null).unwrap();
    text
}

#[test]
fn a_bad_field_fails_the_start_naming_it_not_its_value() {
    let _w = common::begin("a_bad_field_fails_the_start", 60);
    for (servers, headers, field) in [
        // REST takes a host; gRPC is routed by its URL's authority.
        ("grpc://127.0.0.1:1", "headers, host=\"s3cret\"", "host"),
        (
            "http://127.0.0.1:1",
            "headers, content-length=\"s3cret\"",
            "content-length",
        ),
        (
            "http://127.0.0.1:1",
            "headers, grpc-timeout=\"s3cret\"",
            "grpc-timeout",
        ),
        ("http://127.0.0.1:1", "headers, x/y=\"s3cret\"", "x/y"),
    ] {
        let text = start_error(&[("servers", servers), ("extra-headers", headers)]);
        assert!(
            text.contains(&format!("extra-headers field '{field}'")),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }
}

#[test]
fn a_server_url_with_user_info_fails_the_start_without_repeating_it() {
    let _w = common::begin("a_server_url_with_user_info_fails_the_start", 60);
    let text = start_error(&[("servers", "https://user:s3cret@127.0.0.1:1")]);
    assert!(text.contains("https://***@127.0.0.1:1"), "{text}");
    assert!(text.contains("extra-headers"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn headers_go_as_grpc_metadata_with_every_call() {
    let _w = common::begin("headers_go_as_grpc_metadata", 60);
    let a = TestServer::start();
    a.require_header("authorization", TOKEN);
    let url = a.grpc_url();
    let (mut h, _e, _bus) = harness(
        &[],
        &[
            ("workers", "4"),
            ("servers", url.as_str()),
            ("extra-headers", HEADERS),
        ],
    );
    push(&mut h, 0..10);
    pull_enriched(&mut h, 0, 10);
    let seen = a.seen_headers();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    for method in ["ServerReady", "ModelReady", "ModelMetadata", "ModelInfer"] {
        let path = format!("/inference.GRPCInferenceService/{method}");
        assert!(paths.contains(&path.as_str()), "no {method}: {paths:?}");
    }
    for (path, headers) in &seen {
        let all = |name| values(headers, name);
        assert_eq!(all("authorization"), [TOKEN], "{path}");
        assert_eq!(all("x-tag"), ["a", "b"], "{path}");
    }
}

#[test]
fn without_the_credentials_grpc_frames_fail_saying_so() {
    let _w = common::begin("without_the_credentials_grpc", 60);
    let a = TestServer::start();
    a.require_header("authorization", TOKEN);
    let url = a.grpc_url();
    let (mut h, _e, bus) = harness(&[], &[("workers", "1"), ("servers", url.as_str())]);
    push(&mut h, 0..1);
    let text = first_error_on(&bus);
    assert!(
        text.contains(&format!(
            "{url} down (server refused the credentials (Unauthenticated"
        )),
        "{text}"
    );
    assert!(text.contains("check extra-headers"), "{text}");
    assert_eq!(a.received(), 0);
}

#[test]
fn a_host_header_replaces_the_urls_host_for_rest() {
    let _w = common::begin("a_host_header_for_rest", 60);
    let a = TestServer::start();
    let (mut h, _e, _bus) = harness(
        &[&a],
        &[
            ("workers", "1"),
            ("extra-headers", "headers, host=models.example.com"),
        ],
    );
    push(&mut h, 0..2);
    pull_enriched(&mut h, 0, 2);
    let seen = a.seen_headers();
    assert!(!seen.is_empty());
    for (path, headers) in &seen {
        let hosts: Vec<_> = headers.get_all("host").iter().collect();
        assert_eq!(hosts, ["models.example.com"], "{path}");
    }
}
