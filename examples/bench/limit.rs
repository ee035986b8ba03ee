// SPDX-License-Identifier: MPL-2.0
//! The machine limit of a CPU-bound workload: `n` independent serial
//! pipelines, `source ! work ! fakesink`, in one pipeline and so started
//! together. Each runs in its own streaming thread with nothing between
//! them, so their combined frames/s is what the cores can do with this
//! work; `parallelfilter workers=n` on one stream is judged against it.

use std::sync::Mutex;
use std::time::Duration;

use gst::prelude::*;
use gstparallel::analysis::luma;

use crate::common::{Fail, combined_rate, record, run_with, take};

/// The serial work of one pipeline.
#[derive(Clone)]
pub enum Work {
    /// A gst-launch element chain, e.g. `gaussianblur`.
    Chain(String),
    /// The `analyze` processor's kernel (against the previous frame, for
    /// motion) in an `identity` handoff: the work without the element's
    /// threads, queues and result meta.
    AnalyzeKernel,
}

impl Work {
    fn chain(&self, i: usize) -> String {
        match self {
            Work::Chain(chain) => chain.clone(),
            Work::AnalyzeKernel => format!("identity name=work{i} signal-handoffs=true"),
        }
    }
}

/// `n` copies of `src ! work ! fakesink`, sinks named `sink0`...
pub fn pipeline(src: &str, work: &Work, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{src} ! {} ! fakesink name=sink{i} sync=false",
                work.chain(i)
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Combined steady frames/s of `n` serial pipelines of `frames` frames
/// each (the first tenth of each left out, as for the element).
pub fn rate(src: &str, work: &Work, n: usize, frames: usize) -> Result<f64, Fail> {
    let desc = pipeline(src, work, n);
    let mut seen = Vec::with_capacity(n);
    run_with(&desc, Duration::from_secs(300), |p| {
        for i in 0..n {
            let pad = p
                .by_name(&format!("sink{i}"))
                .and_then(|e| e.static_pad("sink"))
                .ok_or_else(|| format!("no sink{i} in '{desc}'"))?;
            seen.push(record(&pad, frames));
            if matches!(work, Work::AnalyzeKernel) {
                let identity = p
                    .by_name(&format!("work{i}"))
                    .ok_or_else(|| format!("no work{i} in '{desc}'"))?;
                attach_kernel(&identity);
            }
        }
        Ok(())
    })?;
    let seen: Vec<_> = seen.into_iter().map(take).collect();
    if let Some(s) = seen.iter().find(|s| s.at.len() != frames) {
        return Err(Fail::Error(format!(
            "{} of {frames} frames arrived in a branch of '{desc}'",
            s.at.len()
        )));
    }
    Ok(combined_rate(&seen, crate::cpu::warmup(frames)))
}

/// What one branch's kernel keeps between frames.
#[derive(Default)]
struct KernelState {
    info: Option<gst_video::VideoInfo>,
    /// For motion, as the processor keeps it.
    previous: Option<gst::Buffer>,
}

/// Runs the analysis kernel on every buffer passing `identity`; a failure
/// is a pipeline error.
fn attach_kernel(identity: &gst::Element) {
    let state = Mutex::new(KernelState::default());
    identity.connect("handoff", false, move |args| {
        let identity = args.first()?.get::<gst::Element>().ok()?;
        let buffer = args.get(1)?.get::<gst::Buffer>().ok()?;
        let result = state
            .lock()
            .map_err(|_| "kernel state poisoned".to_string())
            .and_then(|mut s| analyze(&identity, buffer, &mut s));
        if let Err(e) = result {
            let text = format!("analysis kernel: {e}");
            let _ = identity.post_message(
                gst::message::Error::builder(gst::CoreError::Failed, &text)
                    .src(&identity)
                    .build(),
            );
        }
        None
    });
}

fn analyze(
    identity: &gst::Element,
    buffer: gst::Buffer,
    state: &mut KernelState,
) -> Result<(), String> {
    if state.info.is_none() {
        let caps = identity
            .static_pad("sink")
            .and_then(|p| p.current_caps())
            .ok_or("no caps")?;
        state.info = Some(gst_video::VideoInfo::from_caps(&caps).map_err(|e| e.to_string())?);
    }
    let info = state.info.as_ref().ok_or("no video info")?;
    // The element's own mapping and kernel, without the element.
    let sums = luma::luma_sums(&buffer, state.previous.as_deref(), info, None)?;
    // Keep the optimiser from dropping the work.
    std::hint::black_box(sums);
    state.previous = Some(buffer);
    Ok(())
}
