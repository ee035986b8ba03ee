// SPDX-License-Identifier: MPL-2.0
//! i. Remote inference throughput: two in-tree Open Inference Protocol test
//! servers, each adding 20 ms to every request, behind
//! `parallelfilter processor=remote workers=32`; frames/s against the ideal
//! workers / 20 ms (1600 fps). The in-run reference is `processor=delay`
//! with the same fixed 20 ms: the element's own ceiling for that latency.
//! Binary tensors (the servers list `binary_tensor_data`) and plain JSON
//! tensors are separate cases. `examples/remote_throughput.rs` runs this
//! scenario with other settings.

#[path = "../../tests/common/oip_server.rs"]
pub mod oip_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gst::prelude::*;
use oip_server::{MODEL, TestServer};

use crate::common::{Ctx, Fail, Output, Row, Seen, median, record, run_with};

const NAME: &str = "remote";

/// How the element talks to the servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tensors {
    Binary,
    Json,
}

impl Tensors {
    fn name(self) -> &'static str {
        match self {
            Tensors::Binary => "binary",
            Tensors::Json => "JSON",
        }
    }
}

pub struct Config {
    /// Frames per run.
    pub frames: usize,
    pub workers: usize,
    /// Added by each server to every request, and the delay reference's.
    pub latency_ms: u64,
    /// The encodings measured; each is a run per round, alternating with
    /// the delay reference.
    pub tensors: Vec<Tensors>,
}

#[derive(Clone, Copy)]
enum Variant {
    Remote(Tensors),
    Delay,
}

/// Small frames at a high rate, so the source never limits.
fn source(frames: usize) -> String {
    format!(
        "videotestsrc num-buffers={frames} pattern=ball ! \
         video/x-raw,format=RGB,width=32,height=24,framerate=1000/1"
    )
}

/// Steady frames/s at the sink of `desc`; every frame must arrive, in
/// order, and (`results`) with an inference result.
fn measure(desc: &str, cfg: &Config, results: bool) -> Result<f64, Fail> {
    let frames = cfg.frames;
    let enriched = Arc::new(AtomicUsize::new(0));
    let mut seen = None;
    run_with(desc, Duration::from_secs(300), |p| {
        let pad = p
            .by_name("sink")
            .and_then(|e| e.static_pad("sink"))
            .ok_or("no element named 'sink' with a sink pad")?;
        seen = Some(record(&pad, frames));
        let counter = enriched.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer()
                && gst::meta::CustomMeta::from_buffer(b, "GstParallelFilterInferenceMeta").is_ok()
            {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
        Ok(())
    })?;
    let seen: Seen = seen
        .and_then(|s| Arc::try_unwrap(s).ok())
        .and_then(|m| m.into_inner().ok())
        .unwrap_or_default();
    if seen.at.len() != frames {
        return Err(Fail::Error(format!(
            "{} of {frames} frames arrived through '{desc}'",
            seen.at.len()
        )));
    }
    if seen.out_of_order() != 0 {
        return Err(Fail::Error(format!("frames out of order through '{desc}'")));
    }
    let enriched = enriched.load(Ordering::Relaxed);
    if results && enriched != frames {
        return Err(Fail::Error(format!(
            "{enriched} of {frames} frames came out with an inference result"
        )));
    }
    // From the end of the first batch (connections, readiness probes) on.
    Ok(seen.rate(cfg.workers, cfg.workers))
}

/// Inference requests the servers answered with the binary extension.
fn binary_answers(servers: &[TestServer]) -> u64 {
    servers
        .iter()
        .map(|s| s.control.binary.load(Ordering::SeqCst))
        .sum()
}

/// Measures `cfg` with `ctx.rounds` alternating rounds and adds the rows.
pub fn measure_into(ctx: &Ctx, cfg: &Config, out: &mut Output) -> Result<(), Fail> {
    let servers = [TestServer::start(), TestServer::start()];
    for s in &servers {
        s.set_latency(Duration::from_millis(cfg.latency_ms));
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let (w, ms) = (cfg.workers, cfg.latency_ms);
    let ns = ms * 1_000_000;
    let remote = format!(
        "{} ! parallelfilter processor=remote servers={} model={MODEL} workers={w} ! \
         fakesink name=sink sync=false",
        source(cfg.frames),
        urls.join(",")
    );
    let delay = format!(
        "{} ! parallelfilter processor=delay delay-min={ns} delay-max={ns} workers={w} ! \
         fakesink name=sink sync=false",
        source(cfg.frames)
    );

    let mut variants = vec![Variant::Delay];
    variants.extend(cfg.tensors.iter().map(|&t| Variant::Remote(t)));
    let samples = ctx.alternate(NAME, &variants, |v| match *v {
        Variant::Delay => measure(&delay, cfg, false),
        Variant::Remote(t) => {
            // The element reads the servers' extensions when it starts.
            let binary = t == Tensors::Binary;
            for s in &servers {
                s.set_binary(binary);
            }
            let before = binary_answers(&servers);
            let rate = measure(&remote, cfg, true)?;
            let used = binary_answers(&servers) - before;
            if used != if binary { cfg.frames as u64 } else { 0 } {
                return Err(Fail::Error(format!(
                    "{} tensors: {used} of {} requests used the binary extension",
                    t.name(),
                    cfg.frames
                )));
            }
            Ok(rate)
        }
    })?;

    let ideal = w as f64 * 1000.0 / ms as f64;
    let ideal_name = format!("ideal {w}/{ms}ms");
    let reference = median(&samples[0]);
    let mut vs_delay = Vec::new();
    for (v, s) in variants.iter().zip(&samples).skip(1) {
        let Variant::Remote(t) = *v else { continue };
        let fps = median(s);
        let ratio = fps / ideal;
        out.rows.push(
            Row::new(
                NAME,
                format!("{} tensors, 2 servers +{ms} ms, workers={w}", t.name()),
                s,
                "frames/s",
            )
            .reference(ideal_name.clone(), ideal)
            .ratio(ratio)
            .target(">= 0.8x ideal", ratio >= 0.8),
        );
        vs_delay.push(format!("{} {:.2}", t.name(), fps / reference));
    }
    out.rows.push(
        Row::new(
            NAME,
            format!("delay {ms} ms, workers={w} (element ceiling)"),
            &samples[0],
            "frames/s",
        )
        .reference(ideal_name, ideal)
        .ratio(reference / ideal),
    );
    let answered: Vec<String> = servers.iter().map(|s| s.answered().to_string()).collect();
    out.notes.push(format!(
        "remote: {} frames of 32x24 RGB per run, rate from output {w} to the last; \
         remote / delay: {}; requests answered per server over all runs: {}",
        cfg.frames,
        vs_delay.join(", "),
        answered.join(" / ")
    ));
    Ok(())
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let cfg = Config {
        frames: ctx.pick(3000, 320),
        workers: 32,
        latency_ms: 20,
        tensors: vec![Tensors::Binary, Tensors::Json],
    };
    measure_into(ctx, &cfg, out)
}
