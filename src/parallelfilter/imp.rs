// SPDX-License-Identifier: MPL-2.0
//! GObject and pad glue of `parallelfilter`; the data path lives in
//! [`crate::engine`].
//!
//! Lock order: a pad's stream lock, then `task_lock`, then `state`, then
//! `settings`, then the engine's own lock. Nothing is pushed, posted or
//! waited on with `state` or `settings` held.

use crate::engine::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::analyze::{Analyze, SceneThreshold};
use super::custom::{self, CustomProcessor, PROCESS_FRAME_SIGNAL, SignalProcessor};
use super::filter::{self, Filter};
use super::frame::{Frame, SharedProcessor, StreamInfo};
use super::processors::{Delay, Passthrough};
use super::remote;
use super::{Leaky, MESSAGE_NAME, OnError, Payload, ProcessorKind, STATS_NAME};
use crate::engine::{self, Admission, Engine, Halt, Output, ProcessError, Processed};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "parallelfilter",
        gst::DebugColorFlags::empty(),
        Some("Parallel in-order frame processing"),
    )
});

const PROP_WORKERS: &str = "workers";
const PROP_MAX_SIZE_BUFFERS: &str = "max-size-buffers";
const PROP_MAX_SIZE_BYTES: &str = "max-size-bytes";
const PROP_LEAKY: &str = "leaky";
const PROP_PROCESSOR: &str = "processor";
const PROP_TIMEOUT: &str = "timeout";
const PROP_ON_ERROR: &str = "on-error";
const PROP_POST_MESSAGES: &str = "post-messages";
const PROP_DELAY_MIN: &str = "delay-min";
const PROP_DELAY_MAX: &str = "delay-max";
const PROP_SEED: &str = "seed";
const PROP_ORDERED: &str = "ordered";
const PROP_STATS: &str = "stats";
const PROP_FILTER: &str = "filter";
const PROP_SCENE_THRESHOLD: &str = "scene-threshold";
const PROP_SERVERS: &str = "servers";
const PROP_MODEL: &str = "model";
const PROP_PAYLOAD: &str = "payload";
const PROP_RETRIES: &str = "retries";
const PROP_MAX_REQUESTS_PER_SERVER: &str = "max-requests-per-server";

const DEFAULT_MAX_SIZE_BUFFERS: u32 = 0;
const DEFAULT_MAX_SIZE_BYTES: u64 = 0;
const DEFAULT_TIMEOUT: u64 = 0;
const DEFAULT_POST_MESSAGES: bool = false;
const DEFAULT_DELAY: u64 = 0;
const DEFAULT_SEED: u64 = 0;
const DEFAULT_ORDERED: bool = true;
const DEFAULT_SCENE_THRESHOLD: f64 = 0.3;
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_MAX_REQUESTS_PER_SERVER: u32 = 0;
const MAX_WORKERS: u32 = 1024;
/// Upper bound of the time properties (about 292 years), so latency sums
/// never overflow.
const MAX_TIME: u64 = i64::MAX as u64;

fn default_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
}

#[derive(Debug, Clone)]
struct Settings {
    workers: u32,
    max_size_buffers: u32,
    max_size_bytes: u64,
    leaky: Leaky,
    processor: ProcessorKind,
    timeout: u64,
    on_error: OnError,
    post_messages: bool,
    delay_min: u64,
    delay_max: u64,
    seed: u64,
    ordered: bool,
    filter: Option<String>,
    /// `processor` or `filter` was set: a `process-frame` handler no longer
    /// selects `custom`.
    processor_chosen: bool,
    /// Shared with a running analyze/overlay processor: mutable in PLAYING.
    scene_threshold: SceneThreshold,
    servers: Option<String>,
    model: Option<String>,
    payload: Payload,
    retries: u32,
    max_requests_per_server: u32,
    /// `timeout`, shared with a running remote processor: mutable in PLAYING.
    live_timeout: remote::LiveTimeout,
    /// The application's processor for `processor=custom`; without one,
    /// the `process-frame` signal is the processor.
    custom: Option<CustomProcessor>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: default_workers(),
            max_size_buffers: DEFAULT_MAX_SIZE_BUFFERS,
            max_size_bytes: DEFAULT_MAX_SIZE_BYTES,
            leaky: Leaky::default(),
            processor: ProcessorKind::default(),
            timeout: DEFAULT_TIMEOUT,
            on_error: OnError::default(),
            post_messages: DEFAULT_POST_MESSAGES,
            delay_min: DEFAULT_DELAY,
            delay_max: DEFAULT_DELAY,
            seed: DEFAULT_SEED,
            ordered: DEFAULT_ORDERED,
            filter: None,
            processor_chosen: false,
            scene_threshold: SceneThreshold::new(DEFAULT_SCENE_THRESHOLD),
            servers: None,
            model: None,
            payload: Payload::default(),
            retries: DEFAULT_RETRIES,
            max_requests_per_server: DEFAULT_MAX_REQUESTS_PER_SERVER,
            live_timeout: remote::LiveTimeout::new(DEFAULT_TIMEOUT),
            custom: None,
        }
    }
}

impl Settings {
    fn engine_config(&self) -> engine::Config {
        engine::Config {
            workers: self.workers as usize,
            max_frames: self.max_size_buffers as usize,
            max_bytes: self.max_size_bytes,
            leaky: match self.leaky {
                Leaky::No => engine::Leaky::No,
                Leaky::Upstream => engine::Leaky::Upstream,
                Leaky::Downstream => engine::Leaky::Downstream,
            },
            ordered: self.ordered,
            timeout: (self.timeout > 0).then(|| Duration::from_nanos(self.timeout)),
        }
    }

    fn delay_bound(&self) -> u64 {
        self.delay_max.max(self.delay_min)
    }
}

/// Latency the element adds: the longest a frame can take to process.
/// `delay`: its longest delay; a timeout caps it. `passthrough`: nothing.
/// Other processors: the timeout.
fn latency_of(processor: ProcessorKind, delay_bound: u64, timeout: u64) -> gst::ClockTime {
    let bound = match processor {
        ProcessorKind::Passthrough => return gst::ClockTime::ZERO,
        ProcessorKind::Delay => delay_bound,
        _ => timeout,
    };
    let ns = if timeout > 0 {
        bound.min(timeout)
    } else {
        bound
    };
    gst::ClockTime::from_nseconds(ns.min(MAX_TIME))
}

impl Settings {
    /// The processor for a run; `None` for processor=custom without a Rust
    /// processor, where the `process-frame` signal is the processor.
    fn processor(&self) -> Result<Option<SharedProcessor>, gst::ErrorMessage> {
        Ok(match self.processor {
            ProcessorKind::Passthrough => Some(Arc::new(Passthrough)),
            ProcessorKind::Delay => Some(Arc::new(Delay {
                min: Duration::from_nanos(self.delay_min),
                max: Duration::from_nanos(self.delay_max),
                seed: self.seed,
            })),
            ProcessorKind::Analyze | ProcessorKind::Overlay => Some(Arc::new(Analyze::new(
                self.processor,
                self.scene_threshold.clone(),
            ))),
            ProcessorKind::Filter => {
                let Some(description) = self.filter.as_deref() else {
                    return Err(gst::error_msg!(
                        gst::CoreError::Failed,
                        ("processor=filter needs the filter property (a gst-launch description)")
                    ));
                };
                // One instance per worker up front; more when workers grows.
                Some(Arc::new(Filter::new(description, self.workers as usize)?))
            }
            // Without a Rust processor the element makes the signal one.
            ProcessorKind::Custom => self.custom.as_ref().map(CustomProcessor::shared),
            ProcessorKind::Remote => {
                let rt = crate::runtime::handle()
                    .map_err(|e| gst::error_msg!(gst::LibraryError::Init, ["{e}"]))?;
                let config = remote::Config {
                    servers: self.servers.clone().unwrap_or_default(),
                    model: self.model.clone().unwrap_or_default(),
                    payload: self.payload,
                    retries: self.retries,
                    max_per_server: match self.max_requests_per_server {
                        0 => self.workers as usize,
                        n => n as usize,
                    },
                    timeout: self.live_timeout.clone(),
                    scene_threshold: self.scene_threshold.clone(),
                };
                Some(Arc::new(remote::Remote::new(config, rt)?))
            }
        })
    }
}

/// What the src side needs about a frame, whatever its processing gives.
#[derive(Debug)]
struct Tag {
    pts: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// `State::epoch` when the frame entered.
    epoch: u64,
    /// The input frame, kept only with on-error=pass.
    original: Option<gst::Buffer>,
}

/// Items that bypass the workers and keep their place in the stream.
#[derive(Debug)]
enum Serialized {
    Event(gst::Event),
    /// Released once everything before it has been pushed.
    Barrier,
}

type FrameEngine = Engine<Frame, Tag, Serialized>;

#[derive(Default)]
struct State {
    engine: Option<Arc<FrameEngine>>,
    /// The processor the engine runs (its hooks), its kind and longest
    /// delay: the settings at start.
    hooks: Option<SharedProcessor>,
    processor: ProcessorKind,
    delay_bound: u64,
    /// Caps of the frames entering now.
    stream: Option<Arc<StreamInfo>>,
    /// The src caps for `stream`, when the processor changed them.
    src_caps: Option<gst::Caps>,
    /// The last frame in, for processors that compare with it.
    previous: Option<gst::Buffer>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// EOS entered the element: nobody upstream will see a flow return.
    eos: bool,
    /// Counts SEGMENT, STREAM_START and FLUSH_STOP at the sink pad: a
    /// downstream EOS holds until the next one.
    epoch: u64,
    /// Downstream returned EOS for a frame of this epoch.
    eos_epoch: Option<u64>,
    /// Stats of the last run, kept after the engine is gone.
    last_stats: Option<engine::Stats>,
    /// The processor's own counters at the last stop.
    last_processor_stats: Option<gst::Structure>,
    /// Formats refused in queries that a warning named already.
    refused_formats: Vec<String>,
    /// When a frame failure was last posted as a bus warning.
    last_failure_warning: Option<Instant>,
    /// Failures not posted since then.
    unreported_failures: u64,
}

pub struct ParallelFilter {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Serializes the task pausing itself with restarts (RECONFIGURE,
    /// FLUSH_STOP) and with the src pad's deactivation.
    task_lock: Mutex<()>,
    /// Downstream asked to reconfigure a processor that changes caps: the
    /// next frame renegotiates first. An atomic, so the chain function does
    /// not lock the state twice per buffer to read it.
    renegotiate: AtomicBool,
}

/// GStreamer's name of a flow return, as in its own error messages.
fn flow_name(err: gst::FlowError) -> &'static str {
    match err {
        gst::FlowError::NotLinked => "not-linked",
        gst::FlowError::Flushing => "flushing",
        gst::FlowError::Eos => "eos",
        gst::FlowError::NotNegotiated => "not-negotiated",
        gst::FlowError::Error => "error",
        gst::FlowError::NotSupported => "not-supported",
        _ => "custom-error",
    }
}

/// Why a frame failed, in the words a user sees in the error message.
fn cause(err: &ProcessError) -> String {
    match err {
        ProcessError::Failed(msg) => msg.clone(),
        ProcessError::Panicked(msg) => format!("the processor panicked: {msg}"),
        ProcessError::TimedOut(d) => format!("timed out after {d:?} (the timeout property)"),
    }
}

/// At most one bus warning a second for failures on-error lets through.
const FAILURE_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// A flow error that stops the stream for good (not a flush, not EOS).
fn is_fatal(err: gst::FlowError) -> bool {
    !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos)
}

impl ParallelFilter {
    /// Latency added now: the running processor's, or the configured one's
    /// before start; the timeout can change at any time.
    fn latency(&self) -> gst::ClockTime {
        let (running, extra) = {
            let state = lock(&self.state);
            let extra = state
                .hooks
                .as_ref()
                .map_or(gst::ClockTime::ZERO, |p| p.extra_latency());
            let running = state
                .engine
                .is_some()
                .then_some((state.processor, state.delay_bound));
            (running, extra)
        };
        let s = lock(&self.settings);
        let (processor, delay_bound) = running.unwrap_or((s.processor, s.delay_bound()));
        latency_of(processor, delay_bound, s.timeout).saturating_add(extra)
    }

    fn hooks(&self) -> Option<SharedProcessor> {
        lock(&self.state).hooks.clone()
    }

    fn engine(&self) -> Option<Arc<FrameEngine>> {
        lock(&self.state).engine.clone()
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings_for_start();
        self.renegotiate.store(false, Ordering::Release);
        let handle = crate::runtime::handle()
            .map_err(|e| gst::error_msg!(gst::LibraryError::Init, ["{e}"]))?;
        let processor = match settings.processor() {
            Ok(Some(processor)) => processor,
            // processor=custom without a Rust processor: the signal.
            Ok(None) => self.signal_processor()?,
            Err(err) => return Err(self.missing_plugins(&settings).unwrap_or(err)),
        };
        self.warn_unused(&settings);
        processor.attach(self.obj().upcast_ref());
        let engine = Engine::new(settings.engine_config(), processor.clone(), handle);
        gst::info!(
            CAT,
            imp = self,
            "Starting with processor {}, {} workers, at most {} frames",
            settings.processor.nick(),
            settings.workers,
            settings.engine_config().frame_limit()
        );
        let mut state = lock(&self.state);
        *state = State {
            engine: Some(Arc::new(engine)),
            hooks: Some(processor),
            processor: settings.processor,
            delay_bound: settings.delay_bound(),
            ..State::default()
        };
        Ok(())
    }

    /// The settings for this run: a `process-frame` handler connected while
    /// `processor` was never chosen selects `custom`.
    fn settings_for_start(&self) -> Settings {
        let mut settings = lock(&self.settings);
        if !settings.processor_chosen
            && settings.processor != ProcessorKind::Custom
            && custom::has_signal_handler(&self.obj())
        {
            gst::info!(
                CAT,
                imp = self,
                "A {PROCESS_FRAME_SIGNAL} handler is connected: processor=custom"
            );
            settings.processor = ProcessorKind::Custom;
        }
        settings.clone()
    }

    /// Settings the chosen processor leaves unused, where a user would
    /// expect them to act: a warning on the bus, not silence.
    fn warn_unused(&self, settings: &Settings) {
        let nick = settings.processor.nick();
        if let Some(description) = settings
            .filter
            .as_deref()
            .filter(|_| settings.processor != ProcessorKind::Filter)
        {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("filter '{description}' is not used: processor={nick} was set after it"),
                ["the property set last wins; set filter last (or processor=filter) to run it"]
            );
        }
        if settings.processor != ProcessorKind::Custom && custom::has_signal_handler(&self.obj()) {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("{PROCESS_FRAME_SIGNAL} handlers are connected but not called: processor={nick}"),
                ["set processor=custom, or leave processor unset, to call them"]
            );
        }
    }

    /// For a `filter` naming elements that are not installed: a
    /// missing-plugin message for each (so applications can offer to
    /// install them) and the error to post.
    fn missing_plugins(&self, settings: &Settings) -> Option<gst::ErrorMessage> {
        if settings.processor != ProcessorKind::Filter {
            return None;
        }
        let description = settings.filter.as_deref()?;
        let missing = filter::missing_elements(description);
        if missing.is_empty() {
            return None;
        }
        let obj = self.obj();
        for name in &missing {
            let msg = gst_pbutils::MissingPluginMessage::builder_for_element(name)
                .src(&*obj)
                .build();
            let _ = obj.post_message(msg);
        }
        let names = missing.join(", ");
        let quoted = missing
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Some(gst::error_msg!(
            gst::CoreError::MissingPlugin,
            ("filter '{description}' needs {names}, which is not installed"),
            ["no element {quoted}: install the plugin that provides it"]
        ))
    }

    /// `processor=custom` without a Rust processor: the `process-frame`
    /// handlers, if any is connected.
    fn signal_processor(&self) -> Result<SharedProcessor, gst::ErrorMessage> {
        let obj = self.obj();
        if !custom::has_signal_handler(&obj) {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("processor=custom but no processor was set"),
                ["set one with the Rust API (ParallelFilter::set_processor, \
                     set_async_processor, set_custom_processor) or connect a \
                     {PROCESS_FRAME_SIGNAL} signal handler before starting"]
            ));
        }
        gst::debug!(
            CAT,
            imp = self,
            "The {PROCESS_FRAME_SIGNAL} handlers are the processor"
        );
        Ok(Arc::new(SignalProcessor::new(&obj)))
    }

    /// Stores the application's processor for the next start.
    pub(super) fn set_custom(&self, processor: Option<CustomProcessor>) {
        gst::info!(CAT, imp = self, "Setting custom processor {processor:?}");
        lock(&self.settings).custom = processor;
        if self.engine().is_some() {
            gst::warning!(
                CAT,
                imp = self,
                "The custom processor takes effect at the next start (READY to PAUSED)"
            );
        }
    }

    fn stop(&self) {
        let mut state = lock(&self.state);
        if let Some(engine) = state.engine.take() {
            state.last_stats = Some(engine.stats());
            if let Some(hooks) = &state.hooks {
                let mut s = gst::Structure::new_empty(STATS_NAME);
                hooks.stats(&mut s);
                state.last_processor_stats = Some(s);
            }
            engine.flush_start();
        }
        state.hooks = None;
        state.stream = None;
        state.src_caps = None;
        state.previous = None;
        state.eos = false;
        gst::info!(CAT, imp = self, "Stopped");
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        let weak = self.obj().downgrade();
        self.srcpad.start_task(move || {
            if let Some(obj) = weak.upgrade() {
                obj.imp().src_loop();
            }
        })
    }

    fn src_loop(&self) {
        let Some(engine) = self.engine() else {
            let _ = self.srcpad.pause_task();
            return;
        };
        match engine.pop() {
            Err(halt) => {
                gst::debug!(CAT, imp = self, "Halted: {halt:?}");
                self.pause_if_halted(&engine);
            }
            Ok(Output::Item { pos, item }) => match item {
                Serialized::Event(event) => {
                    gst::log!(CAT, imp = self, "Releasing {event:?} (position {pos})");
                    // After EOS the task keeps waiting: a STREAM_START may
                    // already be queued behind it, and the sink pad itself
                    // refuses data until then.
                    if !self.srcpad.push_event(event) {
                        gst::debug!(CAT, imp = self, "Downstream refused event at {pos}");
                    }
                }
                // Popping it is the release: the waiter sees it gone.
                Serialized::Barrier => gst::log!(CAT, imp = self, "Releasing barrier at {pos}"),
            },
            Ok(Output::Frame(processed))
                if lock(&self.state).eos_epoch == Some(processed.tag.epoch) =>
            {
                // Downstream said EOS for this segment: drop the rest of it.
                gst::log!(
                    CAT,
                    imp = self,
                    "Downstream is EOS, dropping #{}",
                    processed.seq
                );
                drop(processed);
            }
            Ok(Output::Frame(processed)) => self.push_frame(&engine, processed),
        }
    }

    fn push_frame(&self, engine: &FrameEngine, processed: Processed<Frame, Tag>) {
        let Processed {
            seq,
            mut tag,
            result,
            worker,
            processing_time,
            admitted,
            leaving,
        } = processed;
        let (on_error, post_messages) = {
            let s = lock(&self.settings);
            (s.on_error, s.post_messages)
        };
        let buffer = match result {
            // Not held across the push: downstream would get a shared
            // buffer and copy it to write.
            Ok(frame) => {
                tag.original = None;
                frame.buffer
            }
            Err(err) => {
                // The cause in the message text: many applications show
                // only that.
                let text = format!(
                    "Processing frame #{seq} (pts {}) failed: {} (worker {worker})",
                    tag.pts.display(),
                    cause(&err)
                );
                match on_error {
                    OnError::Fail => {
                        // Counted before the error is posted, so the stats
                        // are complete for whoever reacts to the error.
                        drop(leaving);
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Failed,
                            ("{text}"),
                            ["worker {worker}: {err}"]
                        );
                        engine.halt(Halt::Error);
                        self.pause_if_halted(engine);
                        return;
                    }
                    OnError::Pass if tag.original.is_some() => {
                        self.warn_failure(&format!("{text}; passing it unprocessed"));
                        match tag.original.take() {
                            Some(original) => original,
                            None => return,
                        }
                    }
                    // Also on-error=pass for a frame that entered before it
                    // was set, or whose caps the processor changes, so no
                    // original was kept.
                    OnError::Drop | OnError::Pass => {
                        self.warn_failure(&format!("{text}; dropping it"));
                        drop(leaving);
                        if let Some(pts) = tag.pts {
                            let gap = gst::event::Gap::builder(pts).duration(tag.duration).build();
                            let _ = self.srcpad.push_event(gap);
                        }
                        return;
                    }
                }
            }
        };
        if post_messages {
            self.post_frame_message(&tag, &buffer, seq, worker, processing_time);
        }
        gst::log!(CAT, imp = self, "Pushing #{seq} {buffer:?}");
        // Latency ends at the src pad, not after a syncing sink's wait.
        let latency = admitted.elapsed();
        let result = self.srcpad.push(buffer);
        leaving.left(result.is_ok(), latency);
        if let Err(err) = result {
            self.handle_push_error(engine, err, tag.epoch);
        }
    }

    /// A failure that on-error lets the stream survive still reaches the
    /// bus: the first one, then at most one a second, saying how many
    /// went unreported in between (the `errors` stat counts them all).
    fn warn_failure(&self, text: &str) {
        gst::warning!(CAT, imp = self, "{text}");
        let unreported = {
            let mut state = lock(&self.state);
            let now = Instant::now();
            if state
                .last_failure_warning
                .is_some_and(|last| now.duration_since(last) < FAILURE_WARNING_INTERVAL)
            {
                state.unreported_failures += 1;
                return;
            }
            state.last_failure_warning = Some(now);
            std::mem::take(&mut state.unreported_failures)
        };
        match unreported {
            0 => gst::element_imp_warning!(self, gst::StreamError::Failed, ("{text}")),
            n => gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("{text} ({n} more failures since the last warning)")
            ),
        }
    }

    fn handle_push_error(&self, engine: &FrameEngine, err: gst::FlowError, epoch: u64) {
        if err == gst::FlowError::Eos {
            // As queue does: refuse and drop the rest of this segment but
            // keep going, so upstream's EOS or a new segment reaches
            // downstream.
            gst::debug!(CAT, imp = self, "Downstream is EOS");
            lock(&self.state).eos_epoch = Some(epoch);
            return;
        }
        gst::debug!(CAT, imp = self, "Push failed: {err:?}, pausing");
        engine.halt(err.into());
        self.pause_if_halted(engine);
        // Upstream learns about the error from its next chain call, unless
        // EOS already went in: then nobody would report it.
        let eos = lock(&self.state).eos;
        if eos && is_fatal(err) {
            self.post_flow_error(err);
            let _ = self.srcpad.push_event(gst::event::Eos::new());
        }
    }

    /// Pauses the task from inside it, unless a RECONFIGURE resumed the
    /// engine since it halted: checking and pausing under `task_lock`, like
    /// resuming and restarting, means the restart can never be lost.
    fn pause_if_halted(&self, engine: &FrameEngine) {
        let _guard = lock(&self.task_lock);
        if engine.halted().is_some() {
            let _ = self.srcpad.pause_task();
        }
    }

    fn post_flow_error(&self, err: gst::FlowError) {
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Internal data stream error."),
            ["streaming stopped, reason {}", flow_name(err)]
        );
    }

    /// Timing fields first, from the frame's own segment, then the
    /// processor's results (or seq, worker and processing-time).
    fn post_frame_message(
        &self,
        tag: &Tag,
        buffer: &gst::BufferRef,
        seq: u64,
        worker: usize,
        processing: Duration,
    ) {
        let results = self
            .hooks()
            .and_then(|p| p.message(buffer))
            .unwrap_or_else(|| {
                gst::Structure::builder(MESSAGE_NAME)
                    .field("seq", seq)
                    .field("worker", worker as u32)
                    .field("processing-time", processing.as_nanos() as u64)
                    .build()
            });
        let running_time = tag.pts.and_then(|pts| tag.segment.to_running_time(pts));
        let stream_time = tag.pts.and_then(|pts| tag.segment.to_stream_time(pts));
        let mut s = gst::Structure::builder(results.name())
            .field("timestamp", tag.pts.map_or(u64::MAX, |t| t.nseconds()))
            .field(
                "stream-time",
                stream_time.map_or(u64::MAX, |t| t.nseconds()),
            )
            .field(
                "running-time",
                running_time.map_or(u64::MAX, |t| t.nseconds()),
            )
            .field("duration", tag.duration.map_or(u64::MAX, |t| t.nseconds()))
            .build();
        for (name, value) in results.iter() {
            if !s.has_field(name) {
                s.set_value(name, value.clone());
            }
        }
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    fn sink_chain(
        &self,
        pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        gst::log!(CAT, obj = pad, "Handling {buffer:?}");
        let renegotiate = if self.renegotiate.swap(false, Ordering::AcqRel) {
            let state = lock(&self.state);
            match &state.engine {
                Some(engine) => state
                    .hooks
                    .clone()
                    .zip(state.stream.clone())
                    .map(|(hooks, stream)| (engine.clone(), hooks, stream)),
                None => None,
            }
        } else {
            None
        };
        if let Some((engine, hooks, stream)) = renegotiate {
            self.renegotiate(&engine, &hooks, &stream)?;
        }
        let (engine, segment, epoch, stream, previous, caps_changed) = {
            let mut state = lock(&self.state);
            let engine = state.engine.clone().ok_or(gst::FlowError::Flushing)?;
            if state.eos_epoch == Some(state.epoch) {
                return Err(gst::FlowError::Eos);
            }
            let stream = match state.stream.clone() {
                Some(stream) => stream,
                // Only without caps: building the processor's caps costs.
                None if state.hooks.as_ref().is_none_or(|p| p.caps().is_none()) => {
                    // passthrough and delay never look at the caps.
                    let stream =
                        Arc::new(StreamInfo::new(gst::Caps::new_empty_simple("video/x-raw")));
                    state.stream = Some(stream.clone());
                    stream
                }
                None => {
                    drop(state);
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Got a buffer before caps: {buffer:?}")
                    );
                    return Err(gst::FlowError::NotNegotiated);
                }
            };
            let previous = if state.hooks.as_ref().is_some_and(|p| p.needs_previous()) {
                state.previous.replace(buffer.clone())
            } else {
                None
            };
            (
                engine,
                state.segment.clone(),
                state.epoch,
                stream,
                previous,
                state.src_caps.is_some(),
            )
        };
        let on_error = lock(&self.settings).on_error;
        let tag = Tag {
            pts: buffer.pts(),
            duration: buffer.duration(),
            segment,
            epoch,
            // The original cannot stand in for a frame whose caps the
            // processor changes.
            original: (on_error == OnError::Pass && !caps_changed).then(|| buffer.clone()),
        };
        let bytes = buffer.size() as u64;
        let frame = Frame {
            buffer,
            stream,
            segment: tag.segment.clone(),
            previous,
        };
        match engine.submit_frame(frame, tag, bytes) {
            Ok(Admission::Queued { seq }) => {
                gst::trace!(CAT, obj = pad, "Queued as #{seq}");
                Ok(gst::FlowSuccess::Ok)
            }
            Ok(Admission::Dropped) => {
                gst::debug!(CAT, obj = pad, "Full and leaky: dropped a frame");
                Ok(gst::FlowSuccess::Ok)
            }
            Err(err) => {
                gst::debug!(CAT, obj = pad, "Refusing buffer: {err:?}");
                Err(err.into())
            }
        }
    }

    /// Runs the processor's negotiation for `caps`, posting a LATENCY
    /// message if its latency changed; the src caps.
    fn negotiate(
        &self,
        hooks: &SharedProcessor,
        caps: &gst::Caps,
    ) -> Result<gst::Caps, gst::ErrorMessage> {
        let latency_before = self.latency();
        let src_caps = hooks.set_caps(caps)?;
        // A wrapped chain's latency can depend on the caps.
        if self.latency() != latency_before {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
        Ok(src_caps)
    }

    /// Downstream asked for other caps: negotiates again for the current
    /// input caps; new src caps go out in stream order, before the next
    /// frame, and the frames from here on carry them.
    fn renegotiate(
        &self,
        engine: &FrameEngine,
        hooks: &SharedProcessor,
        stream: &StreamInfo,
    ) -> Result<(), gst::FlowError> {
        let caps = &stream.caps;
        let src_caps = match self.negotiate(hooks, caps) {
            Ok(src_caps) => src_caps,
            // Not for these input caps: upstream saw the RECONFIGURE too
            // and its new caps will come; until then frames keep the caps
            // they have, as with any other element.
            Err(err) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "Keeping src caps {}: {err}",
                    stream.output_caps()
                );
                return Ok(());
            }
        };
        if &src_caps == stream.output_caps() {
            return Ok(());
        }
        gst::debug!(CAT, imp = self, "Renegotiated src caps {src_caps:?}");
        let output = (&src_caps != caps).then(|| src_caps.clone());
        {
            let mut state = lock(&self.state);
            state.stream = Some(Arc::new(StreamInfo::with_output(
                caps.clone(),
                output.clone(),
            )));
            state.src_caps = output;
            state.previous = None;
        }
        engine
            .submit_item(Serialized::Event(gst::event::Caps::new(&src_caps)))
            .map(|_| ())
            .map_err(Into::into)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;

        gst::log!(CAT, obj = pad, "Handling {event:?}");
        match event.view() {
            EventView::FlushStart(_) => {
                // Downstream first, to free a task stuck in a push.
                let ret = self.srcpad.push_event(event);
                if let Some(engine) = self.engine() {
                    engine.flush_start();
                }
                let _ = self.srcpad.pause_task();
                gst::debug!(CAT, obj = pad, "Flushing");
                return ret;
            }
            EventView::FlushStop(_) => {
                let engine = self.engine();
                if let Some(engine) = &engine
                    && engine.halted() != Some(Halt::Flushing)
                {
                    // FLUSH_STOP without FLUSH_START: stop the task first,
                    // so nothing it holds goes out after this event.
                    engine.flush_start();
                    let _ = self.srcpad.pause_task();
                }
                let hooks = {
                    let mut state = lock(&self.state);
                    state.eos = false;
                    state.epoch += 1;
                    state.eos_epoch = None;
                    state.segment = gst::FormattedSegment::new();
                    state.previous = None;
                    state.hooks.clone()
                };
                if let Some(hooks) = hooks {
                    hooks.flush();
                }
                let ret = self.srcpad.push_event(event);
                // Sticky events still queued were discarded and upstream will
                // not resend them: carry the current ones (but the segment
                // and EOS) over, as queue does.
                let src_caps = lock(&self.state).src_caps.clone();
                self.sinkpad.sticky_events_foreach(|ev| {
                    match (ev.type_(), &src_caps) {
                        (gst::EventType::Segment | gst::EventType::Eos, _) => {}
                        (gst::EventType::Caps, Some(caps)) => {
                            let _ = self.srcpad.store_sticky_event(&gst::event::Caps::new(caps));
                        }
                        _ => {
                            let _ = self.srcpad.store_sticky_event(ev);
                        }
                    }
                    std::ops::ControlFlow::Continue(gst::EventForeachAction::Keep)
                });
                // Under task_lock, as the src pad's deactivation: either it
                // already halted the engine and nothing restarts, or it comes
                // after and stops what this starts.
                let _guard = lock(&self.task_lock);
                if let Some(engine) = &engine
                    && self.srcpad.mode() == gst::PadMode::Push
                {
                    engine.flush_stop();
                    if let Err(err) = self.start_task() {
                        gst::error!(CAT, obj = pad, "Cannot restart task: {err}");
                        return false;
                    }
                }
                gst::debug!(CAT, obj = pad, "Flush stopped, sequence restarts at 0");
                return ret;
            }
            _ => {}
        }
        if !event.is_serialized() {
            return gst::Pad::event_default(pad, Some(&*self.obj()), event);
        }
        let Some(engine) = self.engine() else {
            return false;
        };
        let mut replacement = None;
        match event.view() {
            EventView::Segment(e) => {
                let Ok(segment) = e.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "Only TIME segments are supported, got {:?}",
                            e.segment().format()
                        )
                    );
                    return false;
                };
                let mut state = lock(&self.state);
                state.segment = segment;
                state.epoch += 1;
            }
            EventView::Caps(e) => {
                let hooks = self.hooks();
                let caps = e.caps_owned();
                gst::debug!(CAT, obj = pad, "Caps {caps:?}");
                // Negotiated with downstream as it is from now on; a
                // RECONFIGURE during the negotiation still counts.
                self.renegotiate.store(false, Ordering::Release);
                let src_caps =
                    match hooks.map_or_else(|| Ok(caps.clone()), |h| self.negotiate(&h, &caps)) {
                        Ok(src_caps) => src_caps,
                        Err(err) => {
                            self.post_error_message(err);
                            return false;
                        }
                    };
                {
                    let mut state = lock(&self.state);
                    // The same caps again (e.g. a renegotiation that kept
                    // them) keep the previous frame: motion stays valid.
                    if state.stream.as_ref().is_none_or(|s| s.caps != caps) {
                        state.previous = None;
                    }
                    let output = (src_caps != caps).then(|| src_caps.clone());
                    state.stream = Some(Arc::new(StreamInfo::with_output(
                        caps.clone(),
                        output.clone(),
                    )));
                    state.src_caps = output;
                }
                if src_caps != caps {
                    gst::debug!(CAT, obj = pad, "Src caps {src_caps:?}");
                    replacement = Some(
                        gst::event::Caps::builder(&src_caps)
                            .seqnum(event.seqnum())
                            .build(),
                    );
                }
            }
            // A new stream after EOS.
            EventView::StreamStart(_) => {
                let mut state = lock(&self.state);
                state.eos = false;
                state.epoch += 1;
            }
            EventView::Eos(_) => lock(&self.state).eos = true,
            _ => {}
        }
        let event = replacement.unwrap_or(event);
        let is_eos = event.type_() == gst::EventType::Eos;
        match engine.submit_item(Serialized::Event(event)) {
            Ok(id) => {
                gst::trace!(CAT, obj = pad, "Queued event at position {}", id.pos);
                true
            }
            Err(err) => {
                if is_eos && is_fatal(err.into()) {
                    // Upstream is done and will not see this error.
                    self.post_flow_error(err.into());
                }
                gst::debug!(CAT, obj = pad, "Refusing event: {err:?}");
                false
            }
        }
    }

    /// Waits until everything that entered before now has been pushed.
    fn drain(&self) -> bool {
        let Some(engine) = self.engine() else {
            return false;
        };
        // A flush, teardown or downstream error wakes us with Err, so the
        // upstream thread never hangs here.
        engine
            .submit_item(Serialized::Barrier)
            .and_then(|id| engine.wait_released(id))
            .is_ok()
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        gst::log!(CAT, obj = pad, "Handling {query:?}");
        if query.is_serialized() {
            // Allocation, drain and other serialized queries are answered
            // downstream once everything before them is out.
            if !self.drain() {
                gst::debug!(CAT, obj = pad, "Flushing, not forwarding {query:?}");
                return false;
            }
            if query.type_() == gst::QueryType::Allocation && self.transforms_caps() {
                // Downstream's answer is for other caps than upstream's.
                return false;
            }
            return self.srcpad.peer_query(query);
        }
        if let Some(answered) = self.caps_query(&self.srcpad, query) {
            return answered;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// Whether the running processor's output caps can differ from its
    /// input caps.
    fn transforms_caps(&self) -> bool {
        let state = lock(&self.state);
        state.engine.is_some() && state.processor.changes_caps()
    }

    /// The caps the processor accepts when it restricts them: the running
    /// processor's, or before start those of the configured kind.
    fn restricted_caps(&self) -> Option<gst::Caps> {
        match self.hooks() {
            Some(hooks) => hooks.caps(),
            None => lock(&self.settings).processor.static_caps(),
        }
    }

    /// Upstream's not-negotiated error does not say which format the
    /// processor refused, so name it on the bus. A warning, not an error:
    /// queries can be speculative (autoplugging tries formats). Once per
    /// format, and at most 16 formats, so a probing upstream cannot flood
    /// the bus.
    fn warn_unsupported(&self, offered: &gst::CapsRef, supported: &gst::Caps) {
        let mut formats: Vec<String> = offered
            .iter()
            .filter_map(|s| {
                s.value("format")
                    .ok()
                    .map(|v| v.serialize().map(String::from))
            })
            .filter_map(Result::ok)
            .collect();
        formats.dedup();
        let format = if formats.is_empty() {
            offered.to_string()
        } else {
            formats.join(", ")
        };
        {
            let mut state = lock(&self.state);
            if state.refused_formats.contains(&format) || state.refused_formats.len() >= 16 {
                return;
            }
            state.refused_formats.push(format.clone());
        }
        let nick = lock(&self.settings).processor.nick();
        gst::element_imp_warning!(
            self,
            gst::CoreError::Negotiation,
            ("Format {format} is not supported by processor {nick}"),
            ["supported: {supported}"]
        );
    }

    /// A CAPS query when the processor restricts or transforms the caps:
    /// the processor's answer, or what the peer of `other` accepts within
    /// the processor's caps. ACCEPT_CAPS on the sink pad: within the
    /// processor's CAPS answer when it transforms caps, else within its
    /// caps and accepted downstream.
    fn caps_query(&self, other: &gst::Pad, query: &mut gst::QueryRef) -> Option<bool> {
        let direction = if other == &self.srcpad {
            gst::PadDirection::Sink
        } else {
            gst::PadDirection::Src
        };
        if let gst::QueryViewMut::AcceptCaps(q) = query.view_mut() {
            if direction != gst::PadDirection::Sink {
                return None;
            }
            let caps = q.caps_owned();
            let hooks = self.hooks();
            if let Some(allowed) = hooks
                .as_ref()
                .and_then(|h| h.query_caps(direction, Some(&caps)))
            {
                q.set_result(caps.is_subset(&allowed));
                return Some(true);
            }
            // PROXY_CAPS would only ask downstream.
            let allowed = self.restricted_caps()?;
            let supported = caps.is_subset(&allowed);
            if !supported {
                self.warn_unsupported(&caps, &allowed);
            }
            let accepted = supported && other.peer_query_accept_caps(&caps);
            gst::debug!(CAT, imp = self, "Accept caps {caps:?}: {accepted}");
            q.set_result(accepted);
            return Some(true);
        }
        let gst::QueryViewMut::Caps(q) = query.view_mut() else {
            return None;
        };
        let caps = match self.hooks() {
            Some(hooks) => {
                if let Some(caps) = hooks.query_caps(direction, q.filter_owned().as_ref()) {
                    q.set_result(&caps);
                    return Some(true);
                }
                hooks.caps()?
            }
            None => {
                let kind = lock(&self.settings).processor;
                if kind.changes_caps() {
                    // Not started yet: anything the template allows, not the
                    // other side's caps, so that linking works before the
                    // chain exists.
                    let template = gst::Caps::builder("video/x-raw").build();
                    let caps = match q.filter() {
                        Some(f) => f.intersect_with_mode(&template, gst::CapsIntersectMode::First),
                        None => template,
                    };
                    q.set_result(&caps);
                    return Some(true);
                }
                kind.static_caps()?
            }
        };
        let filter = match q.filter() {
            Some(offered) => {
                let filter = offered.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
                if filter.is_empty() && !offered.is_empty() && direction == gst::PadDirection::Sink
                {
                    self.warn_unsupported(offered, &caps);
                }
                filter
            }
            None => caps.clone(),
        };
        let peer = other.peer_query_caps(Some(&filter));
        q.set_result(&peer.intersect_with_mode(&caps, gst::CapsIntersectMode::First));
        Some(true)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        gst::log!(CAT, obj = pad, "Handling {query:?}");
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            let own = self.latency();
            gst::debug!(
                CAT,
                obj = pad,
                "Upstream latency live {live} min {min} max {}, adding {own}",
                max.display()
            );
            // Saturate: an overflowing max means unbounded.
            q.set(
                live,
                min.saturating_add(own),
                max.and_then(|max| max.checked_add(own)),
            );
            return true;
        }
        if let Some(answered) = self.caps_query(&self.sinkpad, query) {
            return answered;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "Handling {event:?}");
        if event.type_() == gst::EventType::Reconfigure
            && let Some(engine) = self.engine()
        {
            // Downstream may want other caps than the processor chose.
            if lock(&self.state).processor.changes_caps() {
                self.renegotiate.store(true, Ordering::Release);
            }
            // Linked again: resume pushing what is waiting.
            self.resume_task(&engine, Halt::NotLinked);
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// Restarts the task if the engine was halted by `halt`. Under
    /// `task_lock`, so the task cannot pause itself in between; a
    /// deactivation in between halts with Flushing and nothing restarts.
    fn resume_task(&self, engine: &FrameEngine, halt: Halt) {
        let _guard = lock(&self.task_lock);
        if engine.resume_from(halt) {
            gst::debug!(CAT, imp = self, "Resuming after {halt:?}");
            if let Err(err) = self.start_task() {
                gst::error!(CAT, imp = self, "Cannot restart task: {err}");
            }
        }
    }

    fn src_activatemode(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "Only push mode is supported"));
        }
        if active {
            let Some(engine) = self.engine() else {
                return Err(gst::loggable_error!(CAT, "Not started"));
            };
            engine.flush_stop();
            self.start_task()
                .map_err(|e| gst::loggable_error!(CAT, "Cannot start task: {e}"))
        } else {
            if let Some(engine) = self.engine() {
                // Under task_lock: a RECONFIGURE cannot restart the task now.
                let _guard = lock(&self.task_lock);
                engine.flush_start();
            }
            // The engine is halted, so the task's pop returns and it can join.
            pad.stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "Cannot stop task: {e}"))
        }
    }

    fn sink_activatemode(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "Only push mode is supported"));
        }
        if !active {
            if let Some(engine) = self.engine() {
                engine.flush_start();
            }
            // Wait for a chain call in progress to return.
            let _stream_lock = pad.stream_lock();
        }
        Ok(())
    }

    fn stats_structure(&self) -> gst::Structure {
        let (stats, hooks, last_processor_stats) = {
            let state = lock(&self.state);
            let stats = match &state.engine {
                Some(engine) => engine.stats(),
                None => state.last_stats.clone().unwrap_or_else(|| engine::Stats {
                    workers: lock(&self.settings).workers,
                    ..engine::Stats::default()
                }),
            };
            (
                stats,
                state.hooks.clone(),
                state.last_processor_stats.clone(),
            )
        };
        let ns = |d: Duration| d.as_nanos() as u64;
        let mut s = gst::Structure::builder(STATS_NAME)
            .field("frames-in", stats.frames_in)
            .field("frames-out", stats.frames_out)
            .field("dropped", stats.dropped)
            .field("errors", stats.errors)
            .field("timeouts", stats.timeouts)
            .field("in-flight", stats.in_flight)
            .field("max-in-flight", stats.max_in_flight)
            .field("reorder-depth", stats.reorder_depth)
            .field("max-reorder-depth", stats.max_reorder_depth)
            .field("workers", stats.workers)
            .field("blocked-upstream", stats.blocked_upstream)
            .field("avg-processing-time", ns(stats.avg_processing_time))
            .field("max-processing-time", ns(stats.max_processing_time))
            .field("avg-latency", ns(stats.avg_latency))
            .field("max-latency", ns(stats.max_latency))
            .field("per-worker", gst::Array::new(stats.per_worker))
            .build();
        match (hooks, last_processor_stats) {
            (Some(hooks), _) => hooks.stats(&mut s),
            (None, Some(last)) => {
                for (name, value) in last.iter() {
                    s.set_value(name, value.clone());
                }
            }
            (None, None) => {}
        }
        s
    }
}

#[glib::object_subclass]
impl ObjectSubclass for ParallelFilter {
    const NAME: &'static str = "GstParallelFilter";
    type Type = super::ParallelFilter;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_query(pad, query),
                )
            })
            .activatemode_function(|pad, parent, mode, active| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "Panic activating sink pad")),
                    |imp| imp.sink_activatemode(pad, mode, active),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();

        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .event_function(|pad, parent, event| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .activatemode_function(|pad, parent, mode, active| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "Panic activating src pad")),
                    |imp| imp.src_activatemode(pad, mode, active),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();

        ParallelFilter {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            task_lock: Mutex::new(()),
            renegotiate: AtomicBool::new(false),
        }
    }
}

impl ObjectImpl for ParallelFilter {
    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            // process-frame(buffer, seq) -> gboolean: with processor=custom
            // and no Rust processor, processes each frame. Emitted on a
            // worker thread, for up to `workers` frames at once, so handlers
            // run concurrently on several threads and must be thread-safe.
            // The buffer is writable (pixels and metas); returning FALSE is
            // a processing error, handled by on-error. With several
            // handlers, the first FALSE stops the emission. Its caps are the
            // sink pad's when it entered (DESIGN: buffer and seq only).
            vec![
                glib::subclass::Signal::builder(PROCESS_FRAME_SIGNAL)
                    .param_types([gst::Buffer::static_type(), u64::static_type()])
                    .return_type::<bool>()
                    .accumulator(|_hint, _acc, value| {
                        if value.get::<bool>().unwrap_or(false) {
                            std::ops::ControlFlow::Continue(value.clone())
                        } else {
                            std::ops::ControlFlow::Break(value.clone())
                        }
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder(PROP_WORKERS)
                    .nick("Workers")
                    .blurb("Frames processed concurrently (default: CPUs available)")
                    .minimum(1)
                    .maximum(MAX_WORKERS)
                    .default_value(default_workers())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_MAX_SIZE_BUFFERS)
                    .nick("Max size buffers")
                    .blurb(
                        "Max frames inside the element: queued, processing and waiting \
                         for reorder (0 = 2 x workers)",
                    )
                    .maximum(u16::MAX as u32)
                    .default_value(DEFAULT_MAX_SIZE_BUFFERS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_MAX_SIZE_BYTES)
                    .nick("Max size bytes")
                    .blurb("Max bytes of frames inside the element (0 = no limit)")
                    .default_value(DEFAULT_MAX_SIZE_BYTES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(PROP_LEAKY, Leaky::default())
                    .nick("Leaky")
                    .blurb("When full: block upstream, drop the new frame, or drop the oldest not yet started")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    PROP_PROCESSOR,
                    ProcessorKind::default(),
                )
                .nick("Processor")
                .blurb("What workers do to each frame")
                .mutable_ready()
                .build(),
                glib::ParamSpecUInt64::builder(PROP_TIMEOUT)
                    .nick("Timeout")
                    .blurb(
                        "Abandon a frame whose processing takes longer, in ns, and \
                         handle it per on-error (0 = none)",
                    )
                    .maximum(MAX_TIME)
                    .default_value(DEFAULT_TIMEOUT)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(PROP_ON_ERROR, OnError::default())
                    .nick("On error")
                    .blurb("On processing error, panic or timeout: fail, drop with a GAP event, or pass the original frame")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder(PROP_POST_MESSAGES)
                    .nick("Post messages")
                    .blurb("Post one element message per frame, in output order")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_DELAY_MIN)
                    .nick("Delay min")
                    .blurb("delay processor: minimum per-frame wait in ns")
                    .maximum(MAX_TIME)
                    .default_value(DEFAULT_DELAY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_DELAY_MAX)
                    .nick("Delay max")
                    .blurb("delay processor: maximum per-frame wait in ns")
                    .maximum(MAX_TIME)
                    .default_value(DEFAULT_DELAY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_SEED)
                    .nick("Seed")
                    .blurb("delay processor: seed of the delay generator (same seed, same delays)")
                    .default_value(DEFAULT_SEED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder(PROP_ORDERED)
                    .nick("Ordered")
                    .blurb(
                        "Push frames in input order; false: as soon as processed, but \
                         never across a serialized event",
                    )
                    .default_value(DEFAULT_ORDERED)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder(PROP_FILTER)
                    .nick("Filter")
                    .blurb(
                        "filter processor: gst-launch description of a one-in one-out \
                         element chain, one instance per worker; setting it selects \
                         processor=filter",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder(PROP_SCENE_THRESHOLD)
                    .nick("Scene threshold")
                    .blurb("analyze/overlay processors: motion above it sets scene-change")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_SCENE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder(PROP_SERVERS)
                    .nick("Servers")
                    .blurb(
                        "remote processor: comma-separated base URLs of inference servers \
                         (Open Inference Protocol / KServe v2)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder(PROP_MODEL)
                    .nick("Model")
                    .blurb("remote processor: model name on the servers")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(PROP_PAYLOAD, Payload::default())
                    .nick("Payload")
                    .blurb("remote processor: send the frame's pixels or the analysis fields")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_RETRIES)
                    .nick("Retries")
                    .blurb(
                        "remote processor: retry a failed request on another server this \
                         many times within timeout",
                    )
                    .default_value(DEFAULT_RETRIES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_MAX_REQUESTS_PER_SERVER)
                    .nick("Max requests per server")
                    .blurb("remote processor: concurrent requests per server (0 = workers)")
                    .default_value(DEFAULT_MAX_REQUESTS_PER_SERVER)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>(PROP_STATS)
                    .nick("Statistics")
                    .blurb("Counters: frames in/out, drops, errors, in-flight, reorder depth, timings, per-worker frames")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let latency_before = self.latency();
        let old = self.property(id, pspec);
        let mut settings = lock(&self.settings);
        let name = pspec.name();
        // Types are checked by GObject before we get here.
        match name {
            PROP_WORKERS => settings.workers = value.get().unwrap_or(settings.workers),
            PROP_MAX_SIZE_BUFFERS => {
                settings.max_size_buffers = value.get().unwrap_or(settings.max_size_buffers)
            }
            PROP_MAX_SIZE_BYTES => {
                settings.max_size_bytes = value.get().unwrap_or(settings.max_size_bytes)
            }
            PROP_LEAKY => settings.leaky = value.get().unwrap_or(settings.leaky),
            PROP_PROCESSOR => {
                settings.processor = value.get().unwrap_or(settings.processor);
                settings.processor_chosen = true;
            }
            PROP_TIMEOUT => {
                settings.timeout = value.get().unwrap_or(settings.timeout);
                settings.live_timeout.set(settings.timeout);
            }
            PROP_ON_ERROR => settings.on_error = value.get().unwrap_or(settings.on_error),
            PROP_POST_MESSAGES => {
                settings.post_messages = value.get().unwrap_or(settings.post_messages)
            }
            PROP_DELAY_MIN => settings.delay_min = value.get().unwrap_or(settings.delay_min),
            PROP_DELAY_MAX => settings.delay_max = value.get().unwrap_or(settings.delay_max),
            PROP_SEED => settings.seed = value.get().unwrap_or(settings.seed),
            PROP_ORDERED => settings.ordered = value.get().unwrap_or(settings.ordered),
            PROP_FILTER => {
                settings.filter = value
                    .get::<Option<String>>()
                    .ok()
                    .flatten()
                    .filter(|f| !f.trim().is_empty());
                if let Some(description) = settings.filter.clone() {
                    settings.processor = ProcessorKind::Filter;
                    settings.processor_chosen = true;
                    // Parsed once now for an early hint (a debug-log warning,
                    // not a g_warning that test harnesses make fatal); start
                    // fails for good.
                    if let Err(err) = filter::check(&description) {
                        gst::warning!(CAT, imp = self, "{err}");
                    }
                }
            }
            PROP_SCENE_THRESHOLD => {
                if let Ok(v) = value.get() {
                    settings.scene_threshold.set(v);
                }
            }
            PROP_SERVERS => settings.servers = value.get().unwrap_or(None),
            PROP_MODEL => settings.model = value.get().unwrap_or(None),
            PROP_PAYLOAD => settings.payload = value.get().unwrap_or(settings.payload),
            PROP_RETRIES => settings.retries = value.get().unwrap_or(settings.retries),
            PROP_MAX_REQUESTS_PER_SERVER => {
                settings.max_requests_per_server =
                    value.get().unwrap_or(settings.max_requests_per_server)
            }
            _ => unimplemented!(),
        }
        gst::info!(CAT, imp = self, "Changing {name} from {old:?} to {value:?}");
        let config = settings.engine_config();

        drop(settings);
        let latency_changed = self.latency() != latency_before;
        if let Some(engine) = self.engine() {
            engine.configure(config);
            if matches!(
                name,
                PROP_PROCESSOR
                    | PROP_DELAY_MIN
                    | PROP_DELAY_MAX
                    | PROP_SEED
                    | PROP_FILTER
                    | PROP_SERVERS
                    | PROP_MODEL
                    | PROP_PAYLOAD
                    | PROP_RETRIES
                    | PROP_MAX_REQUESTS_PER_SERVER
            ) {
                gst::warning!(
                    CAT,
                    imp = self,
                    "{name} takes effect at the next start (READY to PAUSED)"
                );
            }
        }
        if latency_changed {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            PROP_WORKERS => settings.workers.to_value(),
            PROP_MAX_SIZE_BUFFERS => settings.max_size_buffers.to_value(),
            PROP_MAX_SIZE_BYTES => settings.max_size_bytes.to_value(),
            PROP_LEAKY => settings.leaky.to_value(),
            PROP_PROCESSOR => settings.processor.to_value(),
            PROP_TIMEOUT => settings.timeout.to_value(),
            PROP_ON_ERROR => settings.on_error.to_value(),
            PROP_POST_MESSAGES => settings.post_messages.to_value(),
            PROP_DELAY_MIN => settings.delay_min.to_value(),
            PROP_DELAY_MAX => settings.delay_max.to_value(),
            PROP_SEED => settings.seed.to_value(),
            PROP_ORDERED => settings.ordered.to_value(),
            PROP_FILTER => settings.filter.to_value(),
            PROP_SCENE_THRESHOLD => settings.scene_threshold.get().to_value(),
            PROP_SERVERS => settings.servers.to_value(),
            PROP_MODEL => settings.model.to_value(),
            PROP_PAYLOAD => settings.payload.to_value(),
            PROP_RETRIES => settings.retries.to_value(),
            PROP_MAX_REQUESTS_PER_SERVER => settings.max_requests_per_server.to_value(),
            PROP_STATS => {
                drop(settings);
                self.stats_structure().to_value()
            }
            _ => unimplemented!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("adding sink pad");
        obj.add_pad(&self.srcpad).expect("adding src pad");
    }
}

impl GstObjectImpl for ParallelFilter {}

impl ElementImpl for ParallelFilter {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Parallel Filter",
                "Filter/Video",
                "Processes video frames concurrently in a bounded worker pool and pushes \
                 them out in input order",
                "gst-plugin-parallel developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // System-memory raw video in any format: passthrough and delay
            // never look at the pixels.
            let caps = gst::Caps::builder("video/x-raw").build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("src template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::debug!(CAT, imp = self, "Changing state {transition:?}");
        match transition {
            gst::StateChange::ReadyToPaused => {
                if let Err(err) = self.start() {
                    self.post_error_message(err);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => {
                // Unblock chain and the task before the pads deactivate.
                if let Some(engine) = self.engine() {
                    engine.flush_start();
                }
            }
            _ => {}
        }
        let ret = self.parent_change_state(transition);
        match (transition, &ret) {
            (gst::StateChange::PausedToReady, _) | (gst::StateChange::ReadyToPaused, Err(_)) => {
                self.stop()
            }
            _ => {}
        }
        ret
    }
}
