// SPDX-License-Identifier: MPL-2.0
//! The `remote` processor: each frame goes to one of several Open Inference
//! Protocol (KServe v2) servers over HTTP/1.1 REST, and the response's
//! outputs become the `GstParallelFilterInferenceMeta`.
//!
//! Scheduling: a request goes to the ready server with the fewest requests
//! in flight, at most `max-requests-per-server` each. A server whose request
//! fails (connection error, 5xx, no answer) becomes suspect and is probed at
//! once; a failed probe marks it down, and it is probed again in the
//! background with a bounded backoff. The request is retried, preferably on
//! another server. A ready server whose model is missing or not ready is
//! not down but without the model, probed the same way. A frame fails at
//! once only when every server is down or without the model (confirmed by
//! a probe); otherwise it waits for a usable server until its deadline.

use crate::engine::lock;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use gst::glib;
use gst::prelude::*;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::frame::{Frame, FrameProcessor};
use crate::parallelfilter::{INFERENCE_META, INFERENCE_NAME, Payload};

mod config;
mod protocol;
mod tensor;

use config::Targets;
pub use config::{Config, LiveTimeout};
use protocol::{
    DEFAULT_INPUT_NAME, EncodedRequest, HEADER_LENGTH, IndexEntry, Tensor, parse_response,
};
pub use tensor::caps;
use tensor::{FORMATS, INLINE_BYTES, analysis_tensor, frame_tensor};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "parallelfilter-remote",
        gst::DebugColorFlags::empty(),
        Some("parallelfilter remote inference"),
    )
});

/// TCP connect bound: a dead host never holds a frame longer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of one request when the element's `timeout` is 0.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of one readiness or metadata request.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between probes of a server that is down.
const PROBE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Largest response body read; a bigger one is an error. A JSON body is
/// parsed into a tree about ten times its size, and every worker may hold
/// one.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// The frame's budget ends this long before the engine's `timeout`, so the
/// remote's own error (with each attempt's reason) always wins the race.
pub const ENGINE_MARGIN: Duration = Duration::from_millis(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    /// Not probed yet: requests wait for the first probe.
    Unknown,
    Up,
    /// A request failed and a probe decides: requests wait for it.
    Suspect,
    /// A probe failed.
    Down,
    /// The server is ready but lacks the model, or the model is not ready
    /// there: probed again like a server that is down.
    NoModel,
}

#[derive(Debug, Default, Clone)]
struct ServerStats {
    requests: u64,
    failures: u64,
    latency_total: Duration,
    latency_max: Duration,
    successes: u64,
}

#[derive(Debug)]
struct ServerState {
    health: Health,
    in_flight: usize,
    probing: bool,
    /// `GET /v2` listed `binary_tensor_data`.
    binary: bool,
    /// The model's first input, from its metadata.
    input_name: Option<String>,
    /// Why the last probe or request failed: the error when all are down.
    /// With `NoModel`, a whole sentence naming the model and the server.
    last_error: Option<String>,
    /// Failed requests since the last success: delays the probe of a
    /// server that passes probes but fails requests.
    streak: u32,
    stats: ServerStats,
}

struct Server {
    /// As configured, without a trailing slash: what the meta reports.
    url: String,
}

struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    servers: Vec<Server>,
    /// The model name as a path segment.
    model_path: String,
    /// The element, for logging; set at start.
    element: OnceLock<glib::WeakRef<gst::Element>>,
    state: Mutex<Vec<ServerState>>,
    /// A slot was freed or a server changed health.
    changed: Notify,
    /// Closed when the processor goes away: ends the probes.
    closed: watch::Sender<bool>,
    config: Config,
    rt: tokio::runtime::Handle,
}

pub struct Remote {
    inner: Arc<Inner>,
}

impl Remote {
    pub fn new(mut config: Config, rt: tokio::runtime::Handle) -> Result<Self, gst::ErrorMessage> {
        let Targets { urls, model_path } = config.check()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(config.max_per_server)
            .build(connector);
        let state = urls
            .iter()
            .map(|_| ServerState {
                health: Health::Unknown,
                in_flight: 0,
                probing: true,
                binary: false,
                input_name: None,
                last_error: None,
                streak: 0,
                stats: ServerStats::default(),
            })
            .collect();
        let inner = Arc::new(Inner {
            client,
            servers: urls.into_iter().map(|url| Server { url }).collect(),
            model_path,
            element: OnceLock::new(),
            state: Mutex::new(state),
            changed: Notify::new(),
            closed: watch::channel(false).0,
            config,
            rt,
        });
        for i in 0..inner.servers.len() {
            Inner::spawn_probe(&inner, i, Duration::ZERO);
        }
        Ok(Remote { inner })
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.inner.closed.send_replace(true);
    }
}

/// Why an attempt failed, and whether another server may do better.
struct Failure {
    msg: String,
    /// The server is at fault (connection, 5xx, no answer within the
    /// attempt's bound): it becomes suspect and the request is retried.
    server_fault: bool,
}

/// A request slot on a server; freed on drop, so a cancelled frame (flush)
/// releases it too.
struct Slot<'a> {
    inner: &'a Inner,
    server: usize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.inner.state).get_mut(self.server) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.inner.changed.notify_waiters();
    }
}

/// A successful inference.
struct Answer {
    server: usize,
    outputs: Vec<gst::Structure>,
    request_time: Duration,
}

impl Inner {
    /// Logs with the element as the object once it is known.
    fn log(&self, level: gst::DebugLevel, msg: std::fmt::Arguments) {
        if !CAT.above_threshold(level) {
            return;
        }
        match self.element.get().and_then(|w| w.upgrade()) {
            Some(e) => gst::log_with_level!(CAT, level, obj = e, "{}", msg),
            None => gst::log_with_level!(CAT, level, "{}", msg),
        }
    }

    fn url(&self, server: usize, path: &str) -> String {
        format!("{}{}", self.servers[server].url, path)
    }

    async fn get_json(&self, url: &str) -> Result<(StatusCode, Option<Value>), String> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(error_chain)?;
            let status = resp.status();
            let body = read_body(resp.into_body()).await.map_err(|e| match e {
                BodyError::TooLarge => too_large(),
                BodyError::Read(e) => e,
            })?;
            Ok::<_, String>((status, serde_json::from_slice(&body).ok()))
        };
        tokio::time::timeout(PROBE_TIMEOUT, fut)
            .await
            .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
    }

    /// Readiness of the server and the model, then what the server
    /// supports and the model's input name.
    async fn probe(&self, server: usize) -> Result<(bool, Option<String>), (Health, String)> {
        let path = &self.model_path;
        let down = |e| (Health::Down, e);
        let (status, _) = self
            .get_json(&self.url(server, protocol::SERVER_READY))
            .await
            .map_err(down)?;
        if !status.is_success() {
            return Err(down(format!("server not ready ({status})")));
        }
        let (status, _) = self
            .get_json(&self.url(server, &protocol::model_ready(path)))
            .await
            .map_err(down)?;
        if !status.is_success() {
            return Err((Health::NoModel, self.model_unready(server, status).await));
        }
        let binary = match self
            .get_json(&self.url(server, protocol::SERVER_METADATA))
            .await
            .map_err(down)?
        {
            (s, Some(meta)) if s.is_success() => protocol::supports_binary(&meta),
            _ => false,
        };
        let input = match self
            .get_json(&self.url(server, &protocol::model_metadata(path)))
            .await
        {
            Ok((s, Some(meta))) if s.is_success() => protocol::first_input(&meta),
            _ => None,
        };
        Ok((binary, input))
    }

    /// Why the model is not ready on a ready server: unknown there (with
    /// the models it serves, from the repository index when it has one),
    /// or known but not ready.
    async fn model_unready(&self, server: usize, ready: StatusCode) -> String {
        let (model, url) = (&self.config.model, &self.servers[server].url);
        if let Some(index) = self.repository_index(server).await {
            // One entry per version: a ready one means the index cannot
            // say more than the readiness status.
            let mut versions = index.iter().filter(|m| m.name == *model);
            return match (versions.clone().any(IndexEntry::ready), versions.next()) {
                (_, None) => format!("model '{model}' not found on {url} ({})", serves(&index)),
                (false, Some(m)) => {
                    format!("model '{model}' not ready on {url} ({})", m.state_text())
                }
                (true, Some(_)) => format!("model '{model}' not ready on {url} ({ready})"),
            };
        }
        // No index (KServe, OpenVINO): the metadata tells whether the
        // server knows the model (Triton answers 400 when it does not).
        let path = protocol::model_metadata(&self.model_path);
        match self.get_json(&self.url(server, &path)).await {
            Ok((s, _)) if s == StatusCode::NOT_FOUND || s == StatusCode::BAD_REQUEST => {
                format!("model '{model}' not found on {url}")
            }
            _ => format!("model '{model}' not ready on {url} ({ready})"),
        }
    }

    /// The models a server has (`POST /v2/repository/index`, a Triton and
    /// MLServer extension); `None` when it does not answer one.
    async fn repository_index(&self, server: usize) -> Option<Vec<IndexEntry>> {
        let url = self.url(server, protocol::REPOSITORY_INDEX);
        let req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .ok()?;
        let fut = async {
            let resp = self.client.request(req).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = read_body(resp.into_body()).await.ok()?;
            serde_json::from_slice::<Value>(&body).ok()
        };
        let index = tokio::time::timeout(PROBE_TIMEOUT, fut).await.ok()??;
        protocol::parse_index(&index)
    }

    /// Probes `server` until it is up, then marks it so; one probe per
    /// server at a time, ended when the processor goes away.
    fn spawn_probe(this: &Arc<Inner>, server: usize, first_wait: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(this);
        let mut closed = this.closed.subscribe();
        this.rt.spawn(async move {
            let mut wait = first_wait;
            loop {
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = closed.wait_for(|c| *c) => return,
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let result = tokio::select! {
                    r = inner.probe(server) => r,
                    _ = closed.wait_for(|c| *c) => return,
                };
                let url = &inner.servers[server].url;
                match result {
                    Ok((binary, input)) => {
                        inner.log(
                            gst::DebugLevel::Info,
                            format_args!(
                                "{url} is up (binary tensors: {binary}, input: {input:?})"
                            ),
                        );
                        let mut st = lock(&inner.state);
                        let s = &mut st[server];
                        s.health = Health::Up;
                        s.probing = false;
                        s.binary = binary;
                        s.input_name = input;
                        s.last_error = None;
                        drop(st);
                        inner.changed.notify_waiters();
                        return;
                    }
                    Err((health, err)) => {
                        let was = {
                            let mut st = lock(&inner.state);
                            let s = &mut st[server];
                            s.last_error = Some(err.clone());
                            std::mem::replace(&mut s.health, health)
                        };
                        let msg = match health {
                            Health::NoModel => err,
                            _ => format!("{url} is down: {err}"),
                        };
                        if was != health {
                            inner.log(gst::DebugLevel::Warning, format_args!("{msg}"));
                            inner.changed.notify_waiters();
                        } else {
                            inner.log(gst::DebugLevel::Debug, format_args!("{msg} (again)"));
                        }
                    }
                }
                wait = (wait * 2).clamp(PROBE_BACKOFF_MIN, PROBE_BACKOFF_MAX);
            }
        });
    }

    /// A request to `server` failed: it is suspect until a probe (at once,
    /// or later when its requests keep failing) decides.
    fn mark_suspect(this: &Arc<Inner>, server: usize, why: &str) {
        let (start_probe, wait) = {
            let mut st = lock(&this.state);
            let s = &mut st[server];
            if s.health == Health::Up {
                s.health = Health::Suspect;
            }
            s.last_error = Some(why.to_string());
            s.streak = s.streak.saturating_add(1);
            let wait = match s.streak {
                0 | 1 => Duration::ZERO,
                n => PROBE_BACKOFF_MIN
                    .saturating_mul(1 << (n - 2).min(16))
                    .min(PROBE_BACKOFF_MAX),
            };
            (!std::mem::replace(&mut s.probing, true), wait)
        };
        if start_probe {
            this.log(
                gst::DebugLevel::Info,
                format_args!("{} suspect: {why}", this.servers[server].url),
            );
            Inner::spawn_probe(this, server, wait);
        }
    }

    /// Why no server can take a request: each server's state and last error.
    fn unavailable(&self, st: &[ServerState]) -> String {
        self.servers
            .iter()
            .zip(st)
            .map(|(srv, s)| {
                let state = match s.health {
                    Health::Unknown => "not probed yet",
                    Health::Up => "busy",
                    Health::Suspect => "being probed",
                    Health::Down => "down",
                    Health::NoModel => "without the model",
                };
                match (s.health, &s.last_error) {
                    (Health::NoModel, Some(e)) => e.clone(),
                    (_, Some(e)) => format!("{} {state} ({e})", srv.url),
                    (_, None) => format!("{} {state}", srv.url),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Waits for a slot on the ready server with the fewest requests in
    /// flight, preferring servers this frame has not tried. Fails at once
    /// when every server is down or lacks the model.
    async fn acquire(
        &self,
        deadline: Instant,
        tried: &[usize],
    ) -> Result<(Slot<'_>, bool, String), String> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = lock(&self.state);
                let best = st
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        s.health == Health::Up && s.in_flight < self.config.max_per_server
                    })
                    .min_by_key(|(i, s)| (tried.contains(i), s.in_flight))
                    .map(|(i, _)| i);
                if let Some(i) = best {
                    let s = &mut st[i];
                    s.in_flight += 1;
                    s.stats.requests += 1;
                    let input = s
                        .input_name
                        .clone()
                        .unwrap_or_else(|| DEFAULT_INPUT_NAME.to_string());
                    return Ok((
                        Slot {
                            inner: self,
                            server: i,
                        },
                        s.binary,
                        input,
                    ));
                }
                if st.iter().all(|s| s.health == Health::Down) {
                    return Err(format!(
                        "all {} servers are down: {}",
                        st.len(),
                        self.unavailable(&st)
                    ));
                }
                // Each server says whether it is down or lacks the model.
                if st
                    .iter()
                    .all(|s| matches!(s.health, Health::Down | Health::NoModel))
                {
                    return Err(self.unavailable(&st));
                }
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                let st = lock(&self.state);
                return Err(format!(
                    "no server usable before the frame's deadline: {}",
                    self.unavailable(&st)
                ));
            }
        }
    }

    /// One request to one server.
    async fn infer(
        &self,
        server: usize,
        binary: bool,
        input_name: &str,
        tensor: &Arc<Tensor>,
        id: u64,
    ) -> Result<Vec<gst::Structure>, Failure> {
        let url = self.url(server, &protocol::infer(&self.model_path));
        let EncodedRequest { body, header_len } = if tensor.bytes.len() > INLINE_BYTES {
            let (t, name) = (tensor.clone(), input_name.to_string());
            tokio::task::spawn_blocking(move || t.encode(binary, &name, id))
                .await
                .map_err(|e| Failure {
                    msg: format!("encoding the request: {e}"),
                    server_fault: false,
                })?
        } else {
            tensor.encode(binary, input_name, id)
        };
        let req = Request::builder().method(Method::POST).uri(&url);
        let req = match header_len {
            Some(n) => req
                .header(HEADER_LENGTH, n)
                .header(hyper::header::CONTENT_TYPE, "application/octet-stream"),
            None => req.header(hyper::header::CONTENT_TYPE, "application/json"),
        };
        let req = req.body(Full::new(body)).map_err(|e| Failure {
            msg: e.to_string(),
            server_fault: false,
        })?;
        let fault = |msg: String| Failure {
            msg,
            server_fault: true,
        };
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| fault(error_chain(e)))?;
        let status = resp.status();
        let header_len = resp
            .headers()
            .get(HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = match read_body(resp.into_body()).await {
            Ok(body) => body,
            // Not the server's fault: any server would send as big an
            // answer, so retrying only costs time.
            Err(BodyError::TooLarge) if status.is_success() => {
                return Err(Failure {
                    msg: too_large(),
                    server_fault: false,
                });
            }
            // The status says what went wrong.
            Err(BodyError::TooLarge) => Bytes::from(too_large()),
            Err(BodyError::Read(e)) => return Err(fault(format!("reading the response: {e}"))),
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(Failure {
                msg: format!("{status}: {text}"),
                // 404: this server lacks the model (another may have it);
                // 429: overloaded. Other 4xx: the request itself is wrong.
                server_fault: status.is_server_error()
                    || status == StatusCode::NOT_FOUND
                    || status == StatusCode::TOO_MANY_REQUESTS,
            });
        }
        parse_response(&body, header_len).map_err(|msg| Failure {
            msg: format!("bad response: {msg}"),
            server_fault: false,
        })
    }

    /// The frame's deadline, from `timeout` now: ends `ENGINE_MARGIN`
    /// before the engine's, which starts after this is called.
    fn deadline(&self) -> (Instant, bool) {
        let now = Instant::now();
        match self.config.timeout.get() {
            Some(t) => (now + t.saturating_sub(ENGINE_MARGIN), true),
            None => (
                now + DEFAULT_REQUEST_TIMEOUT * (self.config.retries + 1),
                false,
            ),
        }
    }

    /// Tries servers until one answers, within the frame's budget.
    ///
    /// An attempt may use 3/4 of what is left (all of it on the last one),
    /// so a slow server gets most of the budget and a hung one still leaves
    /// time for a retry. Without `timeout`, an attempt is bounded by
    /// `DEFAULT_REQUEST_TIMEOUT`. Running out of the frame's budget is not
    /// the server's fault.
    async fn run(
        this: Arc<Inner>,
        tensor: Arc<Tensor>,
        id: u64,
        (deadline, timed): (Instant, bool),
    ) -> Result<(Answer, u32), String> {
        let attempts = this.config.retries + 1;
        let mut errors = Vec::new();
        let mut tried = Vec::new();
        for attempt in 1..=attempts {
            let (slot, binary, input) = match this.acquire(deadline, &tried).await {
                Ok(s) => s,
                Err(e) => {
                    errors.push(e);
                    break;
                }
            };
            let server = slot.server;
            tried.push(server);
            let left = deadline.saturating_duration_since(Instant::now());
            let mut bound = if attempt == attempts {
                left
            } else {
                left / 4 * 3
            };
            if !timed {
                bound = bound.min(DEFAULT_REQUEST_TIMEOUT);
            }
            let budget_end = bound == left;
            let t0 = Instant::now();
            let result =
                match tokio::time::timeout(bound, this.infer(server, binary, &input, &tensor, id))
                    .await
                {
                    Ok(r) => r,
                    Err(_) if budget_end => Err(Failure {
                        msg: format!("no answer before the frame's deadline ({bound:?} left)"),
                        server_fault: false,
                    }),
                    Err(_) => Err(Failure {
                        msg: format!("no answer within {bound:?}"),
                        server_fault: true,
                    }),
                };
            let elapsed = t0.elapsed();
            drop(slot);
            let url = &this.servers[server].url;
            match result {
                Ok(outputs) => {
                    let mut st = lock(&this.state);
                    let s = &mut st[server];
                    s.streak = 0;
                    let s = &mut s.stats;
                    s.successes += 1;
                    s.latency_total += elapsed;
                    s.latency_max = s.latency_max.max(elapsed);
                    return Ok((
                        Answer {
                            server,
                            outputs,
                            request_time: elapsed,
                        },
                        attempt,
                    ));
                }
                Err(f) => {
                    lock(&this.state)[server].stats.failures += 1;
                    this.log(
                        gst::DebugLevel::Debug,
                        format_args!("frame {id}: attempt {attempt} on {url}: {}", f.msg),
                    );
                    errors.push(format!("{url}: {}", f.msg));
                    if !f.server_fault {
                        break;
                    }
                    Inner::mark_suspect(&this, server, &f.msg);
                }
            }
        }
        if tried.is_empty() {
            // No request was sent: why is the whole story.
            return Err(errors.join("; "));
        }
        Err(format!(
            "inference of frame {id} on model '{}' failed after {} attempt(s): {}",
            this.config.model,
            tried.len(),
            errors.join("; ")
        ))
    }
}

/// The ready models of an index, as "it serves: a, b", at most 10 named.
fn serves(index: &[IndexEntry]) -> String {
    const SHOWN: usize = 10;
    let mut names: Vec<&str> = Vec::new();
    for m in index.iter().filter(|m| m.ready()) {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
    }
    match names.len() {
        0 => "it serves no model".into(),
        n if n > SHOWN => format!(
            "it serves: {}, … {} more",
            names[..SHOWN].join(", "),
            n - SHOWN
        ),
        _ => format!("it serves: {}", names.join(", ")),
    }
}

enum BodyError {
    /// Over `MAX_RESPONSE_BYTES`.
    TooLarge,
    Read(String),
}

/// A response body, at most `MAX_RESPONSE_BYTES`.
async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, BodyError> {
    match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

fn too_large() -> String {
    format!("response over the {} MiB limit", MAX_RESPONSE_BYTES >> 20)
}

/// The error and its sources: hyper's top-level message alone says little.
fn error_chain(e: impl std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

impl Processor<Frame> for Remote {
    fn process(&self, frame: Frame, ctx: WorkCtx) -> Work<Frame> {
        let inner = self.inner.clone();
        // Now, before the engine starts its own timeout.
        let deadline = inner.deadline();
        Work::Async(
            async move {
                let Frame {
                    mut buffer,
                    stream,
                    segment,
                    previous,
                } = frame;
                let info = stream.video_info()?.clone();
                stream.check_size(&buffer)?;
                // Only the analysis reads it; the frame's own worker would
                // otherwise find its buffer shared during the request.
                let previous = (inner.config.payload == Payload::Analysis)
                    .then_some(previous)
                    .flatten();
                let tensor = match inner.config.payload {
                    Payload::Frame if buffer.size() <= INLINE_BYTES => {
                        frame_tensor(&buffer, &info)?
                    }
                    Payload::Frame => {
                        let b = buffer.clone();
                        tokio::task::spawn_blocking(move || frame_tensor(&b, &info))
                            .await
                            .map_err(|e| format!("copying the frame failed: {e}"))??
                    }
                    Payload::Analysis => {
                        // CPU work: off the async threads.
                        let (b, p, th) =
                            (buffer.clone(), previous, inner.config.scene_threshold.get());
                        tokio::task::spawn_blocking(move || {
                            analysis_tensor(&b, p.as_ref(), &info, th)
                        })
                        .await
                        .map_err(|e| format!("analysis failed: {e}"))??
                    }
                };
                let (answer, attempts) =
                    Inner::run(inner.clone(), Arc::new(tensor), ctx.seq, deadline).await?;
                let buf = buffer.make_mut();
                let mut meta = gst::meta::CustomMeta::add(buf, INFERENCE_META)
                    .map_err(|e| format!("cannot add {INFERENCE_META}: {e}"))?;
                let s = meta.mut_structure();
                s.set_name(INFERENCE_NAME);
                s.set("model", inner.config.model.as_str());
                s.set("server", inner.servers[answer.server].url.as_str());
                s.set("attempts", attempts);
                s.set("request-time", answer.request_time.as_nanos() as u64);
                s.set("outputs", gst::Array::new(answer.outputs));
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
}

impl FrameProcessor for Remote {
    fn attach(&self, element: &gst::Element) {
        let _ = self.inner.element.set(element.downgrade());
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
        self.inner.config.payload == Payload::Analysis
    }

    fn message(&self, buffer: &gst::BufferRef) -> Option<gst::Structure> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, INFERENCE_META).ok()?;
        let mut s = meta.structure().to_owned();
        s.set_name(INFERENCE_NAME);
        Some(s)
    }

    fn stats(&self, s: &mut gst::StructureRef) {
        let st = lock(&self.inner.state);
        let servers = self.inner.servers.iter().zip(st.iter()).map(|(srv, x)| {
            let avg = x
                .stats
                .latency_total
                .as_nanos()
                .checked_div(u128::from(x.stats.successes))
                .unwrap_or(0) as u64;
            gst::Structure::builder("server")
                .field("url", srv.url.as_str())
                .field("up", x.health == Health::Up)
                .field("in-flight", x.in_flight as u32)
                .field("requests", x.stats.requests)
                .field("failures", x.stats.failures)
                .field("avg-latency", avg)
                .field("max-latency", x.stats.latency_max.as_nanos() as u64)
                .build()
        });
        s.set("servers", gst::Array::new(servers.collect::<Vec<_>>()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_models_are_listed_once_and_bounded() {
        let entry = |name: &str, state: Option<&str>| IndexEntry {
            name: name.into(),
            state: state.map(String::from),
            reason: None,
        };
        let index = [
            entry("a", Some("READY")),
            entry("a", Some("READY")),
            entry("b", Some("UNAVAILABLE")),
            entry("c", None),
        ];
        assert_eq!(serves(&index), "it serves: a, c");
        assert_eq!(serves(&index[2..3]), "it serves no model");
        let many: Vec<_> = (0..12).map(|i| entry(&i.to_string(), None)).collect();
        assert_eq!(
            serves(&many),
            "it serves: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … 2 more"
        );
    }
}
