//! `Idempotency-Key` on REST POSTs: the first request with a key runs and its response is
//! stored (in `api_idempotency`); a repeat with the same key and the same request gets the
//! stored response back (with `Idempotent-Replayed: true`) and changes nothing; the same
//! key with a different request is refused (409 `IDEMPOTENCY_CONFLICT`).
//!
//! Server errors (5xx) are not stored: the claim is released so that a retry runs again.
//! A claim left behind by a crash is taken over after a minute; that is safe because the
//! operations behind the POSTs are idempotent themselves (a payment carries the same key
//! into the domain, which replays it as `ALREADY_PAID`).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::errors::ApiError;
use super::{AppState, idempotency_key};
use crate::bank::Principal;

/// Largest request body accepted on a POST.
const MAX_BODY: usize = 64 * 1024;
/// Largest response body stored.
const MAX_RESPONSE: usize = 1024 * 1024;

/// Set by a handler whose response carries a secret: this copy is stored instead.
#[derive(Clone, Debug)]
pub(crate) struct RedactedBody(pub serde_json::Value);

enum Claim {
    Owned,
    Replay(StatusCode, serde_json::Value),
    InProgress,
    Mismatch,
}

async fn claim(
    app: &AppState,
    p: &Principal,
    key: &str,
    hash: &[u8],
) -> Result<Claim, sqlx::Error> {
    let pool = app.bank.ledger().pool();
    let owned = sqlx::query(
        "INSERT INTO api_idempotency (account_id, idempotency_key, request_hash) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (account_id, idempotency_key) DO UPDATE SET claimed_at = now() \
         WHERE api_idempotency.response_status IS NULL \
           AND api_idempotency.claimed_at < now() - interval '1 minute' \
           AND api_idempotency.request_hash = EXCLUDED.request_hash \
         RETURNING 1",
    )
    .bind(p.account_id.as_uuid())
    .bind(key)
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    if owned.is_some() {
        return Ok(Claim::Owned);
    }
    let row = sqlx::query(
        "SELECT request_hash, response_status, response_body FROM api_idempotency \
         WHERE account_id = $1 AND idempotency_key = $2",
    )
    .bind(p.account_id.as_uuid())
    .bind(key)
    .fetch_one(pool)
    .await?;
    let stored: Vec<u8> = row.try_get("request_hash")?;
    if stored != hash {
        return Ok(Claim::Mismatch);
    }
    let status: Option<i16> = row.try_get("response_status")?;
    let body: Option<serde_json::Value> = row.try_get("response_body")?;
    Ok(match status {
        None => Claim::InProgress,
        Some(s) => Claim::Replay(
            u16::try_from(s)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK),
            body.unwrap_or(serde_json::Value::Null),
        ),
    })
}

async fn complete(
    app: &AppState,
    p: &Principal,
    key: &str,
    status: StatusCode,
    body: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_idempotency SET response_status = $3, response_body = $4, \
           completed_at = now() WHERE account_id = $1 AND idempotency_key = $2",
    )
    .bind(p.account_id.as_uuid())
    .bind(key)
    .bind(i16::try_from(status.as_u16()).unwrap_or(500))
    .bind(body)
    .execute(app.bank.ledger().pool())
    .await?;
    Ok(())
}

async fn release(app: &AppState, p: &Principal, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM api_idempotency WHERE account_id = $1 AND idempotency_key = $2 \
           AND response_status IS NULL",
    )
    .bind(p.account_id.as_uuid())
    .bind(key)
    .execute(app.bank.ledger().pool())
    .await?;
    Ok(())
}

fn request_hash(method: &str, path: &str, body: &Bytes) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().to_vec()
}

/// The middleware on authenticated REST routes (after authentication).
pub(crate) async fn middleware(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let Some(p) = req.extensions().get::<Principal>().cloned() else {
        return ApiError::unauthenticated().into_response();
    };
    let key = match idempotency_key(req.headers()) {
        Ok(Some(k)) => k,
        Ok(None) | Err(_) => return ApiError::idempotency_key_required().into_response(),
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::invalid(format!("request body larger than {MAX_BODY} bytes"))
            .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let hash = request_hash(parts.method.as_str(), &path, &bytes);
    match claim(&app, &p, &key, &hash).await {
        Err(e) => ApiError::internal(&e).into_response(),
        Ok(Claim::Mismatch) => ApiError::idempotency_key_reused().into_response(),
        Ok(Claim::InProgress) => ApiError::request_in_progress().into_response(),
        Ok(Claim::Replay(status, body)) => {
            let mut r = (status, axum::Json(body)).into_response();
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        Ok(Claim::Owned) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (rparts, rbody) = response.into_parts();
            let Ok(rbytes) = axum::body::to_bytes(rbody, MAX_RESPONSE).await else {
                let _ = release(&app, &p, &key).await;
                return ApiError::internal(&"response too large to store").into_response();
            };
            let stored_result = if rparts.status.is_server_error() {
                release(&app, &p, &key).await
            } else {
                let stored = match rparts.extensions.get::<RedactedBody>() {
                    Some(r) => r.0.clone(),
                    None => serde_json::from_slice(&rbytes).unwrap_or(serde_json::Value::Null),
                };
                complete(&app, &p, &key, rparts.status, &stored).await
            };
            if let Err(e) = stored_result {
                // The operation happened; only its replay record is missing. A retry
                // within a minute sees "in progress", later it runs again and the
                // domain's own idempotency answers it.
                tracing::error!(error = %e, "storing an idempotent response failed");
            }
            Response::from_parts(rparts, Body::from(rbytes))
        }
    }
}
