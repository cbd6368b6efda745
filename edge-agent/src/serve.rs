//! Local serving: the active kit over HTTP on the device (localhost by default).
//!
//! - `GET /healthz`: the agent is up.
//! - `GET /v1/status`: the device, its active and previous kits, what it is doing.
//! - `POST /v1/infer[?input=NAME]`: the body is the input (an image, a WAV, text
//!   or JSON, as the kit's input port says); the answer is the kit's outputs as JSON.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::agent::Agent;

/// The routes, over the agent.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/status", get(status))
        .route("/v1/infer", post(infer))
        .with_state(agent)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(agent))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn status(State(agent): State<Arc<Agent>>) -> Json<serde_json::Value> {
    let st = agent.state();
    let (phase, message) = agent.phase();
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
    }))
}

#[derive(Debug, Deserialize)]
struct InferQuery {
    input: Option<String>,
}

async fn infer(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<InferQuery>,
    body: Bytes,
) -> Response {
    let Some(active) = agent.active() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no kit is active on this device".into(),
        );
    };
    let inputs = &active.kit.manifest().inputs;
    let port = match &q.input {
        Some(name) => inputs.iter().find(|p| &p.name == name),
        None if inputs.len() == 1 => inputs.first(),
        None => {
            let names: Vec<&str> = inputs.iter().map(|p| p.name.as_str()).collect();
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the kit has several inputs ({}); name one with ?input=",
                    names.join(", ")
                ),
            );
        }
    };
    let Some(port) = port.cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "input `{}` is not one of the kit's inputs",
                q.input.unwrap_or_default()
            ),
        );
    };
    let started = Instant::now();
    let a = agent.clone();
    let result = tokio::task::spawn_blocking(move || {
        let value = algobay_runtime::golden::decode_input(&port.name, &port.ty, &body)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let mut values = algobay_runtime::Values::new();
        values.insert(port.name.clone(), value);
        active
            .kit
            .run(values)
            .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
    })
    .await
    .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())));
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    a.stats.record(ms, result.is_ok());
    match result {
        Ok(out) => {
            let shown: serde_json::Map<_, _> =
                out.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            Json(serde_json::Value::Object(shown)).into_response()
        }
        Err((code, message)) => error(code, message),
    }
}
