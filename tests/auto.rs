// SPDX-License-Identifier: MPL-2.0
//! Automatic workers (`workers=0`, docs/performance.md#automatic-workers):
//! the count grows on latency-bound work, and an explicit count is exact.

mod common;

use std::time::Instant;

use common::{Fixture, MS, frame, push_ok, start, stat, stats};

#[test]
fn automatic_workers_grow_on_latency_bound_work_and_every_frame_leaves() {
    let _wd = common::begin("automatic_workers_grow", 120);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(20 * MS).to_string()),
        ("delay-max", &(20 * MS).to_string()),
        ("workers", "0"),
        ("max-workers", "64"),
    ]);
    let initial = stat(&stats(&e), "workers");
    assert!(initial >= 1, "starts at the CPUs available");
    // Upstream blocks on the admission bound, so frames keep waiting for
    // workers until the count grows; bounded by the watchdog.
    let mut pushed = 0;
    let started = Instant::now();
    while stat(&stats(&e), "workers") < 32 {
        push_ok(&mut h, frame(pushed));
        pushed += 1;
        assert!(
            started.elapsed() < common::WAIT,
            "workers still {} after {pushed} frames",
            stat(&stats(&e), "workers")
        );
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), pushed, "{s}");
    assert!(stat(&s, "workers") <= 64, "{s}");
    assert!(
        stat(&s, "max-in-flight") > 2 * initial,
        "the bound followed: {s}"
    );
}

#[test]
fn an_explicit_worker_count_is_exact() {
    let _wd = common::begin("an_explicit_worker_count_is_exact", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(5 * MS).to_string()),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "3"),
    ]);
    for i in 0..200 {
        push_ok(&mut h, frame(i));
        assert_eq!(stat(&stats(&e), "workers"), 3);
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 200, "{s}");
    assert!(stat(&s, "max-in-flight") <= 6, "{s}");
}
