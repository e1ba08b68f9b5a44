//! What every HTTP request leaves behind: an id (taken from a well-formed `x-request-id`,
//! otherwise a new UUID) returned in the response, a span carrying it with the method and
//! route, a log line, and the request metrics. Labels are route templates or GraphQL root
//! fields of the schema: never a raw path or client-chosen text, so their set is bounded.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id header.
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept from a client.
const MAX_ID_LEN: usize = 64;

/// The operation a request was, as a metrics label; put in the response's extensions by
/// the route layer (REST: `GET /v1/wallets/{wallet_id}`) or the GraphQL handlers
/// (`graphql:userLogin`).
#[derive(Clone, Debug)]
pub(crate) struct Operation(pub String);

/// A client's id is kept only when it is short and made of safe characters (it lands in
/// logs, which must not be forgeable with newlines or control characters).
fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The outermost layer: id, span, log line, metrics.
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = tracing::field::Empty,
        request_id = %id,
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let operation = response
        .extensions()
        .get::<Operation>()
        .map_or_else(|| "unmatched".to_owned(), |o| o.0.clone());
    span.record("route", operation.as_str());
    let status = response.status();
    let outcome = if status.is_server_error() {
        "server_error"
    } else if status.is_client_error() {
        "client_error"
    } else {
        "ok"
    };
    metrics::counter!(
        "bastion_http_requests_total",
        "operation" => operation.clone(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!("bastion_http_request_duration_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "request"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    response
}

/// A route layer: labels the response with the matched route template, unless the
/// handler named a finer operation (GraphQL).
pub(crate) async fn label_route(req: Request, next: Next) -> Response {
    let label = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| format!("{} {}", req.method(), p.as_str()));
    let mut response = next.run(req).await;
    if let Some(label) = label
        && response.extensions().get::<Operation>().is_none()
    {
        response.extensions_mut().insert(Operation(label));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_safe_ids_are_kept() {
        assert!(well_formed("abc-123_X.y:z"));
        assert!(well_formed(&"a".repeat(64)));
        assert!(!well_formed(&"a".repeat(65)));
        assert!(!well_formed(""));
        assert!(!well_formed("a b"));
        assert!(!well_formed("a\nforged=line"));
        assert!(!well_formed("ä"));
    }
}
