//! `GET /v1/health`: HSM reachable and logged in, database reachable.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use super::views::Health;

const DATABASE_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// Whether the service can sign now.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "health",
    responses(
        (status = 200, description = "HSM reachable, token logged in, database reachable", body = Health),
        (status = 503, description = "something is down; the fields say what", body = Health),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (hsm, database) = tokio::join!(state.hsm().health(), async {
        tokio::time::timeout(DATABASE_TIMEOUT, state.store().ping()).await
    });
    let mut code = None;
    let hsm = match hsm {
        Ok(()) => "ok".to_owned(),
        Err(fault) => {
            code = Some(fault.code().to_owned());
            fault.to_string()
        }
    };
    let database = match database {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: database");
            code.get_or_insert_with(|| "DATABASE_UNAVAILABLE".to_owned());
            "the database does not answer".to_owned()
        }
        Err(_) => {
            code.get_or_insert_with(|| "DATABASE_UNAVAILABLE".to_owned());
            format!("the database did not answer within {DATABASE_TIMEOUT:?}")
        }
    };
    let status = if code.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if code.is_none() { "ok" } else { "unavailable" }.to_owned(),
            hsm,
            database,
            code,
        }),
    )
}
