// SPDX-License-Identifier: MPL-2.0
//! Flushing seeks through `parallelfilter` while frames are in flight, in
//! PLAYING and in PAUSED: a gst-launch-style runner for a launch line
//! whose last element is a sink.
//!
//! ```text
//! cargo run --release --example seek
//! cargo run --release --example seek -- "videotestsrc ! parallelfilter processor=delay \
//!     delay-min=5000000 delay-max=80000000 workers=8 ! fakesink"
//! ```
//!
//! After each seek it checks what reaches the sink: the new segment first,
//! then the frame at the seek target, and never a frame from before the
//! seek. Exits non-zero if that does not hold.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};

use gst::prelude::*;

const DEFAULT_LAUNCH: &str = "videotestsrc ! video/x-raw,width=320,height=240,framerate=30/1 ! \
     parallelfilter processor=delay delay-min=5000000 delay-max=80000000 workers=8 ! fakesink";

#[derive(Debug, Clone, Copy)]
enum Seen {
    FlushStop,
    Segment(Option<gst::ClockTime>),
    Buffer(gst::ClockTime),
}

fn main() -> ExitCode {
    gst::init().expect("GStreamer init");
    gstparallel::plugin_register_static().expect("plugin registration");
    let launch = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_LAUNCH.to_string());
    println!("gst-launch line: {launch}");
    match run(&launch) {
        Ok(()) => {
            println!("all seeks clean: no pre-seek frame after a flush, first frame at the target");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("FAILED: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(launch: &str) -> Result<(), String> {
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .iterate_sinks()
        .next()
        .ok()
        .flatten()
        .ok_or("the launch line has no sink")?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, buffers) = mpsc::channel();
    let tx = Mutex::new(tx);
    let s = seen.clone();
    sink.static_pad("sink")
        .ok_or("sink has no sink pad")?
        .add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::EVENT_BOTH
                | gst::PadProbeType::EVENT_FLUSH,
            move |_, info| {
                let entry = match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => b.pts().map(Seen::Buffer),
                    Some(gst::PadProbeData::Event(e)) => match e.view() {
                        gst::EventView::FlushStop(_) => Some(Seen::FlushStop),
                        gst::EventView::Segment(seg) => Some(Seen::Segment(
                            seg.segment()
                                .downcast_ref::<gst::ClockTime>()
                                .and_then(|seg| seg.start()),
                        )),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(entry) = entry {
                    let mut s = s.lock().unwrap();
                    s.push(entry);
                    if let Seen::Buffer(pts) = entry {
                        let flushes = s.iter().filter(|e| matches!(e, Seen::FlushStop)).count();
                        let _ = tx.lock().unwrap().send((flushes, pts));
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );

    let wait_buffer = || {
        buffers
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| "no buffer within 30 s".to_string())
    };
    let check = |target: gst::ClockTime| -> Result<gst::ClockTime, String> {
        let seen = seen.lock().unwrap();
        let flush = seen
            .iter()
            .rposition(|s| matches!(s, Seen::FlushStop))
            .ok_or("no FLUSH_STOP reached the sink")?;
        let after = &seen[flush + 1..];
        match after.first() {
            Some(Seen::Segment(Some(start))) if *start == target => {}
            other => return Err(format!("expected the new segment first, got {other:?}")),
        }
        let mut last = None;
        for s in after {
            if let Seen::Buffer(pts) = s {
                if *pts < target || last.is_some_and(|l| l >= *pts) {
                    return Err(format!("frame {pts} after the seek to {target}"));
                }
                last = Some(*pts);
            }
        }
        let first = after.iter().find_map(|s| match s {
            Seen::Buffer(pts) => Some(*pts),
            _ => None,
        });
        first.ok_or_else(|| "no frame after the seek".to_string())
    };
    let state_settled = |p: &gst::Pipeline| {
        p.state(gst::ClockTime::from_seconds(30))
            .0
            .map_err(|_| "state change failed".to_string())
    };

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot play")?;
    let result = (|| {
        for _ in 0..30 {
            wait_buffer()?;
        }
        for (seeks, secs) in [(1, 10), (2, 3)] {
            let target = gst::ClockTime::from_seconds(secs);
            pipeline
                .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
                .map_err(|_| "seek refused")?;
            // Half a second of post-seek stream.
            let end = target + gst::ClockTime::from_mseconds(500);
            while wait_buffer()? < (seeks, end) {}
            let first = check(target)?;
            println!("PLAYING: flushing seek to {target}: first frame out {first}, then in order");
        }
        pipeline
            .set_state(gst::State::Paused)
            .map_err(|_| "cannot pause")?;
        state_settled(&pipeline)?;
        for secs in [20, 1] {
            let target = gst::ClockTime::from_seconds(secs);
            pipeline
                .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
                .map_err(|_| "seek refused")?;
            state_settled(&pipeline)?;
            let first = check(target)?;
            println!("PAUSED: flushing seek to {target}: prerolled frame {first}");
        }
        if let Some(pf) = pipeline
            .iterate_all_by_element_factory_name("parallelfilter")
            .next()
            .ok()
            .flatten()
        {
            let stats = pf.property::<gst::Structure>("stats");
            println!("parallelfilter stats: {stats}");
        }
        Ok(())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}
