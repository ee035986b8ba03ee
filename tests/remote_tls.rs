// SPDX-License-Identifier: MPL-2.0
//! `processor=remote` with `https://` servers: frames enriched over TLS
//! with the test's CA in `tls-ca-file`; a certificate the element refuses
//! (unknown issuer, wrong name, expired) or a plain port is a bus error
//! naming the URL and the reason, and frames fail with it; an unreadable,
//! empty or garbage `tls-ca-file` fails the start naming the file; http
//! and https servers in one list.
//!
//! Tests wait on what the element or the servers did, never on time; the
//! watchdog bounds each one.

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;
#[path = "common/remote.rs"]
mod remote_kit;

use std::time::Duration;

use common::element;
use gst::prelude::*;
use oip_server::{MODEL, TempFile, TestCa, TestCert, TestServer};
use remote_kit::*;

/// Names a certificate for the test servers must hold.
const HOSTS: &[&str] = &["localhost", "127.0.0.1"];

#[test]
fn https_frames_are_enriched_in_order() {
    let _w = common::begin("https_frames_are_enriched_in_order", 60);
    let ca = TestCa::new("parallelfilter test CA");
    let s = TestServer::start_tls(&ca.leaf(HOSTS));
    assert!(s.url().starts_with("https://"));
    let ca_file = ca.pem_file();
    let (mut h, e, bus) = harness(
        &[&s],
        &[("workers", "4"), ("tls-ca-file", ca_file.path_str())],
    );
    push(&mut h, 0..30);
    let results = pull_enriched(&mut h, 0, 30);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.server, s.url());
        assert_eq!(r.id, i as i64);
        assert_eq!(r.attempts, 1);
    }
    assert_eq!(s.answered(), 30);
    assert!(servers_stats(&e)[0].get::<bool>("up").unwrap());
    // Nothing to complain about.
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning])
            .is_none()
    );
}

/// A server presenting `cert`, with `trusted`'s CA in `tls-ca-file`: the
/// bus error names the URL and contains `reason`, and a frame then fails
/// naming the URL and the reason too.
fn refused(cert: &TestCert, trusted: &TestCa, reason: &str) {
    let s = TestServer::start_tls(cert);
    refused_by(&s, &s.url(), Some(trusted), reason);
}

fn refused_by(s: &TestServer, url: &str, trusted: Option<&TestCa>, reason: &str) {
    let ca_file = trusted.map(TestCa::pem_file);
    let mut props = vec![("workers", "1"), ("servers", url)];
    if let Some(f) = &ca_file {
        props.push(("tls-ca-file", f.path_str()));
    }
    let (mut h, e, bus) = harness(&[], &props);
    let text = first_error_on(&bus);
    assert!(
        text.contains(&format!("Secure connection to {url} failed: ")),
        "{text}"
    );
    assert!(text.contains(reason), "{text}");
    // The server is down with that reason: the frame fails with it.
    push(&mut h, 0..1);
    let text = first_error_on(&bus);
    assert!(text.contains(&format!("{url} down (")), "{text}");
    assert!(text.contains(reason), "{text}");
    assert_eq!(s.received(), 0);
    assert!(!servers_stats(&e)[0].get::<bool>("up").unwrap());
    // Posted once per server and run, though the probes go on.
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
}

#[test]
fn unknown_issuer_is_a_bus_error_naming_the_url() {
    let _w = common::begin("unknown_issuer_is_a_bus_error_naming_the_url", 60);
    let (trusted, other) = (TestCa::new("trusted CA"), TestCa::new("untrusted CA"));
    refused(
        &other.leaf(HOSTS),
        &trusted,
        "not trusted (unknown issuer): add its CA to tls-ca-file",
    );
}

#[test]
fn wrong_host_name_is_a_bus_error_naming_the_url() {
    let _w = common::begin("wrong_host_name_is_a_bus_error_naming_the_url", 60);
    let ca = TestCa::new("trusted CA");
    refused(
        &ca.leaf(&["other.invalid"]),
        &ca,
        "certificate not valid for name \"127.0.0.1\"",
    );
}

#[test]
fn expired_certificate_is_a_bus_error_naming_the_url() {
    let _w = common::begin("expired_certificate_is_a_bus_error_naming_the_url", 60);
    let ca = TestCa::new("trusted CA");
    refused(&ca.expired_leaf(HOSTS), &ca, "certificate expired");
}

#[test]
fn https_to_a_plain_port_asks_whether_it_is_a_tls_port() {
    let _w = common::begin("https_to_a_plain_port", 60);
    let plain = TestServer::start();
    let ca = TestCa::new("trusted CA");
    refused_by(&plain, &plain.https_url(), Some(&ca), "is it a TLS port?");
}

/// Starting with `tls-ca-file` = `file` and an https server fails; the
/// error names the file and contains `reason`.
fn start_fails(file: &str, reason: &str) {
    let e = element(&[
        ("processor", "remote"),
        ("servers", "https://127.0.0.1:1"),
        ("model", MODEL),
        ("tls-ca-file", file),
    ]);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    assert!(e.set_state(gst::State::Paused).is_err());
    let text = first_error_on(&bus);
    assert!(text.contains(&format!("tls-ca-file '{file}'")), "{text}");
    assert!(text.contains(reason), "{text}");
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn unreadable_empty_or_garbage_ca_files_fail_the_start() {
    let _w = common::begin("unreadable_empty_or_garbage_ca_files", 60);
    let dir =
        std::env::temp_dir().join(format!("parallelfilter-no-such-dir-{}", std::process::id()));
    let missing = dir.join("ca.pem");
    start_fails(missing.to_str().unwrap(), "No such file or directory");
    let empty = TempFile::new("empty.pem", b"");
    start_fails(empty.path_str(), "holds no PEM certificate");
    let text = TempFile::new("text.pem", b"this is not a certificate\n");
    start_fails(text.path_str(), "holds no PEM certificate");
    let bad_base64 = TempFile::new(
        "base64.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    start_fails(bad_base64.path_str(), "is not valid PEM");
    let not_der = TempFile::new(
        "der.pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    start_fails(
        not_der.path_str(),
        "certificate 1 is not a usable CA certificate",
    );
}

#[test]
fn a_ca_file_without_https_servers_is_a_warning() {
    let _w = common::begin("a_ca_file_without_https_servers_is_a_warning", 60);
    let a = TestServer::start();
    let ca_file = TempFile::new("unused.pem", b"never read");
    let (mut h, _e, bus) = harness(&[&a], &[("tls-ca-file", ca_file.path_str())]);
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Warning],
        )
        .expect("no warning");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    assert!(
        w.error()
            .message()
            .contains(&format!("tls-ca-file '{}' is not used", ca_file.path_str())),
        "{}",
        w.error()
    );
    // Not read: the frames go through.
    push(&mut h, 0..3);
    pull_enriched(&mut h, 0, 3);
}

#[test]
fn http_and_https_servers_in_one_list() {
    let _w = common::begin("http_and_https_servers_in_one_list", 60);
    let ca = TestCa::new("trusted CA");
    let (a, b) = (TestServer::start(), TestServer::start_tls(&ca.leaf(HOSTS)));
    // Latency on A makes the balancer spread the load.
    a.set_latency(Duration::from_millis(5));
    let ca_file = ca.pem_file();
    let (mut h, e, _bus) = harness(
        &[&a, &b],
        &[("workers", "8"), ("tls-ca-file", ca_file.path_str())],
    );
    wait_up(&e, 2);
    push(&mut h, 0..60);
    let results = pull_enriched(&mut h, 0, 60);
    assert!(
        results
            .iter()
            .all(|r| r.server == a.url() || r.server == b.url())
    );
    assert_eq!(a.answered() + b.answered(), 60);
    assert!(
        a.answered() > 0 && b.answered() > 0,
        "{} {}",
        a.answered(),
        b.answered()
    );
    // B stops: frames fail over to A.
    b.stop();
    push(&mut h, 60..70);
    let results = pull_enriched(&mut h, 60, 10);
    assert!(results.iter().all(|r| r.server == a.url()));
}

#[test]
fn grpcs_frames_are_enriched_in_order() {
    let _w = common::begin("grpcs_frames_are_enriched_in_order", 60);
    let ca = TestCa::new("parallelfilter test CA");
    let s = TestServer::start_tls(&ca.leaf(HOSTS));
    let url = s.grpc_url();
    assert!(url.starts_with("grpcs://"));
    let ca_file = ca.pem_file();
    let (mut h, _e, bus) = harness(
        &[],
        &[
            ("workers", "4"),
            ("servers", url.as_str()),
            ("tls-ca-file", ca_file.path_str()),
        ],
    );
    push(&mut h, 0..30);
    let results = pull_enriched(&mut h, 0, 30);
    assert!(results.iter().all(|r| r.server == url), "{results:?}");
    assert_eq!(s.answered(), 30);
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning])
            .is_none()
    );
}

#[test]
fn grpcs_with_an_untrusted_certificate_is_a_bus_error_naming_the_url() {
    let _w = common::begin("grpcs_untrusted", 60);
    let (trusted, other) = (TestCa::new("trusted CA"), TestCa::new("untrusted CA"));
    let s = TestServer::start_tls(&other.leaf(HOSTS));
    refused_by(
        &s,
        &s.grpc_url(),
        Some(&trusted),
        "not trusted (unknown issuer): add its CA to tls-ca-file",
    );
}
