// SPDX-License-Identifier: MPL-2.0
//! a. Cost per small buffer of `parallelfilter processor=passthrough` next to
//! `queue` at the same depth (its byte and time limits off) and `identity`,
//! the source's own cost (a run with neither) subtracted.

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, cpu_time, fmt_ns, median, run_with};

const NAME: &str = "overhead";
/// Same max-size-buffers on queue and parallelfilter: queue's default.
const DEPTH: u32 = 200;

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let buffers: u64 = ctx.pick(1_000_000, 20_000);
    let workers = ctx.cores;
    let src = format!(
        "fakesrc num-buffers={buffers} sizetype=fixed sizemax=256 filltype=nothing \
         format=time can-activate-pull=false ! video/x-raw,format=GRAY8,width=16,height=16,framerate=30/1"
    );
    let sink = "fakesink sync=false";
    let variants = [
        ("none", format!("{src} ! {sink}")),
        ("identity", format!("{src} ! identity ! {sink}")),
        (
            "queue",
            format!(
                "{src} ! queue max-size-buffers={DEPTH} max-size-bytes=0 max-size-time=0 ! {sink}"
            ),
        ),
        (
            "parallelfilter",
            format!(
                "{src} ! parallelfilter processor=passthrough workers={workers} \
                 max-size-buffers={DEPTH} ! {sink}"
            ),
        ),
    ];
    let timeout = Duration::from_secs(600);
    let mut cpu = vec![vec![]; variants.len()];
    let samples = ctx.alternate(NAME, &variants, |(name, desc)| {
        let before = cpu_time();
        let wall = run_with(desc, timeout, |_| Ok(()))?;
        if let (Some(a), Some(b), Some(i)) = (
            before,
            cpu_time(),
            variants.iter().position(|v| v.0 == *name),
        ) {
            cpu[i].push(b.saturating_sub(a).as_nanos() as f64);
        }
        Ok(wall.as_nanos() as f64)
    })?;
    // Per round: the variant's time minus the source-only run of that round.
    let per_buffer = |i: usize| -> Vec<f64> {
        samples[i]
            .iter()
            .zip(&samples[0])
            .map(|(t, none)| (t - none) / buffers as f64)
            .collect()
    };
    let source: Vec<f64> = samples[0].iter().map(|t| t / buffers as f64).collect();
    let identity = per_buffer(1);
    let queue = per_buffer(2);
    let ours = per_buffer(3);
    let q = median(&queue);
    out.rows.push(Row::new(
        NAME,
        format!("source alone ({buffers} buffers)"),
        &source,
        "ns/buffer",
    ));
    out.rows.push(
        Row::new(NAME, "identity", &identity, "ns/buffer")
            .reference("queue", q)
            .ratio(median(&identity) / q),
    );
    out.rows.push(Row::new(
        NAME,
        format!("queue max-size-buffers={DEPTH}"),
        &queue,
        "ns/buffer",
    ));
    let ratio = median(&ours) / q;
    out.rows.push(
        Row::new(
            NAME,
            format!("parallelfilter passthrough workers={workers} max-size-buffers={DEPTH}"),
            &ours,
            "ns/buffer",
        )
        .reference("queue", q)
        .ratio(ratio)
        .target("<= 1.5x queue", ratio <= 1.5),
    );
    // The same on CPU time (all threads): the element's threads overlap on
    // two cores, so wall time alone hides work.
    if cpu.iter().all(|c| c.len() == samples[0].len()) {
        let net = |i: usize| -> Vec<f64> {
            cpu[i]
                .iter()
                .zip(&cpu[0])
                .map(|(t, none)| (t - none) / buffers as f64)
                .collect()
        };
        let (cq, co) = (net(2), net(3));
        out.rows
            .push(Row::new(NAME, "queue, CPU time", &cq, "ns/buffer"));
        out.rows.push(
            Row::new(NAME, "parallelfilter, CPU time", &co, "ns/buffer")
                .reference("queue", median(&cq))
                .ratio(median(&co) / median(&cq)),
        );
    }
    out.notes.push(format!(
        "overhead: net cost per buffer = (run - source-only run of the same round) / {buffers}; \
         queue {} vs parallelfilter {} per buffer",
        fmt_ns(q),
        fmt_ns(median(&ours))
    ));
    Ok(())
}
