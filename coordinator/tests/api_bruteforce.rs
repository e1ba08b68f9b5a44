//! Guessing attacks on one-time codes and the limits that stop them, written as the
//! attacks: many client addresses against one identity, a code guessed until it dies, two
//! instances that must share their counters, IPv6 clients rotating inside their /64, SMS
//! pumping into one country, a spoofed `X-Forwarded-For`, and a flood of invoices asked for
//! without a credential.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use api_common::{Api, customer};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use coordinator::api::{ApiConfig, RateLimitConfig};
use coordinator::bank::Username;
use coordinator::lnurl::LnurlConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A REST call from `peer`, with extra headers.
async fn call_from(
    router: &axum::Router,
    peer: &str,
    headers: &[(&str, &str)],
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    send_from(router, peer, headers, path, Some(body)).await
}

/// A POST with `body`, else a GET, from `peer`.
async fn send_from(
    router: &axum::Router,
    peer: &str,
    headers: &[(&str, &str)],
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
    let mut req = b.body(body).unwrap();
    let peer: SocketAddr = match peer.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, 40_000),
        Err(_) => peer.parse().unwrap(),
    };
    req.extensions_mut().insert(ConnectInfo(peer));
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, v)
}

fn limits(max_attempts: u32, per_day: u32) -> RateLimitConfig {
    RateLimitConfig {
        max_attempts,
        window: Duration::from_secs(3600),
        max_attempts_per_day: per_day,
        ..RateLimitConfig::default()
    }
}

async fn api_with_limits(rate_limit: RateLimitConfig) -> Api {
    api_common::api_with(ApiConfig {
        rate_limit,
        ..ApiConfig::default()
    })
    .await
}

fn wrong(code: &str, n: u32) -> String {
    // Six digits, never the right code.
    let mut guess = 100_000 + n;
    if guess.to_string() == code {
        guess += 1;
    }
    guess.to_string()
}

#[tokio::test]
async fn a_brute_force_from_many_addresses_against_one_identity_is_cut_off() {
    // The default limits: 10 attempts per identity per window, 20 per day.
    let a = api_common::api().await;
    customer(a.bank(), "alice@example.com", 0).await;
    let (s, _) = call_from(
        &a.router,
        "198.51.100.1",
        &[],
        "/v1/auth/code",
        json!({"email": "alice@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let code = common::last_code(a.bank(), "alice@example.com").await;

    let mut reached = 0;
    let mut refused = 0;
    // Every guess from a different address (a botnet): the per-address limit never trips.
    for n in 0..40u32 {
        let peer = format!("203.0.{}.{}", n / 200, n % 200 + 1);
        let (s, v) = call_from(
            &a.router,
            &peer,
            &[],
            "/v1/auth/code/confirm",
            json!({"email": "alice@example.com", "code": wrong(&code, n)}),
        )
        .await;
        match s {
            StatusCode::BAD_REQUEST => {
                assert_eq!(v["code"], "INVALID_CODE");
                reached += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(
        reached, 10,
        "only the identity's window of guesses reach the code"
    );
    assert_eq!(refused, 30);
    // Cut off: even the right code is not tried any more from a fresh address.
    let (s, _) = call_from(
        &a.router,
        "192.0.2.200",
        &[],
        "/v1/auth/code/confirm",
        json!({"email": "alice@example.com", "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_daily_cap_holds_when_the_window_would_allow_more() {
    let a = api_with_limits(limits(1_000, 7)).await;
    customer(a.bank(), "alice@example.com", 0).await;
    let mut reached = 0;
    for n in 0..20u32 {
        let (s, _) = call_from(
            &a.router,
            &format!("203.0.113.{}", n + 1),
            &[],
            "/v1/auth/login",
            json!({"email": "alice@example.com", "password": format!("guess number {n}")}),
        )
        .await;
        if s != StatusCode::TOO_MANY_REQUESTS {
            reached += 1;
        }
    }
    assert_eq!(reached, 7);
}

#[tokio::test]
async fn a_code_dies_after_five_wrong_guesses_even_when_the_right_one_follows() {
    let a = api_with_limits(limits(1_000, 1_000)).await;
    customer(a.bank(), "alice@example.com", 0).await;
    call_from(
        &a.router,
        "198.51.100.1",
        &[],
        "/v1/auth/code",
        json!({"email": "alice@example.com"}),
    )
    .await;
    let code = common::last_code(a.bank(), "alice@example.com").await;
    for n in 0..5 {
        let (s, v) = call_from(
            &a.router,
            "198.51.100.1",
            &[],
            "/v1/auth/code/confirm",
            json!({"email": "alice@example.com", "code": wrong(&code, n)}),
        )
        .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("INVALID_CODE"))
        );
    }
    let (s, v) = call_from(
        &a.router,
        "198.51.100.1",
        &[],
        "/v1/auth/code/confirm",
        json!({"email": "alice@example.com", "code": code}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_CODE")),
        "the right code, too late"
    );
    // A new code is needed, and works.
    call_from(
        &a.router,
        "198.51.100.1",
        &[],
        "/v1/auth/code",
        json!({"email": "alice@example.com"}),
    )
    .await;
    let fresh = common::last_code(a.bank(), "alice@example.com").await;
    let (s, v) = call_from(
        &a.router,
        "198.51.100.1",
        &[],
        "/v1/auth/code/confirm",
        json!({"email": "alice@example.com", "code": fresh}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn two_instances_on_one_database_share_their_counters() {
    let a = api_with_limits(limits(4, 1_000)).await;
    customer(a.bank(), "alice@example.com", 0).await;
    // A second API instance: its own limiter object, the same database.
    let b = coordinator::api::router(
        a.bank().clone(),
        ApiConfig {
            rate_limit: limits(4, 1_000),
            ..ApiConfig::default()
        },
    );
    let mut statuses = Vec::new();
    for n in 0..8u32 {
        let router = if n % 2 == 0 { &a.router } else { &b };
        let (s, _) = call_from(
            router,
            &format!("203.0.113.{}", n + 1),
            &[],
            "/v1/auth/login",
            json!({"email": "alice@example.com", "password": format!("guess number {n}")}),
        )
        .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429, 429, 429]);
}

#[tokio::test]
async fn ipv6_clients_are_counted_by_their_64() {
    let a = api_with_limits(limits(3, 1_000)).await;
    let mut statuses = Vec::new();
    // One host rotating through its /64, each time a new identity.
    for n in 0..5u32 {
        let (s, _) = call_from(
            &a.router,
            &format!("[2001:db8:1:2:{n:x}::{:x}]:4000", n + 7),
            &[],
            "/v1/auth/register",
            json!({"email": format!("u{n}@example.com")}),
        )
        .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
    // The neighbouring /64 is someone else.
    let (s, _) = call_from(
        &a.router,
        "2001:db8:1:3::1",
        &[],
        "/v1/auth/register",
        json!({"email": "v@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn sms_pumping_into_one_country_is_capped() {
    let a = api_with_limits(RateLimitConfig {
        max_sms_per_country: 3,
        ..RateLimitConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    // Different numbers, different addresses: only the country is shared.
    for n in 0..5u32 {
        let (s, _) = call_from(
            &a.router,
            &format!("203.0.113.{}", n + 1),
            &[],
            "/v1/auth/register",
            json!({"phone": format!("+22507000000{n:02}")}),
        )
        .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
    let sms: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notification_outbox WHERE channel = 'sms'")
            .fetch_one(a.bank().ledger().pool())
            .await
            .unwrap();
    assert_eq!(sms, 3);
    // Another country is not affected; e-mail is not counted as SMS.
    let (s, _) = call_from(
        &a.router,
        "203.0.113.50",
        &[],
        "/v1/auth/register",
        json!({"phone": "+41791234567"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call_from(
        &a.router,
        "203.0.113.51",
        &[],
        "/v1/auth/register",
        json!({"email": "x@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_limiter_key() {
    let a = api_common::api_with(ApiConfig {
        rate_limit: limits(2, 1_000),
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..ApiConfig::default()
    })
    .await;
    // An untrusted peer rotating X-Forwarded-For: all its attempts count against it.
    let mut statuses = Vec::new();
    for n in 0..4u32 {
        let xff = format!("192.0.2.{}", n + 1);
        let (s, _) = call_from(
            &a.router,
            "198.51.100.7",
            &[("x-forwarded-for", &xff)],
            "/v1/auth/register",
            json!({"email": format!("s{n}@example.com")}),
        )
        .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [201, 201, 429, 429]);
    // Through the trusted proxy, each forwarded client has its own key.
    let mut statuses = Vec::new();
    for n in 0..4u32 {
        let xff = format!("203.0.113.{}", n + 1);
        let (s, _) = call_from(
            &a.router,
            "10.0.0.1",
            &[("x-forwarded-for", &xff)],
            "/v1/auth/register",
            json!({"email": format!("t{n}@example.com")}),
        )
        .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 201]);
    // And one of those clients is limited like any other, whatever it prepends.
    let mut statuses = Vec::new();
    for n in 0..3u32 {
        let xff = format!("192.0.2.{}, 203.0.113.99", n + 100);
        let (s, _) = call_from(
            &a.router,
            "10.0.0.1",
            &[("x-forwarded-for", &xff)],
            "/v1/auth/register",
            json!({"email": format!("w{n}@example.com")}),
        )
        .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [201, 201, 429]);
}

const ON_BEHALF: &str = "mutation($input: LnInvoiceCreateOnBehalfOfRecipientInput!) {
  lnInvoiceCreateOnBehalfOfRecipient(input: $input) { errors { code } invoice { paymentHash } }
}";

/// The first error code of an invoice asked for from `peer` without a credential: by an
/// LNURL-pay callback, or by `lnInvoiceCreateOnBehalfOfRecipient`.
async fn public_invoice(a: &Api, peer: &str, via_lnurl: bool, wallet: &str) -> String {
    if via_lnurl {
        let (s, v) = send_from(
            &a.router,
            peer,
            &[],
            "/lnurlp/alice/callback?amount=2000",
            None,
        )
        .await;
        assert_eq!(v["status"], "ERROR", "{s}: {v}");
        return match s {
            StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED".into(),
            StatusCode::SERVICE_UNAVAILABLE => "LIGHTNING_UNAVAILABLE".into(),
            other => panic!("{other}: {v}"),
        };
    }
    let input = json!({"recipientWalletId": wallet, "amount": 2000});
    let (s, v) = call_from(
        &a.router,
        peer,
        &[],
        "/graphql",
        json!({"query": ON_BEHALF, "variables": {"input": input}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"]["lnInvoiceCreateOnBehalfOfRecipient"]["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

#[tokio::test]
async fn a_flood_of_invoices_without_a_credential_is_capped_per_network_on_every_api() {
    let a = api_common::api_with(ApiConfig {
        rate_limit: RateLimitConfig {
            max_public_invoices: 4,
            public_invoice_window: Duration::from_secs(3600),
            ..RateLimitConfig::default()
        },
        lnurl: LnurlConfig {
            public_url: Some("https://bank.example".parse().unwrap()),
            ..LnurlConfig::default()
        },
        ..ApiConfig::default()
    })
    .await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    a.bank()
        .set_username(&alice.principal, &"alice".parse::<Username>().unwrap())
        .await
        .unwrap();
    let wallet = alice.wallet.to_string();
    // No node here: a request that passes the limit reaches the bank and is told so.
    // Two through GraphQL and two through LNURL, each from another address of one /64:
    // one budget for both APIs, one for the whole network.
    let mut codes = Vec::new();
    for n in 0..6u32 {
        let peer = format!("2001:db8:7:7::{:x}", n + 1);
        codes.push(public_invoice(&a, &peer, n % 2 == 1, &wallet).await);
    }
    let reached = "LIGHTNING_UNAVAILABLE";
    let limited = "RATE_LIMITED";
    assert_eq!(
        codes,
        [reached, reached, reached, reached, limited, limited],
        "the fifth and sixth are refused"
    );
    // Another network still gets its invoices: a flood from one does not stop an address.
    assert_eq!(
        public_invoice(&a, "198.51.100.20", true, &wallet).await,
        reached
    );
    assert_eq!(
        public_invoice(&a, "198.51.100.20", false, &wallet).await,
        reached
    );
    // The recipient's own, authenticated invoices are not counted against the network.
    let (s, v) = call_from(
        &a.router,
        "2001:db8:7:7::99",
        &[("authorization", &format!("Bearer {}", alice.token))],
        "/graphql",
        json!({
            "query": "mutation($input: LnInvoiceCreateInput!) { lnInvoiceCreate(input: $input) { errors { code } } }",
            "variables": {"input": {"walletId": wallet, "amount": 2000}},
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"]["lnInvoiceCreate"]["errors"][0]["code"], reached,
        "{v}"
    );
}
