// SPDX-License-Identifier: MPL-2.0
//! Nothing leaks: GStreamer's leaks tracer watches a run with flushing
//! seeks, EOS and state changes while frames are stuck in processing.
//! Its own binary, since the tracer must be set before gst::init.

mod common;
#[path = "common/oip_server.rs"]
mod oip_server;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::{Pipeline, WAIT};
use gst::prelude::*;

/// Types this element creates or holds; any live one at the end is a leak.
const WATCHED: &[&str] = &[
    "GstBuffer",
    "GstEvent",
    "GstQuery",
    "GstCaps",
    "GstParallelFilter",
    "GstPad",
    "GstPipeline",
    "GstTask",
];

fn run(desc: &str, seek: bool) {
    run_with(desc, seek, |_| {});
}

/// [`run`], after `setup` configured the pipeline.
fn run_with(desc: &str, seek: bool, setup: impl FnOnce(&gst::Pipeline)) {
    let p = Pipeline::launch(desc);
    setup(&p.pipeline);
    p.pipeline.set_state(gst::State::Paused).unwrap();
    let (res, _, _) = p.pipeline.state(gst::ClockTime::from_seconds(30));
    res.unwrap();
    if seek {
        p.pipeline
            .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::from_seconds(1))
            .unwrap();
        p.pipeline
            .state(gst::ClockTime::from_seconds(30))
            .0
            .unwrap();
    }
    p.run_to_eos();
    p.stop();
}

fn cycle_with_stuck_frames() {
    let p = Pipeline::launch(
        "videotestsrc ! video/x-raw,width=32,height=24 ! parallelfilter name=pf \
         processor=delay delay-min=10000000000 delay-max=10000000000 workers=2 ! fakesink",
    );
    let (tx, entered) = mpsc::channel();
    let tx = Mutex::new(tx);
    p.pf()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = tx.lock().unwrap().send(());
            gst::PadProbeReturn::Ok
        });
    for _ in 0..20 {
        p.pipeline.set_state(gst::State::Playing).unwrap();
        // The second frame at the pad means the first is inside, stuck.
        entered.recv_timeout(WAIT).unwrap();
        entered.recv_timeout(WAIT).unwrap();
        p.pipeline.set_state(gst::State::Null).unwrap();
        while entered.try_recv().is_ok() {}
    }
}

#[test]
fn no_leaks_after_seeks_eos_and_state_changes() {
    // SAFETY: nothing else runs in this test binary yet.
    unsafe {
        std::env::set_var("GST_TRACERS", "leaks");
        std::env::set_var("GST_DEBUG", "GST_TRACER:7");
    }
    common::init();
    let _wd = common::watchdog("leaks", 120);
    // The tracer reports each object still alive at deinit as an
    // `object-alive` record on the GST_TRACER category.
    let alive = Arc::new(Mutex::new(Vec::<String>::new()));
    let a = alive.clone();
    gst::log::remove_default_log_function();
    gst::log::add_log_function(move |cat, _level, _file, _func, _line, _obj, msg| {
        if cat.name() == "GST_TRACER"
            && let Some(text) = msg.get()
            && text.contains("object-alive")
        {
            a.lock().unwrap().push(text.to_string());
        }
    });

    run(
        "videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48 ! parallelfilter \
         processor=delay delay-max=10000000 workers=4 post-messages=true ! fakesink",
        true,
    );
    run(
        "videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48 ! parallelfilter \
         processor=passthrough on-error=pass ! fakesink",
        false,
    );
    // processor=custom: with process-frame handlers, and with a Rust
    // closure that writes (copying frames kept for on-error=pass and as
    // previous frames), everything is freed.
    run_with(
        "videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48 ! parallelfilter \
         name=pf processor=custom workers=4 ! fakesink",
        true,
        |p| {
            p.by_name("pf")
                .unwrap()
                .connect("process-frame", false, |_| Some(true.to_value()));
        },
    );
    run_with(
        "videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48 ! parallelfilter \
         name=pf workers=4 on-error=pass ! fakesink",
        true,
        |p| {
            let pf = p
                .by_name("pf")
                .and_downcast::<gstparallel::ParallelFilter>()
                .unwrap();
            pf.set_custom_processor(
                gstparallel::parallelfilter::CustomProcessor::new(|buffer, ctx| {
                    let mut frame = ctx.map(buffer).map_err(|e| e.to_string())?;
                    frame.plane_data_mut(0).map_err(|e| e.to_string())?[0] = 1;
                    Ok::<_, String>(())
                })
                .with_previous_frame(),
            );
        },
    );
    {
        // Remote inference, a server hanging on some requests: the
        // abandoned ones must not keep frames alive.
        let server = oip_server::TestServer::start();
        server.set_fault(oip_server::Fault::Hang, 3);
        run(
            &format!(
                "videotestsrc num-buffers=30 ! video/x-raw,format=RGB,width=32,height=24 ! \
                 parallelfilter processor=remote servers={} model={} workers=4 \
                 timeout=3000000000 retries=0 on-error=drop post-messages=true ! fakesink",
                server.url(),
                oip_server::MODEL
            ),
            true,
        );
    }
    // Analysis holds the previous frame and adds a meta to every buffer.
    run(
        "videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48 ! parallelfilter \
         processor=overlay workers=3 post-messages=true ! fakesink",
        true,
    );
    // processor=filter: instance pipelines, their pads, and instances
    // replaced after an error.
    run(
        "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=64,height=48 ! \
         parallelfilter filter=\"videoflip video-direction=90r\" workers=3 ! fakesink",
        true,
    );
    run(
        "videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48 ! parallelfilter \
         filter=\"identity error-after=4\" workers=2 on-error=drop ! fakesink",
        false,
    );
    cycle_with_stuck_frames();
    assert!(
        gstparallel::engine::wait_all_stopped(Duration::from_secs(30)),
        "workers did not exit"
    );
    // SAFETY: every GStreamer object of this binary is gone.
    unsafe { gst::deinit() };

    let leaked: Vec<String> = alive
        .lock()
        .unwrap()
        .iter()
        .filter(|text| {
            WATCHED
                .iter()
                .any(|t| text.contains(&format!("type-name=(string){t},")))
        })
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "live objects: {leaked:#?}");
}
