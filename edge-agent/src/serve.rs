//! Local serving: the active kit over HTTP on the device (localhost by default).
//!
//! - `GET /healthz`: the agent is up.
//! - `GET /v1/status`: the device, its active and previous kits, what it is doing.
//! - `POST /v1/infer[?input=NAME]`: the body is the input (an image, a WAV, text
//!   or JSON, as the kit's input port says); the answer is the kit's outputs as JSON.
//! - The Open Inference Protocol's REST form: `/v2/health/live`, `/v2/health/ready`,
//!   `/v2`, `/v2/models/{model}[/versions/{v}]`, `…/ready`, `…/infer` (JSON, or the
//!   binary tensor extension that Triton's clients use).
//! - `GET /metrics`: Prometheus text.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::agent::Agent;
use crate::oip::OipError;

/// The routes, over the agent.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/status", get(status))
        .route("/v1/infer", post(infer))
        .route("/v1/feedback", post(feedback))
        .route("/metrics", get(metrics))
        .route(
            "/v2/health/live",
            get(|| async { Json(serde_json::json!({"live": true})) }),
        )
        .route(
            "/v2/health/ready",
            get(|| async { Json(serde_json::json!({"ready": true})) }),
        )
        .route("/v2", get(server_metadata))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{model}/infer", post(oip_infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(oip_infer_v),
        )
        .with_state(agent)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tracker = algobay_net::Tracker::new(agent.config().listener_limits());
    algobay_net::serve_http(listener, router(agent), None, tracker, shutdown).await
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn status(State(agent): State<Arc<Agent>>) -> Json<serde_json::Value> {
    let st = agent.state();
    let (phase, message) = agent.phase();
    let (queued, queued_bytes) = agent.samples.len();
    let slot = |s: &Option<crate::state::Slot>| {
        s.as_ref().map(|s| {
            serde_json::json!({
                "reference": s.reference,
                "digest": s.digest,
                "deployment_id": s.deployment_id,
                "activated_unix": s.activated_unix,
            })
        })
    };
    Json(serde_json::json!({
        "device_id": agent.device_id(),
        "active": slot(&st.active),
        "previous": slot(&st.previous),
        "phase": phase,
        "message": message,
        "failed": st.failed,
        "requests": agent.stats.requests.load(std::sync::atomic::Ordering::Relaxed),
        "errors": agent.stats.errors.load(std::sync::atomic::Ordering::Relaxed),
        "samples": {"queued": queued, "bytes": queued_bytes, "dropped": agent.samples.dropped()},
        "recent_requests": agent.recent.len(),
    }))
}

#[derive(Debug, Deserialize)]
struct InferQuery {
    input: Option<String>,
}

/// The caller's W3C trace context, if it sent one.
fn traceparent(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get("traceparent").and_then(|v| v.to_str().ok())
}

/// The request's id, always the agent's own (unguessable: feedback names a
/// request by it), and the caller's `X-Request-Id`, checked, kept only as a
/// correlation id that comes back as `X-Correlation-Id`.
fn request_id(headers: &axum::http::HeaderMap) -> Result<(String, Option<String>), Response> {
    let theirs = match headers.get("x-request-id") {
        None => None,
        Some(v) => {
            let id = v.to_str().unwrap_or_default();
            crate::oip::check_request_id(id).map_err(oip_error)?;
            Some(id.to_owned())
        }
    };
    Ok((crate::oip::new_request_id(), theirs))
}

/// The answer's id headers: the agent's request id, the caller's correlation id.
fn id_headers(res: &mut Response, rid: &str, correlation: Option<&str>) {
    let h = res.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(rid) {
        h.insert("x-request-id", v);
    }
    if let Some(v) = correlation.and_then(|c| axum::http::HeaderValue::from_str(c).ok()) {
        h.insert("x-correlation-id", v);
    }
}

/// `POST /v1/feedback`: `{"request_id": "…", "label": "…"}`, the application's
/// ground truth for a recent request, named by the id the agent gave it. 202
/// with the sample id it became; 401 without the device's application key
/// (when `feedback_key` is set); 404 when the request is no longer (or never
/// was) among the recent ones; 409 when it has its feedback already; 400 for
/// a label that is not one of the kit's classes or holds control characters.
async fn feedback(
    State(agent): State<Arc<Agent>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(key) = agent
        .config()
        .feedback_key
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let same = given.len() == key.len()
            && given
                .bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return error(
                StatusCode::UNAUTHORIZED,
                "feedback: this device takes feedback only with its application key (Authorization: Bearer …)".into(),
            );
        }
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Feedback {
        request_id: String,
        label: serde_json::Value,
    }
    if body.len() > 64 << 10 {
        return too_large("the feedback", body.len(), 64 << 10);
    }
    let f: Feedback = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("feedback: {e} (expected {{\"request_id\": \"…\", \"label\": \"…\"}})"),
            )
        }
    };
    let label = match f.label {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "label: {} is not a string, number or boolean",
                    crate::oip::shown(&other.to_string())
                ),
            )
        }
    };
    if let Err(e) = crate::oip::check_request_id(&f.request_id) {
        return oip_error(e);
    }
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || a.feedback(&f.request_id, &label)).await {
        Ok(Ok(sample)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"sample_id": sample})),
        )
            .into_response(),
        Ok(Err(e)) => oip_error(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("feedback task: {e}"),
        ),
    }
}

/// Whether the body is JSON, by its content type.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            t == "application/json" || t.ends_with("+json")
        })
}

fn too_large(what: &str, got: usize, cap: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{what} of {got} bytes is over this device's limit of {cap} bytes"),
    )
}

/// Refuses at once a body whose declared length is over `cap`.
fn check_length(headers: &axum::http::HeaderMap, cap: usize) -> Result<(), Response> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > cap as u64 => Err(too_large("the body", n as usize, cap)),
        _ => Ok(()),
    }
}

/// Reads a body of at most `cap` bytes (memory grows with what arrives).
async fn read_body(body: Body, cap: usize) -> Result<Bytes, Response> {
    use tokio_stream::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > cap {
            return Err(too_large("the body", buf.len() + chunk.len(), cap));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

async fn infer(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<InferQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let cfg = agent.config();
    let cap = if is_json(&headers) {
        cfg.max_json_body_bytes
    } else {
        cfg.max_body_bytes
    };
    if let Err(r) = check_length(&headers, cap) {
        return r;
    }
    let (rid, correlation) = match request_id(&headers) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    // The body is read before the request takes a turn on the kit, so a slow
    // sender holds no turn; bodies being read at once are bounded apart.
    let body = match agent.read_body_bounded(body, cap, read_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let turn = match agent.admit("", "").await {
        Ok(t) => t,
        Err(e) => return oip_error(e),
    };
    let runner = agent.clone();
    let result = agent
        .run_admitted(turn, traceparent(&headers), &rid, move |active, trace| {
            let inputs = &active.kit.manifest().inputs;
            let port = match &q.input {
                Some(name) => inputs.iter().find(|p| &p.name == name).ok_or_else(|| {
                    OipError::BadRequest(format!("input `{name}` is not one of the kit's inputs"))
                })?,
                None if inputs.len() == 1 => &inputs[0],
                None => {
                    let names: Vec<&str> = inputs.iter().map(|p| p.name.as_str()).collect();
                    return Err(OipError::BadRequest(format!(
                        "the kit has several inputs ({}); name one with ?input=",
                        names.join(", ")
                    )));
                }
            };
            let value = algobay_runtime::golden::decode_input(&port.name, &port.ty, &body)
                .map_err(|e| OipError::BadRequest(e.to_string()))?;
            drop(body);
            let mut values = algobay_runtime::Values::new();
            values.insert(port.name.clone(), value);
            let out = runner.run_kit(active, trace, values)?;
            Ok(serde_json::Value::Object(
                out.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
            ))
        })
        .await;
    match result {
        Ok((_, out)) => {
            let mut res = Json(out).into_response();
            id_headers(&mut res, &rid, correlation.as_deref());
            res
        }
        Err(OipError::Failed(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => oip_error(e),
    }
}

fn oip_error(e: OipError) -> Response {
    let code = match &e {
        OipError::BadRequest(_) | OipError::Failed(_) => StatusCode::BAD_REQUEST,
        OipError::NotFound(_) => StatusCode::NOT_FOUND,
        OipError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OipError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        OipError::Conflict(_) => StatusCode::CONFLICT,
    };
    error(code, e.to_string())
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "algobay-agent",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

fn metadata(agent: &Agent, model: &str, version: &str) -> Response {
    let active = match agent.model(model, version) {
        Ok(a) => a,
        Err(e) => return oip_error(e),
    };
    let m = active.kit.manifest();
    let ports = |ports| {
        crate::oip::ports_metadata(ports)
            .into_iter()
            .map(|(name, datatype, shape)| {
                serde_json::json!({"name": name, "datatype": datatype, "shape": shape})
            })
            .collect::<Vec<_>>()
    };
    Json(serde_json::json!({
        "name": m.name.rsplit('/').next().unwrap_or(&m.name),
        "versions": [m.version],
        "platform": "algobay_kit",
        "inputs": ports(&m.inputs),
        "outputs": ports(&m.outputs),
        "parameters": {"kit": m.name, "kit_digest": active.slot.digest},
    }))
    .into_response()
}

async fn model_metadata(State(a): State<Arc<Agent>>, Path(model): Path<String>) -> Response {
    metadata(&a, &model, "")
}

async fn model_metadata_v(
    State(a): State<Arc<Agent>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    metadata(&a, &model, &version)
}

fn ready(agent: &Agent, model: &str, version: &str) -> Response {
    match agent.model(model, version) {
        Ok(_) => Json(serde_json::json!({"name": model, "ready": true})).into_response(),
        Err(e) => oip_error(e),
    }
}

async fn model_ready(State(a): State<Arc<Agent>>, Path(model): Path<String>) -> Response {
    ready(&a, &model, "")
}

async fn model_ready_v(
    State(a): State<Arc<Agent>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    ready(&a, &model, &version)
}

async fn oip_infer(
    State(a): State<Arc<Agent>>,
    Path(model): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    oip_infer_any(a, model, String::new(), headers, body).await
}

async fn oip_infer_v(
    State(a): State<Arc<Agent>>,
    Path((model, version)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    oip_infer_any(a, model, version, headers, body).await
}

/// An infer request in JSON, or JSON followed by binary tensor data (the
/// `Inference-Header-Content-Length` header says where the JSON ends).
async fn oip_infer_any(
    agent: Arc<Agent>,
    model: String,
    version: String,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let cfg = agent.config();
    let binary_ext = headers.contains_key("inference-header-content-length");
    let cap = if binary_ext {
        cfg.max_body_bytes
    } else {
        cfg.max_json_body_bytes
    };
    if let Err(r) = check_length(&headers, cap) {
        return r;
    }
    // Read before the request takes a turn (a slow sender holds none); parse in it.
    let body = match agent.read_body_bounded(body, cap, read_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let turn = match agent.admit(&model, &version).await {
        Ok(t) => t,
        Err(e) => return oip_error(e),
    };
    let json_len = match headers.get("inference-header-content-length") {
        Some(v) => match v.to_str().ok().and_then(|s| s.parse::<usize>().ok()) {
            Some(n) if n <= body.len() => n,
            _ => {
                return oip_error(OipError::BadRequest(format!(
                    "Inference-Header-Content-Length `{}` is not a length within the {}-byte body",
                    v.to_str().unwrap_or("?"),
                    body.len()
                )))
            }
        },
        None => body.len(),
    };
    if json_len > cfg.max_json_body_bytes {
        return too_large("the JSON header", json_len, cfg.max_json_body_bytes);
    }
    let parsed = match crate::oip::parse_http_infer(&body, json_len) {
        Ok(p) => p,
        Err(e) => return oip_error(e),
    };
    drop(body);
    let crate::oip::HttpInfer {
        tensors,
        wanted,
        binary_out,
        all_binary,
        id,
    } = parsed;
    // The caller's id is echoed as the protocol says, and kept as a
    // correlation id; the request's own id (what feedback names) is the agent's.
    let correlation = match &id {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    };
    if let Some(c) = &correlation {
        if let Err(e) = crate::oip::check_request_id(c) {
            return oip_error(e);
        }
    }
    let rid = crate::oip::new_request_id();
    let (active, outputs) = match agent
        .infer_in(turn, tensors, wanted, traceparent(&headers), &rid)
        .await
    {
        Ok(r) => r,
        Err(e) => return oip_error(e),
    };
    let m = active.kit.manifest();
    let mut tail = Vec::new();
    let outs: Vec<serde_json::Value> = outputs
        .iter()
        .map(|t| {
            if all_binary || binary_out.contains(&t.name) {
                tail.extend_from_slice(&t.raw);
                serde_json::json!({
                    "name": t.name, "datatype": t.datatype, "shape": t.shape,
                    "parameters": {"binary_data_size": t.raw.len()},
                })
            } else {
                let mut o = serde_json::json!({
                    "name": t.name, "datatype": t.datatype, "shape": t.shape,
                    "data": crate::oip::raw_to_json(t),
                });
                if crate::oip::output_form(t) == crate::oip::BytesForm::Base64 {
                    o["parameters"] = serde_json::json!({"content_type": "base64"});
                }
                o
            }
        })
        .collect();
    let mut doc = serde_json::json!({
        "model_name": m.name.rsplit('/').next().unwrap_or(&m.name),
        "model_version": m.version,
        "outputs": outs,
    });
    doc["id"] = id.unwrap_or(serde_json::Value::String(rid.clone()));
    let head = serde_json::to_vec(&doc).unwrap_or_default();
    if tail.is_empty() {
        let mut res = (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            head,
        )
            .into_response();
        id_headers(&mut res, &rid, correlation.as_deref());
        return res;
    }
    let len = head.len();
    let mut body = head;
    body.extend_from_slice(&tail);
    let mut res = (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (
                axum::http::HeaderName::from_static("inference-header-content-length"),
                len.to_string(),
            ),
        ],
        body,
    )
        .into_response();
    id_headers(&mut res, &rid, correlation.as_deref());
    res
}

/// Prometheus text: requests, errors, rejections, latency, the active kit.
async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    use std::fmt::Write as _;
    let h = agent.stats.histogram();
    let st = agent.state();
    let (kit, digest) = st
        .active
        .as_ref()
        .map(|s| (s.reference.clone(), s.digest.clone()))
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP algobay_agent_active_kit The kit serving on this device."
    );
    let _ = writeln!(out, "# TYPE algobay_agent_active_kit gauge");
    let _ = writeln!(
        out,
        "algobay_agent_active_kit{{kit=\"{kit}\",digest=\"{digest}\"}} {}",
        u8::from(st.active.is_some())
    );
    let _ = writeln!(
        out,
        "# HELP algobay_agent_requests_total Inference requests served, by outcome."
    );
    let _ = writeln!(out, "# TYPE algobay_agent_requests_total counter");
    let _ = writeln!(
        out,
        "algobay_agent_requests_total{{outcome=\"ok\"}} {}",
        h.count - h.errors
    );
    let _ = writeln!(
        out,
        "algobay_agent_requests_total{{outcome=\"error\"}} {}",
        h.errors
    );
    let _ = writeln!(
        out,
        "algobay_agent_requests_total{{outcome=\"overloaded\"}} {}",
        agent
            .stats
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP algobay_agent_request_seconds Inference latency, end to end."
    );
    let _ = writeln!(out, "# TYPE algobay_agent_request_seconds histogram");
    for (i, le) in crate::agent::LATENCY_BUCKETS_MS.iter().enumerate() {
        let _ = writeln!(
            out,
            "algobay_agent_request_seconds_bucket{{le=\"{}\"}} {}",
            le / 1000.0,
            h.buckets[i]
        );
    }
    let _ = writeln!(
        out,
        "algobay_agent_request_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(
        out,
        "algobay_agent_request_seconds_sum {}",
        h.sum_ms / 1000.0
    );
    let _ = writeln!(out, "algobay_agent_request_seconds_count {}", h.count);
    let _ = writeln!(
        out,
        "# HELP algobay_agent_batched_calls_total Model calls of the active kit run joined with other requests' calls."
    );
    let _ = writeln!(out, "# TYPE algobay_agent_batched_calls_total counter");
    let _ = writeln!(
        out,
        "algobay_agent_batched_calls_total {}",
        agent.active().map_or(0, |a| a.kit.batched_calls())
    );
    let _ = writeln!(
        out,
        "# HELP algobay_agent_trace_spans_dropped_total Trace spans dropped while the registry was unreachable, past the budget."
    );
    let _ = writeln!(
        out,
        "# TYPE algobay_agent_trace_spans_dropped_total counter"
    );
    let _ = writeln!(
        out,
        "algobay_agent_trace_spans_dropped_total {}",
        agent.telemetry_spans_dropped()
    );
    let _ = writeln!(
        out,
        "# HELP algobay_agent_blob_bytes_received_total Blob bytes pulled from the registry."
    );
    let _ = writeln!(
        out,
        "# TYPE algobay_agent_blob_bytes_received_total counter"
    );
    let _ = writeln!(
        out,
        "algobay_agent_blob_bytes_received_total {}",
        agent
            .bytes_received
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP algobay_agent_mirror_bytes_received_total Kit bytes taken from an OCI mirror.\n\
# TYPE algobay_agent_mirror_bytes_received_total counter\n\
algobay_agent_mirror_bytes_received_total {}",
        agent
            .mirror_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}
