// SPDX-License-Identifier: MPL-2.0
//! m. Many streams, one pool: 8 live 30 fps streams, each into its own
//! `parallelfilter` and a sink that syncs to the clock (qos, 20 ms
//! max-lateness), once with every element in one `context` and once as 8
//! separate pools. Three workloads: `remote` against the two
//! capacity-limited test servers (4 requests at once each, 20 ms);
//! `remote` with `batch-size=8` against one server working like a GPU (one
//! request at a time, 10 ms plus 1 ms per frame), where only batches
//! across streams keep up; and CPU-bound `analyze` at 1280x720. Per run: total frames/s, frames the
//! sinks found late, p99 latency (running time at the sink's pad minus
//! the capture time), peak threads and RSS of the process, and fairness
//! (the slowest stream's frames/s over the fastest's). Each run is a
//! child process, so threads and RSS are that run's alone.

use std::process::{Command, ExitCode};
use std::time::Duration;

use gst::prelude::*;

use crate::common::{Ctx, Fail, Output, Row, SinkWatch, median, quantile, run_with};
use crate::memory::peak_rss;
use crate::remote::oip_server::{MODEL, TestServer};
use crate::threads::{peak_during, threads};

const NAME: &str = "streams";
pub const CHILD_FLAG: &str = "--streams-child";
const STREAMS: usize = 8;
const FPS: u64 = 30;

/// What one run measured, as the child prints it.
#[derive(Clone, Copy, Default)]
struct Run {
    frames_per_s: f64,
    late: f64,
    p99_ms: f64,
    threads: f64,
    rss_mib: f64,
    fairness: f64,
}

fn pipeline(props: &str, caps: &str, context: bool, frames: u64) -> String {
    (0..STREAMS)
        .map(|i| {
            let context = if context { " context=streams" } else { "" };
            format!(
                "videotestsrc is-live=true num-buffers={frames} pattern={} ! \
                 video/x-raw,{caps},framerate={FPS}/1 ! parallelfilter {props}{context} ! \
                 fakesink name=sink{i} sync=true qos=true max-lateness=20000000 ",
                i % 20
            )
        })
        .collect()
}

/// The child: runs the pipeline in `args[0]` and prints its figures.
pub fn child(args: &[String]) -> ExitCode {
    let (Some(desc), Some(seconds)) = (
        args.first(),
        args.get(1).and_then(|s| s.parse::<f64>().ok()),
    ) else {
        eprintln!("{CHILD_FLAG} needs a pipeline and its length in seconds");
        return ExitCode::FAILURE;
    };
    if let Err(e) = crate::common::init() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let timeout = Duration::from_secs_f64(60.0 + seconds * 4.0);
    let mut watches = Vec::new();
    let (result, threads) = peak_during(|| {
        run_with(desc, timeout, |p| {
            for i in 0..STREAMS {
                let sink = p.by_name(&format!("sink{i}")).ok_or("a sink is missing")?;
                watches.push(SinkWatch::attach(&sink)?);
            }
            Ok(())
        })
    });
    let elapsed = match result {
        Ok(elapsed) => elapsed.as_secs_f64(),
        Err(e) => {
            eprintln!("{e:?}");
            return ExitCode::FAILURE;
        }
    };
    // Per stream: the frames that reached its sink, and their latencies.
    let latency: Vec<Vec<(f64, f64)>> = watches.iter().map(SinkWatch::latency).collect();
    let counts: Vec<f64> = latency.iter().map(|l| l.len() as f64).collect();
    let all: Vec<f64> = latency.iter().flatten().map(|&(_, ns)| ns).collect();
    let (min, max) = counts
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    let late: u64 = watches.iter().filter_map(SinkWatch::late).sum();
    let run = Run {
        frames_per_s: counts.iter().sum::<f64>() / elapsed,
        late: late as f64,
        p99_ms: quantile(&all, 0.99) / 1e6,
        threads: threads as f64,
        rss_mib: peak_rss().map_or(f64::NAN, |b| b as f64 / 1048576.0),
        fairness: if max > 0.0 { min / max } else { f64::NAN },
    };
    println!(
        "{} {} {} {} {} {}",
        run.frames_per_s, run.late, run.p99_ms, run.threads, run.rss_mib, run.fairness
    );
    ExitCode::SUCCESS
}

fn measure(desc: &str, seconds: u64) -> Result<Run, Fail> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args([CHILD_FLAG, desc, &seconds.to_string()])
        .output()
        .map_err(|e| format!("cannot run the streams child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Fail::Error(format!(
            "streams child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let v: Vec<f64> = stdout
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [frames_per_s, late, p99_ms, threads, rss_mib, fairness] = v[..] else {
        return Err(Fail::Error(format!("streams child printed '{stdout}'")));
    };
    Ok(Run {
        frames_per_s,
        late,
        p99_ms,
        threads,
        rss_mib,
        fairness,
    })
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    if threads().is_none() || peak_rss().is_none() {
        return Err(Fail::Skipped(
            "no Threads: or VmHWM in /proc/self/status".into(),
        ));
    }
    let seconds = ctx.pick(10, 2);
    let frames = seconds * FPS;
    let servers = [TestServer::start(), TestServer::start()];
    for s in &servers {
        s.set_latency(Duration::from_millis(20));
        s.set_capacity(Some(4));
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let urls = urls.join(",");
    // A GPU's way: one request at a time, a fixed cost plus a small one
    // per frame, so batches are what makes it keep up.
    let gpu = TestServer::start();
    gpu.set_capacity(Some(1));
    gpu.set_latency(Duration::from_millis(10));
    gpu.set_frame_cost(Duration::from_millis(1));
    let workloads = [
        (
            "remote, 2 servers K=4 +20 ms",
            format!("processor=remote servers={urls} model={MODEL}"),
            "format=RGB,width=32,height=24",
        ),
        (
            "remote batch-size=8, 1 server K=1 +10 ms +1 ms/frame",
            format!(
                "processor=remote servers={} model={MODEL} batch-size=8",
                gpu.url()
            ),
            "format=RGB,width=32,height=24",
        ),
        (
            "analyze 1280x720",
            "processor=analyze".to_string(),
            "format=I420,width=1280,height=720",
        ),
    ];
    for (what, props, caps) in &workloads {
        // Separate pools, then one context, alternating every round.
        let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        for round in 0..ctx.rounds {
            for (mode, context) in [false, true].into_iter().enumerate() {
                runs[mode].push(measure(&pipeline(props, caps, context, frames), seconds)?);
            }
            eprintln!("   {what}: round {}/{} done", round + 1, ctx.rounds);
        }
        let pick =
            |runs: &[Run], f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let (separate, shared) = (&runs[0], &runs[1]);
        let case = |figure: &str| format!("{what}: {figure}, one context vs {STREAMS} pools");
        let values = |runs: &[Run], f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        let higher = |figure: &str, unit: &'static str, f: fn(&Run) -> f64| {
            let (s, c) = (pick(separate, f), pick(shared, f));
            Row::new(NAME, case(figure), &values(shared, f), unit)
                .reference(format!("{STREAMS} pools"), s)
                .ratio(c / s)
                .target(">= 1.0x pools", c >= s * 0.99)
        };
        let lower = |figure: &str, unit: &'static str, f: fn(&Run) -> f64, strict: bool| {
            let (s, c) = (pick(separate, f), pick(shared, f));
            let pass = if strict { c < s } else { c <= s * 1.01 };
            let row = Row::new(NAME, case(figure), &values(shared, f), unit)
                .reference(format!("{STREAMS} pools"), s)
                .target(if strict { "< pools" } else { "<= pools" }, pass);
            // No ratio to nothing (no late frames either way).
            if s > 0.0 { row.ratio(c / s) } else { row }
        };
        out.rows
            .push(higher("total frames/s", "frames/s", |r| r.frames_per_s));
        out.rows
            .push(lower("frames late", "frames", |r| r.late, false));
        out.rows
            .push(lower("p99 latency", "ms", |r| r.p99_ms, false));
        out.rows
            .push(lower("peak threads", "threads", |r| r.threads, true));
        out.rows
            .push(lower("peak RSS", "MiB", |r| r.rss_mib, false));
        let fair = pick(shared, |r| r.fairness);
        out.rows.push(
            Row::new(
                NAME,
                format!("{what}: fairness, slowest / fastest stream, one context"),
                &shared.iter().map(|r| r.fairness).collect::<Vec<_>>(),
                "",
            )
            .target(">= 0.9", fair >= 0.9),
        );
    }
    out.notes.push(format!(
        "streams: {STREAMS} live {FPS} fps streams of {seconds} s, each into its own \
         parallelfilter (workers=0) and fakesink sync=true qos=true max-lateness=20 ms, in one \
         process; late = frames the sinks dropped as late; latency = running time at the sink's \
         pad - PTS, p99 over every stream; threads and RSS are a child process's peak per run"
    ));
    Ok(())
}
