//! Pre-registration takeover and password change and reset, written as the attacks: an
//! attacker registers a victim's e-mail first and must never get in; registrations left
//! unverified expire and never block the owner; a change or a reset ends the other
//! sessions (a reset also the API keys).

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::time::Duration;

use api_common::{Api, Cred, api, customer};
use axum::http::StatusCode;
use coordinator::bank::{BankConfig, Scope};
use serde_json::{Value, json};

const VICTIM: &str = "victim@example.com";
const ATTACKER_PASSWORD: &str = "attacker's password";
const VICTIM_PASSWORD: &str = "the victim's own password";

async fn post(a: &Api, path: &str, cred: Cred<'_>, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = a.post(path, cred, None, &body.to_string()).await;
    (s, v)
}

async fn password_login(a: &Api, email: &str, password: &str) -> (StatusCode, Value) {
    post(
        a,
        "/v1/auth/login",
        Cred::None,
        json!({"email": email, "password": password}),
    )
    .await
}

async fn count(a: &Api, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(a.bank().ledger().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_registration_by_someone_else_never_gives_them_the_account() {
    let a = api().await;
    // The attacker registers the victim's address, trying to choose the password (the
    // old API took one here); the GraphQL mutation takes none either.
    let (s, v) = post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": VICTIM, "password": ATTACKER_PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = a
        .gql(
            Cred::None,
            "mutation { userRegister(input: {email: \"victim@example.com\", password: \"attacker's password\"}) { success } }",
            json!({}),
        )
        .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{v}"
    );
    let (s, v) = post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": VICTIM}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // ... and tries a password login: there is no password to guess.
    assert_eq!(
        password_login(&a, VICTIM, ATTACKER_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The victim registers later: not blocked, a fresh code arrives.
    let (s, v) = post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": VICTIM}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(count(&a, "SELECT count(*) FROM users").await, 1);
    // The victim verifies by code and sets their own password in the same step.
    let code = common::last_code(a.bank(), VICTIM).await;
    let (s, v) = post(
        &a,
        "/v1/auth/code/confirm",
        Cred::None,
        json!({"email": VICTIM, "code": code, "password": VICTIM_PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let (s, v) = password_login(&a, VICTIM, ATTACKER_PASSWORD).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_CREDENTIALS"))
    );
    let (s, v) = password_login(&a, VICTIM, VICTIM_PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// The stored-password variant: a database from before migration 0009 may hold an
/// attacker's password on an unverified registration. The owner's confirmation replaces
/// it, also when the owner sets no password at all.
#[tokio::test]
async fn a_password_left_on_an_unverified_registration_never_works() {
    let a = api().await;
    // A real hash of the attacker's password: the attacker's own confirmed account's.
    let attacker = "attacker@example.com";
    post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": attacker}),
    )
    .await;
    let code = common::last_code(a.bank(), attacker).await;
    post(
        &a,
        "/v1/auth/code/confirm",
        Cred::None,
        json!({"email": attacker, "code": code, "password": ATTACKER_PASSWORD}),
    )
    .await;
    post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": VICTIM}),
    )
    .await;
    sqlx::query(
        "UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE email = $1) \
         WHERE email = $2 AND verified_at IS NULL",
    )
    .bind(attacker)
    .bind(VICTIM)
    .execute(a.bank().ledger().pool())
    .await
    .unwrap();
    // Not verified: the planted password does not log in.
    assert_eq!(
        password_login(&a, VICTIM, ATTACKER_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The owner confirms by code without choosing a password.
    let code = common::last_code(a.bank(), VICTIM).await;
    let (s, v) = post(
        &a,
        "/v1/auth/code/confirm",
        Cred::None,
        json!({"email": VICTIM, "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        password_login(&a, VICTIM, ATTACKER_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn unverified_registrations_expire_and_free_their_identity() {
    let t = common::bank_with(BankConfig {
        registration_ttl: Duration::from_secs(1),
        ..BankConfig::default()
    })
    .await;
    let router = coordinator::api::router(t.bank.clone(), coordinator::api::ApiConfig::default());
    let a = Api { router, t };
    post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": VICTIM}),
    )
    .await;
    let stale = common::last_code(a.bank(), VICTIM).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Expired: its code no longer confirms it, and a code request sends nothing.
    let (s, v) = post(
        &a,
        "/v1/auth/code/confirm",
        Cred::None,
        json!({"email": VICTIM, "code": stale}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_CODE"))
    );
    let sent = count(&a, "SELECT count(*) FROM notification_outbox").await;
    post(&a, "/v1/auth/code", Cred::None, json!({"email": VICTIM})).await;
    assert_eq!(
        count(&a, "SELECT count(*) FROM notification_outbox").await,
        sent
    );
    // Another registration sweeps it; the owner's registration starts afresh.
    post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": "other@example.com"}),
    )
    .await;
    assert_eq!(
        count(
            &a,
            "SELECT count(*) FROM users WHERE email = 'victim@example.com'"
        )
        .await,
        0
    );
    let (s, _) = post(
        &a,
        "/v1/auth/register",
        Cred::None,
        json!({"email": VICTIM}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let code = common::last_code(a.bank(), VICTIM).await;
    let (s, v) = post(
        &a,
        "/v1/auth/code/confirm",
        Cred::None,
        json!({"email": VICTIM, "code": code, "password": VICTIM_PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

const CHANGE: &str = "mutation c($input: UserPasswordChangeInput!) { userPasswordChange(input: $input) { success errors { code } } }";
const RESET_REQUEST: &str = "mutation r($input: UserPasswordResetRequestInput!) { userPasswordResetRequest(input: $input) { success errors { code } } }";
const RESET: &str = "mutation r($input: UserPasswordResetInput!) { userPasswordReset(input: $input) { success errors { code } } }";

#[tokio::test]
async fn a_password_change_needs_proof_and_ends_the_other_sessions() {
    let a = api().await;
    // customer() sets "a long password" at its confirmation.
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let (_, v) = password_login(&a, "alice@example.com", "a long password").await;
    let other = v["token"].as_str().unwrap().to_owned();
    let key = api_common::api_key(a.bank(), &alice, &[Scope::Read]).await;

    // A wrong current password, no proof, or an API key: refused, nothing changes.
    let (_, v) = a
        .gql(
            Cred::Bearer(&alice.token),
            CHANGE,
            json!({"input": {"currentPassword": "not my password", "newPassword": "a new long password"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordChange"]["errors"][0]["code"], "INVALID_CREDENTIALS",
        "{v}"
    );
    let (_, v) = a
        .gql(
            Cred::Bearer(&alice.token),
            CHANGE,
            json!({"input": {"newPassword": "a new long password"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordChange"]["errors"][0]["code"], "INVALID_INPUT",
        "{v}"
    );
    let (_, v) = a
        .gql(
            Cred::Key(&key),
            CHANGE,
            json!({"input": {"currentPassword": "a long password", "newPassword": "a new long password"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordChange"]["errors"][0]["code"], "NOT_AUTHORIZED",
        "{v}"
    );
    assert_eq!(
        a.get("/v1/me", Cred::Bearer(&other)).await.0,
        StatusCode::OK
    );

    let (_, v) = a
        .gql(
            Cred::Bearer(&alice.token),
            CHANGE,
            json!({"input": {"currentPassword": "a long password", "newPassword": "a new long password"}}),
        )
        .await;
    assert_eq!(v["data"]["userPasswordChange"]["success"], true, "{v}");
    assert_eq!(
        a.get("/v1/me", Cred::Bearer(&other)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.get("/v1/me", Cred::Bearer(&alice.token)).await.0,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        a.get("/v1/me", Cred::Key(&key)).await.0,
        StatusCode::OK,
        "API keys stay"
    );
    assert_eq!(
        password_login(&a, "alice@example.com", "a long password")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        password_login(&a, "alice@example.com", "a new long password")
            .await
            .0,
        StatusCode::OK
    );

    // With a reset code instead of the current password, over REST.
    post(
        &a,
        "/v1/auth/password/reset/request",
        Cred::None,
        json!({"email": "alice@example.com"}),
    )
    .await;
    let code = common::last_code(a.bank(), "alice@example.com").await;
    let (s, v) = post(
        &a,
        "/v1/auth/password/change",
        Cred::Bearer(&alice.token),
        json!({"code": code, "new_password": "a third long password"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(
        password_login(&a, "alice@example.com", "a third long password")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_reset_by_code_ends_every_session_and_api_key() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let key = api_common::api_key(a.bank(), &alice, &[Scope::Read]).await;

    // A login code is not a reset code.
    post(
        &a,
        "/v1/auth/code",
        Cred::None,
        json!({"email": "alice@example.com"}),
    )
    .await;
    let login_code = common::last_code(a.bank(), "alice@example.com").await;
    let (_, v) = a
        .gql(
            Cred::None,
            RESET,
            json!({"input": {"email": "alice@example.com", "code": login_code, "newPassword": "attacker chosen pw"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordReset"]["errors"][0]["code"], "INVALID_CODE",
        "{v}"
    );
    // An unknown identity gets the same answer and no message.
    let sent = count(&a, "SELECT count(*) FROM notification_outbox").await;
    let (_, v) = a
        .gql(
            Cred::None,
            RESET_REQUEST,
            json!({"input": {"email": "nobody@example.com"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordResetRequest"]["success"], true,
        "{v}"
    );
    assert_eq!(
        count(&a, "SELECT count(*) FROM notification_outbox").await,
        sent
    );

    let (_, v) = a
        .gql(
            Cred::None,
            RESET_REQUEST,
            json!({"input": {"email": "alice@example.com"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordResetRequest"]["success"], true,
        "{v}"
    );
    let code = common::last_code(a.bank(), "alice@example.com").await;
    let (_, v) = a
        .gql(
            Cred::None,
            RESET,
            json!({"input": {"email": "alice@example.com", "code": code, "newPassword": "a fresh long password"}}),
        )
        .await;
    assert_eq!(v["data"]["userPasswordReset"]["success"], true, "{v}");
    assert_eq!(
        a.get("/v1/me", Cred::Bearer(&alice.token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.get("/v1/me", Cred::Key(&key)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        password_login(&a, "alice@example.com", "a long password")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        password_login(&a, "alice@example.com", "a fresh long password")
            .await
            .0,
        StatusCode::OK
    );
    // The code is used up.
    let (s, v) = post(
        &a,
        "/v1/auth/password/reset",
        Cred::None,
        json!({"email": "alice@example.com", "code": code, "new_password": "yet another password"}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_CODE"))
    );
}
