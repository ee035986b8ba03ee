// SPDX-License-Identifier: MPL-2.0
//! KServe v2 gRPC (`grpc://host:port`, `grpcs://` over TLS): the client
//! generated from `proto/kserve/grpc_predict_v2.proto`, run over our own
//! HTTP/2 connections (no tonic transport; the TLS set-up is REST's), its
//! probes and inference requests with `extra-headers` as metadata, and
//! their failures sorted as REST's are.

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
use super::http::{CONNECT_TIMEOUT, MAX_RESPONSE_BYTES, error_chain};
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
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let connector = HttpsConnector::from((tcp, tls));
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
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
        let ready = self
            .client()
            .server_ready(self.request(pb::ServerReadyRequest {}, timeout))
            .await
            .map_err(|s| down(&s))?;
        if !ready.get_ref().ready {
            return Err(ProbeFailure::down("server not ready".into()));
        }
        let model_ready = pb::ModelReadyRequest {
            name: model.into(),
            version: String::new(),
        };
        match self
            .client()
            .model_ready(self.request(model_ready, timeout))
            .await
        {
            Ok(r) if r.get_ref().ready => {}
            Ok(_) => {
                return Err(ProbeFailure {
                    health: Health::NoModel,
                    why: format!("model '{model}' not ready on {url}"),
                    tls: None,
                });
            }
            Err(s)
                if transport(&s)
                    || matches!(
                        s.code(),
                        Code::Unavailable | Code::Unauthenticated | Code::PermissionDenied
                    ) =>
            {
                return Err(down(&s));
            }
            // The ready server refuses the model: Triton says NOT_FOUND,
            // MLServer UNKNOWN with "Model x not found".
            Err(s) => {
                let what = match s.code() {
                    Code::NotFound => "not found",
                    _ => "not available",
                };
                return Err(ProbeFailure {
                    health: Health::NoModel,
                    why: format!("model '{model}' {what} on {url} ({})", status_text(&s)),
                    tls: None,
                });
            }
        }
        let metadata = pb::ModelMetadataRequest {
            name: model.into(),
            version: String::new(),
        };
        let input_name = match self
            .client()
            .model_metadata(self.request(metadata, timeout))
            .await
        {
            Ok(r) => r.into_inner().inputs.into_iter().next().map(|i| i.name),
            Err(_) => None,
        };
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
                msg: status_text(&s),
                server_fault: server_fault(s.code()),
            })?;
        outputs(reply.into_inner()).map_err(|msg| Failure {
            msg: format!("bad response: {msg}"),
            server_fault: false,
        })
    }
}

/// Whether another server may do better, as for REST: unavailable,
/// overloaded, failing or without the model. A wrong request, refused
/// credentials or an answer over the limit would fail anywhere.
fn server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Internal
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::NotFound
    )
}

/// A probe's call failed: the server is down, refuses the credentials, or
/// could not be reached (a TLS failure named as such).
fn down(s: &tonic::Status) -> ProbeFailure {
    let tls = std::error::Error::source(s).and_then(tls::failure);
    let why = match (s.code(), &tls) {
        (_, Some(reason)) => format!("secure connection failed: {reason}"),
        (Code::Unauthenticated | Code::PermissionDenied, None) => format!(
            "server refused the credentials ({}): check extra-headers",
            status_text(s)
        ),
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
        assert!(server_fault(Code::Unavailable));
        assert!(server_fault(Code::NotFound));
        assert!(!server_fault(Code::InvalidArgument));
        assert!(!server_fault(Code::Unauthenticated));
        assert!(!server_fault(Code::OutOfRange));
    }
}
