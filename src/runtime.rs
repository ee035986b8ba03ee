// SPDX-License-Identifier: MPL-2.0
//! The tokio runtime shared by every `parallelfilter` in the process.
//!
//! Its async threads wait for asynchronous work (timers, I/O); CPU-bound
//! frame work runs on each engine's own worker threads, never here. Its
//! small blocking pool only builds large `remote` tensors.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// Async threads; `PARALLELFILTER_RUNTIME_THREADS` overrides.
fn async_threads() -> usize {
    std::env::var("PARALLELFILTER_RUNTIME_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8)
        })
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The shared runtime's handle, built on first use.
pub fn handle() -> Result<Handle, String> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(async_threads())
                // Bounded: frame work has its own threads, so threads stay
                // within workers plus a constant.
                .max_blocking_threads(async_threads())
                .thread_name("parallelfilter-rt")
                // I/O too when tokio has it (the application's async
                // processors may call services on this runtime).
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build the tokio runtime: {e}"))
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
        .map_err(Clone::clone)
}
