// SPDX-License-Identifier: MPL-2.0
//! e. Peak memory at 3840x2160 I420: `parallelfilter max-size-buffers=8`
//! behind a slow `delay`, against the same pipeline without the element.
//! Each run is a child process (this binary with `CHILD_FLAG`) that reports
//! its own VmHWM, so runs do not see each other's peaks.

use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::common::{Ctx, Fail, Output, Row, median, run_with};

const NAME: &str = "memory";
pub const CHILD_FLAG: &str = "--memory-child";
const WIDTH: u64 = 3840;
const HEIGHT: u64 = 2160;
/// I420: 12 bits per pixel.
const FRAME_BYTES: u64 = WIDTH * HEIGHT * 3 / 2;
const MAX_FRAMES: u64 = 8;

fn pipeline(with_element: bool, frames: u32) -> String {
    let element = if with_element {
        // 4 frames waiting 100 ms each, 4 more queued: always full.
        format!(
            "parallelfilter processor=delay delay-min=100000000 delay-max=100000000 workers=4 \
             max-size-buffers={MAX_FRAMES} ! "
        )
    } else {
        String::new()
    };
    format!(
        "videotestsrc num-buffers={frames} pattern=black ! \
         video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate=30/1 ! \
         {element}fakesink sync=false"
    )
}

/// The child: runs one pipeline, prints its peak RSS in bytes.
pub fn child(args: &[String]) -> ExitCode {
    let with_element = args.first().map(String::as_str) == Some("with");
    let frames = args.get(1).and_then(|f| f.parse().ok()).unwrap_or(40);
    if let Err(e) = crate::common::init() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = run_with(
        &pipeline(with_element, frames),
        Duration::from_secs(120),
        |_| Ok(()),
    ) {
        eprintln!("{e:?}");
        return ExitCode::FAILURE;
    }
    match peak_rss() {
        Some(bytes) => {
            println!("{bytes}");
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// VmHWM of this process, in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn measure(with_element: bool, frames: u32) -> Result<f64, Fail> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mode = if with_element { "with" } else { "without" };
    let out = Command::new(exe)
        .args([CHILD_FLAG, mode, &frames.to_string()])
        .output()
        .map_err(|e| format!("cannot run the memory child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Fail::Error(format!(
            "memory child ({mode}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    stdout
        .trim()
        .parse::<f64>()
        .map_err(|_| Fail::Error(format!("memory child printed '{stdout}'")))
}

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Fail> {
    if peak_rss().is_none() {
        return Err(Fail::Skipped("no VmHWM in /proc/self/status".into()));
    }
    let frames = ctx.pick(40, 16);
    let samples = ctx.alternate(NAME, &[false, true], |&with| measure(with, frames))?;
    let mib = |v: &[f64]| v.iter().map(|b| b / 1048576.0).collect::<Vec<_>>();
    let without = mib(&samples[0]);
    let with = mib(&samples[1]);
    let over: Vec<f64> = with.iter().zip(&without).map(|(w, wo)| w - wo).collect();
    let limit = (MAX_FRAMES * FRAME_BYTES) as f64 / 1048576.0 + 30.0;
    out.rows.push(Row::new(
        NAME,
        "peak RSS without the element",
        &without,
        "MiB",
    ));
    out.rows
        .push(Row::new(NAME, "peak RSS with parallelfilter", &with, "MiB"));
    let o = median(&over);
    out.rows.push(
        Row::new(NAME, "over the pipeline without it", &over, "MiB")
            .reference("8 frames + 30 MiB", limit)
            .ratio(o / limit)
            .target(format!("<= {limit:.1} MiB"), o <= limit),
    );
    out.notes.push(format!(
        "memory: {frames} frames of 3840x2160 I420 ({:.1} MiB each); delay 100 ms, workers=4, \
         max-size-buffers=8; peak RSS (VmHWM) of a child process per run",
        FRAME_BYTES as f64 / 1048576.0
    ));
    Ok(())
}
