//! REST `/v1` through the real router: reads, sends with stored idempotent replay, the
//! authorization matrix, API keys, validation and account status.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{Cred, api, api_key, balance, customer, send_body, send_status};
use axum::http::StatusCode;
use coordinator::bank::{AccountStatus, Actor, Scope};
use serde_json::{Value, json};

#[tokio::test]
async fn reads_me_wallets_limits_and_history() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 7_000).await;
    let auth = Cred::Bearer(&alice.token);
    let (s, _, v) = a.get("/v1/me", auth).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], alice.account.to_string());
    assert_eq!(v["level"], 0);
    assert_eq!(v["status"], "ACTIVE");
    let (s, _, v) = a.get("/v1/wallets", auth).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["balance_sats"], 7_000);
    assert_eq!(v[0]["currency"], "BTC");
    let (s, _, v) = a.get(&format!("/v1/wallets/{}", alice.wallet), auth).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], alice.wallet.to_string());
    let (s, _, v) = a.get("/v1/limits", auth).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["internal_send"]["total_sats"], 100_000);
    assert_eq!(v["internal_send"]["remaining_sats"], 100_000);
    assert_eq!(v["internal_send"]["interval_seconds"], 86_400);
    let (s, _, v) = a
        .get(
            &format!("/v1/wallets/{}/transactions?first=5", alice.wallet),
            auth,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["transactions"][0]["direction"], "RECEIVE");
    assert_eq!(v["transactions"][0]["amount_sats"], 7_000);
    assert_eq!(v["has_next_page"], false);
    let (s, _, v) = a.get("/v1/openapi.json", Cred::None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["paths"]["/v1/me"].is_object());
}

#[tokio::test]
async fn send_needs_an_idempotency_key_and_a_repeat_replays_the_stored_response() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);
    let body = send_body(&alice.wallet, &bob.wallet, 2_500);

    let (s, _, v) = a.send_via_rest(auth, None, &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "IDEMPOTENCY_KEY_REQUIRED");
    assert_eq!(balance(a.bank(), alice.wallet).await, 10_000);

    let (s, h, first) = a.send_via_rest(auth, Some("rent-2026-11"), &body).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "SUCCESS");
    assert_eq!(first["transaction"]["direction"], "SEND");
    assert_eq!(first["transaction"]["amount_sats"], 2_500);
    assert!(h.get("idempotent-replayed").is_none());

    let (s, h, again) = a.send_via_rest(auth, Some("rent-2026-11"), &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again, first, "the stored response comes back unchanged");
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(balance(a.bank(), alice.wallet).await, 7_500);
    assert_eq!(balance(a.bank(), bob.wallet).await, 2_500);

    // The same key with another body is refused and moves nothing.
    let other = send_body(&alice.wallet, &bob.wallet, 1);
    let (s, _, v) = a.send_via_rest(auth, Some("rent-2026-11"), &other).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["code"], "IDEMPOTENCY_CONFLICT");

    // A refused payment is stored too: its replay gives the same error.
    let too_much = send_body(&alice.wallet, &bob.wallet, 1_000_000);
    let (s, _, v1) = a.send_via_rest(auth, Some("big"), &too_much).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, h, v2) = a.send_via_rest(auth, Some("big"), &too_much).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v1, v2);
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");

    // Keys are per account: Bob may use the same key for his own payment.
    let back = send_body(&bob.wallet, &alice.wallet, 500);
    let (s, _, v) = a
        .send_via_rest(Cred::Bearer(&bob.token), Some("rent-2026-11"), &back)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "SUCCESS");

    // By username.
    a.bank()
        .set_username(&bob.principal, &"bob".parse().unwrap())
        .await
        .unwrap();
    let by_name = json!({"wallet_id": alice.wallet.to_string(), "recipient_username": "bob", "amount_sats": 100}).to_string();
    let (s, _, v) = a.send_via_rest(auth, Some("k3"), &by_name).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["transaction"]["counterparty_username"], "bob");
    assert_eq!(balance(a.bank(), alice.wallet).await, 7_900);
    assert_eq!(balance(a.bank(), bob.wallet).await, 2_100);
}

#[tokio::test]
async fn authorization_matrix() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let mallory = customer(a.bank(), "mallory@example.com", 0).await;
    let m = Cred::Bearer(&mallory.token);

    // Mallory can neither see nor spend Alice's wallet.
    let (s, _, v) = a.get(&format!("/v1/wallets/{}", alice.wallet), m).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _, _) = a
        .get(&format!("/v1/wallets/{}/transactions", alice.wallet), m)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, v) = a
        .send_via_rest(
            m,
            Some("steal"),
            &send_body(&alice.wallet, &mallory.wallet, 9_000),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // No credential, a bad one, or two at once.
    for path in ["/v1/me", "/v1/wallets", "/v1/limits", "/v1/api-keys"] {
        let (s, _, v) = a.get(path, Cred::None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(v["code"], "NOT_AUTHENTICATED");
        let (s, _, _) = a.get(path, Cred::Bearer("sess_nope")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (s, _, _) = a
        .send_via_rest(
            Cred::None,
            Some("k"),
            &send_body(&alice.wallet, &mallory.wallet, 1),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Scopes.
    let read = api_key(a.bank(), &alice, &[Scope::Read]).await;
    let write = api_key(a.bank(), &alice, &[Scope::Write]).await;
    let receive = api_key(a.bank(), &alice, &[Scope::Receive]).await;
    let (s, _, _) = a.get("/v1/me", Cred::Key(&read)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, v) = a
        .send_via_rest(
            Cred::Key(&read),
            Some("r1"),
            &send_body(&alice.wallet, &mallory.wallet, 1),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "NOT_AUTHORIZED");
    let (s, _, _) = a.get("/v1/wallets", Cred::Key(&write)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, v) = a
        .send_via_rest(
            Cred::Key(&write),
            Some("w1"),
            &send_body(&alice.wallet, &mallory.wallet, 1),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["transaction"].is_null(),
        "a write-only key does not read the history back"
    );
    for path in ["/v1/me", "/v1/wallets", "/v1/limits"] {
        let (s, _, _) = a.get(path, Cred::Key(&receive)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    let (s, _, _) = a
        .send_via_rest(
            Cred::Key(&receive),
            Some("x1"),
            &send_body(&alice.wallet, &mallory.wallet, 1),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(balance(a.bank(), alice.wallet).await, 9_999);
    assert_eq!(balance(a.bank(), mallory.wallet).await, 1);
}

#[tokio::test]
async fn api_keys_are_made_from_sessions_and_their_secret_is_never_replayed() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);
    let body =
        json!({"name": "shop", "scopes": ["read", "receive"], "expire_in_days": 7}).to_string();
    let (s, _, v) = a.post("/v1/api-keys", auth, Some("key-1"), &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    let id = v["api_key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["api_key"]["scopes"], json!(["read", "receive"]));
    assert!(v["api_key"]["last_used_at"].is_null(), "{v}");
    let (s, _, _) = a.get("/v1/me", Cred::Key(&secret)).await;
    assert_eq!(s, StatusCode::OK);
    // The listing shows when the key was last used.
    let (_, _, v) = a.get("/v1/api-keys", auth).await;
    assert!(v[0]["last_used_at"].is_string(), "{v}");

    let (s, h, replay) = a.post("/v1/api-keys", auth, Some("key-1"), &body).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(replay["api_key"]["id"], id.as_str());
    assert!(
        replay["secret"].is_null(),
        "the secret is not stored: {replay}"
    );
    let stored: String = sqlx::query_scalar("SELECT response_body::text FROM api_idempotency")
        .fetch_one(a.bank().ledger().pool())
        .await
        .unwrap();
    assert!(!stored.contains(&secret));

    // A key cannot make keys.
    let (s, _, v) = a
        .post(
            "/v1/api-keys",
            Cred::Key(&secret),
            Some("key-2"),
            &json!({"name": "x", "scopes": ["read"]}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    for bad in [
        json!({"name": "", "scopes": ["read"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["admin"]}),
        json!({"name": "x", "scopes": ["read"], "expire_in_days": 0}),
        json!({"name": "x", "scopes": ["read"], "colour": "red"}),
    ]
    .into_iter()
    .enumerate()
    {
        let (i, bad) = bad;
        let (s, _, v) = a
            .post(
                "/v1/api-keys",
                auth,
                Some(&format!("bad-{i}")),
                &bad.to_string(),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["code"], "INVALID_INPUT");
    }
    let (_, _, v) = a.get("/v1/api-keys", auth).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "bad requests made no keys");

    let (s, _, v) = a
        .post(&format!("/v1/api-keys/{id}/revoke"), auth, Some("rv-1"), "")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].is_string());
    let (s, _, _) = a.get("/v1/me", Cred::Key(&secret)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = a
        .post(
            &format!("/v1/api-keys/{}/revoke", coordinator::ApiKeyId::new()),
            auth,
            Some("rv-2"),
            "",
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_get_specific_errors_and_change_nothing() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);
    let w = alice.wallet.to_string();
    let b = bob.wallet.to_string();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!("not an object"),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": b, "amount_sats": 1.5}),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": b, "amount_sats": -1}),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": b, "amount_sats": 0}),
            StatusCode::BAD_REQUEST,
            "INVALID_AMOUNT",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": b, "amount_sats": 3_000_000_000_000_000_u64}),
            StatusCode::BAD_REQUEST,
            "INVALID_AMOUNT",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": b, "recipient_username": "bob", "amount_sats": 1}),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            json!({"wallet_id": "nope", "recipient_wallet_id": b, "amount_sats": 1}),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": w, "amount_sats": 1}),
            StatusCode::BAD_REQUEST,
            "SELF_PAYMENT",
        ),
        (
            json!({"wallet_id": w, "recipient_username": "nobody_here", "amount_sats": 1}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": b, "amount_sats": 1, "fee": 0}),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            json!({"wallet_id": w, "recipient_wallet_id": b, "amount_sats": 20_000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INSUFFICIENT_BALANCE",
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let (s, _, v) = a
            .send_via_rest(auth, Some(&format!("bad-{i}")), &body.to_string())
            .await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{body}: {v}");
    }
    let (s, _, v) = a.get("/v1/wallets/not-a-uuid", auth).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_INPUT"))
    );
    let (s, _, v) = a
        .get(&format!("/v1/wallets/{w}/transactions?first=1000"), auth)
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_INPUT"))
    );
    let (s, _, v) = a
        .send_via_rest(auth, Some(&"k".repeat(201)), &send_body(&w, &b, 1))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("IDEMPOTENCY_KEY_REQUIRED"))
    );
    let (s, _, v) = a
        .post(
            "/v1/me/username",
            auth,
            Some("u1"),
            &json!({"username": "1bad"}).to_string(),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_INPUT"))
    );
    assert_eq!(balance(a.bank(), alice.wallet).await, 10_000);
    assert_eq!(balance(a.bank(), bob.wallet).await, 0);
    assert!(
        a.bank()
            .me(&alice.principal)
            .await
            .unwrap()
            .username
            .is_none()
    );
}

#[tokio::test]
async fn locked_accounts_cannot_send_and_usernames_are_set_once() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);
    let (s, _, v) = a
        .post(
            "/v1/me/username",
            auth,
            Some("u1"),
            &json!({"username": "Alice"}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["username"], "alice");
    let (s, _, v) = a
        .post(
            "/v1/me/username",
            auth,
            Some("u2"),
            &json!({"username": "alice2"}).to_string(),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("USERNAME_ALREADY_SET"))
    );
    let (s, _, v) = a
        .post(
            "/v1/me/username",
            Cred::Bearer(&bob.token),
            Some("u3"),
            &json!({"username": "alice"}).to_string(),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("USERNAME_TAKEN"))
    );

    a.bank()
        .set_status(
            Actor::System,
            alice.account,
            AccountStatus::Locked,
            "court order",
        )
        .await
        .unwrap();
    let (s, _, v) = a
        .send_via_rest(auth, Some("p1"), &send_body(&alice.wallet, &bob.wallet, 10))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ACCOUNT_NOT_ACTIVE")),
        "{v}"
    );
    assert_eq!(v["message"], "account is LOCKED");
    assert_eq!(balance(a.bank(), alice.wallet).await, 10_000);
}

#[tokio::test]
async fn concurrent_repeats_of_one_payment_move_money_once() {
    let a = std::sync::Arc::new(api().await);
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let body = send_body(&alice.wallet, &bob.wallet, 3_000);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (a, token, body) = (a.clone(), alice.token.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            a.send_via_rest(Cred::Bearer(&token), Some("same-key"), &body)
                .await
        }));
    }
    // The same over GraphQL, with its own key.
    for _ in 0..8 {
        let (a, token) = (a.clone(), alice.token.clone());
        let input = api_common::send_input(alice.wallet, bob.wallet, 2_000);
        tasks.push(tokio::spawn(async move {
            let (s, v) = a
                .send_via_graphql_keyed(Cred::Bearer(&token), "gql-key", input)
                .await;
            (s, axum::http::HeaderMap::new(), v)
        }));
    }
    for t in tasks {
        let (s, _, v) = t.await.unwrap();
        let ok = match v.get("data") {
            Some(_) => matches!(send_status(&v), Some("SUCCESS" | "ALREADY_PAID")),
            None => {
                (s == StatusCode::OK && v["status"] == "SUCCESS")
                    || (s == StatusCode::CONFLICT && v["code"] == "REQUEST_IN_PROGRESS")
            }
        };
        assert!(ok, "{s}: {v}");
    }
    assert_eq!(balance(a.bank(), alice.wallet).await, 5_000);
    assert_eq!(balance(a.bank(), bob.wallet).await, 5_000);
    assert!(a.bank().ledger().verify().await.unwrap().is_ok());
}
