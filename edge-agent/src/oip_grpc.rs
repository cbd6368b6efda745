//! The Open Inference Protocol's gRPC form, `inference.GRPCInferenceService`,
//! over the same core as the REST form. Outputs go back as
//! `raw_output_contents`, as Triton answers.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use algobay_proto::inference as pb;

use crate::agent::Agent;
use crate::oip::{OipError, RawTensor};

/// The service, over the agent.
#[derive(Clone, Debug)]
pub struct InferenceService(pub Arc<Agent>);

fn status(e: OipError) -> Status {
    match e {
        OipError::BadRequest(m) | OipError::Failed(m) => Status::invalid_argument(m),
        OipError::NotFound(m) => Status::not_found(m),
        OipError::Unavailable(m) => Status::unavailable(m),
        OipError::Overloaded(m) => Status::resource_exhausted(m),
        OipError::Conflict(m) => Status::already_exists(m),
    }
}

/// Contents in their typed form, as raw bytes.
fn contents_raw(datatype: &str, c: &pb::InferTensorContents) -> Vec<u8> {
    let mut raw = Vec::new();
    match datatype {
        "FP32" => c
            .fp32_contents
            .iter()
            .for_each(|v| raw.extend_from_slice(&v.to_le_bytes())),
        "INT64" => c
            .int64_contents
            .iter()
            .for_each(|v| raw.extend_from_slice(&v.to_le_bytes())),
        "INT32" => c
            .int_contents
            .iter()
            .for_each(|v| raw.extend_from_slice(&v.to_le_bytes())),
        "INT8" => c.int_contents.iter().for_each(|v| raw.push(*v as i8 as u8)),
        "UINT8" => c.uint_contents.iter().for_each(|v| raw.push(*v as u8)),
        "BOOL" => c.bool_contents.iter().for_each(|v| raw.push(u8::from(*v))),
        _ => c.bytes_contents.iter().for_each(|b| {
            raw.extend_from_slice(&(b.len() as u32).to_le_bytes());
            raw.extend_from_slice(b);
        }),
    }
    raw
}

/// The shape and name with a server-wide meaning for a missing model name.
fn model_of(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument("model name is required"));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::grpc_inference_service_server::GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = req.into_inner();
        model_of(&r.name)?;
        // An unknown model is an error (as Triton answers), not "not ready".
        let ready = match self.0.model(&r.name, &r.version) {
            Ok(_) => true,
            Err(crate::oip::OipError::Unavailable(_)) => false,
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "algobay-agent".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = req.into_inner();
        model_of(&r.name)?;
        let active = self.0.model(&r.name, &r.version).map_err(status)?;
        let m = active.kit.manifest();
        let ports = |ports| {
            crate::oip::ports_metadata(ports)
                .into_iter()
                .map(
                    |(name, datatype, shape)| pb::model_metadata_response::TensorMetadata {
                        name,
                        datatype,
                        shape,
                    },
                )
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name.rsplit('/').next().unwrap_or(&m.name).to_owned(),
            versions: vec![m.version.clone()],
            platform: "algobay_kit".into(),
            inputs: ports(&m.inputs),
            outputs: ports(&m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let traceparent = req
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let r = req.into_inner();
        model_of(&r.model_name)?;
        if !r.raw_input_contents.is_empty() && r.raw_input_contents.len() != r.inputs.len() {
            return Err(Status::invalid_argument(format!(
                "raw_input_contents has {} entries for {} inputs",
                r.raw_input_contents.len(),
                r.inputs.len()
            )));
        }
        if !r.raw_input_contents.is_empty() {
            if let Some(t) = r.inputs.iter().find(|t| t.contents.is_some()) {
                return Err(Status::invalid_argument(format!(
                    "input `{}` has `contents` while the request uses raw_input_contents; send one form",
                    crate::oip::shown(&t.name)
                )));
            }
        }
        let mut raw = r.raw_input_contents.into_iter();
        let inputs: Vec<RawTensor> = r
            .inputs
            .into_iter()
            .map(|t| {
                let data = match (raw.next(), &t.contents) {
                    (Some(bytes), _) => bytes,
                    (None, Some(c)) => contents_raw(&t.datatype, c),
                    (None, None) => Vec::new(),
                };
                RawTensor {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                    raw: data,
                }
            })
            .collect();
        let wanted = r.outputs.into_iter().map(|o| o.name).collect();
        // The caller's id is echoed (the protocol's), the request's own id
        // (what feedback names) is the agent's, in the `x-request-id` metadata.
        if !r.id.is_empty() {
            crate::oip::check_request_id(&r.id).map_err(status)?;
        }
        let rid = crate::oip::new_request_id();
        let id = if r.id.is_empty() { rid.clone() } else { r.id };
        let (active, outputs) = self
            .0
            .infer(
                &r.model_name,
                &r.model_version,
                inputs,
                wanted,
                traceparent.as_deref(),
                &rid,
            )
            .await
            .map_err(status)?;
        let m = active.kit.manifest();
        let mut answer = Response::new(pb::ModelInferResponse {
            model_name: m.name.rsplit('/').next().unwrap_or(&m.name).to_owned(),
            model_version: m.version.clone(),
            id,
            parameters: Default::default(),
            outputs: outputs
                .iter()
                .map(|t| pb::model_infer_response::InferOutputTensor {
                    name: t.name.clone(),
                    datatype: t.datatype.clone(),
                    shape: t.shape.clone(),
                    parameters: Default::default(),
                    contents: None,
                })
                .collect(),
            raw_output_contents: outputs.into_iter().map(|t| t.raw).collect(),
        });
        if let Ok(v) = rid.parse() {
            answer.metadata_mut().insert("x-request-id", v);
        }
        Ok(answer)
    }
}

/// Serves the service on `listener` until `shutdown` resolves (plaintext: it is a
/// local endpoint, like the REST form).
pub async fn serve(
    listener: tokio::net::TcpListener,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let cap = agent.config().max_body_bytes;
    let limits = agent.config().listener_limits();
    let tracker = algobay_net::Tracker::new(limits);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(Some(64))
        // A call must arrive and be answered within the body timeout plus a
        // run's time; dead peers are found by keep-alive pings.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .layer(algobay_proto::status::MalformedAsInvalidLayer)
        .add_service(
            pb::grpc_inference_service_server::GrpcInferenceServiceServer::new(InferenceService(
                agent,
            ))
            .max_decoding_message_size(cap),
        )
        .serve_with_incoming_shutdown(algobay_net::incoming(listener, tracker), shutdown)
        .await
}
