// SPDX-License-Identifier: MPL-2.0
//! The HTTP/1.1 client the processor talks through: one connection pool
//! per processor, plain or TLS, bounded connects and response bodies,
//! `extra-headers` on every request, and error texts that name the cause.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use super::headers::ExtraHeaders;
use super::protocol::{EncodedRequest, HEADER_LENGTH};
use super::tls;

/// TCP connect bound: a dead host never holds a frame longer.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest response body read; a bigger one is an error. A JSON body is
/// parsed into a tree about ten times its size, and every worker may hold
/// one.
pub(super) const MAX_RESPONSE_BYTES: usize = 4 << 20;

pub(super) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: ExtraHeaders,
}

/// Why a request got no response.
pub(super) struct Unanswered {
    pub msg: String,
    /// Why the TLS handshake failed: a setting to fix (CA, host name,
    /// port) more likely than an outage.
    pub tls: Option<String>,
}

/// The answer to a GET.
pub(super) struct JsonReply {
    pub status: StatusCode,
    /// The body, when it is JSON.
    pub json: Option<Value>,
}

/// The answer to an inference request.
pub(super) struct Reply {
    pub status: StatusCode,
    /// The response's [`HEADER_LENGTH`]: binary tensors follow the JSON.
    pub header_len: Option<usize>,
    pub body: Result<Bytes, BodyError>,
}

pub(super) enum BodyError {
    /// Over `MAX_RESPONSE_BYTES`.
    TooLarge,
    Read(String),
}

/// Why a request got no response.
pub(super) enum SendError {
    /// The request could not be built: not the server's fault.
    Build(String),
    /// Connecting or sending failed.
    Connection(Unanswered),
}

impl HttpClient {
    /// A client keeping up to `max_idle_per_host` connections per server,
    /// speaking TLS to `https://` URLs with `tls`, sending `headers` with
    /// every request.
    pub(super) fn new(
        max_idle_per_host: usize,
        tls: Arc<rustls::ClientConfig>,
        headers: ExtraHeaders,
    ) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_idle_per_host)
            .build(connector(tls));
        HttpClient { client, headers }
    }

    /// A request to `url` with the extra headers.
    fn request(&self, method: Method, url: &str) -> hyper::http::request::Builder {
        let mut req = Request::builder().method(method).uri(url);
        for (name, value) in self.headers.iter() {
            req = req.header(name, value);
        }
        req
    }

    /// GET `url`, answered within `timeout`.
    pub(super) async fn get_json(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<JsonReply, Unanswered> {
        let plain = |msg| Unanswered { msg, tls: None };
        let req = self
            .request(Method::GET, url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| plain(e.to_string()))?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(unanswered)?;
            let status = resp.status();
            let body = read_body(resp.into_body()).await.map_err(|e| match e {
                BodyError::TooLarge => plain(too_large()),
                BodyError::Read(e) => plain(e),
            })?;
            Ok::<_, Unanswered>(JsonReply {
                status,
                json: serde_json::from_slice(&body).ok(),
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| plain(format!("no answer within {timeout:?}")))?
    }

    /// POST a JSON `body` to `url`; the JSON answer of a success within
    /// `timeout`, else `None`.
    pub(super) async fn post_json(
        &self,
        url: &str,
        body: &'static [u8],
        timeout: Duration,
    ) -> Option<Value> {
        let req = self
            .request(Method::POST, url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(body)))
            .ok()?;
        let fut = async {
            let resp = self.client.request(req).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = read_body(resp.into_body()).await.ok()?;
            serde_json::from_slice::<Value>(&body).ok()
        };
        tokio::time::timeout(timeout, fut).await.ok()?
    }

    /// POST an inference request to `url`. The body is read up to
    /// [`MAX_RESPONSE_BYTES`].
    pub(super) async fn post(
        &self,
        url: &str,
        request: EncodedRequest,
    ) -> Result<Reply, SendError> {
        let req = self.request(Method::POST, url);
        let req = match request.header_len {
            Some(n) => req
                .header(HEADER_LENGTH, n)
                .header(hyper::header::CONTENT_TYPE, "application/octet-stream"),
            None => req.header(hyper::header::CONTENT_TYPE, "application/json"),
        };
        let req = req
            .body(Full::new(request.body))
            .map_err(|e| SendError::Build(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| SendError::Connection(unanswered(e)))?;
        let status = resp.status();
        let header_len = resp
            .headers()
            .get(HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = read_body(resp.into_body()).await;
        Ok(Reply {
            status,
            header_len,
            body,
        })
    }
}

/// A response body, at most `MAX_RESPONSE_BYTES`.
async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, BodyError> {
    match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// The text of a 401 or 403 answer: the credentials, not the server, are
/// at fault, and every server would say the same.
pub(super) fn refused_credentials(status: StatusCode) -> Option<String> {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        .then(|| format!("server refused the credentials ({status}): check extra-headers"))
}

pub(super) fn too_large() -> String {
    format!("response over the {} MiB limit", MAX_RESPONSE_BYTES >> 20)
}

/// Connections as REST and gRPC make them: a bounded connect, no Nagle
/// delay, TLS for https:// (and for gRPC's https:// origins).
pub(super) fn connector(tls: Arc<rustls::ClientConfig>) -> HttpsConnector<HttpConnector> {
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_nodelay(true);
    // The TLS connector takes https:// too.
    tcp.enforce_http(false);
    HttpsConnector::from((tcp, tls))
}

/// Why a request failed: a TLS handshake's failure as a sentence with a
/// hint, else the error and its sources.
fn unanswered(e: hyper_util::client::legacy::Error) -> Unanswered {
    match tls::failure(&e) {
        Some(why) => Unanswered {
            msg: format!("secure connection failed: {why}"),
            tls: Some(why),
        },
        None => Unanswered {
            msg: error_chain(&e),
            tls: None,
        },
    }
}

/// The error and its sources: hyper's top-level message alone says little.
pub(super) fn error_chain<E: std::error::Error + ?Sized>(e: &E) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
