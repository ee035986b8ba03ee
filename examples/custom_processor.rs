// SPDX-License-Identifier: MPL-2.0
//! A CPU-bound filter written as a Rust closure, run by `parallelfilter` on
//! every core: `cargo run --release --example custom_processor`.
//!
//! The closure blurs each RGBA frame of `videotestsrc` (a separable box
//! blur) and tones it sepia. It runs with `workers=1`, then with one worker
//! per CPU and twice that, alternating, and prints the median throughput of
//! each and the speed-up next to the ideal, min(workers, CPUs) x the
//! one-worker rate. A probe on the sink checks that every frame left in
//! input order and was toned (r >= g >= b in every pixel).
//!
//! Options: `--frames N` (120), `--width N` (640), `--height N` (360),
//! `--radius N` (2), `--rounds N` (3). Exits with status 1 on any failure.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;
use gstparallel::ParallelFilter;
use gstparallel::parallelfilter::CustomProcessor;

#[derive(Clone, Copy)]
struct Options {
    frames: u32,
    width: u32,
    height: u32,
    radius: usize,
    rounds: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        frames: 120,
        width: 640,
        height: 360,
        radius: 2,
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
            "--width" => o.width = v.clamp(8, 7680) as u32,
            "--height" => o.height = v.clamp(8, 4320) as u32,
            "--radius" => o.radius = v.clamp(1, 32) as usize,
            "--rounds" => o.rounds = v.clamp(1, 50) as usize,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    Ok(o)
}

/// Box blur of one RGBA row (`src` to `dst`), radius `r`, edges clamped.
fn blur_row(src: &[u8], dst: &mut [u8], width: usize, r: usize) {
    for x in 0..width {
        let (lo, hi) = (x.saturating_sub(r), (x + r).min(width - 1));
        let mut sum = [0u32; 4];
        for i in lo..=hi {
            for c in 0..4 {
                sum[c] += u32::from(src[4 * i + c]);
            }
        }
        let n = (hi - lo + 1) as u32;
        for c in 0..4 {
            dst[4 * x + c] = (sum[c] / n) as u8;
        }
    }
}

/// Blurs the frame horizontally then vertically, and tones it sepia.
fn blur_and_sepia(
    frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    r: usize,
) -> Result<(), gst::glib::BoolError> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data_mut(0)?;
    let row = 4 * w;
    let mut tmp = vec![0u8; row * h];
    for y in 0..h {
        blur_row(&data[y * stride..][..row], &mut tmp[y * row..][..row], w, r);
    }
    // Vertical pass: blur each column of `tmp` back into the frame.
    for y in 0..h {
        let (lo, hi) = (y.saturating_sub(r), (y + r).min(h - 1));
        let n = (hi - lo + 1) as u32;
        let out = &mut data[y * stride..][..row];
        for (x, px) in out.chunks_exact_mut(4).enumerate() {
            let mut sum = [0u32; 3];
            for yy in lo..=hi {
                let p = &tmp[yy * row + 4 * x..][..3];
                for c in 0..3 {
                    sum[c] += u32::from(p[c]);
                }
            }
            let (red, green, blue) = (
                (sum[0] / n) as f32,
                (sum[1] / n) as f32,
                (sum[2] / n) as f32,
            );
            px[0] = (0.393 * red + 0.769 * green + 0.189 * blue).min(255.0) as u8;
            px[1] = (0.349 * red + 0.686 * green + 0.168 * blue).min(255.0) as u8;
            px[2] = (0.272 * red + 0.534 * green + 0.131 * blue).min(255.0) as u8;
        }
    }
    Ok(())
}

struct RunResult {
    elapsed: Duration,
    frames: u64,
    problems: Vec<String>,
}

fn run(o: Options, workers: u32) -> Result<RunResult, Box<dyn std::error::Error>> {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={} pattern=smpte ! \
         video/x-raw,format=RGBA,width={},height={},framerate=30/1 ! \
         parallelfilter name=pf workers={workers} ! fakesink name=sink",
        o.frames, o.width, o.height
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let pf = pipeline
        .by_name("pf")
        .and_downcast::<ParallelFilter>()
        .ok_or("no parallelfilter")?;
    let radius = o.radius;
    pf.set_custom_processor(
        CustomProcessor::new(move |buffer, ctx| {
            let mut frame = ctx.map(buffer)?;
            blur_and_sepia(&mut frame, radius)
        })
        .with_caps(
            gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::Rgba)
                .build(),
        ),
    );

    // Checks at the sink: input order, and every pixel toned.
    let problems = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicU64::new(0));
    let (p, c) = (problems.clone(), count.clone());
    let last_pts = Mutex::new(None);
    let sink_pad = pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .ok_or("no sink pad")?;
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let n = c.fetch_add(1, Ordering::SeqCst);
        let mut last = last_pts.lock().unwrap();
        if *last >= buffer.pts() {
            p.lock()
                .unwrap()
                .push(format!("frame {n} out of order: {:?}", buffer.pts()));
        }
        *last = buffer.pts();
        let info = pad
            .current_caps()
            .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok());
        let toned = info.and_then(|info| {
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
            let stride = frame.plane_stride()[0] as usize;
            let data = frame.plane_data(0).ok()?;
            let w = frame.width() as usize;
            Some((0..frame.height() as usize).all(|y| {
                data[y * stride..][..4 * w]
                    .chunks_exact(4)
                    .all(|px| px[0] >= px[1] && px[1] >= px[2])
            }))
        });
        if toned != Some(true) {
            p.lock()
                .unwrap()
                .push(format!("frame {n} is not sepia-toned"));
        }
        gst::PadProbeReturn::Ok
    });

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
    let problems = std::mem::take(&mut *problems.lock().unwrap());
    Ok(RunResult {
        elapsed,
        frames: count.load(Ordering::SeqCst),
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
                "{e}\nusage: custom_processor [--frames N] [--width N] [--height N] \
                 [--radius N] [--rounds N]"
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
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let counts = [1, cpus, 2 * cpus];
    println!(
        "custom_processor: box blur (radius {}) + sepia in a Rust closure, {}x{} RGBA, \
         {} frames, {cpus} CPUs, {} rounds",
        o.radius, o.width, o.height, o.frames, o.rounds
    );
    let mut fps: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let mut failed = false;
    // Alternating runs, so load changes hit every configuration alike.
    for _ in 0..o.rounds {
        for (i, &workers) in counts.iter().enumerate() {
            match run(o, workers) {
                Ok(r) => {
                    if r.frames != u64::from(o.frames) {
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
    for (i, &workers) in counts.iter().enumerate() {
        let m = median(fps[i].clone());
        let runs: Vec<String> = fps[i].iter().map(|f| format!("{f:.1}")).collect();
        if workers == 1 {
            println!(
                "  workers={workers:<3} {m:7.1} fps (runs: {})",
                runs.join(", ")
            );
        } else {
            println!(
                "  workers={workers:<3} {m:7.1} fps (runs: {}): {:.2}x workers=1, ideal {}x",
                runs.join(", "),
                m / base,
                workers.min(cpus)
            );
        }
    }
    if failed {
        println!("FAILED");
        return ExitCode::FAILURE;
    }
    println!(
        "OK: {} frames per run left in input order, every pixel sepia-toned",
        o.frames
    );
    ExitCode::SUCCESS
}
