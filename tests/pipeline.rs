// SPDX-License-Identifier: MPL-2.0
//! Whole pipelines with videotestsrc: EOS drain, seeks, renegotiation,
//! leaky modes, timeouts, state cycling, live latency, errors.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

const MS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Buffer { pts: gst::ClockTime, size: usize },
    Caps(gst::Caps),
    Segment(gst::FormattedSegment<gst::ClockTime>),
    Gap { pts: gst::ClockTime },
    FlushStop,
    Eos,
}

#[derive(Debug)]
struct Failure {
    src: Option<String>,
    text: String,
}

struct Pipeline {
    pipeline: gst::Pipeline,
    pf: gst::Element,
    sink: gst::Element,
    rec: Arc<Mutex<Vec<Rec>>>,
    buffers: mpsc::Receiver<gst::ClockTime>,
    /// The filter's element messages, recorded as they are posted.
    messages: Arc<Mutex<Vec<gst::Structure>>>,
    /// Sources of every error message, as posted.
    error_sources: Arc<Mutex<Vec<String>>>,
}

/// `desc` must name the filter `pf` and the last element `sink`.
fn pipeline(desc: &str) -> Pipeline {
    common::init();
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let pf = pipeline.by_name("pf").unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let (tx, buffers) = mpsc::channel();
    let tx = Mutex::new(tx);
    let r = rec.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_BOTH | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            let entry = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    let pts = b.pts().unwrap();
                    let _ = tx.lock().unwrap().send(pts);
                    Some(Rec::Buffer {
                        pts,
                        size: b.size(),
                    })
                }
                Some(gst::PadProbeData::Event(e)) => match e.view() {
                    gst::EventView::Caps(c) => Some(Rec::Caps(c.caps_owned())),
                    gst::EventView::Segment(s) => {
                        Some(Rec::Segment(s.segment().clone().downcast().unwrap()))
                    }
                    gst::EventView::Gap(g) => Some(Rec::Gap { pts: g.get().0 }),
                    gst::EventView::FlushStop(_) => Some(Rec::FlushStop),
                    gst::EventView::Eos(_) => Some(Rec::Eos),
                    _ => None,
                },
                _ => None,
            };
            if let Some(entry) = entry {
                r.lock().unwrap().push(entry);
            }
            gst::PadProbeReturn::Ok
        },
    );
    let messages = Arc::new(Mutex::new(Vec::new()));
    let m = messages.clone();
    let error_sources = Arc::new(Mutex::new(Vec::new()));
    let e = error_sources.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Error(err) = msg.view() {
            let src = err.src().map(|s| s.name().to_string()).unwrap_or_default();
            e.lock().unwrap().push(src);
        }
        if let Some(s) = msg.structure()
            && s.name() == "parallelfilter-analysis"
        {
            m.lock().unwrap().push(s.to_owned());
        }
        gst::BusSyncReply::Pass
    });
    Pipeline {
        pipeline,
        pf,
        sink,
        rec,
        buffers,
        messages,
        error_sources,
    }
}

impl Pipeline {
    fn play(&self) {
        self.pipeline.set_state(gst::State::Playing).unwrap();
    }

    /// Runs to EOS or error; returns the error if any.
    fn wait_end(&self) -> Option<Failure> {
        let bus = self.pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(120),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("no EOS or error");
        match msg.view() {
            gst::MessageView::Error(e) => Some(Failure {
                src: e.src().map(|s| s.name().to_string()),
                text: format!("{} ({:?})", e.error(), e.debug()),
            }),
            _ => None,
        }
    }

    fn run_to_eos(&self) {
        self.play();
        if let Some(err) = self.wait_end() {
            panic!("error from {:?}: {}", err.src, err.text);
        }
    }

    fn stop(&self) {
        self.pipeline.set_state(gst::State::Null).unwrap();
    }

    fn records(&self) -> Vec<Rec> {
        self.rec.lock().unwrap().clone()
    }

    fn buffer_pts(&self) -> Vec<gst::ClockTime> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                Rec::Buffer { pts, .. } => Some(pts),
                _ => None,
            })
            .collect()
    }

    fn stats(&self) -> gst::Structure {
        self.pf.property::<gst::Structure>("stats")
    }

    /// Element messages of the filter, in posting order.
    fn frame_messages(&self) -> Vec<gst::Structure> {
        self.messages.lock().unwrap().clone()
    }
}

fn stat(s: &gst::Structure, name: &str) -> u64 {
    s.get::<u64>(name)
        .or_else(|_| s.get::<u32>(name).map(u64::from))
        .unwrap()
}

fn assert_increasing(pts: &[gst::ClockTime]) {
    for w in pts.windows(2) {
        assert!(w[0] < w[1], "out of order: {} then {}", w[0], w[1]);
    }
}

#[test]
fn eos_drains_every_frame_in_order() {
    let _wd = common::begin("eos_drain", 60);
    let p = pipeline(
        "videotestsrc num-buffers=60 ! video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf processor=delay delay-max=20000000 seed=7 workers=8 \
         post-messages=true ! fakesink name=sink",
    );
    p.run_to_eos();
    let recs = p.records();
    assert_eq!(recs.last(), Some(&Rec::Eos));
    let pts = p.buffer_pts();
    assert_eq!(pts.len(), 60);
    assert_increasing(&pts);
    let msgs = p.frame_messages();
    let seqs: Vec<u64> = msgs.iter().map(|m| m.get::<u64>("seq").unwrap()).collect();
    assert_eq!(seqs, (0..60).collect::<Vec<_>>());
    let ts: Vec<u64> = msgs
        .iter()
        .map(|m| m.get::<u64>("timestamp").unwrap())
        .collect();
    assert_eq!(ts, pts.iter().map(|t| t.nseconds()).collect::<Vec<_>>());
    let s = p.stats();
    assert_eq!(stat(&s, "frames-in"), 60);
    assert_eq!(stat(&s, "frames-out"), 60);
    assert_eq!(stat(&s, "dropped"), 0);
    assert!(stat(&s, "max-in-flight") <= 16);
    let per_worker = s.get::<gst::Array>("per-worker").unwrap();
    let total: u64 = per_worker.iter().map(|v| v.get::<u64>().unwrap()).sum();
    assert_eq!(total, 60);
    p.stop();
}

/// Buffers after the last FLUSH_STOP: the new segment first, then only
/// post-seek frames, in order.
fn assert_clean_after_seek(recs: &[Rec], target: gst::ClockTime) {
    let last_flush = recs
        .iter()
        .rposition(|r| *r == Rec::FlushStop)
        .expect("no flush reached the sink");
    let after = &recs[last_flush + 1..];
    let seg = after
        .iter()
        .position(|r| matches!(r, Rec::Segment(_)))
        .expect("no segment after flush");
    match &after[seg] {
        Rec::Segment(s) => assert_eq!(s.start(), Some(target)),
        _ => unreachable!(),
    }
    assert!(
        !after[..seg].iter().any(|r| matches!(r, Rec::Buffer { .. })),
        "buffer before the new segment"
    );
    let pts: Vec<_> = after
        .iter()
        .filter_map(|r| match r {
            Rec::Buffer { pts, .. } => Some(*pts),
            _ => None,
        })
        .collect();
    assert!(!pts.is_empty());
    assert_eq!(pts[0], target, "first frame after the seek");
    assert_increasing(&pts);
}

#[test]
fn flushing_seek_in_playing_with_frames_in_flight() {
    let _wd = common::begin("seek_playing", 60);
    let p = pipeline(
        "videotestsrc ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=5000000 delay-max=60000000 \
         workers=4 post-messages=true ! fakesink name=sink",
    );
    p.play();
    for _ in 0..10 {
        p.buffers.recv().unwrap();
    }
    // Frames are in flight in the workers now.
    let target = gst::ClockTime::from_seconds(10);
    p.pipeline
        .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
        .unwrap();
    while p.buffers.recv().unwrap() < target + gst::ClockTime::from_mseconds(300) {}
    p.stop();
    assert_clean_after_seek(&p.records(), target);
    // The sequence restarts at 0 with the first post-seek frame.
    let msgs = p.frame_messages();
    let first = msgs
        .iter()
        .find(|m| m.get::<u64>("timestamp").unwrap() == target.nseconds())
        .expect("message of the first post-seek frame");
    assert_eq!(first.get::<u64>("seq").unwrap(), 0);
}

#[test]
fn flushing_seek_in_paused() {
    let _wd = common::begin("seek_paused", 60);
    let p = pipeline(
        "videotestsrc ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=20000000 delay-max=40000000 \
         workers=4 ! fakesink name=sink",
    );
    p.pipeline.set_state(gst::State::Paused).unwrap();
    let (res, _, _) = p.pipeline.state(gst::ClockTime::from_seconds(30));
    res.unwrap();
    for target in [4, 1, 7].map(gst::ClockTime::from_seconds) {
        p.pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
            .unwrap();
        let (res, state, _) = p.pipeline.state(gst::ClockTime::from_seconds(30));
        res.unwrap();
        assert_eq!(state, gst::State::Paused);
        let sample = p
            .sink
            .property::<Option<gst::Sample>>("last-sample")
            .unwrap();
        assert_eq!(sample.buffer().unwrap().pts(), Some(target));
        assert_clean_after_seek(&p.records(), target);
    }
    p.stop();
}

#[test]
fn caps_renegotiation_mid_stream_keeps_every_frame() {
    let _wd = common::begin("renegotiation", 60);
    let p = pipeline(
        "videotestsrc num-buffers=40 ! capsfilter name=cf caps=video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf processor=delay delay-max=15000000 workers=6 ! fakesink name=sink",
    );
    let cf = p.pipeline.by_name("cf").unwrap();
    p.play();
    for _ in 0..10 {
        p.buffers.recv().unwrap();
    }
    cf.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("width", 32)
            .field("height", 24)
            .build(),
    );
    if let Some(err) = p.wait_end() {
        panic!("{}", err.text);
    }
    p.stop();
    let mut size = None;
    let mut sizes_seen = Vec::new();
    let mut frames = 0;
    for r in p.records() {
        match r {
            Rec::Caps(caps) => {
                let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
                size = Some(info.size());
                sizes_seen.push(info.width());
            }
            Rec::Buffer { size: s, .. } => {
                assert_eq!(Some(s), size, "buffer {frames} does not match its caps");
                frames += 1;
            }
            _ => {}
        }
    }
    assert_eq!(frames, 40);
    assert_eq!(sizes_seen, vec![64, 32]);
    assert_increasing(&p.buffer_pts());
}

fn leaky_run(leaky: &str) {
    let p = pipeline(&format!(
        "videotestsrc is-live=true num-buffers=40 ! video/x-raw,width=64,height=48,framerate=100/1 ! \
         parallelfilter name=pf processor=delay delay-min=50000000 delay-max=50000000 workers=1 \
         max-size-buffers=2 leaky={leaky} ! fakesink name=sink"
    ));
    p.run_to_eos();
    p.stop();
    let s = p.stats();
    let (fin, out, dropped) = (
        stat(&s, "frames-in"),
        stat(&s, "frames-out"),
        stat(&s, "dropped"),
    );
    assert_eq!(fin, 40);
    assert!(dropped > 0, "{leaky}: nothing dropped");
    assert_eq!(fin, out + dropped);
    assert_eq!(p.buffer_pts().len() as u64, out);
    assert_increasing(&p.buffer_pts());
    assert!(stat(&s, "max-in-flight") <= 2);
}

#[test]
fn leaky_upstream_drops_and_never_blocks() {
    let _wd = common::begin("leaky_upstream", 60);
    leaky_run("upstream");
}

#[test]
fn leaky_downstream_drops_and_never_blocks() {
    let _wd = common::begin("leaky_downstream", 60);
    leaky_run("downstream");
}

fn timeout_pipeline(on_error: &str) -> Pipeline {
    pipeline(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48,framerate=10/1 ! \
         parallelfilter name=pf processor=delay delay-min=10000000000 delay-max=10000000000 \
         timeout=20000000 on-error={on_error} workers=2 ! fakesink name=sink"
    ))
}

#[test]
fn timeout_with_on_error_drop_pushes_gaps() {
    let _wd = common::begin("timeout_drop", 60);
    let p = timeout_pipeline("drop");
    p.run_to_eos();
    p.stop();
    let recs = p.records();
    assert!(p.buffer_pts().is_empty());
    let gaps: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Rec::Gap { pts } => Some(pts.mseconds()),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![0, 100, 200, 300, 400]);
    let s = p.stats();
    assert_eq!(stat(&s, "timeouts"), 5);
    assert_eq!(stat(&s, "errors"), 5);
    assert_eq!(stat(&s, "dropped"), 5);
}

#[test]
fn timeout_with_on_error_pass_pushes_originals() {
    let _wd = common::begin("timeout_pass", 60);
    let p = timeout_pipeline("pass");
    p.run_to_eos();
    p.stop();
    let pts: Vec<_> = p.buffer_pts().iter().map(|t| t.mseconds()).collect();
    assert_eq!(pts, vec![0, 100, 200, 300, 400]);
    let s = p.stats();
    assert_eq!(stat(&s, "timeouts"), 5);
    assert_eq!(stat(&s, "frames-out"), 5);
}

#[test]
fn timeout_with_on_error_fail_posts_an_error_naming_the_frame() {
    let _wd = common::begin("timeout_fail", 60);
    let p = timeout_pipeline("fail");
    p.play();
    let err = p.wait_end().expect("an error");
    p.stop();
    assert_eq!(err.src.as_deref(), Some("pf"));
    assert!(err.text.contains("#0"), "{}", err.text);
    assert!(err.text.contains("timed out"), "{}", err.text);
    assert!(p.buffer_pts().is_empty());
}

#[test]
fn hundreds_of_state_cycles_with_frames_stuck_in_processing() {
    let _wd = common::begin("state_cycles", 120);
    let p = pipeline(
        "videotestsrc ! video/x-raw,width=32,height=24 ! \
         parallelfilter name=pf processor=delay delay-min=10000000000 delay-max=10000000000 \
         workers=2 ! fakesink name=sink",
    );
    let (tx, entered) = mpsc::channel();
    let tx = Mutex::new(tx);
    p.pf.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = tx.lock().unwrap().send(());
            gst::PadProbeReturn::Ok
        });
    // 200 NULL <-> PLAYING cycles, and 100 NULL <-> PAUSED among them.
    for i in 0..300 {
        let target = if i % 3 == 2 {
            gst::State::Paused
        } else {
            gst::State::Playing
        };
        p.pipeline.set_state(target).unwrap();
        // When the second frame reaches the sink pad, the first chain call
        // has returned: a frame is inside, stuck in a 10 s delay.
        entered.recv().unwrap();
        entered.recv().unwrap();
        p.pipeline.set_state(gst::State::Null).unwrap();
        while entered.try_recv().is_ok() {}
        let s = p.stats();
        assert!(stat(&s, "frames-in") >= 1);
    }
    assert!(p.buffer_pts().is_empty(), "nothing finished its 10 s delay");
}

#[test]
fn live_pipeline_reports_latency_and_nothing_is_late() {
    let _wd = common::begin("live_latency", 60);
    // 120 ms per frame at 30 fps: several frame durations, more than the
    // sink's own slack, so frames would be dropped as late if the element
    // did not add its latency. 8 workers keep up (30 fps x 120 ms = 3.6).
    let p = pipeline(
        "videotestsrc is-live=true num-buffers=30 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf processor=delay delay-min=120000000 delay-max=120000000 workers=8 ! \
         fakesink name=sink sync=true qos=true",
    );
    p.run_to_eos();
    let mut q = gst::query::Latency::new();
    assert!(p.pipeline.query(&mut q));
    let (live, min, _) = q.result();
    assert!(live);
    assert!(
        min >= gst::ClockTime::from_nseconds(120 * MS),
        "min latency {min}"
    );
    let stats = p.sink.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("rendered").unwrap(), 30);
    assert_eq!(stats.get::<u64>("dropped").unwrap(), 0);
    p.stop();
}

#[test]
fn not_linked_downstream_reaches_upstream_as_an_error() {
    let _wd = common::begin("not_linked", 60);
    let pipeline = gst::parse::launch(
        "videotestsrc ! parallelfilter name=pf processor=passthrough ! fakesink name=sink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let pf = pipeline.by_name("pf").unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    pf.unlink(&sink);
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("an error");
    let gst::MessageView::Error(err) = msg.view() else {
        panic!("expected an error, got {msg:?}");
    };
    assert!(
        format!("{:?}", err.debug()).contains("not-linked"),
        "{:?}",
        err.debug()
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn misconfigured_processor_fails_at_start_with_one_clear_error() {
    // Every processor is available now: processor=filter without its
    // description stands for a processor that cannot run.
    let _wd = common::begin("misconfigured", 60);
    let p = pipeline(
        "videotestsrc num-buffers=3 ! parallelfilter name=pf processor=filter ! fakesink name=sink",
    );
    assert!(p.pipeline.set_state(gst::State::Playing).is_err());
    let err = p.wait_end().expect("an error");
    p.stop();
    assert_eq!(err.src.as_deref(), Some("pf"));
    assert!(
        err.text.contains("needs the filter property"),
        "{}",
        err.text
    );
    let from_pf = p
        .error_sources
        .lock()
        .unwrap()
        .iter()
        .filter(|s| *s == "pf")
        .count();
    assert_eq!(from_pf, 1, "one clear error, not one per retry");
}

#[test]
fn downstream_eos_still_lets_eos_through() {
    let _wd = common::begin("downstream_eos", 60);
    // identity returns EOS at the 10th buffer; upstream then sends EOS, which
    // must reach the sink although the element has frames queued.
    let p = pipeline(
        "videotestsrc num-buffers=100 ! video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf processor=delay delay-max=5000000 workers=4 ! \
         identity eos-after=10 ! fakesink name=sink",
    );
    p.run_to_eos();
    p.stop();
    // identity forwards 9 and returns EOS for the 10th (as without us).
    assert_eq!(p.buffer_pts().len(), 9);
    assert_eq!(p.records().last(), Some(&Rec::Eos));
    let s = p.stats();
    assert_eq!(
        stat(&s, "frames-in"),
        stat(&s, "frames-out") + stat(&s, "dropped") + stat(&s, "in-flight")
    );
}
