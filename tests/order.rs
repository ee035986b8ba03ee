// SPDX-License-Identifier: MPL-2.0
//! Output order (docs/semantics.md, Rules: Order): input order whatever
//! the processing times; with `ordered=false`, serialized events stay
//! barriers.

mod common;

use common::{
    FRAME, Fixture, Item, MS, Mark, frame, frames, push_mixed_stream, push_ok, start, stat, stats,
};

fn check_order(props: &[(&str, &str)]) {
    let Fixture { mut h, e, rec, .. } = start(props);
    for i in 0..200 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..200);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 200, "{s}");
}

#[test]
fn order_random_delays_8_workers() {
    let _wd = common::begin("order_random_delays_8_workers", 60);
    check_order(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("seed", "7"),
        ("workers", "8"),
    ]);
}

#[test]
fn order_random_delays_1_worker() {
    let _wd = common::begin("order_random_delays_1_worker", 60);
    check_order(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("seed", "8"),
        ("workers", "1"),
    ]);
}

#[test]
fn order_passthrough() {
    let _wd = common::begin("order_passthrough", 60);
    check_order(&[("processor", "passthrough"), ("workers", "8")]);
}

#[test]
fn unordered_mode_keeps_events_as_barriers() {
    let _wd = common::begin("unordered_mode_keeps_events_as_barriers", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "8"),
        ("ordered", "false"),
    ]);
    let pushed = push_mixed_stream(&mut h, 2);
    let got = rec.until_eos();
    // Split both streams at every event: the events match one to one and
    // each run of buffers between two events holds the same frames.
    let runs = |items: &[Item<Mark>]| {
        let mut runs: Vec<(Vec<u64>, Option<Item<Mark>>)> = Vec::new();
        let mut run = Vec::new();
        for item in items {
            match item.value() {
                Some(v) => run.push(v),
                None => {
                    run.sort_unstable();
                    runs.push((std::mem::take(&mut run), Some(item.clone())));
                }
            }
        }
        run.sort_unstable();
        runs.push((run, None));
        runs
    };
    assert_eq!(runs(&got), runs(&pushed));
    // Every buffer still carries its own PTS.
    for item in &got {
        if let Item::Buffer(Mark { pts, value }) = item {
            assert_eq!(*pts, Some(FRAME * *value));
        }
    }
}
