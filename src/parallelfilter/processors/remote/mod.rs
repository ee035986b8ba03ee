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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use gst::glib;
use gst::prelude::*;
use gst_video::prelude::VideoFrameExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::analysis::luma::luma_sums;
use crate::analysis::{
    ANALYSIS_META, AnalysisResult, HISTOGRAM_BINS, SCALAR_FIELDS, SceneThreshold, field,
};
use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::frame::{Frame, FrameProcessor};
use crate::parallelfilter::{INFERENCE_META, INFERENCE_NAME, Payload};

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
/// Upper bound applied to the `retries` property.
pub const MAX_RETRIES: u32 = 1000;
/// Largest response body read; a bigger one is an error. A JSON body is
/// parsed into a tree about ten times its size, and every worker may hold
/// one.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// The frame's budget ends this long before the engine's `timeout`, so the
/// remote's own error (with each attempt's reason) always wins the race.
pub const ENGINE_MARGIN: Duration = Duration::from_millis(2);
/// Input tensor name when the model metadata names none.
const DEFAULT_INPUT_NAME: &str = "input";
const HEADER_LENGTH: &str = "inference-header-content-length";

/// Formats `payload=frame` sends, all 8 bits per component.
pub const FORMATS: &[&str] = &[
    "RGB", "BGR", "RGBA", "BGRA", "ARGB", "ABGR", "RGBx", "BGRx", "xRGB", "xBGR", "GRAY8", "I420",
    "YV12", "NV12", "NV21", "Y42B", "Y444",
];

/// Caps `remote` accepts: raw video in [`FORMATS`].
pub fn caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(
            FORMATS
                .iter()
                .map(|f| gst_video::VideoFormat::from_string(f)),
        )
        .build()
}

#[derive(Clone, Debug)]
pub struct Config {
    pub servers: String,
    pub model: String,
    pub payload: Payload,
    pub retries: u32,
    /// Concurrent requests per server (already resolved: never 0).
    pub max_per_server: usize,
    /// The element's `timeout`: the whole budget of a frame, retries included.
    pub timeout: LiveTimeout,
    pub scene_threshold: SceneThreshold,
}

/// The `timeout` property shared with the running processor: a change in
/// PLAYING applies from the next frame on, as the engine's does.
#[derive(Debug, Clone, Default)]
pub struct LiveTimeout(Arc<AtomicU64>);

impl LiveTimeout {
    pub fn new(ns: u64) -> Self {
        LiveTimeout(Arc::new(AtomicU64::new(ns)))
    }

    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

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

fn config_error(msg: String) -> gst::ErrorMessage {
    gst::error_msg!(gst::ResourceError::Settings, ("remote: {msg}"))
}

/// Parses `servers`: comma-separated `http://host:port[/prefix]` URLs.
pub fn parse_servers(servers: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for s in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // The request paths are appended to the URL.
        if s.contains(['?', '#']) {
            return Err(format!(
                "server '{s}' has a query or fragment; give a base URL (http://host:port[/prefix])"
            ));
        }
        let url = s.trim_end_matches('/').to_string();
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("server '{s}' is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "server '{s}': scheme '{other}' is not supported, only http"
                ));
            }
            None => return Err(format!("server '{s}' has no scheme (http://host:port)")),
        }
        if uri.authority().is_none() {
            return Err(format!("server '{s}' has no host"));
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err("no server: set 'servers' to one or more http:// base URLs".into());
    }
    Ok(out)
}

/// `model` as one URL path segment: everything but RFC 3986 unreserved
/// characters percent-encoded.
pub fn model_segment(model: &str) -> Result<String, String> {
    use std::fmt::Write;
    if model.is_empty() {
        return Err("no model: set 'model'".into());
    }
    if model == "." || model == ".." {
        return Err(format!("model name '{model}' is not valid"));
    }
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Ok(out)
}

impl Remote {
    pub fn new(mut config: Config, rt: tokio::runtime::Handle) -> Result<Self, gst::ErrorMessage> {
        // The property is a plain uint; more attempts than this per frame
        // make no sense and would overflow the attempt count.
        config.retries = config.retries.min(MAX_RETRIES);
        let urls = parse_servers(&config.servers).map_err(config_error)?;
        let model_path = model_segment(&config.model).map_err(config_error)?;
        for url in &urls {
            let infer = format!("{url}/v2/models/{model_path}/infer");
            infer
                .parse::<Uri>()
                .map_err(|e| config_error(format!("'{infer}' is not a valid URL: {e}")))?;
        }
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

/// What goes into the input tensor.
struct Tensor {
    datatype: &'static str,
    shape: Vec<i64>,
    bytes: Vec<u8>,
}

impl Tensor {
    /// The request body, and the JSON header's length for the binary
    /// extension.
    fn body(&self, binary: bool, input_name: &str, id: u64) -> (Bytes, Option<usize>) {
        use std::fmt::Write;
        let mut input = json!({
            "name": input_name,
            "shape": self.shape,
            "datatype": self.datatype,
        });
        if binary {
            input["parameters"] = json!({ "binary_data_size": self.bytes.len() });
            let header = json!({ "id": id.to_string(), "inputs": [input] }).to_string();
            let mut body = Vec::with_capacity(header.len() + self.bytes.len());
            body.extend_from_slice(header.as_bytes());
            body.extend_from_slice(&self.bytes);
            return (Bytes::from(body), Some(header.len()));
        }
        // The data array written directly: a serde_json::Value per pixel
        // would cost far more than the numbers themselves.
        let mut s = json!({ "id": id.to_string(), "inputs": [input] }).to_string();
        // Reopen the input object: drop the closing "}]}".
        s.truncate(s.len() - 3);
        s.reserve(self.bytes.len() * 4 + 16);
        s.push_str(",\"data\":[");
        match self.datatype {
            "FP32" => {
                for (i, c) in self.bytes.chunks_exact(4).enumerate() {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let v = if v.is_finite() { v } else { 0.0 };
                    let _ = write!(s, "{}{v:?}", if i > 0 { "," } else { "" });
                }
            }
            _ => {
                for (i, b) in self.bytes.iter().enumerate() {
                    let _ = write!(s, "{}{b}", if i > 0 { "," } else { "" });
                }
            }
        }
        s.push_str("]}]}");
        (Bytes::from(s), None)
    }
}

/// Tensors larger than this are encoded on the blocking pool, not on the
/// runtime's async threads.
const INLINE_BYTES: usize = 64 * 1024;

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
            .get_json(&self.url(server, "/v2/health/ready"))
            .await
            .map_err(down)?;
        if !status.is_success() {
            return Err(down(format!("server not ready ({status})")));
        }
        let (status, _) = self
            .get_json(&self.url(server, &format!("/v2/models/{path}/ready")))
            .await
            .map_err(down)?;
        if !status.is_success() {
            return Err((Health::NoModel, self.model_unready(server, status).await));
        }
        let binary = match self
            .get_json(&self.url(server, "/v2"))
            .await
            .map_err(down)?
        {
            (s, Some(meta)) if s.is_success() => meta["extensions"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == "binary_tensor_data")),
            _ => false,
        };
        let input = match self
            .get_json(&self.url(server, &format!("/v2/models/{path}")))
            .await
        {
            Ok((s, Some(meta))) if s.is_success() => {
                meta["inputs"][0]["name"].as_str().map(str::to_string)
            }
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
        let path = format!("/v2/models/{}", self.model_path);
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
        let url = self.url(server, "/v2/repository/index");
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
        let entries = index.as_array()?.iter().filter_map(|m| {
            let text = |k: &str| m[k].as_str().filter(|v| !v.is_empty()).map(String::from);
            Some(IndexEntry {
                name: text("name")?,
                state: text("state"),
                reason: text("reason"),
            })
        });
        Some(entries.collect())
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
        let url = self.url(server, &format!("/v2/models/{}/infer", self.model_path));
        let (body, header_len) = if tensor.bytes.len() > INLINE_BYTES {
            let (t, name) = (tensor.clone(), input_name.to_string());
            tokio::task::spawn_blocking(move || t.body(binary, &name, id))
                .await
                .map_err(|e| Failure {
                    msg: format!("encoding the request: {e}"),
                    server_fault: false,
                })?
        } else {
            tensor.body(binary, input_name, id)
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

/// A model in a server's repository index.
struct IndexEntry {
    name: String,
    state: Option<String>,
    reason: Option<String>,
}

impl IndexEntry {
    /// Without a state, listed means served.
    fn ready(&self) -> bool {
        self.state
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("READY"))
    }

    /// "UNAVAILABLE: unloaded".
    fn state_text(&self) -> String {
        let state = self.state.as_deref().unwrap_or("READY");
        match &self.reason {
            Some(r) => format!("{state}: {r}"),
            None => state.to_string(),
        }
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

/// Outputs of an inference response, JSON or with binary tensors after the
/// JSON header.
fn parse_response(body: &[u8], header_len: Option<usize>) -> Result<Vec<gst::Structure>, String> {
    let (json, mut binary) = match header_len {
        Some(n) if n <= body.len() => (&body[..n], &body[n..]),
        Some(n) => return Err(format!("header length {n} beyond the body")),
        None => (body, &[][..]),
    };
    let v: Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let outputs = v["outputs"]
        .as_array()
        .ok_or_else(|| "no 'outputs' array".to_string())?;
    let mut out = Vec::with_capacity(outputs.len());
    for o in outputs {
        let name = o["name"].as_str().unwrap_or_default();
        let datatype = o["datatype"].as_str().unwrap_or_default();
        let shape: Vec<i64> = o["shape"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let data: Vec<glib::SendValue> =
            if let Some(size) = o["parameters"]["binary_data_size"].as_u64() {
                let size = size as usize;
                if size > binary.len() {
                    return Err(format!("output '{name}': binary data cut short"));
                }
                let (this, rest) = binary.split_at(size);
                binary = rest;
                decode_binary(datatype, this)?
            } else {
                let mut flat = Vec::new();
                flatten(&o["data"], &mut flat);
                flat.into_iter()
                    .map(|x| json_value(datatype, x))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("output '{name}': {e}"))?
            };
        // Without a shape, or with a dynamic (negative) dimension, there is
        // nothing to check.
        let elements = o["shape"].is_array().then_some(()).and_then(|()| {
            shape.iter().try_fold(1u64, |n, &d| {
                u64::try_from(d).ok().map(|d| n.saturating_mul(d))
            })
        });
        if let Some(n) = elements.filter(|&n| n != data.len() as u64) {
            return Err(format!(
                "output '{name}': shape {shape:?} holds {n} elements, the data {}",
                data.len()
            ));
        }
        out.push(
            gst::Structure::builder("output")
                .field("name", name)
                .field("datatype", datatype)
                .field("shape", gst::Array::new(shape))
                .field("data", gst::Array::from_values(data))
                .build(),
        );
    }
    Ok(out)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Null => {}
        x => out.push(x),
    }
}

fn is_integer(datatype: &str) -> bool {
    datatype.starts_with("INT") || datatype.starts_with("UINT") || datatype == "BOOL"
}

fn json_value(datatype: &str, v: &Value) -> Result<glib::SendValue, String> {
    Ok(match v {
        Value::String(s) => s.to_send_value(),
        Value::Bool(b) => i64::from(*b).to_send_value(),
        Value::Number(n) if is_integer(datatype) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i,
            (None, Some(u), _) => u.min(i64::MAX as u64) as i64,
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => f as i64,
            _ => return Err(format!("{n} is not a {datatype} value")),
        }
        .to_send_value(),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN).to_send_value(),
        other => other.to_string().to_send_value(),
    })
}

fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

fn decode_binary(datatype: &str, b: &[u8]) -> Result<Vec<glib::SendValue>, String> {
    macro_rules! num {
        ($t:ty, $conv:expr) => {{
            let size = std::mem::size_of::<$t>();
            if b.len() % size != 0 {
                return Err(format!(
                    "{} bytes are not a whole number of {datatype} elements",
                    b.len()
                ));
            }
            b.chunks_exact(size)
                .map(|c| {
                    let v = <$t>::from_le_bytes(c.try_into().unwrap_or_default());
                    #[allow(clippy::redundant_closure_call)]
                    ($conv)(v).to_send_value()
                })
                .collect()
        }};
    }
    Ok(match datatype {
        "BOOL" | "UINT8" => num!(u8, i64::from),
        "INT8" => num!(i8, i64::from),
        "UINT16" => num!(u16, i64::from),
        "INT16" => num!(i16, i64::from),
        "UINT32" => num!(u32, i64::from),
        "INT32" => num!(i32, i64::from),
        "UINT64" => num!(u64, |v: u64| v.min(i64::MAX as u64) as i64),
        "INT64" => num!(i64, |v: i64| v),
        "FP16" => num!(u16, |v: u16| half_to_f32(v) as f64),
        "BF16" => num!(u16, |v: u16| f32::from_bits(u32::from(v) << 16) as f64),
        "FP32" => num!(f32, f64::from),
        "FP64" => num!(f64, |v: f64| v),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = b;
            while rest.len() >= 4 {
                let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < 4 + n {
                    return Err("BYTES element cut short".into());
                }
                out.push(String::from_utf8_lossy(&rest[4..4 + n]).to_send_value());
                rest = &rest[4 + n..];
            }
            if !rest.is_empty() {
                return Err("BYTES data ends inside an element's length".into());
            }
            out
        }
        other => return Err(format!("unknown datatype '{other}'")),
    })
}

/// The frame's pixels as a tightly packed UINT8 tensor (strides and
/// padding removed): `[1, H, W, C]` for packed RGB and GRAY8 formats,
/// `[1, N]` with the planes one after the other for planar and semi-planar
/// YUV (N = W×H + the chroma planes' sizes).
fn frame_tensor(buffer: &gst::BufferRef, info: &gst_video::VideoInfo) -> Result<Tensor, String> {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|_| "cannot map the frame".to_string())?;
    let finfo = info.format_info();
    let (w, h) = (info.width(), info.height());
    let mut bytes = Vec::new();
    for plane in 0..info.n_planes() {
        let Some(comp) = (0..finfo.n_components()).find(|&c| finfo.plane()[c as usize] == plane)
        else {
            continue;
        };
        let row = finfo.scale_width(comp as u8, w) as usize
            * finfo.pixel_stride()[comp as usize] as usize;
        let rows = finfo.scale_height(comp as u8, h) as usize;
        let stride = usize::try_from(frame.plane_stride()[plane as usize])
            .map_err(|_| format!("plane {plane} has a negative stride"))?;
        let data = frame
            .plane_data(plane)
            .map_err(|_| format!("cannot read plane {plane}"))?;
        for r in 0..rows {
            let line = data
                .get(r * stride..r * stride + row)
                .ok_or_else(|| format!("plane {plane} shorter than its caps say"))?;
            bytes.extend_from_slice(line);
        }
    }
    let shape = if finfo.is_yuv() && info.n_planes() > 1 {
        vec![1, bytes.len() as i64]
    } else {
        let c = finfo.pixel_stride()[0] as i64;
        vec![1, h as i64, w as i64, c]
    };
    Ok(Tensor {
        datatype: "UINT8",
        shape,
        bytes,
    })
}

/// `payload=analysis` features: from the `GstParallelFilterAnalysisMeta`
/// when an `analyze` ran before, else computed here on luma.
fn analysis_tensor(
    buffer: &gst::BufferRef,
    previous: Option<&gst::Buffer>,
    info: &gst_video::VideoInfo,
    scene_threshold: f64,
) -> Result<Tensor, String> {
    let mut v: Vec<f32> = Vec::with_capacity(SCALAR_FIELDS.len() + HISTOGRAM_BINS);
    if let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, ANALYSIS_META) {
        let s = meta.structure();
        let num = |f: &str| {
            s.get::<f64>(f)
                .ok()
                .or_else(|| s.get::<u32>(f).ok().map(f64::from))
                .or_else(|| s.get::<bool>(f).ok().map(|b| f64::from(u8::from(b))))
                .unwrap_or(0.0) as f32
        };
        v.extend(SCALAR_FIELDS.iter().map(|f| num(f)));
        let hist = s.get::<gst::Array>(field::HISTOGRAM).ok();
        for i in 0..HISTOGRAM_BINS {
            let x = hist
                .as_ref()
                .and_then(|h| h.get(i))
                .and_then(|x| x.get::<u32>().ok())
                .unwrap_or(0);
            v.push(x as f32);
        }
    } else {
        // The same kernel and definitions as processor=analyze, so the
        // features do not depend on whether an analyze ran upstream.
        let sums = luma_sums(buffer, previous.map(|p| p.as_ref()), info, None)?;
        let result = AnalysisResult::measured(&sums, scene_threshold);
        v.extend(result.scalars().map(|x| x as f32));
        v.extend(result.histogram.map(|x| x as f32));
    }
    Ok(Tensor {
        datatype: "FP32",
        shape: vec![1, v.len() as i64],
        bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    })
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
    fn servers_are_parsed() {
        assert_eq!(
            parse_servers(" http://a:1/ , http://b:2/prefix").unwrap(),
            vec!["http://a:1", "http://b:2/prefix"]
        );
        assert!(parse_servers("").is_err());
        assert!(parse_servers("https://a:1").is_err());
        assert!(parse_servers("a:1").is_err());
        assert!(parse_servers("http://a:1/?x=1").is_err());
        assert!(parse_servers("http://a:1/p#f").is_err());
    }

    #[test]
    fn model_names_are_percent_encoded() {
        assert_eq!(model_segment("resnet-50_v1.2~").unwrap(), "resnet-50_v1.2~");
        assert_eq!(model_segment("my model/1").unwrap(), "my%20model%2F1");
        assert_eq!(model_segment("é").unwrap(), "%C3%A9");
        assert!(model_segment("").is_err());
        assert!(model_segment("..").is_err());
    }

    #[test]
    fn binary_outputs_are_decoded() {
        gst::init().unwrap();
        let header = json!({"outputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
            {"name": "b", "datatype": "INT64", "shape": [1, 1], "data": [[7]]},
        ]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend(1.5f32.to_le_bytes());
        body.extend((-2f32).to_le_bytes());
        let out = parse_response(&body, Some(header.len())).unwrap();
        let a = out[0].get::<gst::Array>("data").unwrap();
        assert_eq!(a.as_slice()[1].get::<f64>().unwrap(), -2.0);
        let b = out[1].get::<gst::Array>("data").unwrap();
        assert_eq!(b.as_slice()[0].get::<i64>().unwrap(), 7);
        assert!(parse_response(&body[..body.len() - 1], Some(header.len())).is_err());
    }

    #[test]
    fn malformed_outputs_are_errors() {
        gst::init().unwrap();
        let parse =
            |o: Value| parse_response(json!({ "outputs": [o] }).to_string().as_bytes(), None);
        let out = |datatype: &str, shape: Value, data: Value| {
            parse(json!({"name": "x", "datatype": datatype, "shape": shape, "data": data}))
        };
        assert!(out("INT32", json!([2]), json!([1, 2])).is_ok());
        assert!(out("INT32", json!([2]), json!([1.0, 2])).is_ok());
        assert!(out("INT32", json!([2]), json!([1.5, 2])).is_err());
        assert!(out("FP32", json!([3]), json!([1, 2])).is_err());
        assert!(out("FP32", json!([-1]), json!([1, 2])).is_ok());
        assert!(decode_binary("FP32", &[0; 7]).is_err());
        assert!(decode_binary("INT16", &[0; 4]).is_ok());
        assert!(decode_binary("BYTES", &[1, 0, 0, 0, b'a', 0]).is_err());
        assert!(decode_binary("BYTES", &[1, 0, 0, 0, b'a']).is_ok());
    }

    #[test]
    fn json_and_binary_bodies() {
        let t = Tensor {
            datatype: "FP32",
            shape: vec![1, 2],
            bytes: [0.5f32, -3.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        };
        let (body, len) = t.body(false, "x", 7);
        assert_eq!(len, None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["inputs"][0]["name"], "x");
        assert_eq!(v["inputs"][0]["data"], json!([0.5, -3.0]));
        let (body, len) = t.body(true, "x", 7);
        let n = len.unwrap();
        let v: Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(v["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&body[n..], &t.bytes[..]);
        let u = Tensor {
            datatype: "UINT8",
            shape: vec![1, 3],
            bytes: vec![0, 7, 255],
        };
        let v: Value = serde_json::from_slice(&u.body(false, "x", 0).0).unwrap();
        assert_eq!(v["inputs"][0]["data"], json!([0, 7, 255]));
    }

    #[test]
    fn analysis_features_come_from_the_analysis_meta() {
        gst::init().unwrap();
        if !gst::meta::CustomMeta::is_registered(ANALYSIS_META) {
            gst::meta::CustomMeta::register(ANALYSIS_META, &[]);
        }
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, 4, 2)
            .build()
            .unwrap();
        let mut buffer = gst::Buffer::from_mut_slice(vec![100u8; info.size()]);
        let features = |b: &gst::Buffer| {
            let t = analysis_tensor(b, None, &info, 0.3).unwrap();
            assert_eq!((t.datatype, t.shape.clone()), ("FP32", vec![1, 23]));
            t.bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        };
        // Computed: a flat 100 frame.
        let v = features(&buffer);
        assert_eq!(&v[..7], &[100.0 / 255.0, 0.0, 100.0, 100.0, 0.0, 0.0, 0.0]);
        assert_eq!(v[7 + 6], 8.0);
        {
            let mut meta =
                gst::meta::CustomMeta::add(buffer.get_mut().unwrap(), ANALYSIS_META).unwrap();
            let s = meta.mut_structure();
            s.set("luma-average", 0.25f64);
            s.set("luma-variance", 0.5f64);
            s.set("luma-min", 3u32);
            s.set("luma-max", 200u32);
            s.set("sharpness", 7.0f64);
            s.set("motion", 0.125f64);
            s.set("scene-change", true);
            s.set("histogram", gst::Array::new((0..16u32).collect::<Vec<_>>()));
        }
        let v = features(&buffer);
        assert_eq!(&v[..7], &[0.25, 0.5, 3.0, 200.0, 7.0, 0.125, 1.0]);
        assert_eq!(v[7 + 15], 15.0);
    }

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

    #[test]
    fn half_floats() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0), 0.0);
    }
}
