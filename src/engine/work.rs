// SPDX-License-Identifier: MPL-2.0
//! What a processor is, and how one frame's work runs: on the blocking
//! pool or as a future, with the timeout, panics caught.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

/// Why a frame has no processed result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessError {
    Failed(String),
    Panicked(String),
    TimedOut(Duration),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Failed(msg) => write!(f, "processing failed: {msg}"),
            ProcessError::Panicked(msg) => write!(f, "processing panicked: {msg}"),
            ProcessError::TimedOut(d) => write!(f, "processing timed out after {d:?}"),
        }
    }
}

/// What a worker knows about the frame it processes.
#[derive(Clone, Copy, Debug)]
pub struct WorkCtx {
    pub seq: u64,
    pub worker: usize,
}

/// How a processor does its work. CPU-bound work must be `Blocking` so it
/// runs on the blocking pool and never stalls the runtime's async threads.
pub enum Work<T> {
    Ready(Result<T, String>),
    Blocking(Box<dyn FnOnce() -> Result<T, String> + Send>),
    Async(BoxFuture<'static, Result<T, String>>),
}

/// The per-frame work the engine's workers run.
pub trait Processor<T>: Send + Sync + 'static {
    fn process(&self, frame: T, ctx: WorkCtx) -> Work<T>;
}

impl<T, F> Processor<T> for F
where
    F: Fn(T, WorkCtx) -> Work<T> + Send + Sync + 'static,
{
    fn process(&self, frame: T, ctx: WorkCtx) -> Work<T> {
        self(frame, ctx)
    }
}

/// A blocking closure still running after its frame timed out.
pub(super) type Blocked<T> = tokio::task::JoinHandle<std::thread::Result<Result<T, String>>>;

/// Runs one frame's work with the timeout, catching panics. The result is
/// `None` if a flush overtook it. A blocking closure that timed out cannot
/// be stopped: its handle comes back so the worker waits for it before
/// taking another frame, which keeps threads and memory bounded.
pub(super) async fn run_work<T: Send + 'static>(
    work: Work<T>,
    timeout: Option<Duration>,
    generation: &watch::Sender<u64>,
    job_generation: u64,
) -> (Option<Result<T, ProcessError>>, Option<Blocked<T>>) {
    let timed = |d: Duration| ProcessError::TimedOut(d);
    let joined = |j: Result<std::thread::Result<Result<T, String>>, tokio::task::JoinError>| match j
    {
        Ok(Ok(r)) => r.map_err(ProcessError::Failed),
        Ok(Err(payload)) => Err(ProcessError::Panicked(panic_message(payload))),
        Err(e) => Err(ProcessError::Panicked(e.to_string())),
    };
    match work {
        Work::Ready(r) => (Some(r.map_err(ProcessError::Failed)), None),
        Work::Blocking(f) => {
            // Not aborted on flush either: the worker waits for it and the
            // result is discarded.
            let mut handle = tokio::task::spawn_blocking(move || catch_unwind(AssertUnwindSafe(f)));
            match timeout {
                Some(d) => match tokio::time::timeout(d, &mut handle).await {
                    Ok(j) => (Some(joined(j)), None),
                    Err(_) => (Some(Err(timed(d))), Some(handle)),
                },
                None => (Some(joined(handle.await)), None),
            }
        }
        Work::Async(fut) => {
            // Subscribed only here: a flush since the job was taken is seen
            // at once, as wait_for checks the current value first.
            let mut generation = generation.subscribe();
            let fut = AssertUnwindSafe(fut).catch_unwind();
            let fut = async move {
                match timeout {
                    Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| timed(d)),
                    None => Ok(fut.await),
                }
            };
            let outcome = tokio::select! {
                r = fut => Some(match r {
                    Ok(Ok(r)) => r.map_err(ProcessError::Failed),
                    Ok(Err(payload)) => Err(ProcessError::Panicked(panic_message(payload))),
                    Err(e) => Err(e),
                }),
                _ = generation.wait_for(|g| *g != job_generation) => None,
            };
            (outcome, None)
        }
    }
}

pub(super) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
