// SPDX-License-Identifier: MPL-2.0
//! Automatic workers (`workers=0`, docs/performance.md#automatic-workers):
//! the count grows on latency-bound work, shrinks when the load drops,
//! stays near the cores on CPU-bound work, and order and events hold while
//! it changes; an explicit count is exact.

mod common;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use common::{
    Fixture, Item, MS, Mark, Pipeline, Rng, assert_increasing, buffer, custom, frame, frame_item,
    frames, push_ok, start, stat, stats, time_segment,
};
use gst::prelude::*;

/// The controller measures processing times: tests of it run one at a
/// time so they do not load the CPUs under each other.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pushes frames from `from` on until the count reaches `target`; returns
/// the next frame number. Upstream blocks on the admission bound, so frames
/// wait for workers until the count grows.
fn grow(h: &mut gst_check::Harness, e: &gst::Element, target: u64, from: u64) -> u64 {
    let started = Instant::now();
    let mut next = from;
    while stat(&stats(e), "workers") < target {
        push_ok(h, frame(next));
        next += 1;
        assert!(
            started.elapsed() < common::WAIT,
            "workers still {} after {} frames",
            stat(&stats(e), "workers"),
            next - from
        );
    }
    next
}

#[test]
fn automatic_workers_grow_on_latency_bound_work_and_every_frame_leaves() {
    let _serial = serial();
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
    // The latency a frame adds does not depend on how many run at once.
    let latency = |h: &mut gst_check::Harness| {
        let mut q = gst::query::Latency::new();
        assert!(h.sinkpad().unwrap().peer_query(&mut q));
        q.result().1
    };
    assert_eq!(latency(&mut h), gst::ClockTime::from_mseconds(20));
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
    assert_eq!(latency(&mut h), gst::ClockTime::from_mseconds(20));
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
    let _serial = serial();
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

#[test]
fn automatic_workers_shrink_when_the_load_drops() {
    let _serial = serial();
    let _wd = common::begin("automatic_workers_shrink", 120);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(20 * MS).to_string()),
        ("delay-max", &(20 * MS).to_string()),
        ("max-workers", "64"),
    ]);
    let mut next = grow(&mut h, &e, 16, 0);
    assert_eq!(rec.until(|i| *i == frame_item(next - 1)), frames(0..next));
    // One frame at a time now: at most one worker is ever busy.
    let started = Instant::now();
    while stat(&stats(&e), "workers") > 4 {
        push_ok(&mut h, frame(next));
        assert_eq!(rec.next(), frame_item(next));
        next += 1;
        assert!(
            started.elapsed() < common::WAIT,
            "still {} workers",
            stat(&stats(&e), "workers")
        );
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(rec.until_eos(), vec![Item::Eos]);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), next, "{s}");
    assert_eq!(stat(&s, "in-flight"), 0, "{s}");
}

/// Rounds alternate bursts (the count grows) and frames one at a time
/// (it shrinks), with custom events among the frames; each round ends with
/// a flush that catches frames in processing, the last with EOS.
#[test]
fn order_and_events_hold_while_the_count_grows_and_shrinks() {
    let _serial = serial();
    let _wd = common::begin("order_and_events_while_the_count_changes", 180);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(5 * MS).to_string()),
        ("delay-max", &(15 * MS).to_string()),
        ("max-workers", "64"),
    ]);
    const ROUNDS: u64 = 6;
    let mut rng = Rng(11);
    let mut pushed: Vec<Vec<Item<Mark>>> = Vec::new();
    let mut counts = vec![stat(&stats(&e), "workers")];
    for round in 0..ROUNDS {
        let burst = round % 2 == 0;
        let mut items = Vec::new();
        for i in 0..if burst { 300 } else { 60 } {
            if rng.below(8) == 0 {
                let event = custom(round * 1000 + i);
                items.push(Item::of_event(&event));
                assert!(h.push_event(event));
            }
            let value = round * 1000 + i;
            items.push(Item::Buffer(Mark {
                pts: Some(common::FRAME * i),
                value,
            }));
            push_ok(&mut h, buffer(value, common::FRAME * i));
            if !burst {
                rec.until(|item| item.value() == Some(value));
            }
            counts.push(stat(&stats(&e), "workers"));
        }
        pushed.push(items);
        if round + 1 < ROUNDS {
            assert!(h.push_event(gst::event::FlushStart::new()));
            assert!(h.push_event(gst::event::FlushStop::new(true)));
            assert!(h.push_event(gst::event::Segment::new(&time_segment())));
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();

    // Between flushes, a prefix of the round's items, in order; the last
    // round whole.
    let mut got: Vec<Vec<Item<Mark>>> = vec![Vec::new()];
    for item in rec.all() {
        match item {
            Item::FlushStop => got.push(Vec::new()),
            Item::FlushStart | Item::Segment(_) | Item::Eos | Item::StreamStart => {}
            Item::Caps(_) => {}
            other => got.last_mut().unwrap().push(other),
        }
    }
    assert_eq!(got.len() as u64, ROUNDS, "one flush per round");
    for (round, (got, pushed)) in got.iter().zip(&pushed).enumerate() {
        assert!(
            pushed.starts_with(got),
            "round {round}: {got:?} is not a prefix of {pushed:?}"
        );
    }
    assert_eq!(got.last(), pushed.last(), "the last round is whole");
    // The count changed both ways while this went on.
    let grew = counts.windows(2).any(|w| w[1] > w[0]);
    let shrank = counts.windows(2).any(|w| w[1] < w[0]);
    assert!(grew && shrank, "counts seen: {counts:?}");
}

/// PAUSED and back, READY and back, while the count grows: frames keep
/// their order and the count starts again from the CPUs after READY.
#[test]
fn state_changes_while_the_count_grows() {
    let _serial = serial();
    let _wd = common::begin("state_changes_while_the_count_grows", 180);
    let p = Pipeline::launch(
        "videotestsrc ! video/x-raw,width=16,height=16,framerate=1000/1 ! \
         parallelfilter name=pf processor=delay delay-min=10000000 delay-max=10000000 \
         max-workers=64 ! fakesink name=sink sync=false",
    );
    let initial = stat(&p.stats(), "workers");
    let set = |state: gst::State| {
        p.pipeline.set_state(state).unwrap();
        let (result, now, _) = p.pipeline.state(common::RUN_WAIT);
        assert_eq!((result, now), (Ok(gst::StateChangeSuccess::Success), state));
    };
    for cycle in 0..3 {
        // Prerolled: the count is where a new start puts it.
        set(gst::State::Paused);
        assert_eq!(stat(&p.stats(), "workers"), initial, "cycle {cycle}");
        set(gst::State::Playing);
        common::wait_until("growth", || stat(&p.stats(), "workers") >= 8);
        set(gst::State::Paused);
        set(gst::State::Playing);
        common::wait_until("growth after PAUSED", || stat(&p.stats(), "workers") >= 16);
        set(gst::State::Ready);
        assert_increasing(&p.buffer_pts());
        assert!(p.frames().len() > 16, "cycle {cycle}");
        p.rec().clear();
    }
}

/// CPU-bound work: more workers than cores only make frames wait for a
/// core, and the controller sees it in the processing time.
#[test]
fn cpu_bound_work_stays_near_the_cores() {
    let _serial = serial();
    let _wd = common::begin("cpu_bound_work_stays_near_the_cores", 180);
    let p = Pipeline::launch(
        "videotestsrc num-buffers=1 pattern=snow ! \
         video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! \
         imagefreeze num-buffers=400 ! \
         parallelfilter name=pf processor=analyze max-workers=64 ! fakesink name=sink sync=false",
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (pf, s) = (p.pf().clone(), seen.clone());
    p.pf()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let workers = stat(&pf.property::<gst::Structure>("stats"), "workers");
            s.lock().unwrap().push(workers);
            gst::PadProbeReturn::Ok
        });
    p.run_to_eos();
    assert_eq!(p.frames().len(), 400);
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    let (median, max) = (seen[seen.len() / 2], seen[seen.len() - 1]);
    // A load change outside the test (other processes) can make one
    // probe look like it paid: a brief excursion, undone within a window.
    assert!(
        median <= cores + 2 && max <= 8 * cores,
        "{cores} cores, median {median}, max {max}: {seen:?}"
    );
}

/// With `leaky=pass`, frames let through for want of a free worker are
/// demand: the count grows so that more of them are processed.
#[test]
fn automatic_workers_grow_under_leaky_pass() {
    let _serial = serial();
    let _wd = common::begin("automatic_workers_grow_under_leaky_pass", 120);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(20 * MS).to_string()),
        ("delay-max", &(20 * MS).to_string()),
        ("leaky", "pass"),
        ("max-workers", "64"),
    ]);
    let pushed = grow(&mut h, &e, 8, 0);
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..pushed);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), pushed, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
    assert!(stat(&s, "skipped") > 0, "{s}");
}
