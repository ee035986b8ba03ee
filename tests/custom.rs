// SPDX-License-Identifier: MPL-2.0
//! `processor=custom`: the Rust API (sync and async closures), the
//! `process-frame` signal, errors and panics per on-error, order under
//! random per-frame costs, flushes cancelling pending futures, and the
//! error when no processor is set.
//!
//! Processors write a marker (1000 + seq) into each frame's first bytes;
//! outputs are recorded by a probe on the sink and checked against it.
//! Tests wait on the bus, channels or barriers, never on time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use common::{Fixture, Item, Pipeline, WAIT, hash};
use gst::prelude::*;
use gst_video::prelude::*;
use gstparallel::ParallelFilter;
use gstparallel::parallelfilter::{CustomProcessor, FrameContext};

const MARK: u64 = 1000;
/// PTS of frame `i` of videotestsrc at 30 fps.
fn pts(i: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(i * 1_000_000_000 / 30)
}
const CAPS: &str = "video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1";

fn mark(buffer: &mut gst::BufferRef, seq: u64) -> Result<(), String> {
    let mut map = buffer.map_writable().map_err(|e| e.to_string())?;
    map[..8].copy_from_slice(&(MARK + seq).to_le_bytes());
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Out {
    /// A buffer: its PTS and marker (seq if processed).
    Buffer(gst::ClockTime, Option<u64>),
    Gap(gst::ClockTime),
}

struct Run {
    p: Pipeline,
    pf: ParallelFilter,
}

/// `videotestsrc num-buffers=n` of 8x8 GRAY8 frames into a
/// `parallelfilter` with `props`, recorded at the sink.
fn run(n: u32, props: &str) -> Run {
    let p = Pipeline::launch(&format!(
        "videotestsrc num-buffers={n} pattern=black ! {CAPS} ! \
         parallelfilter name=pf {props} ! fakesink name=sink"
    ));
    let pf = p.pf().clone().downcast::<ParallelFilter>().unwrap();
    Run { p, pf }
}

impl Run {
    /// Plays to EOS or an error; returns the error text (message and debug).
    fn play(&self) -> Option<String> {
        self.play_with_warnings().0
    }

    /// [`Run::play`], and the text of the warnings posted meanwhile.
    fn play_with_warnings(&self) -> (Option<String>, Vec<String>) {
        self.p.take_warnings();
        self.p.play();
        let err = self
            .p
            .wait_end()
            .map(|e| format!("{} / {:?}", e.error, e.debug));
        self.p.stop();
        (err, self.p.take_warnings())
    }

    /// Buffers and GAPs that reached the sink.
    fn out(&self) -> Vec<Out> {
        self.p
            .records()
            .into_iter()
            .filter_map(|item| match item {
                Item::Buffer(f) => {
                    let m = u64::from_le_bytes(f.data[..8].try_into().unwrap());
                    let seq = m.checked_sub(MARK).filter(|s| *s < 1_000_000);
                    Some(Out::Buffer(f.pts.unwrap(), seq))
                }
                Item::Gap { pts, .. } => Some(Out::Gap(pts)),
                _ => None,
            })
            .collect()
    }
}

fn processed(range: impl Iterator<Item = u64>) -> Vec<Out> {
    range.map(|i| Out::Buffer(pts(i), Some(i))).collect()
}

#[test]
fn sync_closure_keeps_order_with_random_costs() {
    let _wd = common::begin("sync_order", 60);
    let r = run(60, "workers=4");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    r.pf.set_processor(move |buffer, ctx| {
        // Stands for 0-3 ms of CPU work.
        std::thread::sleep(Duration::from_micros(hash(ctx.seq()) % 3000));
        assert_eq!(ctx.pts(), buffer.pts());
        s.lock().unwrap().push(ctx.clone());
        mark(buffer, ctx.seq())
    });
    assert_eq!(
        r.pf.property_value("processor")
            .get::<gstparallel::parallelfilter::ProcessorKind>()
            .unwrap(),
        gstparallel::parallelfilter::ProcessorKind::Custom
    );
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..60));
    let seen: Vec<FrameContext> = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 60);
    for ctx in &seen {
        assert!(ctx.worker() < 4);
        assert_eq!(ctx.pts(), Some(pts(ctx.seq())));
        assert_eq!(ctx.duration(), Some(pts(ctx.seq() + 1) - pts(ctx.seq())));
        assert_eq!(ctx.running_time(), ctx.pts());
        assert_eq!(ctx.info().format(), gst_video::VideoFormat::Gray8);
        assert_eq!((ctx.info().width(), ctx.info().height()), (8, 8));
        assert!(ctx.previous().is_none());
    }
}

#[test]
fn async_closure_keeps_order_with_random_costs() {
    let _wd = common::begin("async_order", 60);
    let r = run(60, "workers=8");
    r.pf.set_async_processor(|mut buffer, ctx| async move {
        tokio::time::sleep(Duration::from_micros(hash(ctx.seq()) % 20_000)).await;
        mark(buffer.make_mut(), ctx.seq())?;
        Ok::<_, String>(buffer)
    });
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..60));
}

/// Lets `parties` callers through together; the wait is bounded so that a
/// pool that cannot run them all at once fails instead of hanging.
struct Rendezvous {
    parties: usize,
    arrived: Mutex<usize>,
    cond: Condvar,
}

impl Rendezvous {
    fn new(parties: usize) -> Arc<Self> {
        Arc::new(Rendezvous {
            parties,
            arrived: Mutex::new(0),
            cond: Condvar::new(),
        })
    }

    fn wait(&self) -> Result<(), String> {
        let mut n = self.arrived.lock().unwrap();
        *n += 1;
        self.cond.notify_all();
        let (n, _) = self
            .cond
            .wait_timeout_while(n, WAIT, |n| *n < self.parties)
            .unwrap();
        if *n < self.parties {
            return Err(format!("only {} of {} ran at once", *n, self.parties));
        }
        Ok(())
    }
}

/// More workers than the runtime ever has async threads (at most 8): the
/// closures can only meet if they run on the blocking pool.
const PARALLEL: u32 = 10;

#[test]
fn sync_closures_run_in_parallel_off_the_async_threads() {
    let _wd = common::begin("sync_parallel", 60);
    let r = run(PARALLEL, &format!("workers={PARALLEL}"));
    let all = Rendezvous::new(PARALLEL as usize);
    r.pf.set_processor(move |buffer, ctx| {
        all.wait()?;
        mark(buffer, ctx.seq())
    });
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..PARALLEL as u64));
}

#[test]
fn async_closures_wait_concurrently() {
    let _wd = common::begin("async_concurrent", 60);
    const N: usize = 32;
    let r = run(N as u32, &format!("workers={N}"));
    let all = Arc::new(tokio::sync::Barrier::new(N));
    r.pf.set_async_processor(move |mut buffer, ctx| {
        let all = all.clone();
        async move {
            tokio::time::timeout(WAIT, all.wait())
                .await
                .map_err(|_| "the futures did not all wait at once".to_string())?;
            mark(buffer.make_mut(), ctx.seq())?;
            Ok::<_, String>(buffer)
        }
    });
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..N as u64));
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Err,
    Panic,
}

fn faulty(kind: &str, fault: Fault) -> CustomProcessor {
    fn check(seq: u64, fault: Fault) -> Result<(), String> {
        if seq != 3 {
            return Ok(());
        }
        match fault {
            Fault::Err => Err("frame 3 is bad".to_string()),
            Fault::Panic => panic!("frame 3 panicked"),
        }
    }
    match kind {
        "sync" => CustomProcessor::new(move |buffer, ctx| {
            check(ctx.seq(), fault)?;
            mark(buffer, ctx.seq())
        }),
        _ => CustomProcessor::new_async(move |mut buffer, ctx| async move {
            tokio::task::yield_now().await;
            check(ctx.seq(), fault)?;
            mark(buffer.make_mut(), ctx.seq())?;
            Ok::<_, String>(buffer)
        }),
    }
}

#[test]
fn errors_and_panics_follow_on_error() {
    let _wd = common::begin("on_error", 120);
    for kind in ["sync", "async"] {
        for fault in [Fault::Err, Fault::Panic] {
            let cause = match fault {
                Fault::Err => "frame 3 is bad",
                Fault::Panic => "frame 3 panicked",
            };
            let case = format!("{kind} {fault:?}");

            let r = run(8, "workers=4 on-error=fail");
            r.pf.set_custom_processor(faulty(kind, fault));
            let err = r.play().unwrap_or_else(|| panic!("{case}: no error"));
            assert!(err.contains("frame #3"), "{case}: {err}");
            assert!(err.contains(cause), "{case}: {err}");
            let out = r.out();
            assert_eq!(out, processed(0..out.len() as u64), "{case}");
            assert!(out.len() <= 3, "{case}: {out:?}");

            let r = run(8, "workers=4 on-error=drop");
            r.pf.set_custom_processor(faulty(kind, fault));
            assert_eq!(r.play(), None, "{case}");
            let mut expected = processed(0..3);
            expected.push(Out::Gap(pts(3)));
            expected.extend(processed(4..8));
            assert_eq!(r.out(), expected, "{case}");

            let r = run(8, "workers=4 on-error=pass");
            r.pf.set_custom_processor(faulty(kind, fault));
            assert_eq!(r.play(), None, "{case}");
            let mut expected = processed(0..3);
            expected.push(Out::Buffer(pts(3), None));
            expected.extend(processed(4..8));
            assert_eq!(r.out(), expected, "{case}");
        }
    }
}

/// Sends its id when dropped.
struct DropGuard(u64, mpsc::Sender<u64>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

#[test]
fn flush_cancels_pending_futures() {
    let _wd = common::begin("flush_cancels", 60);
    const N: u64 = 4;
    let pf = ParallelFilter::new();
    pf.set_property("workers", N as u32);
    let (started_tx, started) = mpsc::channel();
    let (dropped_tx, dropped) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let dropped_tx = Mutex::new(dropped_tx);
    pf.set_async_processor(move |buffer, ctx| {
        let guard = DropGuard(ctx.seq(), dropped_tx.lock().unwrap().clone());
        let started = started_tx.lock().unwrap().clone();
        async move {
            let _guard = guard;
            let _ = started.send(ctx.seq());
            // Never completes unless dropped.
            futures::future::pending::<()>().await;
            Ok::<_, String>(buffer)
        }
    });
    let Fixture { mut h, e, .. } = Fixture::around(pf.upcast());
    h.set_src_caps_str(CAPS);
    for i in 0..N {
        let mut buffer = gst::Buffer::with_size(64).unwrap();
        buffer.get_mut().unwrap().set_pts(pts(i));
        assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));
    }
    let mut ids: Vec<u64> = (0..N)
        .map(|_| started.recv_timeout(WAIT).unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..N).collect::<Vec<_>>());
    assert!(
        dropped.try_recv().is_err(),
        "a future ended before the flush"
    );

    assert!(h.push_event(gst::event::FlushStart::new()));
    let mut ids: Vec<u64> = (0..N)
        .map(|_| dropped.recv_timeout(WAIT).unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..N).collect::<Vec<_>>());
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames-out").unwrap(), 0);
    assert_eq!(stats.get::<u64>("dropped").unwrap(), N);
    // Nothing came out but events.
    while let Some(ev) = h.try_pull_event() {
        assert!(!matches!(ev.view(), gst::EventView::Gap(_)));
    }
    assert!(h.try_pull().is_none());
}

/// The element's `process-frame` handler writing the marker, as a C
/// handler would: through the buffer pointer it is given.
fn connect_marking_handler(
    pf: &ParallelFilter,
    fail_at: Option<u64>,
    writable: Arc<AtomicUsize>,
    rendezvous: Option<Arc<Rendezvous>>,
) {
    pf.connect("process-frame", false, move |args| {
        let buffer = args[1].get::<&gst::BufferRef>().unwrap();
        let seq = args[2].get::<u64>().unwrap();
        // SAFETY: a valid buffer for the handler's duration.
        if unsafe { gst::ffi::gst_mini_object_is_writable(buffer.as_ptr() as *const _) } != 0 {
            writable.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(r) = &rendezvous
            && r.wait().is_err()
        {
            return Some(false.to_value());
        }
        if Some(seq) == fail_at {
            return Some(false.to_value());
        }
        // SAFETY: the element hands the buffer over writable (checked
        // above: it is the only reference) for the handler's duration.
        let buffer = unsafe { gst::BufferRef::from_mut_ptr(buffer.as_ptr() as *mut _) };
        Some(mark(buffer, seq).is_ok().to_value())
    });
}

#[test]
fn signal_handler_is_the_processor() {
    let _wd = common::begin("signal", 60);
    let r = run(30, "processor=custom workers=4");
    let writable = Arc::new(AtomicUsize::new(0));
    connect_marking_handler(&r.pf, None, writable.clone(), None);
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..30));
    assert_eq!(writable.load(Ordering::SeqCst), 30);
}

#[test]
fn signal_handlers_run_concurrently() {
    let _wd = common::begin("signal_concurrent", 60);
    let r = run(PARALLEL, &format!("processor=custom workers={PARALLEL}"));
    let writable = Arc::new(AtomicUsize::new(0));
    connect_marking_handler(
        &r.pf,
        None,
        writable,
        Some(Rendezvous::new(PARALLEL as usize)),
    );
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..PARALLEL as u64));
}

#[test]
fn signal_handler_returning_false_is_a_processing_error() {
    let _wd = common::begin("signal_false", 60);
    let r = run(8, "processor=custom workers=2 on-error=fail");
    connect_marking_handler(&r.pf, Some(2), Arc::new(AtomicUsize::new(0)), None);
    let err = r.play().expect("no error");
    assert!(err.contains("frame #2"), "{err}");
    assert!(err.contains("returned FALSE"), "{err}");

    let r = run(8, "processor=custom workers=2 on-error=drop");
    connect_marking_handler(&r.pf, Some(2), Arc::new(AtomicUsize::new(0)), None);
    assert_eq!(r.play(), None);
    let mut expected = processed(0..2);
    expected.push(Out::Gap(pts(2)));
    expected.extend(processed(3..8));
    assert_eq!(r.out(), expected);
}

#[test]
fn a_connected_handler_selects_custom_unless_a_processor_was_set() {
    let _wd = common::begin("handler_selects_custom", 60);
    // processor never set: the handler is the processor.
    let r = run(30, "workers=4");
    let calls = Arc::new(AtomicUsize::new(0));
    connect_marking_handler(&r.pf, None, calls.clone(), None);
    assert_eq!(r.play_with_warnings(), (None, vec![]));
    assert_eq!(r.out(), processed(0..30));
    assert_eq!(calls.load(Ordering::SeqCst), 30);

    // Set, even to the default: the handler is not called, and a warning
    // says so.
    for processor in ["analyze", "passthrough"] {
        let r = run(10, &format!("processor={processor}"));
        let calls = Arc::new(AtomicUsize::new(0));
        connect_marking_handler(&r.pf, None, calls.clone(), None);
        let (err, warnings) = r.play_with_warnings();
        assert_eq!(err, None);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(r.out().len(), 10);
        assert_eq!(
            warnings,
            [format!(
                "process-frame handlers are connected but not called: processor={processor}"
            )]
        );
    }
}

#[test]
fn failures_name_their_cause_in_the_message_text() {
    let _wd = common::begin("failure_text", 60);
    let r = run(4, "workers=2 on-error=fail");
    r.pf.set_processor(|_, ctx| {
        if ctx.seq() == 2 {
            Err("the model server refused the connection".to_string())
        } else {
            Ok(())
        }
    });
    let err = r.play().expect("no error");
    let text = err.split(" / ").next().unwrap();
    assert!(
        text.starts_with("Processing frame #2 (pts 0:00:00.066666666) failed: ")
            && text.contains("the model server refused the connection (worker "),
        "{err}"
    );
}

#[test]
fn failures_let_through_still_reach_the_bus_at_most_once_a_second() {
    let _wd = common::begin("failure_warnings", 60);
    for (on_error, what) in [("drop", "dropping it"), ("pass", "passing it unprocessed")] {
        let r = run(50, &format!("workers=2 on-error={on_error}"));
        r.pf.set_processor(|_, ctx| Err(format!("no luck with #{}", ctx.seq())));
        let started = std::time::Instant::now();
        let (err, warnings) = r.play_with_warnings();
        let elapsed = started.elapsed();
        assert_eq!(err, None);
        assert!(
            warnings[0].starts_with("Processing frame #0 (pts 0:00:00.000000000) failed: ")
                && warnings[0].contains("no luck with #0 (worker ")
                && warnings[0].ends_with(what),
            "{warnings:?}"
        );
        // The first, then one a second at most (however slow the run).
        assert!(
            warnings.len() as u64 <= 1 + elapsed.as_secs(),
            "{} warnings in {elapsed:?}",
            warnings.len()
        );
        let stats = r.pf.property::<gst::Structure>("stats");
        assert_eq!(stats.get::<u64>("errors").unwrap(), 50);
    }
}

#[test]
fn custom_without_a_processor_fails_to_start_with_a_clear_error() {
    let _wd = common::begin("no_processor", 60);
    let r = run(5, "processor=custom");
    // Set, then cleared: back to the signal, which has no handler.
    r.pf.set_processor(|_, _| Ok::<_, String>(()));
    r.pf.clear_custom_processor();
    assert!(r.p.pipeline.set_state(gst::State::Paused).is_err());
    let msg =
        r.p.pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(WAIT.as_secs()),
                &[gst::MessageType::Error],
            )
            .expect("no error message");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert_eq!(err.src(), Some(r.pf.upcast_ref::<gst::Object>()));
    assert!(
        err.error()
            .to_string()
            .contains("processor=custom but no processor was set"),
        "{}",
        err.error()
    );
    assert!(
        err.debug().unwrap().contains("process-frame"),
        "{:?}",
        err.debug()
    );
    r.p.stop();
}

#[test]
fn a_processor_set_while_running_takes_effect_at_the_next_start() {
    let _wd = common::begin("next_start", 60);
    let r = run(6, "workers=2");
    r.pf.set_processor(|buffer, ctx| mark(buffer, ctx.seq()));
    // Set the next one from the streaming thread, while frames flow.
    let pf = r.pf.clone();
    let once = std::sync::Once::new();
    r.pf.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            once.call_once(|| pf.set_processor(|buffer, ctx| mark(buffer, 100 + ctx.seq())));
            gst::PadProbeReturn::Ok
        })
        .unwrap();
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..6));
    r.p.rec().clear();
    assert_eq!(r.play(), None);
    let second: Vec<Out> = (0..6).map(|i| Out::Buffer(pts(i), Some(100 + i))).collect();
    assert_eq!(r.out(), second);
}

#[test]
fn previous_frame_is_the_previous_input() {
    let _wd = common::begin("previous", 60);
    let r = run(20, "workers=4");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    r.pf.set_custom_processor(
        CustomProcessor::new(move |buffer, ctx| {
            let prev = ctx.previous_frame().map_err(|e| e.to_string())?;
            s.lock()
                .unwrap()
                .push((ctx.seq(), prev.map(|f| (f.buffer().pts(), f.width()))));
            mark(buffer, ctx.seq())
        })
        .with_previous_frame(),
    );
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..20));
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    seen.sort_by_key(|(seq, _)| *seq);
    for (seq, prev) in seen {
        let expected = (seq > 0).then(|| (Some(pts(seq - 1)), 8));
        assert_eq!(prev, expected, "frame {seq}");
    }
}

#[test]
fn caps_of_the_processor_drive_negotiation() {
    let _wd = common::begin("caps", 60);
    let run = Pipeline::launch(
        "videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=16,height=8 ! \
         videoconvert ! parallelfilter name=pf ! fakesink",
    );
    let p = &run.pipeline;
    let pf = run.pf().clone().downcast::<ParallelFilter>().unwrap();
    let formats = Arc::new(Mutex::new(Vec::new()));
    let f = formats.clone();
    pf.set_custom_processor(
        CustomProcessor::new(move |buffer, ctx| {
            let mut frame = ctx.map(buffer).map_err(|e| e.to_string())?;
            // Invert RGB: the frame is RGBA, 16 pixels a row.
            for px in frame.plane_data_mut(0).unwrap().chunks_exact_mut(4) {
                px[0] = 255 - px[0];
            }
            f.lock().unwrap().push(ctx.info().format());
            Ok::<_, String>(())
        })
        .with_caps("video/x-raw,format=RGBA".parse().unwrap()),
    );
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(WAIT.as_secs()),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(
        *formats.lock().unwrap(),
        vec![gst_video::VideoFormat::Rgba; 5]
    );
}

/// Long enough that a batch waiting it out hangs the test.
const BATCH_WAIT: &str = "batch-timeout=600000000000";

#[test]
fn batch_closures_get_consecutive_frames_up_to_the_batch_size() {
    let _wd = common::begin("batch_sync", 60);
    let r = run(22, &format!("workers=2 batch-size=4 {BATCH_WAIT}"));
    let batches: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let b = batches.clone();
    r.pf.set_custom_processor(CustomProcessor::new_batch(move |buffers, ctxs| {
        assert_eq!(buffers.len(), ctxs.len());
        for (buffer, ctx) in buffers.iter_mut().zip(ctxs) {
            assert_eq!(ctx.pts(), buffer.pts());
            mark(buffer, ctx.seq())?;
        }
        b.lock()
            .unwrap()
            .push(ctxs.iter().map(|c| c.seq()).collect());
        Ok::<_, String>(())
    }));
    // EOS sends the last two at once instead of waiting for two more.
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..22));
    let mut batches = std::mem::take(&mut *batches.lock().unwrap());
    batches.sort();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 4, 4, 4, 4, 2], "{batches:?}");
    for batch in &batches {
        assert!(batch.windows(2).all(|w| w[1] == w[0] + 1), "{batches:?}");
    }
    let stats = r.pf.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("batches").unwrap(), 6);
    let avg = stats.get::<f64>("avg-batch-size").unwrap();
    assert!((avg - 22.0 / 6.0).abs() < 1e-9, "{avg}");
}

#[test]
fn a_failed_async_batch_fails_each_of_its_frames_per_on_error() {
    let _wd = common::begin("batch_async_fails", 60);
    let r = run(
        8,
        &format!("workers=1 batch-size=4 {BATCH_WAIT} on-error=drop"),
    );
    r.pf.set_custom_processor(CustomProcessor::new_batch_async(
        |mut buffers: Vec<gst::Buffer>, ctxs: Vec<FrameContext>| async move {
            tokio::task::yield_now().await;
            if ctxs.iter().any(|c| c.seq() == 3) {
                return Err("the batch with frame 3 is bad".to_string());
            }
            for (buffer, ctx) in buffers.iter_mut().zip(&ctxs) {
                mark(buffer.make_mut(), ctx.seq())?;
            }
            Ok(buffers)
        },
    ));
    assert_eq!(r.play(), None);
    let mut expected: Vec<Out> = (0..4).map(|i| Out::Gap(pts(i))).collect();
    expected.extend(processed(4..8));
    assert_eq!(r.out(), expected);
    let stats = r.pf.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("errors").unwrap(), 4);
}

#[test]
fn batch_size_one_runs_a_batch_closure_a_frame_at_a_time() {
    let _wd = common::begin("batch_one", 60);
    let r = run(6, "workers=2");
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let s = sizes.clone();
    r.pf.set_custom_processor(CustomProcessor::new_batch(move |buffers, ctxs| {
        s.lock().unwrap().push(buffers.len());
        for (buffer, ctx) in buffers.iter_mut().zip(ctxs) {
            mark(buffer, ctx.seq())?;
        }
        Ok::<_, String>(())
    }));
    assert_eq!(r.play(), None);
    assert_eq!(r.out(), processed(0..6));
    assert_eq!(*sizes.lock().unwrap(), [1; 6]);
    let stats = r.pf.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("batches").unwrap(), 0);
}

#[test]
fn a_batch_processor_adds_the_batch_timeout_to_the_reported_latency() {
    let _wd = common::begin("batch_latency", 60);
    let ms = gst::ClockTime::from_mseconds;
    for (size, latency) in [("4", ms(60)), ("1", ms(40))] {
        let e = common::element(&[
            ("batch-size", size),
            ("batch-timeout", "20000000"),
            ("timeout", "30000000"),
        ]);
        let pf = e.clone().downcast::<ParallelFilter>().unwrap();
        pf.set_custom_processor(CustomProcessor::new_batch(|_buffers, _ctxs| {
            Ok::<_, String>(())
        }));
        let common::Fixture { mut h, .. } = common::Fixture::around(e);
        h.play();
        h.set_upstream_latency(ms(10));
        // The processing bound (timeout), the wait for a batch, upstream's.
        assert_eq!(h.query_latency(), Some(latency), "batch-size {size}");
    }
}

#[test]
fn batch_size_without_a_batch_processor_is_a_warning() {
    let _wd = common::begin("batch_unused", 60);
    let r = run(3, "processor=passthrough batch-size=4");
    let (err, warnings) = r.play_with_warnings();
    assert_eq!(err, None);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("batch-size=4 has no effect: processor=passthrough")),
        "{warnings:?}"
    );
}
