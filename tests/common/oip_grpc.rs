// SPDX-License-Identifier: MPL-2.0
//! The test server's KServe v2 gRPC side (`inference.GRPCInferenceService`
//! from proto/kserve): the same model, settings, faults and counters as
//! its REST side, over HTTP/2 (h2c).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tonic::{Request, Response, Status};

use super::{Control, Fault, INPUT_NAME, MODEL, Rows, admit, answer, raw_values, serve};

#[allow(
    clippy::all,
    clippy::pedantic,
    dead_code,
    unreachable_pub,
    missing_docs
)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/grpc-server/inference.rs"));
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::model_infer_response::InferOutputTensor;

/// Serves one accepted connection (plain or TLS) until it closes.
pub(super) async fn serve_connection<I>(c: Arc<Control>, io: TokioIo<I>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(GrpcInferenceServiceServer::new(Service(c)));
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

struct Service(Arc<Control>);

impl Service {
    /// Records the call's metadata; UNAUTHENTICATED without the required
    /// header.
    fn admit<T>(&self, method: &str, r: &Request<T>) -> Result<(), Status> {
        let headers = r.metadata().clone().into_headers();
        admit(
            &self.0,
            &format!("/inference.GRPCInferenceService/{method}"),
            &headers,
        )
        .map_err(Status::unauthenticated)
    }

    fn model(&self) -> String {
        self.0.model.lock().unwrap().clone().unwrap_or(MODEL.into())
    }

    fn ready(&self) -> bool {
        !self.0.not_ready.load(Ordering::SeqCst)
    }

    /// The model's readiness, or NOT_FOUND for another name.
    fn model_ready(&self, name: &str) -> Result<bool, Status> {
        if name != self.model() {
            return Err(Status::not_found(format!("Model {name} not found")));
        }
        Ok(self.ready() && !self.0.model_not_ready.load(Ordering::SeqCst))
    }
}

/// The REST side's faults as gRPC answers.
fn fault_status(f: Fault) -> Status {
    match f {
        Fault::Status(400) => Status::invalid_argument("injected failure"),
        Fault::Status(401) => Status::unauthenticated("injected failure"),
        Fault::Status(404) => Status::not_found("injected failure"),
        Fault::Status(429) => Status::resource_exhausted("injected failure"),
        Fault::Status(503) => Status::unavailable("injected failure"),
        Fault::Status(_) => Status::internal("injected failure"),
        Fault::Drop => Status::unavailable("injected connection drop"),
        Fault::Hang | Fault::Oversize => Status::internal("not a status fault"),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        r: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        self.admit("ServerReady", &r)?;
        if self.0.hang_probes.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        self.admit("ModelReady", &r)?;
        let ready = self.model_ready(&r.get_ref().name)?;
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "oip-test-server".into(),
            version: "0".into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        self.admit("ModelMetadata", &r)?;
        self.model_ready(&r.get_ref().name)?;
        let tensor = |name: &str, datatype: &str| pb::model_metadata_response::TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![-1],
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: self.model(),
            versions: vec!["1".into()],
            platform: "test".into(),
            inputs: vec![tensor(INPUT_NAME, "UINT8")],
            outputs: vec![tensor("mean", "FP32")],
        }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        self.admit("ModelInfer", &r)?;
        let c = &self.0;
        c.received.fetch_add(1, Ordering::SeqCst);
        let n = c.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_concurrent.fetch_max(n, Ordering::SeqCst);
        let result = self.infer(r.into_inner()).await;
        c.concurrent.fetch_sub(1, Ordering::SeqCst);
        result.map(Response::new)
    }
}

impl Service {
    async fn infer(&self, r: pb::ModelInferRequest) -> Result<pb::ModelInferResponse, Status> {
        let c = &self.0;
        if !self.model_ready(&r.model_name)? {
            return Err(Status::unavailable("model not ready"));
        }
        let input = r
            .inputs
            .first()
            .ok_or_else(|| Status::invalid_argument("no input"))?;
        let raw = r
            .raw_input_contents
            .first()
            .ok_or_else(|| Status::invalid_argument("no raw input contents"))?;
        c.binary.fetch_add(1, Ordering::SeqCst);
        let values = raw_values(&input.datatype, raw)
            .ok_or_else(|| Status::invalid_argument("unsupported datatype"))?;
        let id = r.id.parse().unwrap_or(0);
        let request = super::Infer::new(
            input.name.clone(),
            &input.datatype,
            &input.shape,
            values,
            id,
        )
        .map_err(Status::invalid_argument)?;
        c.arrived.lock().unwrap().push(id);
        match serve(c, request.rows).await {
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::Oversize) => {
                return Ok(pb::ModelInferResponse {
                    model_name: r.model_name,
                    outputs: vec![output("big", "UINT8", (4 << 20) + 1)],
                    raw_output_contents: vec![Bytes::from(vec![0u8; (4 << 20) + 1])],
                    ..Default::default()
                });
            }
            Some(f) => return Err(fault_status(f)),
            None => {}
        }
        let Rows {
            rows,
            means,
            nbytes,
            ids,
        } = answer(c, request);
        let le = |v: Vec<[u8; 8]>| Bytes::from(v.concat());
        Ok(pb::ModelInferResponse {
            model_name: r.model_name,
            id: r.id,
            outputs: vec![
                output("mean", "FP32", rows),
                output("nbytes", "INT64", rows),
                output("id", "INT64", rows),
            ],
            raw_output_contents: vec![
                Bytes::from(
                    means
                        .iter()
                        .flat_map(|m| (*m as f32).to_le_bytes())
                        .collect::<Vec<u8>>(),
                ),
                le(nbytes.iter().map(|x| x.to_le_bytes()).collect()),
                le(ids.iter().map(|x| x.to_le_bytes()).collect()),
            ],
            ..Default::default()
        })
    }
}

fn output(name: &str, datatype: &str, rows: usize) -> InferOutputTensor {
    InferOutputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![rows as i64],
        ..Default::default()
    }
}
