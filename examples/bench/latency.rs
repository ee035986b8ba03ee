// SPDX-License-Identifier: MPL-2.0
//! d. Added latency: live `videotestsrc` at 30 fps through
//! `processor=passthrough`, time from the element's sink pad to its src pad
//! (pad probes, buffers matched by PTS); `queue` measured the same way.
//! The sink does not sync: a syncing sink holds each push for its
//! processing deadline (20 ms), and the next frame would wait behind it in
//! any element; the source is live, so the element is never saturated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::common::{Ctx, Fail, Output, Row, median, quantile, run_with};

const NAME: &str = "latency";

/// Sink-in to src-out times in ns of the element named `el` in `desc`.
fn measure(desc: &str, frames: usize) -> Result<Vec<f64>, Fail> {
    let timeout = Duration::from_secs(30 + frames as u64 / 10);
    Ok(through(desc, frames, timeout)?.latencies)
}

/// What passed through the element named `el`, per buffer in output order.
pub struct Through {
    /// Sink-in to src-out, ns.
    pub latencies: Vec<f64>,
    /// When each buffer left.
    pub out: Vec<Instant>,
}

/// Runs `desc` to EOS timing each buffer through the element named `el`
/// (matched by PTS); all `frames` must come through.
pub fn through(desc: &str, frames: usize, timeout: Duration) -> Result<Through, Fail> {
    let entered: Arc<Mutex<HashMap<Option<gst::ClockTime>, Instant>>> = Default::default();
    let seen: Arc<Mutex<Through>> = Arc::new(Mutex::new(Through {
        latencies: Vec::with_capacity(frames),
        out: Vec::with_capacity(frames),
    }));
    run_with(desc, timeout, |p| {
        let el = p.by_name("el").ok_or("no element named 'el'")?;
        let sink = el.static_pad("sink").ok_or("no sink pad")?;
        let src = el.static_pad("src").ok_or("no src pad")?;
        let e = entered.clone();
        sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let now = Instant::now();
            if let Some(b) = info.buffer()
                && let Ok(mut e) = e.lock()
            {
                e.insert(b.pts(), now);
            }
            gst::PadProbeReturn::Ok
        });
        let (e, l) = (entered.clone(), seen.clone());
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let now = Instant::now();
            if let Some(b) = info.buffer()
                && let Some(t) = e.lock().ok().and_then(|mut e| e.remove(&b.pts()))
                && let Ok(mut l) = l.lock()
            {
                l.latencies.push(now.duration_since(t).as_nanos() as f64);
                l.out.push(now);
            }
            gst::PadProbeReturn::Ok
        });
        Ok(())
    })?;
    let l = seen
        .lock()
        .map(|mut l| Through {
            latencies: std::mem::take(&mut l.latencies),
            out: std::mem::take(&mut l.out),
        })
        .map_err(|_| Fail::Error("probe lock poisoned".into()))?;
    if l.latencies.len() != frames {
        return Err(Fail::Error(format!(
            "{} of {frames} frames measured",
            l.latencies.len()
        )));
    }
    Ok(l)
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let frames = ctx.pick(150, 30);
    let src = format!(
        "videotestsrc is-live=true num-buffers={frames} ! \
         video/x-raw,format=I420,width=320,height=240,framerate=30/1"
    );
    let variants = [
        (
            "queue",
            format!("{src} ! queue name=el ! fakesink sync=false"),
        ),
        (
            "parallelfilter",
            format!("{src} ! parallelfilter name=el processor=passthrough ! fakesink sync=false"),
        ),
    ];
    // Per round: p50 and p99 of each variant.
    let mut per_round: Vec<[Vec<f64>; 2]> = vec![[vec![], vec![]], [vec![], vec![]]];
    ctx.alternate(NAME, &variants, |(_, desc)| {
        let l = measure(desc, frames)?;
        let i = usize::from(desc.contains("parallelfilter"));
        per_round[i][0].push(quantile(&l, 0.5));
        per_round[i][1].push(quantile(&l, 0.99));
        Ok(0.0)
    })?;
    let [q, ours] = [&per_round[0], &per_round[1]];
    out.rows.push(Row::new(NAME, "queue p50", &q[0], "ns"));
    out.rows.push(Row::new(NAME, "queue p99", &q[1], "ns"));
    let p50 = median(&ours[0]);
    let p99 = median(&ours[1]);
    out.rows.push(
        Row::new(NAME, "parallelfilter passthrough p50", &ours[0], "ns")
            .reference("queue p50", median(&q[0]))
            .ratio(p50 / median(&q[0])),
    );
    out.rows.push(
        Row::new(NAME, "parallelfilter passthrough p99", &ours[1], "ns")
            .reference("queue p99", median(&q[1]))
            .ratio(p99 / median(&q[1]))
            .target("p99 <= 1 ms", p99 <= 1e6),
    );
    out.notes.push(format!(
        "latency: {frames} live frames per run at 30 fps, 320x240 I420; per-round quantiles, median over rounds"
    ));
    Ok(())
}
