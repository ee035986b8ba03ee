// SPDX-License-Identifier: MPL-2.0
//! Shared test helpers (see tests/README.md): plugin registration, the
//! watchdog, stats and waiting helpers here; the recorder in `recorder`,
//! the Harness fixture in `harness`, the pipeline runner in `pipeline`.
//! Every test binary compiles all of it and uses a part.
#![allow(dead_code, unused_imports)]

pub mod engine;
pub mod harness;
pub mod pipeline;
pub mod recorder;

pub use harness::*;
pub use pipeline::*;
pub use recorder::*;

use std::sync::Once;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const MS: u64 = 1_000_000;
pub const SECOND: u64 = 1_000_000_000;
/// Longer than any test can run (the watchdog aborts first): a frame
/// delayed this long is, for the test, stuck in processing.
pub const HOUR: u64 = 3600 * SECOND;
/// Bound on one wait for output or a message, so a missing item fails
/// with a message before the watchdog aborts the binary.
pub const WAIT: Duration = Duration::from_secs(40);
/// Bound on a whole pipeline run to EOS or error.
pub const RUN_WAIT: gst::ClockTime = gst::ClockTime::from_seconds(120);

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst init");
        gstparallel::plugin_register_static().expect("register plugin");
    });
}

/// Aborts the whole test binary if the guard is not dropped within `secs`:
/// a deadlock fails CI quickly instead of stalling it.
pub struct Watchdog(Option<mpsc::Sender<()>>);

pub fn watchdog(name: &'static str, secs: u64) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("watchdog: test '{name}' still running after {secs} s, aborting");
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

/// What every test starts with: GStreamer and the plugin ready, and a
/// watchdog that fails the test binary if the test hangs.
pub fn begin(name: &'static str, secs: u64) -> Watchdog {
    init();
    watchdog(name, secs)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the watchdog thread with Disconnected.
        self.0.take();
    }
}

/// The element's `stats`.
pub fn stats(e: &gst::Element) -> gst::Structure {
    use gst::prelude::*;
    let s = e.property::<gst::Structure>("stats");
    assert_eq!(s.name(), "parallelfilter-stats");
    s
}

/// A counter of `stats`, whether guint64 or guint.
pub fn stat(s: &gst::Structure, name: &str) -> u64 {
    if let Ok(v) = s.get::<u64>(name) {
        return v;
    }
    u64::from(
        s.get::<u32>(name)
            .unwrap_or_else(|e| panic!("stats field {name}: {e} in {s}")),
    )
}

pub fn per_worker(s: &gst::Structure) -> Vec<u64> {
    s.get::<gst::Array>("per-worker")
        .unwrap()
        .iter()
        .map(|v| v.get::<u64>().unwrap())
        .collect()
}

/// Spins until `done()`, failing after [`WAIT`]: for conditions nothing
/// signals (stats, server counters). Never a sleep.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for {what}");
        std::thread::yield_now();
    }
}

/// The formats in a CAPS answer.
pub fn caps_formats(caps: &gst::Caps) -> Vec<String> {
    caps.iter()
        .flat_map(|s| match s.get::<gst::List>("format") {
            Ok(list) => list.iter().map(|v| v.get::<String>().unwrap()).collect(),
            Err(_) => vec![s.get::<String>("format").unwrap()],
        })
        .collect()
}

/// A deterministic pseudo-random value per input (splitmix64).
pub fn hash(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Small deterministic generator for test schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let x = hash(self.0);
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
