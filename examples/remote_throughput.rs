// SPDX-License-Identifier: MPL-2.0
//! Throughput of `processor=remote` against its ideal:
//! `cargo run --release --example remote_throughput`.
//!
//! The benchmark's `remote` scenario (`examples/bench/remote.rs`; `cargo run
//! --release --example bench -- remote`) with other settings: two in-tree
//! Open Inference Protocol test servers, each adding `--latency-ms` (20) to
//! every request, `--frames` (3000) small RGB frames through
//! `parallelfilter processor=remote workers=W` (32). The ideal rate is
//! W / latency (1600 fps); the reference is `processor=delay` with the same
//! fixed delay, the element's own ceiling for that latency. Runs alternate,
//! `--rounds` (5) of each; medians and ratios are printed. Options: `--json`
//! sends plain JSON tensors instead of binary ones.

#[path = "bench/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "bench/remote.rs"]
#[allow(dead_code)]
mod remote;
#[path = "bench/report.rs"]
#[allow(dead_code)]
mod report;

use std::process::ExitCode;
use std::time::Instant;

use common::{Ctx, Fail, Output};
use remote::{Config, Tensors};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cfg = Config {
        frames: arg(&args, "--frames", 3000).max(1) as usize,
        workers: arg(&args, "--workers", 32).max(1) as usize,
        latency_ms: arg(&args, "--latency-ms", 20).max(1),
        tensors: vec![if args.iter().any(|a| a == "--json") {
            Tensors::Json
        } else {
            Tensors::Binary
        }],
    };
    let rounds = arg(&args, "--rounds", 5).max(1) as usize;
    if let Err(e) = common::init() {
        eprintln!("cannot initialise GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    let ctx = Ctx::new(false, Some(rounds));
    let machine = report::Machine::probe();
    let mut out = Output::default();
    let started = Instant::now();
    let result = remote::measure_into(&ctx, &cfg, &mut out);
    print!(
        "{}",
        report::table(&out, &ctx, &machine.finish(started.elapsed()))
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Skipped(why) | Fail::Error(why)) => {
            eprintln!("remote: {why}");
            ExitCode::FAILURE
        }
    }
}
