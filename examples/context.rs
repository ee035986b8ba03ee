// SPDX-License-Identifier: MPL-2.0
//! N camera-like streams through one shared pool (`context`): each stream
//! is a live `videotestsrc` at 30 fps into its own `parallelfilter`, all
//! in one context, and the program prints each stream's throughput and
//! latency from its element's `stats`.
//!
//! ```text
//! cargo run --release --example context -- 8
//! cargo run --release --example context -- 4 "processor=delay delay-min=20000000 delay-max=40000000"
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use gst::prelude::*;

/// How long the streams run.
const RUN: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let streams: usize = match args.next().map(|n| n.parse()) {
        None => 4,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: context [STREAMS] [PARALLELFILTER PROPERTIES]");
            return ExitCode::FAILURE;
        }
    };
    let properties = args
        .next()
        .unwrap_or_else(|| "processor=analyze".to_string());
    gst::init().expect("GStreamer init");
    gstparallel::plugin_register_static().expect("plugin registration");
    match run(streams, &properties) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("FAILED: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(streams: usize, properties: &str) -> Result<(), String> {
    // One pipeline, one branch per stream, every element in context
    // "cameras".
    let launch: String = (0..streams)
        .map(|i| {
            format!(
                "videotestsrc is-live=true pattern={} ! \
                 video/x-raw,width=640,height=480,framerate=30/1 ! \
                 parallelfilter name=pf{i} context=cameras {properties} ! fakesink ",
                i % 20
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let started = Instant::now();
    while started.elapsed() < RUN {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error],
        ) && let gst::MessageView::Error(e) = msg.view()
        {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("{}: {}", e.error(), e.debug().unwrap_or_default()));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{streams} streams of 640x480 at 30 fps in one context ({properties}), {elapsed:.1} s:"
    );
    println!("stream  frames/s  processed  avg latency  max latency  pool workers");
    for i in 0..streams {
        let pf = pipeline
            .by_name(&format!("pf{i}"))
            .ok_or("element missing")?;
        let s = pf.property::<gst::Structure>("stats");
        let get = |name: &str| s.get::<u64>(name).unwrap_or(0);
        let out = get("frames-out");
        println!(
            "{i:>6}  {:>8.1}  {:>9}  {:>8.1} ms  {:>8.1} ms  {:>12}",
            out as f64 / elapsed,
            out - get("skipped"),
            get("avg-latency") as f64 / 1e6,
            get("max-latency") as f64 / 1e6,
            s.get::<u32>("workers").unwrap_or(0)
        );
    }
    pipeline
        .set_state(gst::State::Null)
        .map_err(|e| e.to_string())?;
    Ok(())
}
