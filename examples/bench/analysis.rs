// SPDX-License-Identifier: MPL-2.0
//! g. Cost per 1920x1080 I420 frame of `processor=analyze` (workers=1 and
//! workers=cores) next to `videoanalyse` on the same frames; the source is
//! one frame repeated by `imagefreeze` and its own run is subtracted.
//!
//! With workers=cores the cost is wall time per frame, so it shows the
//! throughput gain; workers=1 is the like-for-like cost. Note `analyze`
//! computes more (histogram, sharpness, motion) than `videoanalyse`
//! (brightness and variance).

use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, median, require_processor, run_with};
use crate::cpu::source;

const NAME: &str = "analysis";

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    require_processor("analyze", "", "I420")?;
    let frames = ctx.pick(300, 10);
    let cores = ctx.cores;
    let src = source("I420", 1920, 1080, frames);
    let sink = "fakesink sync=false";
    let variants = [
        format!("{src} ! {sink}"),
        format!("{src} ! videoanalyse ! {sink}"),
        format!("{src} ! parallelfilter processor=analyze workers=1 ! {sink}"),
        format!("{src} ! parallelfilter processor=analyze workers={cores} ! {sink}"),
    ];
    let samples = ctx.alternate(NAME, &variants, |desc| {
        run_with(desc, Duration::from_secs(300), |_| Ok(())).map(|d| d.as_nanos() as f64)
    })?;
    let per_frame = |i: usize| -> Vec<f64> {
        samples[i]
            .iter()
            .zip(&samples[0])
            .map(|(t, src)| (t - src) / frames as f64)
            .collect()
    };
    let va = per_frame(1);
    let v = median(&va);
    out.rows.push(Row::new(
        NAME,
        "videoanalyse 1920x1080 I420",
        &va,
        "ns/frame",
    ));
    for (i, w) in [(2, 1), (3, cores)] {
        let ours = per_frame(i);
        let ratio = median(&ours) / v;
        out.rows.push(
            Row::new(NAME, format!("analyze workers={w}"), &ours, "ns/frame")
                .reference("videoanalyse", v)
                .ratio(ratio)
                .target("<= 1.0x videoanalyse", ratio <= 1.0),
        );
    }
    out.notes.push(format!(
        "analysis: {frames} frames per run, wall time minus the source-only run of the same round"
    ));
    Ok(())
}
