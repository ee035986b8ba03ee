// SPDX-License-Identifier: MPL-2.0
//! l. Remote batching: one in-tree test server that works like a GPU
//! (one request at a time, 10 ms per request plus 1 ms per frame in it),
//! behind `parallelfilter processor=remote workers=4` at batch-size 1, 4,
//! 8 and 16: frames/s and the p99 time through the element. The ideal at
//! batch b is b / (10 + b) ms. The source is not live and never limits,
//! so the time through the element includes waiting for admission.

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, cpu_time, median, quantile, threads_cpu_time};
use crate::latency::through;
use crate::remote::oip_server::{MODEL, TestServer};

const NAME: &str = "remote-batch";
const WORKERS: usize = 4;
const REQUEST_MS: u64 = 10;
const FRAME_MS: u64 = 1;

/// Frames/s the server can give at batch `b`.
fn ideal(b: usize) -> f64 {
    1000.0 * b as f64 / (REQUEST_MS as f64 + FRAME_MS as f64 * b as f64)
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    run_batches(ctx, out)?;
    run_transports(ctx, out)
}

/// Batch-size 1, 4, 8 and 16 on the GPU-like server.
fn run_batches(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let server = TestServer::start();
    server.set_capacity(Some(1));
    server.set_latency(Duration::from_millis(REQUEST_MS));
    server.set_frame_cost(Duration::from_millis(FRAME_MS));
    let seconds = ctx.pick(4.0, 1.0);
    let sizes = [1usize, 4, 8, 16];
    // Frames per run: about `seconds` at the ideal rate, whole batches.
    let frames = |b: usize| ((ideal(b) * seconds) as usize).div_ceil(b).max(8) * b;
    let desc = |b: usize| {
        format!(
            "videotestsrc num-buffers={} pattern=ball ! \
             video/x-raw,format=RGB,width=32,height=24,framerate=1000/1 ! \
             parallelfilter name=el processor=remote servers={} model={MODEL} \
             workers={WORKERS} batch-size={b} batch-timeout=5000000 ! fakesink sync=false",
            frames(b),
            server.url()
        )
    };
    let mut p99 = vec![Vec::new(); sizes.len()];
    let rates = ctx.alternate(NAME, &sizes, |&b| {
        let n = frames(b);
        let t = through(&desc(b), n, Duration::from_secs(60 + n as u64 / 20))?;
        p99[sizes.iter().position(|&s| s == b).unwrap_or(0)].push(quantile(&t.latencies, 0.99));
        // From the end of the first round of batches (connections, probes).
        let warmup = (WORKERS * b).min(n - 2);
        let last = n - 1;
        Ok((last - warmup) as f64 / t.out[last].duration_since(t.out[warmup]).as_secs_f64())
    })?;
    let one = median(&rates[0]);
    for (i, &b) in sizes.iter().enumerate() {
        let fps = median(&rates[i]);
        let mut row = Row::new(
            NAME,
            format!(
                "batch-size={b}, workers={WORKERS}: frames/s (ideal {:.0})",
                ideal(b)
            ),
            &rates[i],
            "frames/s",
        )
        .reference("batch-size=1", one)
        .ratio(fps / one);
        if b == 8 {
            row = row.target(">= 3x batch-size=1", fps / one >= 3.0);
        }
        out.rows.push(row);
        out.rows.push(Row::new(
            NAME,
            format!("batch-size={b}: p99 through the element"),
            &p99[i],
            "ns",
        ));
    }
    out.notes.push(format!(
        "remote-batch: one test server serving one request at a time, {REQUEST_MS} ms per request \
         + {FRAME_MS} ms per frame; 32x24 RGB, batch-timeout 5 ms, about {seconds} s per run; requests answered: {}",
        server.answered()
    ));
    Ok(())
}

/// A run of the transport comparison: `None` is `processor=passthrough`
/// (what source and sink cost per frame); else gRPC or REST, the batch
/// size and `max-requests-per-server`.
type Transport = Option<(bool, usize, usize)>;

const TRANSPORTS: [Transport; 7] = [
    None,
    Some((false, 1, 8)),
    Some((true, 1, 8)),
    Some((false, 8, 8)),
    Some((true, 8, 8)),
    Some((false, 1, 0)),
    Some((true, 1, 0)),
];

fn transport_name(grpc: bool) -> &'static str {
    if grpc { "gRPC" } else { "REST" }
}

/// REST (binary tensors) against gRPC on the same server, batch 1 and 8:
/// frames/s and the element's CPU time per frame (the process's, less the
/// server's threads, less a passthrough run's). The comparison runs at a
/// fixed `max-requests-per-server` = workers, so the transports meet the
/// same concurrency; the adaptive limit's runs follow.
pub fn run_transports(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let server = TestServer::start();
    server.set_latency(Duration::from_millis(2));
    let frames = ctx.pick(3000, 400);
    let desc = |t: Transport| {
        let element = match t {
            None => "processor=passthrough".to_string(),
            Some((grpc, batch, limit)) => format!(
                "processor=remote servers={} model={MODEL} batch-size={batch} \
                 max-requests-per-server={limit}",
                if grpc {
                    server.grpc_url()
                } else {
                    server.url()
                }
            ),
        };
        format!(
            "videotestsrc num-buffers={frames} pattern=ball ! \
             video/x-raw,format=RGB,width=224,height=224,framerate=1000/1 ! \
             parallelfilter name=el {element} workers=8 ! fakesink sync=false"
        )
    };
    let mut cpu = vec![Vec::new(); TRANSPORTS.len()];
    let rates = ctx.alternate(&format!("{NAME}-transports"), &TRANSPORTS, |&t| {
        let i = TRANSPORTS.iter().position(|&v| v == t).unwrap_or(0);
        let before = (cpu_time(), threads_cpu_time("oip-test-server"));
        let r = through(&desc(t), frames, Duration::from_secs(120))?;
        let after = (cpu_time(), threads_cpu_time("oip-test-server"));
        let (Some(p0), Some(s0), Some(p1), Some(s1)) = (before.0, before.1, after.0, after.1)
        else {
            return Err(Fail::Error("no CPU times in /proc".into()));
        };
        let used = p1.saturating_sub(p0).saturating_sub(s1.saturating_sub(s0));
        cpu[i].push(used.as_nanos() as f64 / frames as f64);
        let warmup = frames / 10;
        let last = frames - 1;
        Ok((last - warmup) as f64 / r.out[last].duration_since(r.out[warmup]).as_secs_f64())
    })?;
    let baseline = median(&cpu[0]);
    let element_cpu: Vec<Vec<f64>> = cpu
        .iter()
        .map(|c| c.iter().map(|x| x - baseline).collect())
        .collect();
    // REST and gRPC side by side: indices of the pairs in TRANSPORTS.
    for (rest, grpc) in [(1, 2), (3, 4), (5, 6)] {
        let Some((_, batch, limit)) = TRANSPORTS[rest] else {
            continue;
        };
        let limit = match limit {
            0 => "adaptive".to_string(),
            n => n.to_string(),
        };
        let case = |what: &str, grpc: bool| {
            format!(
                "{}, batch-size={batch}, max-requests-per-server={limit}: {what}",
                transport_name(grpc)
            )
        };
        let r = median(&rates[rest]);
        out.rows.push(Row::new(
            NAME,
            case("frames/s", false),
            &rates[rest],
            "frames/s",
        ));
        out.rows.push(
            Row::new(NAME, case("frames/s", true), &rates[grpc], "frames/s")
                .reference("REST", r)
                .ratio(median(&rates[grpc]) / r),
        );
        let rc = median(&element_cpu[rest]);
        out.rows.push(Row::new(
            NAME,
            case("element CPU per frame", false),
            &element_cpu[rest],
            "ns",
        ));
        out.rows.push(
            Row::new(
                NAME,
                case("element CPU per frame", true),
                &element_cpu[grpc],
                "ns",
            )
            .reference("REST", rc)
            .ratio(median(&element_cpu[grpc]) / rc),
        );
    }
    out.notes.push(format!(
        "remote-batch transports: one test server +2 ms per request, no capacity limit, \
         {frames} frames of 224x224 RGB, workers=8; element CPU per frame = the process's CPU \
         (10 ms ticks) less the server's threads, less a passthrough run's ({})",
        crate::common::fmt_ns(baseline)
    ));
    Ok(())
}
