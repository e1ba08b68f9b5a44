//! REST registration and login (`/v1/auth`) through the real router: the whole flow from
//! registration to logout, specific errors that write nothing, wrong passwords and
//! codes, rate limits shared with GraphQL, and what a repeated request does.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{Api, Cred, api, api_key, api_with, customer, strict_limits};
use axum::http::StatusCode;
use common::last_code;
use coordinator::bank::Scope;
use serde_json::{Value, json};

const PASSWORD: &str = "a long password";

async fn count(a: &Api, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(a.bank().ledger().pool())
        .await
        .unwrap()
}

async fn post(a: &Api, path: &str, body: Value) -> (StatusCode, axum::http::HeaderMap, Value) {
    a.post(path, Cred::None, None, &body.to_string()).await
}

#[tokio::test]
async fn register_confirm_login_use_the_token_and_log_out() {
    let a = api().await;
    let (s, _, v) = post(
        &a,
        "/v1/auth/register",
        json!({"email": "Alice@Example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v, json!({"status": "CODE_SENT"}));

    // Before the code is confirmed there is no password at all.
    let login = json!({"email": "alice@example.com", "password": PASSWORD});
    let (s, _, v) = post(&a, "/v1/auth/login", login.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["code"], "INVALID_CREDENTIALS");

    let code = last_code(a.bank(), "alice@example.com").await;
    let (s, h, v) = post(
        &a,
        "/v1/auth/code/confirm",
        json!({"email": "alice@example.com", "code": code, "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_at"].is_string());
    let first = v["token"].as_str().unwrap().to_owned();
    assert!(first.starts_with("sess_"));

    let (s, _, me) = a.get("/v1/me", Cred::Bearer(&first)).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["status"], "ACTIVE");
    let (s, _, wallets) = a.get("/v1/wallets", Cred::Bearer(&first)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(wallets[0]["id"], me["default_wallet_id"]);

    let (s, h, v) = post(&a, "/v1/auth/login", login).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(h["cache-control"], "no-store");
    let second = v["token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    let (s, _, v) = a
        .post("/v1/auth/logout", Cred::Bearer(&first), None, "")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _, v) = a.get("/v1/me", Cred::Bearer(&first)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "NOT_AUTHENTICATED");
    let (s, _, v) = a.get("/v1/me", Cred::Bearer(&second)).await;
    assert_eq!(s, StatusCode::OK, "the other session lives on");
    assert_eq!(v["id"], me["id"]);

    // A login code: requested, delivered, confirmed.
    let (s, _, v) = post(&a, "/v1/auth/code", json!({"email": "alice@example.com"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "CODE_SENT");
    let code = last_code(a.bank(), "alice@example.com").await;
    let (s, _, v) = post(
        &a,
        "/v1/auth/code/confirm",
        json!({"email": "alice@example.com", "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, v) = a
        .get("/v1/me", Cred::Bearer(v["token"].as_str().unwrap()))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], me["id"], "the same account, not a new one");
}

#[tokio::test]
async fn phone_registration_works_with_the_outbox() {
    let a = api().await;
    let (s, _, v) = post(
        &a,
        "/v1/auth/register",
        json!({"phone": "+41 79 123 45 67"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let code = last_code(a.bank(), "+41791234567").await;
    let (s, _, v) = post(
        &a,
        "/v1/auth/code/confirm",
        json!({"phone": "+41791234567", "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn an_unknown_identity_gets_the_same_code_answer_and_no_message() {
    let a = api().await;
    let (s, _, v) = post(&a, "/v1/auth/code", json!({"email": "nobody@example.com"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "CODE_SENT");
    assert_eq!(count(&a, "notification_outbox").await, 0);
}

#[tokio::test]
async fn bad_input_gives_specific_errors_and_writes_nothing() {
    let a = api().await;
    let cases: [(&str, &str, &str); 11] = [
        (
            "/v1/auth/register",
            r#"{"email": "a@example.com", "phone": "+41791234567"}"#,
            "give exactly one of email and phone",
        ),
        (
            "/v1/auth/register",
            r#"{}"#,
            "give exactly one of email and phone",
        ),
        (
            "/v1/auth/register",
            r#"{"email": "not an address"}"#,
            "invalid email",
        ),
        ("/v1/auth/register", r#"{"phone": "12"}"#, "invalid phone"),
        // The password is chosen at the confirmation, by the identity's proven owner.
        (
            "/v1/auth/register",
            r#"{"email": "a@example.com", "password": "a long password"}"#,
            "unknown field `password`",
        ),
        (
            "/v1/auth/code/confirm",
            r#"{"email": "a@example.com", "code": "123456", "password": "short"}"#,
            "invalid password",
        ),
        (
            "/v1/auth/code/confirm",
            r#"{"email": "a@example.com"}"#,
            "missing field `code`",
        ),
        (
            "/v1/auth/register",
            r#"{"email": "a@example.com", "admin": true}"#,
            "unknown field `admin`",
        ),
        ("/v1/auth/register", "{not json", "invalid JSON body"),
        (
            "/v1/auth/code",
            r#"{"email": "a@example.com", "phone": "+41791234567"}"#,
            "give exactly one of email and phone",
        ),
        (
            "/v1/auth/login",
            r#"{"email": "a@example.com", "password": 4242424242}"#,
            "wrong type",
        ),
    ];
    for (path, body, needle) in cases {
        let (s, _, v) = a.post(path, Cred::None, None, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        assert_eq!(v["code"], "INVALID_INPUT", "{path} {body}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "{path} {body}: {message:?} lacks {needle:?}"
        );
        assert!(!message.contains("a long password"), "{message}");
        assert!(
            !message.contains("4242424242"),
            "a password is echoed: {message}"
        );
    }
    assert_eq!(count(&a, "users").await, 0);
    assert_eq!(count(&a, "one_time_codes").await, 0);
    assert_eq!(count(&a, "notification_outbox").await, 0);

    // Registered but unconfirmed: registering again sends a new code (an unconfirmed
    // registration never blocks its owner); once confirmed: refused, no message.
    let body = json!({"email": "a@example.com"});
    assert_eq!(
        post(&a, "/v1/auth/register", body.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        post(&a, "/v1/auth/register", body.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(count(&a, "users").await, 1);
    assert_eq!(count(&a, "notification_outbox").await, 2);
    let code = last_code(a.bank(), "a@example.com").await;
    let (s, _, v) = post(
        &a,
        "/v1/auth/code/confirm",
        json!({"email": "a@example.com", "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, v) = post(&a, "/v1/auth/register", body).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "IDENTITY_TAKEN");
    assert_eq!(count(&a, "users").await, 1);
    assert_eq!(count(&a, "notification_outbox").await, 2);
}

#[tokio::test]
async fn wrong_password_unknown_identity_and_wrong_code_are_refused() {
    let a = api().await;
    customer(a.bank(), "alice@example.com", 0).await;
    let (s, _, wrong) = post(
        &a,
        "/v1/auth/login",
        json!({"email": "alice@example.com", "password": "not the password"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{wrong}");
    assert_eq!(wrong["code"], "INVALID_CREDENTIALS");
    let (s, _, unknown) = post(
        &a,
        "/v1/auth/login",
        json!({"email": "nobody@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown, wrong, "the answers do not tell the cases apart");

    let sessions = count(&a, "sessions").await;
    let (s, _, v) = post(
        &a,
        "/v1/auth/code/confirm",
        json!({"email": "alice@example.com", "code": "000000"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "INVALID_CODE");
    assert_eq!(count(&a, "sessions").await, sessions, "no session opened");

    // Logout needs a session: none, or an API key, is refused.
    let (s, _, v) = a.post("/v1/auth/logout", Cred::None, None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let key = api_key(a.bank(), &bob, &[Scope::Read, Scope::Write]).await;
    let (s, _, v) = a.post("/v1/auth/logout", Cred::Key(&key), None, "").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "NOT_AUTHORIZED");
    let (s, _, _) = a.get("/v1/me", Cred::Bearer(&bob.token)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn registration_login_and_code_requests_are_rate_limited() {
    let a = api_with(strict_limits(2)).await;
    customer(a.bank(), "alice@example.com", 0).await;

    // Logins: two wrong passwords, then even the right one is refused.
    let wrong = json!({"email": "alice@example.com", "password": "not the password"});
    for _ in 0..2 {
        assert_eq!(
            post(&a, "/v1/auth/login", wrong.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, _, v) = post(
        &a,
        "/v1/auth/login",
        json!({"email": "alice@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "RATE_LIMITED");
    // Code confirmations count as logins.
    let (s, _, v) = post(
        &a,
        "/v1/auth/code/confirm",
        json!({"email": "alice@example.com", "code": "123456"}),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // The counters are the GraphQL side's too: switching API buys nothing.
    let (_, v) = a
        .gql(
            Cred::None,
            "mutation L($input: UserPasswordLoginInput!) { userPasswordLogin(input: $input) { authToken errors { code } } }",
            json!({"input": {"email": "alice@example.com", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordLogin"]["errors"][0]["code"], "RATE_LIMITED",
        "{v}"
    );

    // Code requests.
    for _ in 0..2 {
        assert_eq!(
            post(&a, "/v1/auth/code", json!({"email": "alice@example.com"}))
                .await
                .0,
            StatusCode::ACCEPTED
        );
    }
    let (s, _, _) = post(&a, "/v1/auth/code", json!({"email": "alice@example.com"})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);

    // Registrations.
    for who in ["b@example.com", "c@example.com"] {
        assert_eq!(
            post(&a, "/v1/auth/register", json!({"email": who})).await.0,
            StatusCode::CREATED
        );
    }
    let (s, _, v) = post(&a, "/v1/auth/register", json!({"email": "d@example.com"})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(count(&a, "users").await, 3, "alice, b and c only");
}

#[tokio::test]
async fn repeats_are_safe_and_nothing_is_stored_for_replay() {
    let a = api().await;
    let register = json!({"email": "alice@example.com"}).to_string();
    let (s, h, _) = a
        .post("/v1/auth/register", Cred::None, Some("reg-1"), &register)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(h.get("idempotent-replayed").is_none());
    // A repeat (same Idempotency-Key, which these routes ignore) sends a new code and
    // registers nothing new.
    let (s, h, v) = a
        .post("/v1/auth/register", Cred::None, Some("reg-1"), &register)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(h.get("idempotent-replayed").is_none());
    assert_eq!(count(&a, "users").await, 1);
    assert_eq!(
        count(&a, "notification_outbox").await,
        2,
        "a second code sent"
    );

    let code = last_code(a.bank(), "alice@example.com").await;
    let confirm =
        json!({"email": "alice@example.com", "code": code, "password": PASSWORD}).to_string();
    let (s, _, v) = a
        .post("/v1/auth/code/confirm", Cred::None, Some("c-1"), &confirm)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, _, v) = a
        .post("/v1/auth/code/confirm", Cred::None, Some("c-1"), &confirm)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the code is used: {v}");
    assert_eq!(v["code"], "INVALID_CODE");
    assert_eq!(count(&a, "accounts").await, 1, "one account");

    let login = json!({"email": "alice@example.com", "password": PASSWORD}).to_string();
    let (_, _, one) = a
        .post("/v1/auth/login", Cred::None, Some("l-1"), &login)
        .await;
    let (_, _, two) = a
        .post("/v1/auth/login", Cred::None, Some("l-1"), &login)
        .await;
    assert_ne!(one["token"], two["token"], "a repeat opens its own session");
    for t in [&one, &two] {
        let (s, _, _) = a
            .get("/v1/me", Cred::Bearer(t["token"].as_str().unwrap()))
            .await;
        assert_eq!(s, StatusCode::OK);
    }

    let (s, _, _) = a
        .post("/v1/auth/logout", Cred::Bearer(&token), Some("o-1"), "")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, v) = a
        .post("/v1/auth/logout", Cred::Bearer(&token), Some("o-1"), "")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(count(&a, "api_idempotency").await, 0, "no token is stored");
}
