// SPDX-License-Identifier: MPL-2.0
//! Throughput of `processor=remote` against its ideal:
//! `cargo run --release --example remote_throughput`.
//!
//! Starts two in-tree Open Inference Protocol test servers, each adding
//! `--latency-ms` (20) to every request, and pushes `--frames` (3000) small
//! RGB frames through `parallelfilter processor=remote workers=W` (32). The
//! ideal rate is W / latency (1600 fps); the reference is `processor=delay`
//! with the same fixed delay, the element's own ceiling for that latency.
//! Runs alternate, `--rounds` (5) of each; medians and ratios are printed.
//! Options: `--json` sends plain JSON tensors instead of binary ones.

#[path = "../tests/common/oip_server.rs"]
mod oip_server;

use std::time::{Duration, Instant};

use gst::prelude::*;
use oip_server::{MODEL, TestServer};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Frames per second from PLAYING to EOS, and the frames that came out
/// with an inference result.
fn run(description: &str, frames: u64) -> (f64, u64) {
    let pipeline = gst::parse::launch(description).expect("pipeline");
    let pipeline = pipeline.downcast::<gst::Pipeline>().expect("a pipeline");
    let sink = pipeline.by_name("sink").expect("sink");
    let enriched = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = enriched.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer()
                && gst::meta::CustomMeta::from_buffer(b, "GstParallelFilterInferenceMeta").is_ok()
            {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    let bus = pipeline.bus().unwrap();
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing).expect("PLAYING");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no EOS within 10 min");
    let elapsed = start.elapsed();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{}: {:?}", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (
        frames as f64 / elapsed.as_secs_f64(),
        enriched.load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let frames = arg(&args, "--frames", 3000);
    let workers = arg(&args, "--workers", 32);
    let latency_ms = arg(&args, "--latency-ms", 20);
    let rounds = arg(&args, "--rounds", 5).max(1);
    let json = args.iter().any(|a| a == "--json");
    gst::init().unwrap();
    gstparallel::plugin_register_static().unwrap();

    let servers = [TestServer::start(), TestServer::start()];
    for s in &servers {
        s.set_latency(Duration::from_millis(latency_ms));
        s.set_binary(!json);
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let src = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! \
         video/x-raw,format=RGB,width=32,height=24,framerate=1000/1"
    );
    let remote = format!(
        "{src} ! parallelfilter processor=remote servers={} model={MODEL} workers={workers} ! \
         fakesink name=sink sync=false",
        urls.join(",")
    );
    let ns = latency_ms * 1_000_000;
    let delay = format!(
        "{src} ! parallelfilter processor=delay delay-min={ns} delay-max={ns} workers={workers} ! \
         fakesink name=sink sync=false"
    );
    let ideal = workers as f64 * 1000.0 / latency_ms as f64;
    println!(
        "{frames} frames 32x24 RGB, 2 servers +{latency_ms} ms each, workers={workers}, \
         {} tensors; ideal {ideal:.0} fps",
        if json { "JSON" } else { "binary" }
    );
    let (mut r, mut d) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (rate, enriched) = run(&remote, frames);
        assert_eq!(enriched, frames, "frames without a result");
        let (drate, _) = run(&delay, frames);
        println!("round {round}: remote {rate:.0} fps, delay {drate:.0} fps");
        r.push(rate);
        d.push(drate);
    }
    let (r, d) = (median(&mut r), median(&mut d));
    println!(
        "median: remote {r:.0} fps = {:.2} x ideal ({ideal:.0} fps); delay reference {d:.0} fps = {:.2} x ideal; remote/delay {:.2}",
        r / ideal,
        d / ideal,
        r / d
    );
    let served: Vec<u64> = servers.iter().map(|s| s.answered()).collect();
    println!("requests answered per server: {served:?}");
}
