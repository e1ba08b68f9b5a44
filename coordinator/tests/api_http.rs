//! Router-wide HTTP protections through the real router: CORS only for configured
//! origins, oversized bodies refused before they are read, and a time limit that
//! abandons a stuck request with a clear error.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::time::{Duration, Instant};

use api_common::{Api, Cred, api, api_with, customer, error_code};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use coordinator::api::ApiConfig;
use coordinator::bank::Scope;
use serde_json::json;

const WALLET_APP: &str = "https://wallet.example";

fn preflight(path: &str, origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-api-key,idempotency-key",
        )
        .body(Body::empty())
        .unwrap()
}

fn allow_origin(h: &HeaderMap) -> Option<&str> {
    h.get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

async fn with_cors() -> Api {
    api_with(ApiConfig {
        cors_allowed_origins: vec![WALLET_APP.parse().unwrap()],
        ..ApiConfig::default()
    })
    .await
}

#[tokio::test]
async fn cors_answers_configured_origins_only() {
    let a = with_cors().await;
    for path in ["/graphql", "/v1/payments/intraledger"] {
        let (s, h, _) = a.call(preflight(path, WALLET_APP)).await;
        assert!(s.is_success(), "{path}: {s}");
        assert_eq!(allow_origin(&h), Some(WALLET_APP), "{path}: {h:?}");
        let allowed = h
            .get("access-control-allow-headers")
            .unwrap()
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for needed in [
            "content-type",
            "authorization",
            "x-api-key",
            "idempotency-key",
        ] {
            assert!(allowed.contains(needed), "{allowed}");
        }
        assert!(
            h.get("access-control-allow-methods")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("POST")
        );

        // Another origin gets no CORS headers: the browser refuses the call.
        let (_, h, _) = a.call(preflight(path, "https://evil.example")).await;
        assert_eq!(allow_origin(&h), None, "{path}: {h:?}");
    }

    // An actual request from the allowed origin carries the header, errors included,
    // and clients may read the replay marker.
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v1/me")
        .header("origin", WALLET_APP)
        .header("authorization", format!("Bearer {}", alice.token))
        .body(Body::empty())
        .unwrap();
    let (s, h, _) = a.call(req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(allow_origin(&h), Some(WALLET_APP));
    assert!(
        h.get("access-control-expose-headers")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("idempotent-replayed")
    );
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v1/me")
        .header("origin", WALLET_APP)
        .body(Body::empty())
        .unwrap();
    let (s, h, _) = a.call(req).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(allow_origin(&h), Some(WALLET_APP));
    let req = Request::builder()
        .method(Method::GET)
        .uri("/healthz")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    let (s, h, _) = a.call(req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(allow_origin(&h), None);
}

#[tokio::test]
async fn no_origin_is_allowed_by_default() {
    let a = api().await;
    for origin in [WALLET_APP, "https://evil.example"] {
        let (s, h, _) = a.call(preflight("/graphql", origin)).await;
        assert_eq!(allow_origin(&h), None, "{h:?}");
        assert!(!s.is_success(), "no route answers OPTIONS: {s}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let a = api_with(ApiConfig {
        max_body_bytes: 4 * 1024,
        ..ApiConfig::default()
    })
    .await;
    let alice = customer(a.bank(), "alice@example.com", 1_000).await;
    let big = format!(
        "{{\"query\": \"{{ me {{ id }} }}\", \"padding\": \"{}\"}}",
        "x".repeat(5 * 1024)
    );
    // With a declared length (refused unread) and without one (a chunked body).
    for declared in [true, false] {
        let mut graphql = Request::builder()
            .method(Method::POST)
            .uri("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", alice.token));
        if declared {
            graphql = graphql.header("content-length", big.len());
        }
        let (s, _, v) = a.call(graphql.body(Body::from(big.clone())).unwrap()).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
        assert_eq!(error_code(&v).as_deref(), Some("PAYLOAD_TOO_LARGE"), "{v}");
    }

    let (s, _, v) = a
        .post(
            "/v1/payments/intraledger",
            Cred::Bearer(&alice.token),
            Some("big-1"),
            &big,
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["code"], "PAYLOAD_TOO_LARGE");
    // Refused before the idempotency middleware: the key was not claimed.
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM api_idempotency")
        .fetch_one(a.bank().ledger().pool())
        .await
        .unwrap();
    assert_eq!(claimed, 0);

    // A body under the bound goes through.
    let (s, v) = a
        .gql(Cred::Bearer(&alice.token), "{ me { id } }", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_stuck_request_times_out_with_a_clear_error() {
    // Long enough that a request after the blocker is gone finishes in time on a loaded
    // test machine (500 ms was not), short enough to keep the test quick.
    let a = api_with(ApiConfig {
        request_timeout: Duration::from_secs(2),
        ..ApiConfig::default()
    })
    .await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let key = api_common::api_key(a.bank(), &alice, &[Scope::Read]).await;

    // Another session holds the API-key table: authenticating a key has to wait.
    let mut blocker = a.bank().ledger().pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let started = Instant::now();
    let (s, v) = a.gql(Cred::Key(&key), "{ me { id } }", json!({})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(error_code(&v).as_deref(), Some("REQUEST_TIMEOUT"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (s, _, v) = a.get("/v1/me", Cred::Key(&key)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "REQUEST_TIMEOUT");

    // Requests that do not need the table are not held up meanwhile.
    let (s, _) = a
        .gql(Cred::Bearer(&alice.token), "{ me { id } }", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);

    blocker.rollback().await.unwrap();
    let (s, v) = a.gql(Cred::Key(&key), "{ me { id } }", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
