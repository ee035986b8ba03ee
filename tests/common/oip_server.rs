// SPDX-License-Identifier: MPL-2.0
//! A small Open Inference Protocol (KServe v2) server for tests and the
//! throughput example: the REST subset `parallelfilter processor=remote`
//! uses (and the repository index) and the same over KServe v2 gRPC
//! (`oip_grpc.rs`), with injectable latency, a capacity
//! (at most K inference requests served at once, the others wait in
//! order), errors, hangs, dropped connections, oversized answers and stops
//! (connection refused). Plain HTTP, or TLS with certificates the test
//! makes ([`TestCa`]); it records the headers of the last requests and can
//! refuse requests without a header (401).
//!
//! Its model takes batches: the input's first dimension is the batch (N,
//! 1 for a single frame) and every output has one row per frame: `mean`
//! (FP32 [N], the mean of the frame's elements), `nbytes` (INT64 [N], the
//! frame's size in bytes) and `id` (INT64 [N], the request id parsed as a
//! number, plus the frame's index in the batch). A request costs its
//! latency plus a cost per frame, as on a GPU.
#![allow(dead_code)]

#[path = "oip_grpc.rs"]
mod grpc;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::AbortHandle;

pub const MODEL: &str = "test-model";
pub const INPUT_NAME: &str = "input__0";
/// Requests whose headers are kept (the last ones).
pub const SEEN_REQUESTS: usize = 256;

/// What an inference request gets instead of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and an error body.
    Status(u16),
    /// Never answer (until the server stops).
    Hang,
    /// Close the connection without answering.
    Drop,
    /// Answer 200 with a valid body of more than 4 MiB.
    Oversize,
}

#[derive(Default)]
pub struct Control {
    latency: Mutex<Duration>,
    /// Added to the latency for each frame of a request.
    frame_cost: Mutex<Duration>,
    /// The model's outputs lack the batch dimension: one row whatever N.
    unbatched: AtomicBool,
    /// At most this many inference requests served at once (the latency
    /// and faults); `None`: no limit. Replaced whole by `set_capacity`,
    /// so requests already served keep their permits.
    capacity: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// The fault and how many more inference requests get it.
    fault: Mutex<Option<(Fault, u64)>>,
    no_binary: AtomicBool,
    not_ready: AtomicBool,
    model_not_ready: AtomicBool,
    /// The model's name, when not `MODEL`.
    model: Mutex<Option<String>>,
    /// `POST /v2/repository/index` answers 404, as KServe's does.
    no_index: AtomicBool,
    /// Readiness checks (REST and gRPC) never answer.
    pub hang_probes: AtomicBool,
    /// Other ready models the repository index lists.
    others: Mutex<Vec<String>>,
    /// While true, inference requests wait (before latency and faults).
    hold: tokio::sync::watch::Sender<bool>,
    /// Inference requests at the server now (waiting for capacity or
    /// served), and the most at once.
    pub concurrent: AtomicU64,
    pub max_concurrent: AtomicU64,
    /// Inference requests received, answered, and answered with the binary
    /// extension.
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub binary: AtomicU64,
    /// Ids of inference requests as they arrive, before any hold.
    pub arrived: Mutex<Vec<u64>>,
    /// Input names and ids of answered requests, in answer order.
    pub inputs: Mutex<Vec<(String, u64)>>,
    /// Frames in each answered request, in answer order.
    pub batches: Mutex<Vec<usize>>,
    /// The listener's generation (bumped by stop) and the tasks serving it.
    tasks: Mutex<(u64, Vec<AbortHandle>)>,
    /// Path and headers of the last [`SEEN_REQUESTS`] requests, probes
    /// included, oldest first.
    seen: Mutex<VecDeque<(String, HeaderMap)>>,
    /// Requests without this header and value get 401.
    required: Mutex<Option<(String, String)>>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// Where it serves the same model over KServe v2 gRPC.
    pub grpc_addr: SocketAddr,
    pub control: Arc<Control>,
    rt: Option<tokio::runtime::Runtime>,
    /// Set: the server speaks TLS (REST, gRPC).
    tls: Option<(tokio_rustls::TlsAcceptor, tokio_rustls::TlsAcceptor)>,
}

impl TestServer {
    /// A server on 127.0.0.1 on a free port.
    pub fn start() -> TestServer {
        Self::start_with(None)
    }

    /// A TLS server on 127.0.0.1 on a free port, presenting `cert`.
    pub fn start_tls(cert: &TestCert) -> TestServer {
        Self::start_with(Some((cert.acceptor(b"http/1.1"), cert.acceptor(b"h2"))))
    }

    fn start_with(
        tls: Option<(tokio_rustls::TlsAcceptor, tokio_rustls::TlsAcceptor)>,
    ) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("oip-test-server")
            .enable_all()
            .build()
            .expect("test server runtime");
        let bind = || {
            rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind")
        };
        let (listener, grpc) = (bind(), bind());
        let server = TestServer {
            addr: listener.local_addr().expect("local addr"),
            grpc_addr: grpc.local_addr().expect("local addr"),
            control: Arc::new(Control::default()),
            rt: Some(rt),
            tls,
        };
        server.serve(listener, false);
        server.serve(grpc, true);
        server
    }

    /// Its URL: https:// for a TLS server.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => self.https_url(),
            None => format!("http://{}", self.addr),
        }
    }

    /// An https:// URL of its port, also for a plain server.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Requests without `name: value` get 401 Unauthorized.
    pub fn require_header(&self, name: &str, value: &str) {
        *self.control.required.lock().unwrap() = Some((name.to_string(), value.to_string()));
    }

    /// Path and headers of the last requests, oldest first.
    pub fn seen_headers(&self) -> Vec<(String, HeaderMap)> {
        self.control.seen.lock().unwrap().iter().cloned().collect()
    }

    /// Its gRPC URL: grpcs:// for a TLS server.
    pub fn grpc_url(&self) -> String {
        match self.tls {
            Some(_) => format!("grpcs://{}", self.grpc_addr),
            None => format!("grpc://{}", self.grpc_addr),
        }
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime")
    }

    /// Accepts REST (HTTP/1.1) or gRPC (HTTP/2) connections on `listener`.
    fn serve(&self, listener: tokio::net::TcpListener, grpc: bool) {
        let control = self.control.clone();
        let generation = self.control.tasks.lock().unwrap().0;
        let tls = self
            .tls
            .as_ref()
            .map(|(rest, h2)| if grpc { h2.clone() } else { rest.clone() });
        let handle = self.rt().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let c = control.clone();
                // Under the lock stop() takes: a connection accepted while
                // stopping is closed, never left serving.
                let mut tasks = control.tasks.lock().unwrap();
                if tasks.0 != generation {
                    return;
                }
                let tls = tls.clone();
                let conn = tokio::spawn(async move {
                    if grpc {
                        match tls {
                            Some(tls) => {
                                if let Ok(stream) = tls.accept(stream).await {
                                    grpc::serve_connection(c, TokioIo::new(stream)).await;
                                }
                            }
                            None => grpc::serve_connection(c, TokioIo::new(stream)).await,
                        }
                        return;
                    }
                    let service = hyper::service::service_fn(move |req| handle(c.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        // A failed handshake (the client refused the
                        // certificate) just ends the connection.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
                tasks.1.retain(|t| !t.is_finished());
                tasks.1.push(conn.abort_handle());
            }
        });
        self.control
            .tasks
            .lock()
            .unwrap()
            .1
            .push(handle.abort_handle());
    }

    /// Closes the listener and every connection: clients get connection
    /// refused or reset, hung requests end.
    pub fn stop(&self) {
        let mut tasks = self.control.tasks.lock().unwrap();
        tasks.0 += 1;
        for t in tasks.1.drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same ports.
    pub fn restart(&self) {
        self.stop();
        let rebind = |addr: SocketAddr| {
            self.rt()
                .block_on(async {
                    // The old listener closes once its aborted task is dropped.
                    for _ in 0..500 {
                        match tokio::net::TcpListener::bind(addr).await {
                            Ok(l) => return Ok(l),
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    tokio::net::TcpListener::bind(addr).await
                })
                .expect("rebind")
        };
        self.serve(rebind(self.addr), false);
        self.serve(rebind(self.grpc_addr), true);
    }

    pub fn set_latency(&self, d: Duration) {
        *self.control.latency.lock().unwrap() = d;
    }

    /// Each request costs its latency plus `d` per frame in it.
    pub fn set_frame_cost(&self, d: Duration) {
        *self.control.frame_cost.lock().unwrap() = d;
    }

    /// Whether the model's outputs lack the batch dimension (one row for
    /// a whole batch).
    pub fn set_unbatched(&self, on: bool) {
        self.control.unbatched.store(on, Ordering::SeqCst);
    }

    /// Frames in each answered request, in answer order.
    pub fn batches(&self) -> Vec<usize> {
        self.control.batches.lock().unwrap().clone()
    }

    /// Serves at most `k` inference requests at once, the others wait in
    /// arrival order; `None`: no limit. Applies to requests arriving after.
    pub fn set_capacity(&self, k: Option<usize>) {
        *self.control.capacity.lock().unwrap() =
            k.map(|k| Arc::new(tokio::sync::Semaphore::new(k)));
    }

    /// The next `count` inference requests get `fault` (u64::MAX: all).
    pub fn set_fault(&self, fault: Fault, count: u64) {
        *self.control.fault.lock().unwrap() = Some((fault, count));
    }

    pub fn clear_fault(&self) {
        *self.control.fault.lock().unwrap() = None;
    }

    /// Whether `GET /v2` lists `binary_tensor_data`.
    pub fn set_binary(&self, on: bool) {
        self.control.no_binary.store(!on, Ordering::SeqCst);
    }

    pub fn set_ready(&self, on: bool) {
        self.control.not_ready.store(!on, Ordering::SeqCst);
    }

    /// The server is ready, but `GET /v2/models/{model}/ready` says the
    /// model is not.
    pub fn set_model_ready(&self, on: bool) {
        self.control.model_not_ready.store(!on, Ordering::SeqCst);
    }

    /// Serves the model under `name` (percent-decoded from the path).
    pub fn set_model(&self, name: &str) {
        *self.control.model.lock().unwrap() = Some(name.to_string());
    }

    /// Whether `POST /v2/repository/index` is served.
    /// While on, readiness checks never answer: a host that died behind
    /// an open connection.
    pub fn set_probe_hang(&self, on: bool) {
        self.control.hang_probes.store(on, Ordering::SeqCst);
    }

    pub fn set_index(&self, on: bool) {
        self.control.no_index.store(!on, Ordering::SeqCst);
    }

    /// Other ready models the repository index lists (never served).
    pub fn set_other_models(&self, names: &[&str]) {
        *self.control.others.lock().unwrap() = names.iter().map(|n| n.to_string()).collect();
    }

    /// While on, inference requests wait; off releases them.
    pub fn set_hold(&self, on: bool) {
        self.control.hold.send_replace(on);
    }

    /// The most inference requests at the server at once, waiting for
    /// capacity included: what the client had in flight there.
    pub fn max_concurrent(&self) -> u64 {
        self.control.max_concurrent.load(Ordering::SeqCst)
    }

    /// Ids of the inference requests received, in arrival order.
    pub fn arrived(&self) -> Vec<u64> {
        self.control.arrived.lock().unwrap().clone()
    }

    pub fn answered(&self) -> u64 {
        self.control.answered.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> u64 {
        self.control.received.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Percent-decoding of a URL path.
fn decode_path(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (x, _) => {
                out.push(x);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Records a request's headers (REST path or gRPC method) and checks the
/// required one: `Err` with why when it is missing or wrong.
pub(crate) fn admit(c: &Control, path: &str, headers: &HeaderMap) -> Result<(), String> {
    {
        let mut seen = c.seen.lock().unwrap();
        if seen.len() == SEEN_REQUESTS {
            seen.pop_front();
        }
        seen.push_back((path.to_string(), headers.clone()));
    }
    let required = c.required.lock().unwrap().clone();
    if let Some((name, value)) = required {
        let sent = headers.get_all(name.as_str());
        if !sent.iter().any(|v| v.as_bytes() == value.as_bytes()) {
            return Err(format!("missing or wrong {name}"));
        }
    }
    Ok(())
}

async fn handle(c: Arc<Control>, req: Request<Incoming>) -> Result<Reply, std::io::Error> {
    let path = decode_path(req.uri().path());
    if let Err(e) = admit(&c, &path, req.headers()) {
        return Ok(reply(StatusCode::UNAUTHORIZED, json!({ "error": e })));
    }
    let ready = !c.not_ready.load(Ordering::SeqCst);
    let model_ready = ready && !c.model_not_ready.load(Ordering::SeqCst);
    let model = c.model.lock().unwrap().clone();
    let model = model.as_deref().unwrap_or(MODEL);
    let model_path = format!("/v2/models/{model}");
    let ok = |b| Ok(reply(StatusCode::OK, b));
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/v2") => {
            let ext: Vec<&str> = if c.no_binary.load(Ordering::SeqCst) {
                vec![]
            } else {
                vec!["binary_tensor_data"]
            };
            ok(json!({"name": "oip-test-server", "version": "0", "extensions": ext}))
        }
        ("GET", "/v2/health/live") => ok(json!({})),
        ("POST", "/v2/repository/index") if !c.no_index.load(Ordering::SeqCst) => {
            let (state, reason) = if c.model_not_ready.load(Ordering::SeqCst) {
                ("UNAVAILABLE", "not ready")
            } else {
                ("READY", "")
            };
            let mut index =
                vec![json!({"name": model, "version": "1", "state": state, "reason": reason})];
            for name in c.others.lock().unwrap().iter() {
                index.push(json!({"name": name, "version": "1", "state": "READY", "reason": ""}));
            }
            ok(Value::Array(index))
        }
        ("GET", "/v2/health/ready") if c.hang_probes.load(Ordering::SeqCst) => {
            std::future::pending().await
        }
        ("GET", "/v2/health/ready") if ready => ok(json!({})),
        ("GET", p) if p == format!("{model_path}/ready") && model_ready => ok(json!({})),
        ("GET", p) if p == model_path => ok(json!({
            "name": model, "platform": "test",
            "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1]}],
            "outputs": [{"name": "mean", "datatype": "FP32", "shape": [-1]}],
        })),
        ("POST", p) if p == format!("{model_path}/infer") => {
            let n = c.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_concurrent.fetch_max(n, Ordering::SeqCst);
            let r = infer(c.clone(), req, model).await;
            c.concurrent.fetch_sub(1, Ordering::SeqCst);
            r
        }
        ("GET", _) if !model_ready => Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "not ready"}),
        )),
        _ => Ok(reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no route {path}")}),
        )),
    }
}

async fn infer(
    c: Arc<Control>,
    req: Request<Incoming>,
    model: &str,
) -> Result<Reply, std::io::Error> {
    c.received.fetch_add(1, Ordering::SeqCst);
    let header_len = req
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let bad = |msg: &str| Ok(reply(StatusCode::BAD_REQUEST, json!({ "error": msg })));
    let (json_part, binary) = match header_len {
        Some(n) if n <= body.len() => (&body[..n], Some(&body[n..])),
        Some(_) => return bad("header length beyond body"),
        None => (&body[..], None),
    };
    let Ok(v) = serde_json::from_slice::<Value>(json_part) else {
        return bad("invalid JSON");
    };
    let input = &v["inputs"][0];
    let name = input["name"].as_str().unwrap_or_default().to_string();
    let datatype = input["datatype"].as_str().unwrap_or_default();
    let values: Vec<f64> = match binary {
        Some(b) => {
            if input["parameters"]["binary_data_size"].as_u64() != Some(b.len() as u64) {
                return bad("binary_data_size differs from the bytes after the header");
            }
            c.binary.fetch_add(1, Ordering::SeqCst);
            match raw_values(datatype, b) {
                Some(v) => v,
                None => return bad("unsupported datatype"),
            }
        }
        None => match input["data"].as_array() {
            Some(d) => d.iter().filter_map(Value::as_f64).collect(),
            None => return bad("no data"),
        },
    };
    let shape: Vec<i64> = match input["shape"].as_array() {
        Some(s) => s.iter().map(|d| d.as_i64().unwrap_or(-1)).collect(),
        None => return bad("no shape"),
    };
    let id: u64 = v["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let request = match Infer::new(name, datatype, &shape, values, id) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    c.arrived.lock().unwrap().push(id);
    match serve(&c, request.rows).await {
        Some(Fault::Status(s)) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(reply(status, json!({"error": "injected failure"})));
        }
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Drop) => return Err(std::io::Error::other("injected connection drop")),
        Some(Fault::Oversize) => {
            let padding = "x".repeat((4 << 20) + 1);
            return Ok(reply(
                StatusCode::OK,
                json!({"model_name": model, "outputs": [], "padding": padding}),
            ));
        }
        None => {}
    }
    let Rows {
        rows,
        means,
        nbytes,
        ids,
    } = answer(&c, request);
    Ok(reply(
        StatusCode::OK,
        json!({
            "model_name": model,
            "id": v["id"],
            "outputs": [
                {"name": "mean", "datatype": "FP32", "shape": [rows], "data": means},
                {"name": "nbytes", "datatype": "INT64", "shape": [rows], "data": nbytes},
                {"name": "id", "datatype": "INT64", "shape": [rows], "data": ids},
            ],
        }),
    ))
}

/// An inference request as the model sees it.
pub(crate) struct Infer {
    name: String,
    datatype: String,
    /// The first dimension: frames in the request.
    rows: usize,
    values: Vec<f64>,
    id: u64,
}

impl Infer {
    pub(crate) fn new(
        name: String,
        datatype: &str,
        shape: &[i64],
        values: Vec<f64>,
        id: u64,
    ) -> Result<Infer, &'static str> {
        let elements = shape.iter().try_fold(1i64, |n, &d| (d >= 0).then(|| n * d));
        if elements != Some(values.len() as i64) {
            return Err("shape does not match the number of elements");
        }
        let rows = shape.first().copied().unwrap_or(1).max(1) as usize;
        if !values.len().is_multiple_of(rows) {
            return Err("the elements do not divide into the batch");
        }
        Ok(Infer {
            name,
            datatype: datatype.to_string(),
            rows,
            values,
            id,
        })
    }
}

/// The elements of a raw (binary) tensor.
pub(crate) fn raw_values(datatype: &str, b: &[u8]) -> Option<Vec<f64>> {
    match datatype {
        "UINT8" => Some(b.iter().map(|&x| f64::from(x)).collect()),
        "FP32" => Some(
            b.chunks_exact(4)
                .map(|x| f64::from(f32::from_le_bytes([x[0], x[1], x[2], x[3]])))
                .collect(),
        ),
        _ => None,
    }
}

/// Holds the request as the server's settings say (hold, capacity,
/// latency and cost per frame), then gives the fault it gets, if any.
pub(crate) async fn serve(c: &Control, rows: usize) -> Option<Fault> {
    let mut hold = c.hold.subscribe();
    let _ = hold.wait_for(|h| !*h).await;
    // Held until the answer is built; the semaphore is fair (FIFO).
    let capacity = c.capacity.lock().unwrap().clone();
    let _served = match capacity {
        Some(s) => s.acquire_owned().await.ok(),
        None => None,
    };
    let latency = *c.latency.lock().unwrap() + *c.frame_cost.lock().unwrap() * rows as u32;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut f = c.fault.lock().unwrap();
    match f.as_mut() {
        Some((fault, n)) if *n > 0 => {
            *n = n.saturating_sub(if *n == u64::MAX { 0 } else { 1 });
            Some(*fault)
        }
        _ => None,
    }
}

/// The model's answer, one row per frame.
pub(crate) struct Rows {
    pub rows: usize,
    pub means: Vec<f64>,
    pub nbytes: Vec<i64>,
    pub ids: Vec<i64>,
}

/// Answers `r` and counts it.
pub(crate) fn answer(c: &Control, r: Infer) -> Rows {
    let element_size = if r.datatype == "FP32" { 4 } else { 1 };
    let rows = if c.unbatched.load(Ordering::SeqCst) {
        1
    } else {
        r.rows
    };
    let row = (r.values.len() / rows).max(1);
    let (mut means, mut nbytes, mut ids) = (vec![], vec![], vec![]);
    for (i, v) in r.values.chunks(row).take(rows).enumerate() {
        means.push(v.iter().sum::<f64>() / v.len().max(1) as f64);
        nbytes.push((v.len() * element_size) as i64);
        ids.push((r.id + i as u64) as i64);
    }
    c.inputs.lock().unwrap().push((r.name, r.id));
    c.batches.lock().unwrap().push(rows);
    c.answered.fetch_add(1, Ordering::SeqCst);
    Rows {
        rows,
        means,
        nbytes,
        ids,
    }
}

/// A certificate authority made by the test.
pub struct TestCa {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A server's certificate and key.
pub struct TestCert {
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
}

/// A file removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A new file under the temporary directory holding `contents`.
    pub fn new(tag: &str, contents: &[u8]) -> TempFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "parallelfilter-test-{}-{n}-{tag}",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("writing a temporary file");
        TempFile(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn path_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's certificate in a PEM file, for `tls-ca-file`.
    pub fn pem_file(&self) -> TempFile {
        TempFile::new("ca.pem", self.pem().as_bytes())
    }

    /// A server certificate for `names` (host names or IP addresses),
    /// valid from 1975 to 4096 (rcgen's defaults).
    pub fn leaf(&self, names: &[&str]) -> TestCert {
        self.leaf_with(names, |_| {})
    }

    /// A server certificate for `names` that expired in 2000.
    pub fn expired_leaf(&self, names: &[&str]) -> TestCert {
        self.leaf_with(names, |p| {
            p.not_before = rcgen::date_time_ymd(1999, 1, 1);
            p.not_after = rcgen::date_time_ymd(2000, 1, 1);
        })
    }

    fn leaf_with(
        &self,
        names: &[&str],
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> TestCert {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose};
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        // An IP address becomes an IP SAN.
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        edit(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCert {
            cert: cert.der().clone(),
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

impl TestCert {
    /// A TLS acceptor offering the `alpn` protocol.
    fn acceptor(&self, alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
        // The ring provider, as the element uses; never a process default.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .expect("server certificate");
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}
