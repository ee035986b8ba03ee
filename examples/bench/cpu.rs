// SPDX-License-Identifier: MPL-2.0
//! c. CPU-bound scaling at 1280x720: `processor=analyze` and
//! `filter="gaussianblur"`, workers 1..cores, against serial work (analyze:
//! workers=1; gaussianblur: the element alone).
//! h. The filter processor's own targets: workers=1 within 5% of serial
//! gaussianblur, workers=2 at least 1.9x.
//!
//! The source is one frame repeated by `imagefreeze`, so it costs nothing
//! next to the work; rates are taken at the sink after the first batch.

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, Series, median, require_processor, run_recorded};

pub fn source(format: &str, width: u32, height: u32, frames: usize) -> String {
    format!(
        "videotestsrc num-buffers=1 pattern=smpte ! \
         video/x-raw,format={format},width={width},height={height},framerate=30/1 ! \
         imagefreeze num-buffers={frames}"
    )
}

const SINK: &str = "fakesink name=sink sync=false";

/// Steady frames/s of `desc` with `workers` frames in parallel.
fn rate(desc: &str, frames: usize, workers: usize) -> Result<f64, Fail> {
    let seen = run_recorded(desc, frames, Duration::from_secs(300))?;
    if seen.at.len() != frames {
        return Err(Fail::Error(format!(
            "{} of {frames} frames arrived through '{desc}'",
            seen.at.len()
        )));
    }
    Ok(seen.rate(workers, workers))
}

/// Samples per variant: serial first, then each worker count.
fn sweep(
    ctx: &Ctx,
    key: &str,
    serial: &str,
    parallel: impl Fn(usize) -> String,
    workers: &[usize],
    frames: usize,
) -> Result<Vec<Vec<f64>>, Fail> {
    let mut variants = vec![(serial.to_string(), 1)];
    variants.extend(workers.iter().map(|&w| (parallel(w), w)));
    ctx.alternate(key, &variants, |(desc, w)| rate(desc, frames, *w))
}

/// Speed-up of variant `i` over the serial one, per round.
fn speedups(samples: &[Vec<f64>], i: usize) -> Vec<f64> {
    samples[i]
        .iter()
        .zip(&samples[0])
        .map(|(r, serial)| r / serial)
        .collect()
}

fn filter_sweep(ctx: &Ctx, workers: &[usize]) -> Result<Vec<Vec<f64>>, Fail> {
    require_processor("filter", "filter=gaussianblur", "AYUV")?;
    let frames = ctx.pick(60, 6);
    let src = source("AYUV", 1280, 720, frames);
    sweep(
        ctx,
        &format!("filter-sweep {workers:?}"),
        &format!("{src} ! gaussianblur ! {SINK}"),
        |w| format!("{src} ! parallelfilter filter=gaussianblur workers={w} ! {SINK}"),
        workers,
        frames,
    )
}

fn report_scaling(
    out: &mut Output,
    ctx: &Ctx,
    what: &str,
    serial_name: &str,
    workers: &[usize],
    samples: &[Vec<f64>],
) {
    let name = "cpu-scaling";
    let serial = median(&samples[0]);
    out.rows.push(Row::new(
        name,
        format!("{what}: serial ({serial_name})"),
        &samples[0],
        "frames/s",
    ));
    let mut curve = vec![];
    for (i, w) in workers.iter().enumerate() {
        let s = speedups(samples, i + 1);
        let speedup = median(&s);
        let ideal = (*w).min(ctx.cores) as f64;
        curve.push((*w as f64, speedup));
        if samples[i + 1] == samples[0] {
            // The serial run itself (analyze workers=1).
            continue;
        }
        out.rows.push(
            Row::new(
                name,
                format!("{what}: workers={w}"),
                &samples[i + 1],
                "frames/s",
            )
            .reference(serial_name, serial)
            .ratio(speedup)
            .target(
                format!(">= {:.2}x serial", 0.95 * ideal),
                speedup >= 0.95 * ideal,
            ),
        );
    }
    out.series.push(Series {
        chart: "cpu",
        name: what.to_string(),
        points: curve,
    });
}

pub fn run_scaling(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let workers: Vec<usize> = (1..=ctx.cores).collect();
    out.series.push(Series {
        chart: "cpu",
        name: "ideal min(workers, cores)".into(),
        points: workers.iter().map(|&w| (w as f64, w as f64)).collect(),
    });
    let mut skipped = vec![];
    match require_processor("analyze", "", "I420") {
        Ok(()) => {
            let frames = ctx.pick(600, 10);
            let src = source("I420", 1280, 720, frames);
            let par =
                |w: usize| format!("{src} ! parallelfilter processor=analyze workers={w} ! {SINK}");
            // workers=1 is the serial reference.
            let samples = sweep(ctx, "analyze-sweep", &par(1), par, &workers[1..], frames)?;
            let mut all = vec![samples[0].clone()];
            all.extend(samples.iter().cloned());
            report_scaling(
                out,
                ctx,
                "analyze 1280x720 I420",
                "workers=1",
                &workers,
                &all,
            );
        }
        Err(Fail::Skipped(why)) => skipped.push(why),
        Err(e) => return Err(e),
    }
    match filter_sweep(ctx, &workers) {
        Ok(samples) => report_scaling(
            out,
            ctx,
            "gaussianblur 1280x720 AYUV",
            "gaussianblur alone",
            &workers,
            &samples,
        ),
        Err(Fail::Skipped(why)) => skipped.push(why),
        Err(e) => return Err(e),
    }
    if skipped.len() == 2 {
        return Err(Fail::Skipped(skipped.join("; ")));
    }
    for why in skipped {
        out.skipped.push(("cpu-scaling (part)".into(), why));
    }
    Ok(())
}

pub fn run_filter(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    let name = "filter";
    let workers = [1, 2];
    let samples = filter_sweep(ctx, &workers)?;
    let serial = median(&samples[0]);
    out.rows.push(Row::new(
        name,
        "gaussianblur 1280x720 alone",
        &samples[0],
        "frames/s",
    ));
    for (i, (w, min)) in workers.iter().zip([0.95, 1.9]).enumerate() {
        let speedup = median(&speedups(&samples, i + 1));
        out.rows.push(
            Row::new(
                name,
                format!("filter=gaussianblur workers={w}"),
                &samples[i + 1],
                "frames/s",
            )
            .reference("gaussianblur alone", serial)
            .ratio(speedup)
            .target(format!(">= {min}x serial"), speedup >= min),
        );
    }
    Ok(())
}
