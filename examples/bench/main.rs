// SPDX-License-Identifier: MPL-2.0
//! Benchmarks of `parallelfilter` against its references, measured side by
//! side in one run.
//!
//! `cargo run --release --example bench -- [SCENARIO...] [--quick] [--rounds N] [--out DIR]`
//!
//! Every scenario runs its measurement and its reference alternately,
//! `--rounds` times, and reports medians and ratios. The table goes to
//! stdout; `DIR/results.json` and `DIR/scaling.svg` (default
//! `bench-results/`) hold the figures and the scaling curves, and
//! `DIR/live-overload.svg` the live-overload latency curves. `--quick` is a
//! smoke run (CI): few frames, one round, targets not judged.
//!
//! Scenarios: see `SCENARIOS` below, or `--list`. A scenario lives in its own
//! module with a `run(&Ctx, &mut Output) -> Result<(), Fail>`; add it to
//! `SCENARIOS` to make it runnable.

mod analysis;
mod auto;
mod common;
mod cpu;
mod latency;
mod limit;
mod live_overload;
mod memory;
mod overhead;
mod remote;
mod remote_batch;
mod report;
mod roundrobin;
mod scaling;
mod streams;
mod threads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub use common::{Ctx, Fail, Output, Row, Series};

type ScenarioFn = fn(&Ctx, &mut Output) -> Result<(), Fail>;

/// Name, issue letter, what it measures, function.
const SCENARIOS: &[(&str, &str, &str, ScenarioFn)] = &[
    (
        "overhead",
        "a",
        "cost per small buffer: passthrough vs queue vs identity",
        overhead::run,
    ),
    (
        "latency-scaling",
        "b",
        "delay 20 ms, workers 1..256: frames/s vs workers / 20 ms; peak threads at 256",
        scaling::run,
    ),
    (
        "cpu-scaling",
        "c",
        "analyze 1280x720 and 1920x1080, gaussianblur 1280x720: workers 1..cores \
         vs serial and the machine limit; analyze at 2 x cores; peak threads",
        cpu::run_scaling,
    ),
    (
        "latency",
        "d",
        "live 30 fps through passthrough: p50/p99 added latency vs queue",
        latency::run,
    ),
    (
        "memory",
        "e",
        "peak RSS at 3840x2160, max-size-buffers=8 behind a slow delay",
        memory::run,
    ),
    (
        "roundrobin",
        "f",
        "roundrobin + N branches + funnel vs parallelfilter: rate and order",
        roundrobin::run,
    ),
    (
        "analysis",
        "g",
        "analyze vs videoanalyse per 1920x1080 I420 frame",
        analysis::run,
    ),
    (
        "filter",
        "h",
        "gaussianblur 1280x720: serial vs filter=gaussianblur workers 1 and 2",
        cpu::run_filter,
    ),
    (
        "remote",
        "i",
        "remote on 2 test servers +20 ms, workers=32: frames/s vs 32 / 20 ms",
        remote::run,
    ),
    (
        "live-overload",
        "j",
        "live 30 fps, delay 100 ms, 2 workers: leaky=no/downstream/pass, interval=2: \
         frames out, processed, late at a syncing sink, latency over time",
        live_overload::run,
    ),
    (
        "auto",
        "k",
        "workers=0 vs fixed 1..256: delay 20 ms, delay 5/50/5 ms, gaussianblur, analyze, \
         remote K=4, live 30 fps 100 ms; throughput, workers used, settling",
        auto::run,
    ),
    (
        "remote-batch",
        "l",
        "remote on a GPU-like test server (10 ms + 1 ms/frame, one request at a time), \
         batch-size 1/4/8/16: frames/s and p99 through the element",
        remote_batch::run,
    ),
    (
        "streams",
        "m",
        "8 live 30 fps streams, remote K=4 and analyze 1280x720: one context vs 8 pools: \
         frames/s, late frames, p99 latency, threads, peak RSS, fairness",
        streams::run,
    ),
];

const USAGE: &str = "usage: bench [SCENARIO...] [--quick] [--rounds N] [--out DIR] [--list]";

struct Options {
    scenarios: Vec<&'static str>,
    quick: bool,
    rounds: Option<usize>,
    out: PathBuf,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        scenarios: Vec::new(),
        quick: false,
        rounds: None,
        out: PathBuf::from("bench-results"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--rounds" => {
                let n = it
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--rounds needs a positive number")?;
                opts.rounds = Some(n);
            }
            "--out" => opts.out = PathBuf::from(it.next().ok_or("--out needs a directory")?),
            "--list" => {
                for (name, letter, what, _) in SCENARIOS {
                    println!("{letter}. {name:16} {what}");
                }
                std::process::exit(0);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            name => {
                let found = SCENARIOS
                    .iter()
                    .find(|(n, letter, _, _)| *n == name || *letter == name)
                    .ok_or_else(|| format!("unknown scenario or option '{name}'\n{USAGE}"))?;
                if !opts.scenarios.contains(&found.0) {
                    opts.scenarios.push(found.0);
                }
            }
        }
    }
    if opts.scenarios.is_empty() {
        opts.scenarios = SCENARIOS.iter().map(|s| s.0).collect();
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(memory::CHILD_FLAG) {
        return memory::child(&args[1..]);
    }
    if args.first().map(String::as_str) == Some(threads::CHILD_FLAG) {
        return threads::child(&args[1..]);
    }
    if args.first().map(String::as_str) == Some(streams::CHILD_FLAG) {
        return streams::child(&args[1..]);
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = common::init() {
        eprintln!("cannot initialise GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    let ctx = Ctx::new(opts.quick, opts.rounds);
    let machine = report::Machine::probe();
    eprintln!(
        "bench: {} rounds{}, {} cores, load {}",
        ctx.rounds,
        if ctx.quick { " (quick)" } else { "" },
        ctx.cores,
        machine.load_start
    );
    let mut out = Output::default();
    let mut failed = false;
    let started = Instant::now();
    for name in &opts.scenarios {
        let Some((name, letter, what, run)) = SCENARIOS.iter().find(|s| s.0 == *name) else {
            continue;
        };
        eprintln!("== {letter}. {name}: {what}");
        let t = Instant::now();
        match run(&ctx, &mut out) {
            Ok(()) => eprintln!("   done in {:.1} s", t.elapsed().as_secs_f64()),
            Err(Fail::Skipped(why)) => {
                eprintln!("   skipped: {why}");
                out.skipped.push((name.to_string(), why));
            }
            Err(Fail::Error(why)) => {
                eprintln!("   FAILED: {why}");
                out.skipped
                    .push((name.to_string(), format!("failed: {why}")));
                failed = true;
            }
        }
    }
    let machine = machine.finish(started.elapsed());
    print!("{}", report::table(&out, &ctx, &machine));
    if let Err(e) = report::write_files(&opts.out, &out, &ctx, &machine) {
        eprintln!("cannot write results to {}: {e}", opts.out.display());
        failed = true;
    }
    if out.series.iter().any(|s| s.chart == live_overload::CHART) {
        let path = opts.out.join("live-overload.svg");
        match live_overload::plot(&path, &out.series) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("cannot plot {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
