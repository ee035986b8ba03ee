// SPDX-License-Identifier: MPL-2.0
//! KServe v2 gRPC (`grpc://host:port`, `grpcs://` over TLS): the client
//! generated from `proto/kserve/grpc_predict_v2.proto`, run over our own
//! HTTP/2 connections (no tonic transport; the TLS set-up is REST's), its
//! probes and inference requests with `extra-headers` as metadata, and
//! their failures sorted as REST's are.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tonic::Code;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use super::headers::ExtraHeaders;
use super::http::{MAX_RESPONSE_BYTES, connector, error_chain};
use super::infer::Failure;
use super::probe::ProbeFailure;
use super::protocol::{Output, Tensor, check_elements, decode_binary};
use super::servers::{Health, ServerInfo};
use super::tls;

#[allow(
    clippy::all,
    clippy::pedantic,
    dead_code,
    unreachable_pub,
    missing_docs
)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/grpc-client/inference.rs"));
}

use pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use pb::model_infer_request::InferInputTensor;

type Channel = Client<HttpsConnector<HttpConnector>, tonic::body::Body>;

/// A connection to one server (HTTP/2, h2c or TLS with ALPN h2).
fn channel(tls: Arc<rustls::ClientConfig>) -> Channel {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector(tls))
}

/// One gRPC server.
pub(super) struct GrpcServer {
    /// Each its own HTTP/2 connection.
    clients: Vec<GrpcInferenceServiceClient<Channel>>,
    next: AtomicUsize,
    /// `extra-headers`, sent as metadata with every call.
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
}

impl GrpcServer {
    /// `url` is a checked `grpc://` or `grpcs://host:port`; up to
    /// `connections` to it, with `tls` for grpcs.
    pub(super) fn new(
        url: &str,
        connections: usize,
        tls: Arc<rustls::ClientConfig>,
        headers: ExtraHeaders,
    ) -> Result<Self, String> {
        let origin = match url.split_once("://") {
            Some(("grpcs", rest)) => format!("https://{rest}"),
            Some((_, rest)) => format!("http://{rest}"),
            None => url.to_string(),
        };
        let origin: Uri = origin.parse().map_err(|e| format!("server '{url}': {e}"))?;
        // gRPC needs HTTP/2: offered in the handshake.
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let tls = Arc::new(tls);
        let clients = (0..connections.max(1))
            .map(|_| {
                GrpcInferenceServiceClient::with_origin(channel(tls.clone()), origin.clone())
                    .max_decoding_message_size(MAX_RESPONSE_BYTES)
            })
            .collect();
        if headers.iter().any(|(name, _)| name == hyper::header::HOST) {
            return Err(format!(
                "extra-headers field 'host' is for REST servers; gRPC server {url} is \
                 reached by the authority of its URL"
            ));
        }
        let metadata = headers
            .iter()
            .map(|(name, value)| {
                let key = AsciiMetadataKey::from_bytes(name.as_str().as_bytes())
                    .map_err(|_| format!("extra-headers field '{name}' cannot be gRPC metadata"))?;
                let mut value = AsciiMetadataValue::try_from(value.as_bytes()).map_err(|_| {
                    format!("extra-headers field '{name}' has a value gRPC metadata cannot carry")
                })?;
                value.set_sensitive(true);
                Ok((key, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(GrpcServer {
            clients,
            next: AtomicUsize::new(0),
            metadata,
        })
    }

    /// A call's request: the bound as grpc-timeout (the server may give up
    /// as the client does) and the extra headers.
    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        for (key, value) in &self.metadata {
            r.metadata_mut().append(key.clone(), value.clone());
        }
        r
    }

    /// The next connection's client, round robin.
    fn client(&self) -> GrpcInferenceServiceClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// Readiness of the server and the model, and the model's input name.
    pub(super) async fn probe(
        &self,
        model: &str,
        url: &str,
        timeout: Duration,
    ) -> Result<ServerInfo, ProbeFailure> {
        let ready = bounded(
            timeout,
            self.client()
                .server_ready(self.request(pb::ServerReadyRequest {}, timeout)),
        )
        .await
        .map_err(|s| down(&s))?;
        if !ready.get_ref().ready {
            return Err(ProbeFailure::down("server not ready".into()));
        }
        let model_ready = pb::ModelReadyRequest {
            name: model.into(),
            version: String::new(),
        };
        let model_ready = bounded(
            timeout,
            self.client()
                .model_ready(self.request(model_ready, timeout)),
        )
        .await;
        match model_ready {
            Ok(r) if r.get_ref().ready => {}
            Ok(_) => {
                return Err(ProbeFailure {
                    health: Health::NoModel,
                    why: format!("model '{model}' not ready on {url}"),
                    tls: None,
                });
            }
            // The ready server does not know the model: Triton says
            // NOT_FOUND, MLServer UNKNOWN "Model x ... not found".
            Err(s) if !transport(&s) && model_not_found(&s) => {
                return Err(ProbeFailure {
                    health: Health::NoModel,
                    why: format!("model '{model}' not found on {url} ({})", status_text(&s)),
                    tls: None,
                });
            }
            Err(s) => return Err(down(&s)),
        }
        let metadata = pb::ModelMetadataRequest {
            name: model.into(),
            version: String::new(),
        };
        let input_name = bounded(
            timeout,
            self.client()
                .model_metadata(self.request(metadata, timeout)),
        )
        .await
        .ok()
        .and_then(|r| r.into_inner().inputs.into_iter().next())
        .map(|i| i.name);
        // Raw tensors are part of the gRPC protocol.
        Ok(ServerInfo {
            binary: true,
            input_name,
        })
    }

    /// One inference request: the tensor as raw contents of input
    /// `input_name`.
    pub(super) async fn infer(
        &self,
        model: &str,
        tensor: &Tensor,
        input_name: &str,
        id: u64,
        timeout: Duration,
    ) -> Result<Vec<Output>, Failure> {
        let msg = pb::ModelInferRequest {
            model_name: model.into(),
            id: id.to_string(),
            inputs: vec![InferInputTensor {
                name: input_name.into(),
                datatype: tensor.datatype.into(),
                shape: tensor.shape.clone(),
                ..Default::default()
            }],
            raw_input_contents: vec![tensor.bytes.clone()],
            ..Default::default()
        };
        let reply = self
            .client()
            .model_infer(self.request(msg, timeout))
            .await
            .map_err(|s| Failure {
                msg: match s.code() {
                    Code::Unauthenticated | Code::PermissionDenied => refused(&s),
                    _ => status_text(&s),
                },
                server_fault: server_fault(&s),
            })?;
        outputs(reply.into_inner()).map_err(|msg| Failure {
            msg: format!("bad response: {msg}"),
            server_fault: false,
        })
    }
}

/// A call answered within `timeout`: a server that never answers (a dead
/// host behind a pooled connection) must not hold a probe.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<tonic::Response<T>, tonic::Status> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {timeout:?}"
            )))
        })
}

fn model_not_found(s: &tonic::Status) -> bool {
    match s.code() {
        Code::NotFound => true,
        Code::Unknown | Code::InvalidArgument => {
            s.message().to_ascii_lowercase().contains("not found")
        }
        _ => false,
    }
}

/// Whether another server may do better, as for REST: unavailable,
/// overloaded, failing or without the model. A wrong request, refused
/// credentials, or a message over a size limit (RESOURCE_EXHAUSTED
/// "larger than max", OUT_OF_RANGE here) would fail anywhere.
fn server_fault(s: &tonic::Status) -> bool {
    match s.code() {
        Code::ResourceExhausted => !too_large(s),
        code => matches!(
            code,
            Code::Unavailable
                | Code::Internal
                | Code::Unknown
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::NotFound
        ),
    }
}

/// grpc servers refuse a message over their receive limit with
/// RESOURCE_EXHAUSTED "Received message larger than max (…)".
fn too_large(s: &tonic::Status) -> bool {
    let m = s.message().to_ascii_lowercase();
    m.contains("larger than") || m.contains("too large")
}

/// Refused credentials, as REST words them.
fn refused(s: &tonic::Status) -> String {
    format!(
        "server refused the credentials ({}): check extra-headers",
        status_text(s)
    )
}

/// A probe's call failed: the server is down, refuses the credentials, or
/// could not be reached (a TLS failure named as such).
fn down(s: &tonic::Status) -> ProbeFailure {
    let tls = std::error::Error::source(s).and_then(tls::failure);
    let why = match (s.code(), &tls) {
        (_, Some(reason)) => format!("secure connection failed: {reason}"),
        (Code::Unauthenticated | Code::PermissionDenied, None) => refused(s),
        _ => status_text(s),
    };
    ProbeFailure {
        tls,
        ..ProbeFailure::down(why)
    }
}

/// Whether the status is the client's: no answer from the server (tonic
/// carries a connection failure as an Unknown status with its cause).
fn transport(s: &tonic::Status) -> bool {
    std::error::Error::source(s).is_some_and(|e| e.to_string() == s.message())
}

/// The server's "Unavailable: ...", or a connection failure's causes as
/// REST words them.
fn status_text(s: &tonic::Status) -> String {
    let src = std::error::Error::source(s);
    if let Some(src) = src.filter(|_| transport(s)) {
        return error_chain(src);
    }
    let mut text = format!("{:?}", s.code());
    if !s.message().is_empty() {
        text.push_str(": ");
        text.push_str(s.message());
    }
    if let Some(src) = src {
        text.push_str(": ");
        text.push_str(&error_chain(src));
    }
    text
}

/// The outputs of an answer: raw contents in order for the outputs that
/// carry none of their own (KServe's rule), else the typed contents.
fn outputs(r: pb::ModelInferResponse) -> Result<Vec<Output>, String> {
    let mut raw = r.raw_output_contents.into_iter();
    let mut out = Vec::with_capacity(r.outputs.len());
    for o in r.outputs {
        // MLServer sends empty typed contents next to raw ones.
        let data = match o.contents.filter(|c| !is_empty(c)) {
            Some(c) => typed(&o.datatype, c),
            None => {
                let bytes: Bytes = raw
                    .next()
                    .ok_or_else(|| format!("output '{}' has no contents", o.name))?;
                decode_binary(&o.datatype, &bytes)?
            }
        };
        check_elements(&o.name, &o.shape, data.len())?;
        out.push(Output {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            data,
        });
    }
    Ok(out)
}

fn is_empty(c: &pb::InferTensorContents) -> bool {
    c.bool_contents.is_empty()
        && c.int_contents.is_empty()
        && c.int64_contents.is_empty()
        && c.uint_contents.is_empty()
        && c.uint64_contents.is_empty()
        && c.fp32_contents.is_empty()
        && c.fp64_contents.is_empty()
        && c.bytes_contents.is_empty()
}

/// Typed contents as the meta's values: integers and BOOL as gint64,
/// floats as gdouble, BYTES as strings.
fn typed(datatype: &str, c: pb::InferTensorContents) -> Vec<glib::SendValue> {
    fn values<T: ToSendValue>(v: impl IntoIterator<Item = T>) -> Vec<glib::SendValue> {
        v.into_iter().map(|x| x.to_send_value()).collect()
    }
    match datatype {
        "BOOL" => values(c.bool_contents.into_iter().map(i64::from)),
        "INT8" | "INT16" | "INT32" => values(c.int_contents.into_iter().map(i64::from)),
        "INT64" => values(c.int64_contents),
        "UINT8" | "UINT16" | "UINT32" => values(c.uint_contents.into_iter().map(i64::from)),
        "UINT64" => values(
            c.uint64_contents
                .into_iter()
                .map(|v| v.min(i64::MAX as u64) as i64),
        ),
        "FP32" => values(c.fp32_contents.into_iter().map(f64::from)),
        "FP64" => values(c.fp64_contents),
        _ => values(
            c.bytes_contents
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::model_infer_response::InferOutputTensor;

    fn output(name: &str, datatype: &str, shape: Vec<i64>) -> InferOutputTensor {
        InferOutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_outputs_are_decoded() {
        gst::init().unwrap();
        let mut typed = output("b", "INT32", vec![1, 2]);
        typed.contents = Some(pb::InferTensorContents {
            int_contents: vec![-3, 4],
            ..Default::default()
        });
        let mut raw = output("a", "FP32", vec![2]);
        raw.contents = Some(pb::InferTensorContents::default());
        let r = pb::ModelInferResponse {
            outputs: vec![raw, typed],
            raw_output_contents: vec![Bytes::from_iter(
                [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()),
            )],
            ..Default::default()
        };
        let out = outputs(r).unwrap();
        assert_eq!(out[0].data[1].get::<f64>().unwrap(), -2.0);
        assert_eq!(out[1].data[0].get::<i64>().unwrap(), -3);
        assert_eq!(out[1].shape, [1, 2]);
    }

    #[test]
    fn missing_or_short_contents_are_errors() {
        gst::init().unwrap();
        let r = pb::ModelInferResponse {
            outputs: vec![output("a", "FP32", vec![1])],
            ..Default::default()
        };
        assert!(outputs(r).unwrap_err().contains("'a' has no contents"));
        let r = pb::ModelInferResponse {
            outputs: vec![output("a", "FP32", vec![3])],
            raw_output_contents: vec![Bytes::from_static(&[0; 8])],
            ..Default::default()
        };
        assert!(outputs(r).is_err());
    }

    #[test]
    fn codes_are_sorted_like_http_statuses() {
        let fault = |code, msg: &str| server_fault(&tonic::Status::new(code, msg));
        assert!(fault(Code::Unavailable, ""));
        assert!(fault(Code::NotFound, ""));
        assert!(fault(Code::ResourceExhausted, "server overloaded"));
        assert!(!fault(
            Code::ResourceExhausted,
            "Received message larger than max (5000000 vs. 4194304)"
        ));
        assert!(!fault(Code::InvalidArgument, ""));
        assert!(!fault(Code::Unauthenticated, ""));
        assert!(!fault(Code::OutOfRange, ""));
        let missing = |code, msg: &str| model_not_found(&tonic::Status::new(code, msg));
        assert!(missing(Code::NotFound, "Request for unknown model"));
        assert!(missing(
            Code::Unknown,
            "Unexpected <class 'mlserver.errors.ModelNotFound'>: Model x with version  not found"
        ));
        assert!(!missing(Code::Internal, "boom"));
        assert!(!missing(Code::DeadlineExceeded, "not found in time"));
    }
}
