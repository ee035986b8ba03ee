// SPDX-License-Identifier: MPL-2.0
//! The `remote` processor: each frame (or batch of frames) goes to one of
//! several Open Inference Protocol (KServe v2) servers, over REST
//! (HTTP/1.1) or gRPC, plain or TLS, and the response's outputs become
//! the `GstParallelFilterInferenceMeta`.
//!
//! Scheduling: a request goes to the ready server with the smallest share
//! of its limit in flight: `max-requests-per-server`, or with 0 a limit
//! adapted to the server's latency (`limit`). A server whose request
//! fails (connection error, 5xx, no answer) becomes suspect and is probed at
//! once; a failed probe marks it down, and it is probed again in the
//! background with a bounded backoff. The request is retried, preferably on
//! another server. A ready server whose model is missing or not ready is
//! not down but without the model, probed the same way. A frame fails at
//! once only when every server is down or without the model (confirmed by
//! a probe); otherwise it waits for a usable server until its deadline.
//!
//! Where things are:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the processor: a frame in, its tensor out, the answer as meta |
//! | `config` | the settings and their checks |
//! | `cluster` | the clients, servers and probes; shared in a context |
//! | `gather` | a request's way to a slot; batches of members in one |
//! | `tensor` | the input tensor of a frame: pixels or analysis |
//! | `batch` | frames stacked into one request, outputs sliced per frame |
//! | `infer` | a frame's attempts across servers, one request each |
//! | `budget` | the frame's deadline and each attempt's share of it |
//! | `servers` | the servers' health and counters, leasing request slots |
//! | `limit` | each server's concurrency limit, fixed or adaptive (pure) |
//! | `probe` | finding out whether a server is up and has the model |
//! | `http` | the HTTP client |
//! | `grpc` | the gRPC client: probes and requests over `grpc://` |
//! | `headers` | `extra-headers`, checked; never shown in logs |
//! | `tls` | TLS settings (roots, `tls-ca-file`) and handshake failures |
//! | `protocol` | the protocol's messages, encoded and decoded (pure) |

use std::sync::atomic::{self, AtomicU64, AtomicUsize};
use std::sync::{Arc, LazyLock, Mutex};

use futures::FutureExt;
use gst::glib;
use gst::prelude::*;
use tokio::sync::watch;

use crate::engine::{Processor, Work, WorkCtx, lock};
use crate::parallelfilter::frame::{Frame, FrameProcessor};
use crate::parallelfilter::{INFERENCE_META, INFERENCE_NAME, Payload};

mod batch;
mod budget;
mod cluster;
mod config;
mod gather;
mod grpc;
mod headers;
mod http;
mod infer;
mod limit;
mod probe;
mod protocol;
mod servers;
mod tensor;
mod tls;

use budget::Deadline;
use cluster::Cluster;
pub use config::{Config, LiveTimeout, PerServer, redact_servers, wants_tls};
use gather::{Gather, Request};
use grpc::GrpcServer;
pub use headers::{ExtraHeaders, HeadersProperty, describe_value as describe_headers};
use http::HttpClient;
use protocol::{Output, Tensor};
use servers::Servers;
pub use tensor::caps;
use tensor::{FORMATS, INLINE_BYTES, analysis_tensor, frame_tensor};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "parallelfilter-remote",
        gst::DebugColorFlags::empty(),
        Some("parallelfilter remote inference"),
    )
});

/// HTTP/2 connections per gRPC server: one connection's task frames every
/// request on it, and with several requests of large tensors in flight it
/// becomes their queue.
const GRPC_CONNECTIONS: usize = 4;

/// What the processors of a cluster, their requests and its probes share.
struct Inner {
    http: HttpClient,
    /// Per server: its gRPC client, `None` for REST.
    grpc: Vec<Option<GrpcServer>>,
    servers: Arc<Servers>,
    model: String,
    /// The model name as a path segment.
    model_path: String,
    members: Mutex<Members>,
    /// In a context: the members' batches waiting for a slot.
    gather: Option<Gather>,
    /// Set when the last member goes away: ends the probes.
    closed: watch::Sender<bool>,
    rt: tokio::runtime::Handle,
}

/// The members' elements by processor, for logging and errors. A TLS
/// failure is posted once to each member, also to one that starts later,
/// until the server's probe succeeds.
struct Members {
    elements: Vec<(u64, glib::WeakRef<gst::Element>)>,
    /// Per server: its TLS failure since its last successful probe.
    tls_failed: Vec<Option<gst::ErrorMessage>>,
}

/// Tells the processors of this process apart in [`Members`].
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

pub struct Remote {
    cluster: Arc<Cluster>,
    config: Config,
    id: u64,
    /// This member's frames waiting for a server slot.
    waiting: Arc<AtomicUsize>,
}

impl Remote {
    /// A processor with its own servers' state, or, in `context`, sharing
    /// it with the members of the same servers (see [`cluster`]).
    pub fn new(
        mut config: Config,
        context: Option<&str>,
        rt: tokio::runtime::Handle,
    ) -> Result<Self, gst::ErrorMessage> {
        let targets = config.check()?;
        let cluster = cluster::join(context, &config, targets, rt)?;
        Ok(Remote {
            cluster,
            config,
            id: NEXT_ID.fetch_add(1, atomic::Ordering::Relaxed),
            waiting: Arc::default(),
        })
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.cluster.inner
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        lock(&self.inner().members)
            .elements
            .retain(|(id, _)| *id != self.id);
    }
}

impl Inner {
    /// Logs with the element as the object once it is known.
    fn log(&self, level: gst::DebugLevel, msg: std::fmt::Arguments) {
        if !CAT.above_threshold(level) {
            return;
        }
        let element = lock(&self.members)
            .elements
            .iter()
            .find_map(|(_, e)| e.upgrade());
        match element {
            Some(e) => gst::log_with_level!(CAT, level, obj = e, "{}", msg),
            None => gst::log_with_level!(CAT, level, "{}", msg),
        }
    }

    fn grpc(&self, server: usize) -> Option<&GrpcServer> {
        self.grpc.get(server).and_then(Option::as_ref)
    }

    fn url(&self, server: usize, path: &str) -> String {
        format!("{}{}", self.servers.url(server), path)
    }

    /// `server`'s handshake succeeds: a new failure is posted again.
    fn tls_fixed(&self, server: usize) {
        if let Some(failed) = lock(&self.members).tls_failed.get_mut(server) {
            *failed = None;
        }
    }

    /// A TLS handshake with `server` failed: an element error to each
    /// member, once until a probe of the server succeeds (the probes keep
    /// failing the same way).
    fn report_tls(&self, server: usize, reason: &str) {
        let url = self.servers.url(server);
        let msg = gst::error_msg!(
            gst::ResourceError::OpenRead,
            ("Secure connection to {url} failed: {reason}"),
            ["{url} stays down, probed again, until the handshake succeeds"]
        );
        let elements: Vec<gst::Element> = {
            let mut members = lock(&self.members);
            match members.tls_failed.get_mut(server) {
                Some(failed @ None) => *failed = Some(msg.clone()),
                _ => return,
            }
            members
                .elements
                .iter()
                .filter_map(|(_, e)| e.upgrade())
                .collect()
        };
        for element in elements {
            element.post_error_message(msg.clone());
        }
    }
}

impl Processor<Frame> for Remote {
    fn process(&self, frame: Frame, ctx: WorkCtx) -> Work<Frame> {
        self.work(vec![frame], &[ctx], false).single()
    }

    fn batches(&self) -> bool {
        true
    }

    fn process_batch(&self, frames: Vec<Frame>, ctx: &[WorkCtx]) -> Work<Vec<Frame>> {
        self.work(frames, ctx, true)
    }
}

impl Remote {
    /// The frames in one request. `batched` (batch-size > 1, even for a
    /// batch of one): every output must have the batch dimension; else the
    /// one frame's outputs are its own whatever their shape.
    fn work(&self, mut frames: Vec<Frame>, ctx: &[WorkCtx], batched: bool) -> Work<Vec<Frame>> {
        let inner = self.inner().clone();
        let config = &self.config;
        let req = Request {
            id: ctx.first().map_or(0, |c| c.seq),
            frames: frames.len(),
            // Now, before the engine starts its own timeout.
            deadline: Deadline::start(config.timeout.get(), config.retries),
            attempts: config.retries + 1,
            batched,
            batch_size: config.batch_size,
            waiting: self.waiting.clone(),
        };
        let (payload, threshold) = (config.payload, config.scene_threshold.get());
        Work::Async(
            async move {
                let tensor = tensor(&mut frames, payload, threshold).await?;
                let reply = Inner::request(inner.clone(), Arc::new(tensor), req).await?;
                let server = inner.servers.url(reply.server);
                for (frame, outputs) in frames.iter_mut().zip(reply.frames) {
                    let buf = frame.buffer.make_mut();
                    let mut meta = gst::meta::CustomMeta::add(buf, INFERENCE_META)
                        .map_err(|e| format!("cannot add {INFERENCE_META}: {e}"))?;
                    let s = meta.mut_structure();
                    s.set_name(INFERENCE_NAME);
                    s.set("model", inner.model.as_str());
                    s.set("server", server);
                    s.set("attempts", reply.attempts);
                    s.set("request-time", reply.request_time.as_nanos() as u64);
                    let outputs = outputs.into_iter().map(Output::into_structure);
                    s.set("outputs", gst::Array::new(outputs));
                }
                Ok(frames)
            }
            .boxed(),
        )
    }
}

/// The frames' input tensor, stacked (see [`batch`]). Pixels are copied
/// and analyses computed off the async threads unless small.
async fn tensor(frames: &mut [Frame], payload: Payload, threshold: f64) -> Result<Tensor, String> {
    let mut inputs = Vec::with_capacity(frames.len());
    let mut size = 0;
    for frame in frames.iter_mut() {
        let info = frame.stream.video_info()?.clone();
        frame.stream.check_size(&frame.buffer)?;
        // Dropped now otherwise: the frame's worker must not find the
        // previous buffer shared when it writes the meta.
        let previous = frame
            .previous
            .take()
            .filter(|_| payload == Payload::Analysis);
        size += frame.buffer.size();
        inputs.push((frame.buffer.clone(), previous, info));
    }
    let build = move || {
        batch::stack(inputs.len(), |i, bytes| {
            let (buffer, previous, info) = &inputs[i];
            match payload {
                Payload::Frame => frame_tensor(buffer, info, bytes),
                Payload::Analysis => {
                    analysis_tensor(buffer, previous.as_ref(), info, threshold, bytes)
                }
            }
        })
    };
    if payload == Payload::Frame && size <= INLINE_BYTES {
        return build();
    }
    tokio::task::spawn_blocking(build)
        .await
        .map_err(|e| format!("building the input tensor failed: {e}"))?
}

impl FrameProcessor for Remote {
    fn attach(&self, element: &gst::Element) {
        // Under the members' lock, so a TLS failure is either found here
        // or sees the element.
        let found: Vec<gst::ErrorMessage> = {
            let mut members = lock(&self.inner().members);
            members.elements.retain(|(_, e)| e.upgrade().is_some());
            members.elements.push((self.id, element.downgrade()));
            members.tls_failed.iter().flatten().cloned().collect()
        };
        for msg in found {
            element.post_error_message(msg);
        }
    }

    fn caps(&self) -> Option<gst::Caps> {
        Some(caps())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<gst::Caps, gst::ErrorMessage> {
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|_| {
            gst::error_msg!(
                gst::StreamError::Format,
                ["remote: caps {caps} do not describe a video frame"]
            )
        })?;
        if !FORMATS.contains(&info.format().to_str().as_str()) {
            return Err(gst::error_msg!(
                gst::StreamError::Format,
                [
                    "remote: format {} is not supported; supported: {}",
                    info.format().to_str(),
                    FORMATS.join(", ")
                ]
            ));
        }
        Ok(caps.clone())
    }

    fn needs_previous(&self) -> bool {
        self.config.payload == Payload::Analysis
    }

    fn message(&self, buffer: &gst::BufferRef) -> Option<gst::Structure> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, INFERENCE_META).ok()?;
        let mut s = meta.structure().to_owned();
        s.set_name(INFERENCE_NAME);
        Some(s)
    }

    fn stats(&self, s: &mut gst::StructureRef) {
        s.set("servers", gst::Array::new(self.inner().servers.stats()));
        let waiting = self.waiting.load(atomic::Ordering::Relaxed);
        s.set(
            "waiting-for-server",
            u32::try_from(waiting).unwrap_or(u32::MAX),
        );
    }
}
