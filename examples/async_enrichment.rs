// SPDX-License-Identifier: MPL-2.0
//! An I/O-bound processor written as an async Rust closure:
//! `cargo run --release --example async_enrichment`.
//!
//! Each frame is "sent" to a simulated enrichment service: the closure
//! computes a small request from the pixels (the mean of the first row),
//! awaits the service's reply (a `tokio::time::sleep` of a variable latency,
//! 5–40 ms by default, fixed per frame) and attaches the reply to the buffer
//! as a custom meta. No thread waits while a request is pending, so
//! throughput grows with `workers` up to workers / mean latency.
//!
//! It runs the same frames with several worker counts, alternating, and
//! prints the median throughput of each next to that ideal. A probe on the
//! sink checks that every frame carries its own reply, in input order.
//!
//! Options: `--frames N` (100), `--latency-min MS` (5), `--latency-max MS`
//! (40), `--rounds N` (3). Exits with status 1 on any failure.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstparallel::ParallelFilter;

/// The example's own custom meta: one per frame, the service's reply.
const REPLY_META: &str = "ExampleEnrichmentMeta";
const WORKER_COUNTS: [u32; 4] = [1, 8, 32, 64];

#[derive(Clone, Copy)]
struct Options {
    frames: u32,
    latency_min: u64,
    latency_max: u64,
    rounds: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        frames: 100,
        latency_min: 5,
        latency_max: 40,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let v: u64 = args
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{arg} needs a number"))?;
        match arg.as_str() {
            "--frames" => o.frames = v.clamp(1, 100_000) as u32,
            "--latency-min" => o.latency_min = v.min(10_000),
            "--latency-max" => o.latency_max = v.min(10_000),
            "--rounds" => o.rounds = v.clamp(1, 50) as usize,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    o.latency_max = o.latency_max.max(o.latency_min);
    Ok(o)
}

/// The service's latency for a request: fixed per frame, spread over
/// [min, max] ms (splitmix64 of the frame number).
fn latency(o: &Options, seq: u64) -> Duration {
    let mut x = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let span = o.latency_max - o.latency_min + 1;
    Duration::from_millis(o.latency_min + x % span)
}

/// Stands for a request to a remote service: waits without a thread.
async fn enrichment_service(request: u64, latency: Duration) -> String {
    tokio::time::sleep(latency).await;
    format!("brightness-{request}")
}

struct RunResult {
    elapsed: Duration,
    frames: usize,
    problems: Vec<String>,
}

fn run(o: Options, workers: u32) -> Result<RunResult, Box<dyn std::error::Error>> {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={} pattern=ball ! \
         video/x-raw,format=GRAY8,width=160,height=120,framerate=30/1 ! \
         parallelfilter name=pf workers={workers} ! fakesink name=sink",
        o.frames
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let pf = pipeline
        .by_name("pf")
        .and_downcast::<ParallelFilter>()
        .ok_or("no parallelfilter")?;

    pf.set_async_processor(move |mut buffer, ctx| {
        // The synchronous part runs on an async thread: keep it short.
        let request = {
            let map = buffer.map_readable();
            let row = map.as_ref().map_or(&[][..], |m| &m[..m.len().min(160)]);
            row.iter().map(|&b| u64::from(b)).sum::<u64>() / row.len().max(1) as u64
        };
        let latency = latency(&o, ctx.seq());
        async move {
            let reply = enrichment_service(request, latency).await;
            let mut meta = gst::meta::CustomMeta::add(buffer.make_mut(), REPLY_META)
                .map_err(|e| e.to_string())?;
            let s = meta.mut_structure();
            s.set("seq", ctx.seq());
            s.set("reply", reply);
            s.set("latency", latency.as_nanos() as u64);
            Ok::<_, String>(buffer)
        }
    });

    // The replies as they reach the sink.
    let replies = Arc::new(Mutex::new(Vec::new()));
    let r = replies.clone();
    pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .ok_or("no sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let seq = gst::meta::CustomMeta::from_buffer(buffer, REPLY_META)
                    .ok()
                    .and_then(|m| m.structure().get::<u64>("seq").ok());
                r.lock().unwrap().push(seq);
            }
            gst::PadProbeReturn::Ok
        })
        .ok_or("cannot add probe")?;

    let start = Instant::now();
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let mut error = None;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(e) => {
                error = Some(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            _ => {}
        }
    }
    let elapsed = start.elapsed();
    pipeline.set_state(gst::State::Null)?;
    if let Some(e) = error {
        return Err(e.into());
    }
    let replies = std::mem::take(&mut *replies.lock().unwrap());
    let problems = replies
        .iter()
        .enumerate()
        .filter(|(i, seq)| **seq != Some(*i as u64))
        .map(|(i, seq)| format!("frame {i} carries the reply of {seq:?}"))
        .collect();
    Ok(RunResult {
        elapsed,
        frames: replies.len(),
        problems,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "{e}\nusage: async_enrichment [--frames N] [--latency-min MS] \
                 [--latency-max MS] [--rounds N]"
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = gst::init()
        .map_err(|e| e.to_string())
        .and_then(|_| gstparallel::plugin_register_static().map_err(|e| e.to_string()))
    {
        eprintln!("cannot initialize GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    gst::meta::CustomMeta::register(REPLY_META, &[]);
    let mean = (0..u64::from(o.frames))
        .map(|s| latency(&o, s).as_secs_f64())
        .sum::<f64>()
        / f64::from(o.frames);
    println!(
        "async_enrichment: {} frames, simulated service latency {}-{} ms (mean {:.1} ms), \
         {} rounds",
        o.frames,
        o.latency_min,
        o.latency_max,
        mean * 1e3,
        o.rounds
    );
    let mut fps: Vec<Vec<f64>> = vec![Vec::new(); WORKER_COUNTS.len()];
    let mut failed = false;
    for _ in 0..o.rounds {
        for (i, &workers) in WORKER_COUNTS.iter().enumerate() {
            match run(o, workers) {
                Ok(r) => {
                    if r.frames != o.frames as usize {
                        eprintln!("workers={workers}: {} frames of {}", r.frames, o.frames);
                        failed = true;
                    }
                    for p in r.problems.iter().take(5) {
                        eprintln!("workers={workers}: {p}");
                        failed = true;
                    }
                    fps[i].push(r.frames as f64 / r.elapsed.as_secs_f64());
                }
                Err(e) => {
                    eprintln!("workers={workers}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let base = median(fps[0].clone());
    for (i, &workers) in WORKER_COUNTS.iter().enumerate() {
        let m = median(fps[i].clone());
        let ideal = f64::from(workers) / mean;
        println!(
            "  workers={workers:<3} {m:7.1} fps  {:5.1}x workers=1  {:4.2}x the ideal {ideal:.0} fps",
            m / base,
            m / ideal
        );
    }
    if failed {
        println!("FAILED");
        return ExitCode::FAILURE;
    }
    println!(
        "OK: every frame carried its own reply, in input order ({} runs)",
        o.rounds * WORKER_COUNTS.len()
    );
    ExitCode::SUCCESS
}
