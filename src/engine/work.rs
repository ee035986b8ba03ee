// SPDX-License-Identifier: MPL-2.0
//! What a processor is: the work it gives for one frame.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

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

/// How a processor does its work. CPU-bound work must be `Blocking`: it
/// runs on the worker thread that took the frame, never on the runtime's
/// async threads. `Async` work waits on the runtime without a thread.
pub enum Work<T> {
    Ready(Result<T, String>),
    Blocking(Box<dyn FnOnce() -> Result<T, String> + Send>),
    Async(BoxFuture<'static, Result<T, String>>),
}

/// The per-frame work the engine's workers run.
pub trait Processor<T>: Send + Sync + 'static {
    fn process(&self, frame: T, ctx: WorkCtx) -> Work<T>;

    /// Whether [`Processor::process_batch`] is this processor's own: only
    /// then do workers take up to `Config::batch_size` frames at once.
    fn batches(&self) -> bool {
        false
    }

    /// Processes consecutive frames (never across an item) as one unit;
    /// the result holds one output per frame, in their order. An error
    /// is every frame's.
    fn process_batch(&self, frames: Vec<T>, ctx: &[WorkCtx]) -> Work<Vec<T>> {
        let _ = (frames, ctx);
        Work::Ready(Err("this processor has no batch form".into()))
    }
}

impl<T, F> Processor<T> for F
where
    F: Fn(T, WorkCtx) -> Work<T> + Send + Sync + 'static,
{
    fn process(&self, frame: T, ctx: WorkCtx) -> Work<T> {
        self(frame, ctx)
    }
}

impl<T: Send + 'static> Work<Vec<T>> {
    /// A batch of one as one frame's work: for a processor whose single
    /// frame path is its batch path.
    pub fn single(self) -> Work<T> {
        fn one<T>(r: Result<Vec<T>, String>) -> Result<T, String> {
            let mut v = r?;
            match (v.pop(), v.is_empty()) {
                (Some(t), true) => Ok(t),
                _ => Err("the batch processor did not give exactly one frame back".into()),
            }
        }
        match self {
            Work::Ready(r) => Work::Ready(one(r)),
            Work::Blocking(f) => Work::Blocking(Box::new(move || one(f()))),
            Work::Async(fut) => Work::Async(Box::pin(async move { one(fut.await) })),
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
