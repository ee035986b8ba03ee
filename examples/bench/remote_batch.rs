// SPDX-License-Identifier: MPL-2.0
//! l. Remote batching: one in-tree test server that works like a GPU
//! (one request at a time, 10 ms per request plus 1 ms per frame in it),
//! behind `parallelfilter processor=remote workers=4` at batch-size 1, 4,
//! 8 and 16: frames/s and the p99 time through the element. The ideal at
//! batch b is b / (10 + b) ms. The source is not live and never limits,
//! so the time through the element includes waiting for admission.

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, median, quantile};
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
