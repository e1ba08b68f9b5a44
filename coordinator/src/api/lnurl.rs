//! The LNURL-pay endpoints of users' Lightning addresses (LUD-06, LUD-12, LUD-16), without
//! authentication: whoever knows an address may ask for an invoice that pays it.
//!
//! - `GET /.well-known/lnurlp/{username}`: the payRequest;
//! - `GET /lnurlp/{username}/callback?amount=<msat>[&comment=..]`: `{"pr", "routes": []}`.
//!
//! Each callback is counted against the caller's network, in one budget with the GraphQL
//! invoices made on behalf of a recipient (`rate_limit.max_public_invoices`).
//!
//! Errors are LNURL's `{"status":"ERROR","reason":".."}`. LUD-01 gives status codes no
//! meaning for clients, so they are chosen for operators (4xx: the payer's mistake, 5xx:
//! ours). Every answer allows any origin (LUD-01: browser wallets).

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::errors::ApiError;
use super::{AppState, ClientAddr};
use crate::lnurl::{Lnurl, LnurlError};

impl From<&LnurlError> for ApiError {
    fn from(e: &LnurlError) -> ApiError {
        let (code, status) = match e {
            LnurlError::Bank(b) => return ApiError::from(b),
            LnurlError::InvalidTarget(_)
            | LnurlError::InsecureUrl
            | LnurlError::InvalidRequest(_) => ("INVALID_INPUT", 400),
            LnurlError::UnknownUser => ("NOT_FOUND", 404),
            LnurlError::AmountOutOfRange { .. } => ("LNURL_AMOUNT_OUT_OF_RANGE", 400),
            LnurlError::FractionalAmount => ("INVALID_AMOUNT", 400),
            LnurlError::Unreachable => ("LNURL_UNREACHABLE", 502),
            LnurlError::TooLarge | LnurlError::BadResponse(_) => ("LNURL_BAD_RESPONSE", 502),
            LnurlError::Service(_) => ("LNURL_SERVICE_ERROR", 422),
            LnurlError::InvoiceMismatch(_) => ("LNURL_INVOICE_MISMATCH", 502),
            LnurlError::NotConfigured => ("LNURL_UNAVAILABLE", 404),
        };
        let message = match e {
            LnurlError::AmountOutOfRange { min, max, .. } => format!(
                "amount must be between {} and {} msat",
                min.to_msat(),
                max.to_msat()
            ),
            // The messages name no internals: they are written for the payer.
            other => other.to_string().trim_start_matches("lnurl: ").to_owned(),
        };
        ApiError {
            code,
            message,
            http_status: status,
        }
    }
}

fn with_any_origin(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// LUD-06's error answer.
fn lnurl_error(e: &LnurlError) -> Response {
    let api = ApiError::from(e);
    if api.http_status >= 500 {
        tracing::warn!(error = %e, "LNURL endpoint failed");
    }
    error_answer(&api)
}

fn error_answer(api: &ApiError) -> Response {
    let body = serde_json::json!({ "status": "ERROR", "reason": api.message });
    with_any_origin((api.status(), Json(body)).into_response())
}

fn ok(body: serde_json::Value) -> Response {
    with_any_origin((StatusCode::OK, Json(body)).into_response())
}

fn service(app: &AppState) -> Result<&Lnurl, LnurlError> {
    app.lnurl.as_deref().ok_or(LnurlError::NotConfigured)
}

async fn pay_request(State(app): State<AppState>, Path(username): Path<String>) -> Response {
    let result = async {
        let lnurl = service(&app)?;
        lnurl.pay_request(&app.bank, &username).await
    }
    .await;
    match result {
        Ok(p) => ok(Lnurl::pay_request_json(&p)),
        Err(e) => lnurl_error(&e),
    }
}

/// The callback's query; the amount is read by hand so that a bad one gets an LNURL
/// error, not the framework's.
#[derive(Deserialize)]
struct CallbackQuery {
    amount: Option<String>,
    comment: Option<String>,
}

async fn callback(
    State(app): State<AppState>,
    Path(username): Path<String>,
    client: ClientAddr,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    // Anyone may ask for an invoice, so each request is counted against the caller's
    // network first (with the on-behalf GraphQL mutations: one budget for both).
    if app.lnurl.is_some()
        && let Err(e) = app.limiter.check_public_invoice(&client.0).await
    {
        return error_answer(&e);
    }
    let result =
        async {
            let lnurl = service(&app)?;
            let Ok(Query(q)) = query else {
                return Err(LnurlError::InvalidRequest("malformed query"));
            };
            let amount: u64 = q.amount.as_deref().and_then(|a| a.parse().ok()).ok_or(
                LnurlError::InvalidRequest("amount (millisatoshis, an integer) is required"),
            )?;
            lnurl
                .invoice(&app.bank, &username, amount, q.comment.as_deref())
                .await
        }
        .await;
    match result {
        Ok(pr) => ok(serde_json::json!({ "pr": pr, "routes": [] })),
        Err(e) => lnurl_error(&e),
    }
}

/// The LNURL routes (no authentication).
pub(crate) fn routes(app: AppState) -> Router {
    Router::new()
        .route("/.well-known/lnurlp/{username}", get(pay_request))
        .route("/lnurlp/{username}/callback", get(callback))
        .with_state(app)
}
