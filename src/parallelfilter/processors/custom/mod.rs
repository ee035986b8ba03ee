// SPDX-License-Identifier: MPL-2.0
//! `processor=custom`: per-frame work set by the application, as a Rust
//! closure ([`ParallelFilter::set_processor`],
//! [`ParallelFilter::set_async_processor`], [`CustomProcessor`]) or, for C
//! and Python, as a handler of the `process-frame` signal.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use gst::glib;
use gst::prelude::*;

mod batch;

use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::ParallelFilter;
use crate::parallelfilter::frame::{Frame, FrameProcessor, SharedProcessor};

/// Name of the signal that processes frames for C and Python.
pub const PROCESS_FRAME_SIGNAL: &str = "process-frame";

/// What a custom processor knows about the frame it processes.
///
/// Cloning is cheap: the previous frame is shared by reference.
#[derive(Debug, Clone)]
pub struct FrameContext {
    seq: u64,
    worker: usize,
    pts: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    info: gst_video::VideoInfo,
    previous: Option<gst::Buffer>,
}

impl FrameContext {
    /// Input sequence number: 0 for the first frame after start or a flush.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Index of the worker processing the frame, below `workers`.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The frame's PTS.
    pub fn pts(&self) -> Option<gst::ClockTime> {
        self.pts
    }

    /// The frame's duration.
    pub fn duration(&self) -> Option<gst::ClockTime> {
        self.duration
    }

    /// The segment the frame arrived in (not the current one: a segment
    /// change may be queued behind frames still in processing).
    pub fn segment(&self) -> &gst::FormattedSegment<gst::ClockTime> {
        &self.segment
    }

    /// The frame's running time in its segment.
    pub fn running_time(&self) -> Option<gst::ClockTime> {
        self.pts.and_then(|pts| self.segment.to_running_time(pts))
    }

    /// The frame's stream time in its segment.
    pub fn stream_time(&self) -> Option<gst::ClockTime> {
        self.pts.and_then(|pts| self.segment.to_stream_time(pts))
    }

    /// The negotiated video format, size and layout of the frame.
    pub fn info(&self) -> &gst_video::VideoInfo {
        &self.info
    }

    /// Maps `buffer` (the frame being processed) for reading and writing
    /// its pixels, with this frame's [`FrameContext::info`].
    pub fn map<'a>(
        &self,
        buffer: &'a mut gst::BufferRef,
    ) -> Result<gst_video::VideoFrameRef<&'a mut gst::BufferRef>, glib::BoolError> {
        gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &self.info)
    }

    /// The previous input frame (read-only, shared with the worker that
    /// processes it), if the processor asked for it with
    /// [`CustomProcessor::with_previous_frame`]. `None` for the first frame
    /// after start, a flush or new caps.
    pub fn previous(&self) -> Option<&gst::BufferRef> {
        self.previous.as_deref()
    }

    /// [`FrameContext::previous`], mapped for reading its pixels.
    pub fn previous_frame(
        &self,
    ) -> Result<Option<gst_video::VideoFrameRef<&gst::BufferRef>>, glib::BoolError> {
        self.previous
            .as_deref()
            .map(|b| gst_video::VideoFrameRef::from_buffer_ref_readable(b, &self.info))
            .transpose()
    }
}

type BlockingFn =
    dyn Fn(&mut gst::BufferRef, &FrameContext) -> Result<(), String> + Send + Sync + 'static;
type AsyncFn = dyn Fn(gst::Buffer, FrameContext) -> BoxFuture<'static, Result<gst::Buffer, String>>
    + Send
    + Sync
    + 'static;

#[derive(Clone)]
enum Callback {
    Blocking(Arc<BlockingFn>),
    Async(Arc<AsyncFn>),
    BatchBlocking(Arc<batch::BlockingFn>),
    BatchAsync(Arc<batch::AsyncFn>),
}

/// A processor for `processor=custom`, set with
/// [`ParallelFilter::set_custom_processor`].
///
/// Two kinds:
/// - [`CustomProcessor::new`]: a synchronous closure for CPU-bound work. It
///   runs on the worker thread that took the frame, so `workers` frames are
///   processed truly in parallel and the runtime's async threads are never
///   held up.
/// - [`CustomProcessor::new_async`]: a closure returning a future, for
///   I/O-bound work (calls to services). The future runs on the shared tokio
///   runtime (time and I/O enabled) and holds no thread while it waits.
///
/// Either way, an `Err` or a panic is a processing error handled by
/// `on-error` (as is a `timeout`), frames leave in input order, and a flush
/// drops pending futures (a synchronous closure already running cannot be
/// stopped: its result is discarded).
///
/// The closure is called from several threads at once. It is owned by the
/// element: if it needs the element, capture a weak reference
/// (`glib::WeakRef`), or the two keep each other alive.
///
/// The frame is writable: if someone else still holds it (with
/// `on-error=pass` the element keeps the original; with
/// [`CustomProcessor::with_previous_frame`] the next frame's worker reads
/// it), it is copied first.
///
/// ```
/// use gst::prelude::*;
/// use gstparallel::parallelfilter::CustomProcessor;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// gst::init()?;
/// gstparallel::plugin_register_static()?;
/// // Only RGBA frames: upstream converts to them if it can.
/// let invert = CustomProcessor::new(|buffer, ctx| {
///     let mut frame = ctx.map(buffer)?;
///     for px in frame.plane_data_mut(0)?.chunks_exact_mut(4) {
///         for c in &mut px[..3] {
///             *c = 255 - *c;
///         }
///     }
///     Ok::<_, gst::glib::BoolError>(())
/// })
/// .with_caps(gst::Caps::builder("video/x-raw").field("format", "RGBA").build());
///
/// let pipeline = gst::parse::launch(
///     "videotestsrc num-buffers=10 ! videoconvert ! parallelfilter name=pf ! fakesink",
/// )?
/// .downcast::<gst::Pipeline>()
/// .unwrap();
/// let pf = pipeline
///     .by_name("pf")
///     .and_downcast::<gstparallel::ParallelFilter>()
///     .unwrap();
/// pf.set_custom_processor(invert);
/// pipeline.set_state(gst::State::Playing)?;
/// let bus = pipeline.bus().unwrap();
/// let msg = bus
///     .timed_pop_filtered(
///         gst::ClockTime::NONE,
///         &[gst::MessageType::Eos, gst::MessageType::Error],
///     )
///     .unwrap();
/// assert_eq!(msg.type_(), gst::MessageType::Eos);
/// pipeline.set_state(gst::State::Null)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CustomProcessor {
    work: Callback,
    caps: Option<gst::Caps>,
    previous: bool,
}

impl fmt::Debug for CustomProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomProcessor")
            .field(
                "kind",
                &match self.work {
                    Callback::Blocking(_) => "blocking",
                    Callback::Async(_) => "async",
                    Callback::BatchBlocking(_) => "batch blocking",
                    Callback::BatchAsync(_) => "batch async",
                },
            )
            .field("caps", &self.caps)
            .field("previous", &self.previous)
            .finish()
    }
}

impl CustomProcessor {
    /// A synchronous, CPU-bound processor: `f` gets the writable buffer and
    /// the frame's [`FrameContext`] (map the pixels with
    /// [`FrameContext::map`]) and runs on the worker thread that took the frame, `workers`
    /// frames at a time. It is called from several threads at once.
    pub fn new<F, E>(f: F) -> Self
    where
        F: Fn(&mut gst::BufferRef, &FrameContext) -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        let f: Arc<BlockingFn> =
            Arc::new(move |buffer, ctx| f(buffer, ctx).map_err(|e| e.to_string()));
        CustomProcessor {
            work: Callback::Blocking(f),
            caps: None,
            previous: false,
        }
    }

    /// An asynchronous, I/O-bound processor: `f` gets the writable buffer
    /// and the frame's [`FrameContext`] and returns a future that gives the
    /// buffer back. `f` itself should return at once (it runs on an async
    /// thread); the waiting belongs in the future, which runs on the shared
    /// tokio runtime, up to `workers` at a time. A flush drops it.
    pub fn new_async<F, Fut, E>(f: F) -> Self
    where
        F: Fn(gst::Buffer, FrameContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<gst::Buffer, E>> + Send + 'static,
        E: fmt::Display,
    {
        let f: Arc<AsyncFn> = Arc::new(move |buffer, ctx| {
            f(buffer, ctx).map(|r| r.map_err(|e| e.to_string())).boxed()
        });
        CustomProcessor {
            work: Callback::Async(f),
            caps: None,
            previous: false,
        }
    }

    /// Accept only these caps (e.g. the pixel formats the closure handles);
    /// the default is any raw video in system memory. Caps queries answer
    /// with them, so a `videoconvert` upstream converts.
    pub fn with_caps(mut self, caps: gst::Caps) -> Self {
        self.caps = Some(caps);
        self
    }

    /// Give the closure the previous input frame
    /// ([`FrameContext::previous`]), e.g. for motion. Costs a copy of each
    /// frame the closure writes to, since the next frame's worker reads it.
    pub fn with_previous_frame(mut self) -> Self {
        self.previous = true;
        self
    }

    pub(crate) fn shared(&self) -> SharedProcessor {
        // Not a static: the leaks tracer would report it.
        let caps = self
            .caps
            .clone()
            .unwrap_or_else(|| gst::Caps::new_empty_simple("video/x-raw"));
        Arc::new(Custom(self.clone(), caps))
    }
}

/// The engine's side of a [`CustomProcessor`], with the caps it accepts.
struct Custom(CustomProcessor, gst::Caps);

fn context(frame: &mut Frame, ctx: WorkCtx) -> Result<FrameContext, String> {
    let info = frame.stream.video_info()?.clone();
    frame.stream.check_size(&frame.buffer)?;
    Ok(FrameContext {
        seq: ctx.seq,
        worker: ctx.worker,
        pts: frame.buffer.pts(),
        duration: frame.buffer.duration(),
        segment: frame.segment.clone(),
        info,
        previous: frame.previous.take(),
    })
}

impl Processor<Frame> for Custom {
    fn process(&self, mut frame: Frame, ctx: WorkCtx) -> Work<Frame> {
        if self.batches() {
            // `batch-size` 1: a batch of one.
            return self.process_batch(vec![frame], &[ctx]).single();
        }
        let fctx = match context(&mut frame, ctx) {
            Ok(fctx) => fctx,
            Err(err) => return Work::Ready(Err(err)),
        };
        match &self.0.work {
            Callback::Blocking(f) => {
                let f = f.clone();
                Work::Blocking(Box::new(move || {
                    f(frame.buffer.make_mut(), &fctx)?;
                    Ok(frame)
                }))
            }
            Callback::Async(f) => {
                let Frame {
                    mut buffer,
                    stream,
                    segment,
                    ..
                } = frame;
                buffer.make_mut();
                let fut = f(buffer, fctx);
                Work::Async(
                    async move {
                        let buffer = fut.await?;
                        Ok(Frame {
                            buffer,
                            stream,
                            segment,
                            previous: None,
                        })
                    }
                    .boxed(),
                )
            }
            Callback::BatchBlocking(_) | Callback::BatchAsync(_) => {
                Work::Ready(Err("a batch processor got a single frame".into()))
            }
        }
    }

    fn batches(&self) -> bool {
        matches!(
            self.0.work,
            Callback::BatchBlocking(_) | Callback::BatchAsync(_)
        )
    }

    fn process_batch(&self, frames: Vec<Frame>, ctx: &[WorkCtx]) -> Work<Vec<Frame>> {
        batch::process(&self.0.work, frames, ctx)
    }
}

impl FrameProcessor for Custom {
    fn caps(&self) -> Option<gst::Caps> {
        Some(self.1.clone())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<gst::Caps, gst::ErrorMessage> {
        if let Some(accepted) = &self.0.caps
            && !caps.is_subset(accepted)
        {
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                ("The custom processor does not accept caps {caps}"),
                ["it accepts {accepted}"]
            ));
        }
        gst_video::VideoInfo::from_caps(caps).map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Negotiation,
                ("The custom processor needs video caps with a frame layout, got {caps}"),
                ["{e}"]
            )
        })?;
        Ok(caps.clone())
    }

    fn needs_previous(&self) -> bool {
        self.0.previous
    }
}

/// `processor=custom` without a Rust processor: each frame is handed to the
/// `process-frame` handlers, on the worker thread that took the frame (handlers may block,
/// and several run at once). Holds the element weakly: the element holds
/// the processor.
pub(crate) struct SignalProcessor {
    element: glib::WeakRef<ParallelFilter>,
}

impl SignalProcessor {
    pub(crate) fn new(element: &ParallelFilter) -> Self {
        SignalProcessor {
            element: element.downgrade(),
        }
    }
}

/// Whether `element` has a `process-frame` handler connected.
pub(crate) fn has_signal_handler(element: &ParallelFilter) -> bool {
    glib::subclass::SignalId::lookup(PROCESS_FRAME_SIGNAL, ParallelFilter::static_type())
        .is_some_and(|id| glib::signal::signal_has_handler_pending(element, id, None, false))
}

/// Emits `process-frame` with `buffer` as the only reference, so handlers
/// see it writable (glib's own emit helpers copy their arguments, which for
/// a buffer adds a reference). Returns the buffer and the handlers' verdict.
fn emit_process_frame(
    element: &ParallelFilter,
    buffer: gst::Buffer,
    seq: u64,
) -> Result<(gst::Buffer, bool), String> {
    let id = glib::subclass::SignalId::lookup(PROCESS_FRAME_SIGNAL, ParallelFilter::static_type())
        .ok_or_else(|| format!("no {PROCESS_FRAME_SIGNAL} signal"))?;
    let args = [
        element.to_value(),
        glib::Value::from(buffer),
        seq.to_value(),
    ];
    let mut ret = false.to_value();
    // SAFETY: `args` are initialized values of the signal's instance and
    // parameter types, in order, and `ret` has its return type; Value is a
    // transparent wrapper of GValue.
    unsafe {
        use glib::translate::{IntoGlib, ToGlibPtrMut};
        glib::gobject_ffi::g_signal_emitv(
            args.as_ptr() as *const glib::gobject_ffi::GValue,
            id.into_glib(),
            0,
            ret.to_glib_none_mut().0,
        );
    }
    let [_, buffer, _] = args;
    // get() adds a reference and dropping the value removes the value's.
    let buffer = buffer.get::<gst::Buffer>().map_err(|e| e.to_string())?;
    Ok((buffer, ret.get::<bool>().unwrap_or(false)))
}

impl Processor<Frame> for SignalProcessor {
    fn process(&self, frame: Frame, ctx: WorkCtx) -> Work<Frame> {
        let element = self.element.clone();
        Work::Blocking(Box::new(move || {
            let element = element
                .upgrade()
                .ok_or_else(|| "the element is gone".to_string())?;
            if !has_signal_handler(&element) {
                return Err(format!("no {PROCESS_FRAME_SIGNAL} handler is connected"));
            }
            let Frame {
                mut buffer,
                stream,
                segment,
                ..
            } = frame;
            stream.check_size(&buffer)?;
            buffer.make_mut();
            let (buffer, ok) = emit_process_frame(&element, buffer, ctx.seq)?;
            if !ok {
                return Err(format!("the {PROCESS_FRAME_SIGNAL} handler returned FALSE"));
            }
            Ok(Frame {
                buffer,
                stream,
                segment,
                previous: None,
            })
        }))
    }
}

impl FrameProcessor for SignalProcessor {}
