//! Router-wide HTTP protections: a time limit per request, a bound on request bodies, and
//! CORS for browser clients from configured origins only.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ApiError;

/// GraphQL clients get errors in GraphQL's shape; everything else the REST body.
fn reply(path: &str, e: &ApiError) -> Response {
    if path.ends_with("/graphql") {
        super::gql::error_response(e)
    } else {
        e.clone().into_response()
    }
}

/// Abandons a request that runs longer than `limit`. A WebSocket is not affected: its
/// upgrade answers at once and the connection then lives outside the request.
pub(crate) async fn time_limit(
    State(limit): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            // Dropping the handler is safe for the domain: a payment interrupted after
            // its PENDING row is finished by an instance's payment resumer, the ledger writer
            // completes a queued posting on its own, and an idempotency claim left open
            // is taken over after a minute.
            tracing::warn!(%path, ?limit, "request timed out");
            reply(&path, &ApiError::timeout())
        }
    }
}

/// Refuses a request body over `limit`: at once when its declared length is over, or
/// while reading it otherwise (a chunked body). Every handler reads whole bodies anyway,
/// so reading here first costs nothing extra.
pub(crate) async fn body_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return reply(&path, &ApiError::payload_too_large(limit));
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(_) => reply(&path, &ApiError::payload_too_large(limit)),
    }
}

/// CORS for the configured origins, or `None` (no CORS headers: browsers then refuse
/// every cross-origin call). Credentials travel in headers, never cookies, so
/// `Access-Control-Allow-Credentials` is not needed.
pub(crate) fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([HeaderName::from_static("idempotent-replayed")])
            .max_age(Duration::from_secs(600)),
    )
}
