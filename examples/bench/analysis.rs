// SPDX-License-Identifier: MPL-2.0
//! g. Cost per 1920x1080 I420 frame of `processor=analyze` (workers=1 and
//! workers=cores) next to `videoanalyse` on the same frames; the source is
//! an `appsrc` pushing two pre-rendered frames in turn (shallow copies, as
//! `imagefreeze` does, so it costs nothing), and its own run is subtracted.
//! Two frames, not one: with one repeated frame, motion would read the
//! current frame's own memory (always in cache, and always 0).
//!
//! With workers=cores the cost is wall time per frame, so it shows the
//! throughput gain; workers=1 is the like-for-like cost. Note `analyze`
//! computes more (histogram, sharpness, motion) than `videoanalyse`
//! (brightness and variance).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gst::prelude::*;

use crate::common::{Ctx, Fail, Output, Row, median, require_processor, run_with};

const NAME: &str = "analysis";
const CAPS: &str = "video/x-raw,format=I420,width=1920,height=1080,framerate=30/1";

/// Two different frames: the first two of the moving ball.
fn two_frames() -> Result<[gst::Buffer; 2], Fail> {
    let desc = format!("videotestsrc num-buffers=2 pattern=ball ! {CAPS} ! appsink name=sink");
    let fail = |e: String| Fail::Error(format!("'{desc}': {e}"));
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| fail(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("not a pipeline".into()))?;
    let sink = pipeline
        .by_name("sink")
        .ok_or_else(|| fail("no sink".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| fail(e.to_string()))?;
    let pull = || {
        sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
            .and_then(|s| s.buffer_owned())
            .ok_or_else(|| fail("fewer than two frames".into()))
    };
    let frames = (pull(), pull());
    let _ = pipeline.set_state(gst::State::Null);
    Ok([frames.0?, frames.1?])
}

/// Makes the pipeline's `appsrc` named `src` push `count` frames,
/// alternating `frames`, then EOS.
fn feed(pipeline: &gst::Pipeline, frames: &[gst::Buffer; 2], count: usize) -> Result<(), String> {
    let src = pipeline.by_name("src").ok_or("no appsrc named src")?;
    let frames = frames.clone();
    let pushed = Arc::new(AtomicUsize::new(0));
    src.connect("need-data", false, move |args| {
        let src = args[0].get::<gst::Element>().ok()?;
        let i = pushed.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
            return None;
        }
        // A shallow copy: new buffer, the same memory.
        let mut buffer = frames[i % 2].copy();
        let b = buffer.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(i as u64 * 33_333_333));
        b.set_duration(gst::ClockTime::from_nseconds(33_333_333));
        let _ = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        None
    });
    Ok(())
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    require_processor("analyze", "", "I420")?;
    let frames = ctx.pick(300, 10);
    let cores = ctx.cores;
    let two = two_frames()?;
    let src = format!("appsrc name=src format=time caps={CAPS}");
    let sink = "fakesink sync=false";
    let variants = [
        format!("{src} ! {sink}"),
        format!("{src} ! videoanalyse ! {sink}"),
        format!("{src} ! parallelfilter processor=analyze workers=1 ! {sink}"),
        format!("{src} ! parallelfilter processor=analyze workers={cores} ! {sink}"),
    ];
    let samples = ctx.alternate(NAME, &variants, |desc| {
        run_with(desc, Duration::from_secs(300), |p| feed(p, &two, frames))
            .map(|d| d.as_nanos() as f64)
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
        "analysis: {frames} frames per run (two frames in turn), wall time minus the source-only run of the same round"
    ));
    Ok(())
}
