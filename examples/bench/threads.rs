// SPDX-License-Identifier: MPL-2.0
//! Peak threads while one pipeline runs, for the promise that the element's
//! threads stay within workers + a small constant. Each run is a child
//! process (this binary with `CHILD_FLAG` and the pipeline) that samples
//! its own `Threads:` every millisecond, so the count holds that
//! pipeline, the shared runtime it starts and nothing left over from
//! other runs.

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{Fail, Row, run_with};

pub const CHILD_FLAG: &str = "--threads-child";

/// Threads allowed besides the workers: the child's main and sampling
/// threads, the source's streaming thread, the src pad task, the tokio
/// runtime's async threads (up to 8) and timer, and a few to spare.
pub const ALLOWANCE: usize = 16;

/// `Threads:` of this process.
pub fn threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The child: runs the pipeline in `args[0]`, prints its peak threads.
pub fn child(args: &[String]) -> ExitCode {
    let Some(desc) = args.first() else {
        eprintln!("{CHILD_FLAG} needs a pipeline");
        return ExitCode::FAILURE;
    };
    if let Err(e) = crate::common::init() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let (result, peak) = peak_during(|| run_with(desc, Duration::from_secs(300), |_| Ok(())));
    if let Err(e) = result {
        eprintln!("{e:?}");
        return ExitCode::FAILURE;
    }
    if peak == 0 {
        eprintln!("no Threads: in /proc/self/status");
        return ExitCode::FAILURE;
    }
    println!("{peak}");
    ExitCode::SUCCESS
}

/// Runs `run`, sampling this process's threads every millisecond; its
/// result and the peak.
pub fn peak_during<R>(run: impl FnOnce() -> R) -> (R, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(threads().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak.max(threads().unwrap_or(0))
        })
    };
    let result = run();
    stop.store(true, Ordering::Relaxed);
    (result, sampler.join().unwrap_or(0))
}

/// Peak threads of a child process running `desc`.
pub fn peak(desc: &str) -> Result<f64, Fail> {
    if threads().is_none() {
        return Err(Fail::Skipped("no Threads: in /proc/self/status".into()));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args([CHILD_FLAG, desc])
        .output()
        .map_err(|e| format!("cannot run the threads child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Fail::Error(format!(
            "threads child for '{desc}' failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    stdout
        .trim()
        .parse::<f64>()
        .map_err(|_| Fail::Error(format!("threads child printed '{stdout}'")))
}

/// The row of a peak-threads figure, judged against workers + ALLOWANCE.
pub fn row(scenario: &'static str, case: String, samples: &[f64], workers: usize) -> Row {
    let bound = (workers + ALLOWANCE) as f64;
    let r = Row::new(scenario, case, samples, "threads");
    let value = r.value;
    r.reference(format!("workers + {ALLOWANCE}"), bound)
        .ratio(value / bound)
        .target(format!("<= {bound:.0}"), value <= bound)
}
