// SPDX-License-Identifier: MPL-2.0
//! Batch processors for `processor=custom`: up to `batch-size` consecutive
//! frames at once, never across an event (docs/embedding.md, "Batch
//! processors").

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Callback, CustomProcessor, FrameContext, context};
use crate::engine::{Work, WorkCtx};
use crate::parallelfilter::frame::Frame;

pub(super) type BlockingFn = dyn Fn(&mut [&mut gst::BufferRef], &[FrameContext]) -> Result<(), String>
    + Send
    + Sync
    + 'static;
pub(super) type AsyncFn = dyn Fn(Vec<gst::Buffer>, Vec<FrameContext>) -> BoxFuture<'static, Result<Vec<gst::Buffer>, String>>
    + Send
    + Sync
    + 'static;

impl CustomProcessor {
    /// A synchronous batch processor: `f` gets up to `batch-size`
    /// consecutive frames (writable buffers, oldest first) and their
    /// [`FrameContext`]s, and processes them in place on the worker thread
    /// that took them. A batch waits at most `batch-timeout` to fill and
    /// never holds frames from both sides of an event; an error fails
    /// every frame of the batch (then `on-error` applies to each).
    ///
    /// ```
    /// use gstparallel::parallelfilter::CustomProcessor;
    ///
    /// // One call for up to `batch-size` frames, as a GPU model would take them.
    /// let stamp = CustomProcessor::new_batch(|buffers, ctxs| {
    ///     for (buffer, ctx) in buffers.iter_mut().zip(ctxs) {
    ///         buffer.set_offset(ctx.seq());
    ///     }
    ///     Ok::<_, String>(())
    /// });
    /// # let _ = stamp;
    /// ```
    pub fn new_batch<F, E>(f: F) -> Self
    where
        F: Fn(&mut [&mut gst::BufferRef], &[FrameContext]) -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        let f: Arc<BlockingFn> =
            Arc::new(move |buffers, ctxs| f(buffers, ctxs).map_err(|e| e.to_string()));
        CustomProcessor {
            work: Callback::BatchBlocking(f),
            caps: None,
            previous: false,
        }
    }

    /// An asynchronous batch processor: `f` gets up to `batch-size`
    /// consecutive frames and their [`FrameContext`]s and returns a future
    /// that gives the buffers back, as many and in the same order, on the
    /// same terms as [`CustomProcessor::new_batch`].
    pub fn new_batch_async<F, Fut, E>(f: F) -> Self
    where
        F: Fn(Vec<gst::Buffer>, Vec<FrameContext>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<gst::Buffer>, E>> + Send + 'static,
        E: fmt::Display,
    {
        let f: Arc<AsyncFn> = Arc::new(move |buffers, ctxs| {
            f(buffers, ctxs)
                .map(|r| r.map_err(|e| e.to_string()))
                .boxed()
        });
        CustomProcessor {
            work: Callback::BatchAsync(f),
            caps: None,
            previous: false,
        }
    }
}

/// A batch's work for a batch callback.
pub(super) fn process(
    work: &Callback,
    mut frames: Vec<Frame>,
    ctx: &[WorkCtx],
) -> Work<Vec<Frame>> {
    let contexts: Result<Vec<FrameContext>, String> = frames
        .iter_mut()
        .zip(ctx)
        .map(|(frame, &ctx)| context(frame, ctx))
        .collect();
    let contexts = match contexts {
        Ok(contexts) => contexts,
        Err(err) => return Work::Ready(Err(err)),
    };
    match work {
        Callback::BatchBlocking(f) => {
            let f = f.clone();
            Work::Blocking(Box::new(move || {
                let mut buffers: Vec<&mut gst::BufferRef> = frames
                    .iter_mut()
                    .map(|frame| frame.buffer.make_mut())
                    .collect();
                f(&mut buffers, &contexts)?;
                Ok(frames)
            }))
        }
        Callback::BatchAsync(f) => {
            let n = frames.len();
            let mut buffers = Vec::with_capacity(n);
            let mut rest = Vec::with_capacity(n);
            for Frame {
                mut buffer,
                stream,
                segment,
                ..
            } in frames
            {
                buffer.make_mut();
                buffers.push(buffer);
                rest.push((stream, segment));
            }
            let fut = f(buffers, contexts);
            Work::Async(
                async move {
                    let buffers = fut.await?;
                    if buffers.len() != n {
                        return Err(format!(
                            "the batch processor gave back {} buffers for {n} frames",
                            buffers.len()
                        ));
                    }
                    Ok(buffers
                        .into_iter()
                        .zip(rest)
                        .map(|(buffer, (stream, segment))| Frame {
                            buffer,
                            stream,
                            segment,
                            previous: None,
                        })
                        .collect())
                }
                .boxed(),
            )
        }
        Callback::Blocking(_) | Callback::Async(_) => {
            Work::Ready(Err("not a batch processor".into()))
        }
    }
}
