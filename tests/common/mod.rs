// SPDX-License-Identifier: MPL-2.0
//! Shared test helpers: plugin registration and a watchdog that turns a
//! hang into a fast failure.
#![allow(dead_code)]

use std::sync::Once;
use std::sync::mpsc;
use std::time::Duration;

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
