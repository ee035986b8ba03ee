// SPDX-License-Identifier: MPL-2.0
//! b. Latency-bound scaling: `processor=delay` with a fixed 20 ms per frame,
//! workers 1, 2, 4, ... 256; frames/s against the ideal workers / 20 ms.
//! Peak threads of a process running it at 256 workers (see
//! [`crate::threads`]).

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, Series, median, run_recorded};
use crate::threads;

const NAME: &str = "latency-scaling";
pub const DELAY_MS: u64 = 20;
/// Workers of the peak-threads figure: the sweep's largest.
const THREADS_AT: usize = 256;

/// Small frames, so the source never limits the rate.
pub const SMALL_SRC: &str = "videotestsrc pattern=black ! \
     video/x-raw,format=GRAY8,width=16,height=16,framerate=30/1";

/// Frames for `workers` so that `periods` whole delay periods are measured
/// after the first one.
pub fn frames_for(workers: usize, periods: usize) -> usize {
    workers * (periods + 1)
}

pub fn delay_pipeline(workers: usize, frames: usize) -> String {
    let ns = DELAY_MS * 1_000_000;
    // Room for a second batch waiting behind the one in processing.
    let depth = (4 * workers).min(65535);
    format!(
        "{} ! parallelfilter processor=delay delay-min={ns} delay-max={ns} workers={workers} \
         max-size-buffers={depth} ! fakesink name=sink sync=false",
        SMALL_SRC.replacen(
            "videotestsrc",
            &format!("videotestsrc num-buffers={frames}"),
            1
        )
    )
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let workers: Vec<usize> = if ctx.quick {
        vec![1, 8, 64]
    } else {
        (0..=8).map(|i| 1 << i).collect()
    };
    let periods = ctx.pick(25, 5);
    let samples = ctx.alternate(NAME, &workers, |&w| {
        let frames = frames_for(w, periods);
        let seen = run_recorded(&delay_pipeline(w, frames), frames, Duration::from_secs(120))?;
        if seen.at.len() != frames {
            return Err(Fail::Error(format!(
                "workers={w}: {} of {frames} frames arrived",
                seen.at.len()
            )));
        }
        if seen.out_of_order() != 0 {
            return Err(Fail::Error(format!("workers={w}: frames out of order")));
        }
        Ok(seen.rate(0, w))
    })?;
    let mut measured = Vec::new();
    let mut ideal_curve = Vec::new();
    for (w, s) in workers.iter().zip(&samples) {
        let ideal = *w as f64 * 1000.0 / DELAY_MS as f64;
        let fps = median(s);
        let ratio = fps / ideal;
        out.rows.push(
            Row::new(
                NAME,
                format!("delay {DELAY_MS} ms, workers={w}"),
                s,
                "frames/s",
            )
            .reference("ideal workers/20ms", ideal)
            .ratio(ratio)
            .target(">= 0.95x ideal", ratio >= 0.95),
        );
        measured.push((*w as f64, fps));
        ideal_curve.push((*w as f64, ideal));
    }
    out.series.push(Series {
        chart: "latency",
        name: "parallelfilter delay 20 ms".into(),
        points: measured,
    });
    out.series.push(Series {
        chart: "latency",
        name: "ideal workers / 20 ms".into(),
        points: ideal_curve,
    });
    let frames = frames_for(THREADS_AT, periods);
    let desc = delay_pipeline(THREADS_AT, frames);
    match ctx.alternate("threads latency-scaling", &[desc], |d| threads::peak(d)) {
        Ok(samples) => out.rows.push(threads::row(
            NAME,
            format!("delay {DELAY_MS} ms, workers={THREADS_AT}: peak threads"),
            &samples[0],
            THREADS_AT,
        )),
        Err(Fail::Skipped(why)) => out.skipped.push((format!("{NAME} threads"), why)),
        Err(e) => return Err(e),
    }
    out.notes.push(format!(
        "latency-scaling: {periods} delay periods measured per point after the first output \
         (frames = workers x {}), max-size-buffers = 4 x workers",
        periods + 1
    ));
    Ok(())
}
