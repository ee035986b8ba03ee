// SPDX-License-Identifier: MPL-2.0
//! a. Cost per small buffer of `parallelfilter processor=passthrough` next to
//! `queue` at the same depth (its byte and time limits off), at
//! max-size-buffers 4 and 200, and `identity`; the source's own cost (a run
//! with neither) subtracted. Per buffer: wall time, CPU time and context
//! switches of the process.

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, context_switches, cpu_time, fmt_ns, median, run_with};

const NAME: &str = "overhead";
/// Same max-size-buffers on queue and parallelfilter: a shallow queue, where
/// every few buffers a thread must wake, and queue's default (last: the one
/// `identity` is compared with).
const DEPTHS: [u32; 2] = [4, 200];

/// Wall ns, CPU ns, and voluntary and involuntary context switches of one
/// run; NaN where the system does not tell.
#[derive(Clone, Copy)]
struct Cost {
    wall: f64,
    cpu: f64,
    voluntary: f64,
    involuntary: f64,
}

fn measure(desc: &str) -> Result<Cost, Fail> {
    let (cpu0, csw0) = (cpu_time(), context_switches());
    let wall = run_with(desc, Duration::from_secs(600), |_| Ok(()))?;
    let (cpu1, csw1) = (cpu_time(), context_switches());
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_nanos() as f64,
        _ => f64::NAN,
    };
    let (voluntary, involuntary) = match (csw0, csw1) {
        (Some(a), Some(b)) => ((b.0 - a.0) as f64, (b.1 - a.1) as f64),
        _ => (f64::NAN, f64::NAN),
    };
    Ok(Cost {
        wall: wall.as_nanos() as f64,
        cpu,
        voluntary,
        involuntary,
    })
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let buffers: u64 = ctx.pick(1_000_000, 20_000);
    let workers = ctx.cores;
    let src = format!(
        "fakesrc num-buffers={buffers} sizetype=fixed sizemax=256 filltype=nothing \
         format=time can-activate-pull=false ! video/x-raw,format=GRAY8,width=16,height=16,framerate=30/1"
    );
    let sink = "fakesink sync=false";
    let mut variants = vec![
        format!("{src} ! {sink}"),
        format!("{src} ! identity ! {sink}"),
    ];
    for depth in DEPTHS {
        variants.push(format!(
            "{src} ! queue max-size-buffers={depth} max-size-bytes=0 max-size-time=0 ! {sink}"
        ));
        variants.push(format!(
            "{src} ! parallelfilter processor=passthrough workers={workers} \
             max-size-buffers={depth} ! {sink}"
        ));
    }
    let mut costs: Vec<Vec<Cost>> = vec![vec![]; variants.len()];
    ctx.alternate(NAME, &variants, |desc| {
        let cost = measure(desc)?;
        if let Some(i) = variants.iter().position(|v| v == desc) {
            costs[i].push(cost);
        }
        Ok(cost.wall)
    })?;
    // Per round: the variant's figure minus the source-only run of that
    // round, per buffer.
    let net = |i: usize, f: fn(&Cost) -> f64| -> Vec<f64> {
        costs[i]
            .iter()
            .zip(&costs[0])
            .map(|(c, none)| (f(c) - f(none)) / buffers as f64)
            .collect()
    };
    let wall = |c: &Cost| c.wall;
    let cpu = |c: &Cost| c.cpu;
    let switches = |c: &Cost| c.voluntary + c.involuntary;
    let source: Vec<f64> = costs[0].iter().map(|c| c.wall / buffers as f64).collect();
    out.rows.push(Row::new(
        NAME,
        format!("source alone ({buffers} buffers)"),
        &source,
        "ns/buffer",
    ));
    // Variants: none, identity, then queue and parallelfilter per depth.
    let queue_at = |k: usize| 2 + 2 * k;
    let default_queue = median(&net(queue_at(DEPTHS.len() - 1), wall));
    let identity = net(1, wall);
    out.rows.push(
        Row::new(NAME, "identity", &identity, "ns/buffer")
            .reference("queue", default_queue)
            .ratio(median(&identity) / default_queue),
    );
    let mut summary = vec![];
    for (k, depth) in DEPTHS.into_iter().enumerate() {
        let (qi, pi) = (queue_at(k), queue_at(k) + 1);
        let queue = format!("queue max-size-buffers={depth}");
        let ours = format!("parallelfilter passthrough workers={workers} max-size-buffers={depth}");
        let (q, p) = (net(qi, wall), net(pi, wall));
        let ratio = median(&p) / median(&q);
        out.rows
            .push(Row::new(NAME, queue.as_str(), &q, "ns/buffer"));
        out.rows.push(
            Row::new(NAME, ours.as_str(), &p, "ns/buffer")
                .reference("queue", median(&q))
                .ratio(ratio)
                .target("<= 1.5x queue", ratio <= 1.5),
        );
        // The same on CPU time (all threads): the element's threads overlap
        // on two cores, so wall time alone hides work.
        let (cq, cp) = (net(qi, cpu), net(pi, cpu));
        out.rows.push(Row::new(
            NAME,
            format!("{queue}, CPU time"),
            &cq,
            "ns/buffer",
        ));
        out.rows.push(
            Row::new(NAME, format!("{ours}, CPU time"), &cp, "ns/buffer")
                .reference("queue", median(&cq))
                .ratio(median(&cp) / median(&cq)),
        );
        // Each hand-off between threads that finds the other asleep costs
        // a wake-up: context switches count them.
        let (sq, sp) = (net(qi, switches), net(pi, switches));
        let ratio = median(&sp) / median(&sq);
        out.rows.push(Row::new(
            NAME,
            format!("{queue}, context switches"),
            &sq,
            "switches/buffer",
        ));
        out.rows.push(
            Row::new(
                NAME,
                format!("{ours}, context switches"),
                &sp,
                "switches/buffer",
            )
            .reference("queue", median(&sq))
            .ratio(ratio)
            .target("<= 1.5x queue", ratio <= 1.5),
        );
        let split = |i: usize| {
            let v = median(&net(i, |c| c.voluntary));
            let n = median(&net(i, |c| c.involuntary));
            format!("{v:.3} + {n:.3}")
        };
        summary.push(format!(
            "depth {depth}: queue {} vs parallelfilter {} per buffer; \
             switches voluntary + involuntary: queue {}, parallelfilter {}",
            fmt_ns(median(&q)),
            fmt_ns(median(&p)),
            split(qi),
            split(pi)
        ));
    }
    out.notes.push(format!(
        "overhead: net cost per buffer = (run - source-only run of the same round) / {buffers}, \
         for wall time, CPU time and context switches (getrusage, whole process); {}",
        summary.join("; ")
    ));
    Ok(())
}
