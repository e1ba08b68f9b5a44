//! `GET /healthz` (liveness) and `GET /readyz` (readiness): unauthenticated, never rate
//! limited, in the REST routing table and its OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;

use crate::ops::{Readiness, ReadinessReport};

/// Liveness: `200 ok` while the process serves requests (restart it otherwise).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves requests", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every dependency this instance needs (database, migrations, ledger writer,
/// the chain source when on-chain is configured). `503` names each failing check and why.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = ReadinessReport),
        (status = 503, description = "Not ready: the failing checks", body = ReadinessReport)))]
async fn readyz(State(readiness): State<Arc<Readiness>>) -> Response {
    let report = readiness.run().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

#[derive(OpenApi)]
#[openapi(paths(healthz, readyz))]
pub(crate) struct HealthDoc;

/// The probe routes over `readiness`, on their own for an instance that is not serving
/// the API yet (waiting for its migrations).
pub fn health_routes(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}
