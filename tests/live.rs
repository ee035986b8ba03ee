// SPDX-License-Identifier: MPL-2.0
//! Live overload (docs/semantics.md, Rules: Live overload): `leaky=pass`
//! lets frames through unprocessed when no worker is free, in order and
//! without holding upstream; `interval` processes every Nth frame; `qos`
//! lets late frames through. A frame let through carries no result and is
//! counted in `skipped`.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::{
    CAPS, FRAME, Fixture, Item, MS, Mark, Pipeline, Recorder, assert_increasing, buffer_with,
    custom, error_message, frame_messages, push_ok, stat, stats, time_segment,
};
use gst::prelude::*;
use gstparallel::ParallelFilter;
use tokio::sync::Semaphore;

/// What a processed frame carries: its value plus this.
const PROCESSED: u64 = 1000;

/// A 4x4 GRAY8 frame `i` carrying `i` in its first bytes.
fn frame(i: u64) -> gst::Buffer {
    let mut data = vec![0u8; 16];
    data[..8].copy_from_slice(&i.to_le_bytes());
    buffer_with(data, FRAME * i)
}

/// A `parallelfilter` whose processor waits for a permit of `gate`, then
/// adds [`PROCESSED`] to the frame's value (or fails, if `fail`).
fn gated(gate: &Arc<Semaphore>, fail: bool, props: &[(&str, &str)]) -> Fixture {
    let pf = ParallelFilter::new();
    for (name, value) in props {
        pf.set_property_from_str(name, value);
    }
    let gate = gate.clone();
    pf.set_async_processor(move |mut buffer, _ctx| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.map_err(|e| e.to_string())?.forget();
            if fail {
                return Err("refused".to_string());
            }
            {
                let b = buffer.make_mut();
                let mut map = b.map_writable().map_err(|e| e.to_string())?;
                let mut value = [0u8; 8];
                value.copy_from_slice(&map[..8]);
                let value = u64::from_le_bytes(value) + PROCESSED;
                map[..8].copy_from_slice(&value.to_le_bytes());
            }
            Ok(buffer)
        }
    });
    let mut f = Fixture::around(pf.upcast());
    f.h.set_src_caps_str(CAPS);
    let preamble = f.rec.until(|i| matches!(i, Item::Segment(_)));
    assert_eq!(preamble.len(), 3, "{preamble:?}");
    f
}

fn value(v: u64) -> Item<Mark> {
    Item::Buffer(Mark {
        pts: Some(FRAME * (v % PROCESSED)),
        value: v,
    })
}

/// The next `n` items out, waiting for each.
/// Pushes frames from `from` on, one at a time, until one comes out
/// processed; every frame before it comes out let through, in order.
fn push_until_one_is_processed(h: &mut gst_check::Harness, rec: &Recorder<Mark>, from: u64) {
    let mut i = from;
    loop {
        push_ok(h, frame(i));
        let out = rec.next();
        if out == value(PROCESSED + i) {
            return;
        }
        assert_eq!(out, value(i));
        i += 1;
    }
}

fn next(rec: &Recorder<Mark>, n: usize) -> Vec<Item<Mark>> {
    (0..n).map(|_| rec.next()).collect()
}

#[test]
fn pass_lets_frames_through_behind_the_frames_in_processing_only() {
    let _wd = common::begin("pass_behind_processing", 60);
    let gate = Arc::new(Semaphore::new(0));
    let Fixture { mut h, e, rec, .. } = gated(&gate, false, &[("workers", "2"), ("leaky", "pass")]);
    // All on the test thread: a push that blocked would hang the test.
    for i in 0..12 {
        push_ok(&mut h, frame(i));
    }
    let s = stats(&e);
    assert_eq!(stat(&s, "in-flight"), 12, "{s}");
    assert_eq!(stat(&s, "blocked-upstream"), 0, "{s}");
    assert!(rec.received().is_empty(), "nothing overtakes frame 0");
    assert!(h.push_event(gst::event::Eos::new()));
    gate.add_permits(2);
    let mut expected = vec![value(PROCESSED), value(PROCESSED + 1)];
    expected.extend((2..12).map(value));
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 12, "{s}");
    assert_eq!(stat(&s, "skipped"), 10, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
}

#[test]
fn pass_processes_again_once_a_worker_is_free() {
    let _wd = common::begin("pass_free_worker", 60);
    let gate = Arc::new(Semaphore::new(0));
    let Fixture { mut h, rec, .. } = gated(&gate, false, &[("workers", "1"), ("leaky", "pass")]);
    push_ok(&mut h, frame(0));
    push_ok(&mut h, frame(1));
    gate.add_permits(2);
    assert_eq!(next(&rec, 2), [value(PROCESSED), value(1)]);
    // The worker is free once its frame is out (and it is released):
    // some next frame is processed.
    push_until_one_is_processed(&mut h, &rec, 2);
}

#[test]
fn pass_unordered_overtakes_processing_but_never_an_event() {
    let _wd = common::begin("pass_unordered", 60);
    let gate = Arc::new(Semaphore::new(0));
    let Fixture { mut h, rec, .. } = gated(
        &gate,
        false,
        &[("workers", "1"), ("leaky", "pass"), ("ordered", "false")],
    );
    for i in 0..3 {
        push_ok(&mut h, frame(i));
    }
    assert_eq!(next(&rec, 2), [value(1), value(2)]);
    assert!(h.push_event(custom(7)));
    push_ok(&mut h, frame(3));
    assert!(rec.received().is_empty(), "frame 3 overtook the event");
    gate.add_permits(1);
    assert_eq!(next(&rec, 3), [value(PROCESSED), Item::Custom(7), value(3)]);
}

#[test]
fn pass_with_on_error_drop_and_timeout() {
    let _wd = common::begin("pass_on_error", 60);
    let gate = Arc::new(Semaphore::new(0));
    let Fixture { mut h, e, rec, .. } = gated(
        &gate,
        true,
        &[("workers", "1"), ("leaky", "pass"), ("on-error", "drop")],
    );
    for i in 0..3 {
        push_ok(&mut h, frame(i));
    }
    gate.add_permits(1);
    let gap = Item::Gap {
        pts: gst::ClockTime::ZERO,
        duration: Some(FRAME),
    };
    assert_eq!(next(&rec, 3), [gap, value(1), value(2)]);
    let s = stats(&e);
    assert_eq!(
        (stat(&s, "errors"), stat(&s, "skipped"), stat(&s, "dropped")),
        (1, 2, 1),
        "{s}"
    );

    // A processor that never finishes, a timeout and on-error=pass: the
    // frames behind wait for the timeout, then leave in order.
    let gate = Arc::new(Semaphore::new(0));
    let Fixture { mut h, e, rec, .. } = gated(
        &gate,
        false,
        &[
            ("workers", "1"),
            ("leaky", "pass"),
            ("on-error", "pass"),
            ("timeout", &(300 * MS).to_string()),
        ],
    );
    for i in 0..3 {
        push_ok(&mut h, frame(i));
    }
    // Unprocessed all: timed out (passed as it came), or let through.
    assert_eq!(next(&rec, 3), [value(0), value(1), value(2)]);
    let s = stats(&e);
    assert!(stat(&s, "timeouts") >= 1, "{s}");
    assert_eq!(stat(&s, "timeouts") + stat(&s, "skipped"), 3, "{s}");
}

#[test]
fn pass_flush_discards_let_through_frames_and_restarts() {
    let _wd = common::begin("pass_flush", 60);
    let gate = Arc::new(Semaphore::new(0));
    let Fixture { mut h, e, rec, .. } = gated(&gate, false, &[("workers", "1"), ("leaky", "pass")]);
    for i in 0..4 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    let flushed = rec.until(|i| matches!(i, Item::Segment(_)));
    assert!(!flushed.iter().any(Item::is_buffer), "{flushed:?}");
    assert_eq!(stat(&stats(&e), "dropped"), 4);
    // The flushed frame's worker is released as its future is dropped;
    // a frame let through meanwhile still leaves, in order.
    gate.add_permits(1);
    push_until_one_is_processed(&mut h, &rec, 10);
}

/// `interval=3` over frames of two caps, a flush and EOS: frames 0, 3, 6…
/// after start and after the flush carry the analysis and post a message.
#[test]
fn interval_processes_every_nth_frame_exactly() {
    let _wd = common::begin("interval_pattern", 60);
    let Fixture { mut h, e, bus, .. } = common::fixture(&[
        ("processor", "analyze"),
        ("interval", "3"),
        ("workers", "2"),
        ("post-messages", "true"),
    ]);
    let out: Recorder<common::Frame> = Recorder::attach(&e.static_pad("src").unwrap());
    h.set_src_caps_str(CAPS);
    for i in 0..5 {
        push_ok(&mut h, frame(i));
    }
    let big = "video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1";
    assert!(h.push_event(gst::event::Caps::new(&big.parse::<gst::Caps>().unwrap())));
    for i in 5..10 {
        push_ok(&mut h, buffer_with(vec![i as u8; 64], FRAME * i));
    }
    let last = Some(FRAME * 9);
    let before = out.until(|i| i.buffer().is_some_and(|f| f.pts == last));
    let before: Vec<_> = before.iter().filter_map(Item::buffer).collect();
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    out.until(|i| matches!(i, Item::Segment(_)));
    for i in 10..17 {
        push_ok(&mut h, buffer_with(vec![i as u8; 64], FRAME * i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let after = out.until_eos();
    let after: Vec<_> = after.iter().filter_map(Item::buffer).collect();
    let has_meta = |f: &&common::Frame| {
        gst::meta::CustomMeta::from_buffer(&f.buffer, "GstParallelFilterAnalysisMeta").is_ok()
    };
    // The count goes on over a caps change and restarts after a flush.
    let meta: Vec<bool> = before.iter().map(has_meta).collect();
    let pattern: Vec<bool> = (0..10).map(|i| i % 3 == 0).collect();
    assert_eq!(meta, pattern);
    let meta: Vec<bool> = after.iter().map(has_meta).collect();
    assert_eq!(meta, [true, false, false, true, false, false, true]);
    let pts: Vec<_> = after.iter().map(|f| f.pts.unwrap()).collect();
    assert_increasing(&pts);
    // Only processed frames post a message.
    let seqs: Vec<u64> = frame_messages(&bus)
        .iter()
        .map(|s| s.get::<u64>("seq").unwrap())
        .collect();
    assert_eq!(seqs, [0, 3, 6, 9, 0, 3, 6]);
    assert_eq!(stat(&stats(&e), "skipped"), 6 + 4);
}

#[test]
fn latency_is_that_of_a_processed_frame() {
    let _wd = common::begin("live_latency_unchanged", 60);
    let delay = (30 * MS).to_string();
    for props in [
        vec![("leaky", "no")],
        vec![("leaky", "pass"), ("interval", "2"), ("qos", "true")],
    ] {
        let mut all = vec![("processor", "delay"), ("delay-max", delay.as_str())];
        all.extend(props);
        let Fixture { mut h, .. } = common::fixture(&all);
        h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
        assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(40)));
    }
}

/// A live source at 30 fps into 2 workers taking 100 ms a frame (20 fps
/// at best) and a sink that syncs.
#[test]
fn pass_live_source_every_frame_in_order_latency_bounded() {
    let _wd = common::begin("pass_live", 90);
    const N: u64 = 45;
    let p = Pipeline::launch(&format!(
        "videotestsrc is-live=true num-buffers={N} ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=100000000 delay-max=100000000 workers=2 \
         leaky=pass post-messages=true ! fakesink name=sink sync=true qos=true"
    ));
    // In and out of the element, in the order they happened.
    #[derive(Clone, Copy, Debug)]
    enum Ev {
        In(gst::ClockTime),
        Out(gst::ClockTime),
    }
    let log: Arc<Mutex<Vec<Ev>>> = Arc::default();
    for (pad, out) in [("sink", false), ("src", true)] {
        let log = log.clone();
        p.pf()
            .static_pad(pad)
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    log.lock()
                        .unwrap()
                        .push(if out { Ev::Out(pts) } else { Ev::In(pts) });
                }
                gst::PadProbeReturn::Ok
            });
    }
    p.run_to_eos();
    let s = p.stats();
    assert_eq!(stat(&s, "frames-out"), N, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
    let pts = p.buffer_pts();
    assert_eq!(pts.len() as u64, N);
    assert_increasing(&pts);
    let sink = p.sink().property::<gst::Structure>("stats");
    assert_eq!(sink.get::<u64>("rendered").unwrap(), N);
    assert_eq!(sink.get::<u64>("dropped").unwrap(), 0);
    // Processed frames posted a message; the others were let through.
    let processed: HashSet<u64> = p
        .frame_messages()
        .iter()
        .map(|m| m.get::<u64>("timestamp").unwrap())
        .collect();
    let skipped = stat(&s, "skipped");
    assert_eq!(skipped + processed.len() as u64, N, "{s}");
    // 30 fps into a pool of 20 fps: some frames must be let through.
    assert!(skipped > 0, "{s}");
    // A frame let through waits only for frames in processing when it
    // came: between its entry and exit, at most `workers` processed
    // frames leave.
    let log = log.lock().unwrap().clone();
    for (i, ev) in log.iter().enumerate() {
        let Ev::In(pts) = *ev else { continue };
        if processed.contains(&pts.nseconds()) {
            continue;
        }
        let behind = log[i..]
            .iter()
            .take_while(|e| !matches!(e, Ev::Out(t) if *t == pts))
            .filter(|e| matches!(e, Ev::Out(t) if processed.contains(&t.nseconds())))
            .count();
        assert!(
            behind <= 2,
            "frame {pts} waited for {behind} processed frames"
        );
    }
    p.stop();
}

/// A sink slower than the source: frames reach it later and later, its
/// QoS events say so, and the element lets late frames through (posting
/// a QoS message for each) instead of processing them.
#[test]
fn qos_lets_late_frames_through_behind_a_slow_sink() {
    let _wd = common::begin("qos_slow_sink", 120);
    const N: u64 = 90;
    let p = Pipeline::launch(&format!(
        "videotestsrc is-live=true num-buffers={N} ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=50000000 delay-max=50000000 workers=2 \
         qos=true post-messages=true ! identity sleep-time=45000 ! \
         fakesink name=sink sync=true qos=true"
    ));
    p.run_to_eos();
    let s = p.stats();
    assert_eq!(stat(&s, "frames-out"), N, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
    assert_increasing(&p.buffer_pts());
    let skipped = stat(&s, "skipped");
    assert!(skipped > 0, "nothing skipped: {s}");
    assert_eq!(skipped + p.frame_messages().len() as u64, N, "{s}");
    // One QoS message per late frame, counting up.
    let ours: Vec<_> = p
        .qos_messages()
        .into_iter()
        .filter(|(src, _, _)| src == "pf")
        .collect();
    assert_eq!(ours.len() as u64, skipped);
    for (i, (_, processed, dropped)) in ours.iter().enumerate() {
        assert_eq!(*dropped, i as u64 + 1);
        assert!(*processed <= N - skipped);
    }
    p.stop();
}

#[test]
fn qos_off_processes_every_frame_behind_a_slow_sink() {
    let _wd = common::begin("qos_off", 120);
    const N: u64 = 30;
    let p = Pipeline::launch(&format!(
        "videotestsrc is-live=true num-buffers={N} ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=50000000 delay-max=50000000 workers=2 \
         post-messages=true ! identity sleep-time=45000 ! fakesink name=sink sync=true qos=true"
    ));
    p.run_to_eos();
    let s = p.stats();
    assert_eq!(stat(&s, "skipped"), 0, "{s}");
    assert_eq!(p.frame_messages().len() as u64, N);
    assert!(!p.qos_messages().iter().any(|(src, _, _)| src == "pf"));
    p.stop();
}

#[test]
fn pass_with_a_processor_that_fails_stops_with_an_error() {
    let _wd = common::begin("pass_fail", 60);
    let gate = Arc::new(Semaphore::new(0));
    let Fixture {
        mut h, bus, rec, ..
    } = gated(&gate, true, &[("workers", "1"), ("leaky", "pass")]);
    for i in 0..3 {
        push_ok(&mut h, frame(i));
    }
    gate.add_permits(1);
    let (err, _) = error_message(&bus);
    assert!(err.message().contains("frame #0"), "{err}");
    // Nothing after the failed frame leaves.
    assert!(!rec.received().iter().any(Item::is_buffer));
}
