//! The public GraphQL API's sign-up and login through the real router: registration,
//! code confirmation, password and phone login, logout, and their rate limits.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{Cred, ME, api, api_with, ok, strict_limits};
use axum::http::StatusCode;
use serde_json::json;

const REGISTER: &str = "mutation r($input: UserRegisterInput!) { userRegister(input: $input) { success errors { code message } } }";
const CODE_LOGIN: &str = "mutation l($input: UserCodeLoginInput!) { userCodeLogin(input: $input) { authToken totpRequired errors { code message } } }";
const PASSWORD_LOGIN: &str = "mutation l($input: UserPasswordLoginInput!) { userPasswordLogin(input: $input) { authToken errors { code message } } }";
const PHONE_LOGIN: &str = "mutation userLogin($input: UserLoginInput!) { userLogin(input: $input) { authToken totpRequired errors { message code } } }";

#[tokio::test]
async fn register_confirm_login_and_logout() {
    let a = api().await;
    let (_, v) = a
        .gql(
            Cred::None,
            REGISTER,
            json!({"input": {"email": "carol@example.com"}}),
        )
        .await;
    assert_eq!(v["data"]["userRegister"]["success"], true, "{v}");
    // Not verified yet: no password exists, so a password login is refused.
    let (_, v) = a
        .gql(
            Cred::None,
            PASSWORD_LOGIN,
            json!({"input": {"email": "carol@example.com", "password": "a long password"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordLogin"]["errors"][0]["code"], "INVALID_CREDENTIALS",
        "{v}"
    );
    let code = common::last_code(a.bank(), "carol@example.com").await;
    let (_, v) = a
        .gql(
            Cred::None,
            CODE_LOGIN,
            json!({"input": {"email": "carol@example.com", "code": code, "password": "a long password"}}),
        )
        .await;
    let token = v["data"]["userCodeLogin"]["authToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = a.gql(Cred::Bearer(&token), ME, json!({})).await;
    ok(s, &v);
    let (_, v) = a
        .gql(
            Cred::None,
            PASSWORD_LOGIN,
            json!({"input": {"email": "carol@example.com", "password": "wrong password"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordLogin"]["errors"][0]["code"],
        "INVALID_CREDENTIALS"
    );
    let (_, v) = a
        .gql(
            Cred::None,
            PASSWORD_LOGIN,
            json!({"input": {"email": "carol@example.com", "password": "a long password"}}),
        )
        .await;
    let token2 = v["data"]["userPasswordLogin"]["authToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = a
        .gql(
            Cred::Bearer(&token2),
            "mutation { userLogout(input: {deviceToken: \"x\"}) { success } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["userLogout"]["success"], true, "{v}");
    let (s, _) = a.gql(Cred::Bearer(&token2), ME, json!({})).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the logged-out session is dead"
    );
    let (s, v) = a.gql(Cred::Bearer(&token), ME, json!({})).await;
    ok(s, &v);

    // Blink's phone login confirms a phone registration.
    let (_, v) = a
        .gql(
            Cred::None,
            REGISTER,
            json!({"input": {"phone": "+41791234567"}}),
        )
        .await;
    assert_eq!(v["data"]["userRegister"]["success"], true, "{v}");
    let code = common::last_code(a.bank(), "+41791234567").await;
    let (_, v) = a
        .gql(
            Cred::None,
            PHONE_LOGIN,
            json!({"input": {"phone": "+41791234567", "code": "000000"}}),
        )
        .await;
    if code != "000000" {
        assert_eq!(
            v["data"]["userLogin"]["errors"][0]["code"], "INVALID_CODE",
            "{v}"
        );
    }
    let (_, v) = a
        .gql(
            Cred::None,
            PHONE_LOGIN,
            json!({"input": {"phone": "+41791234567", "code": code}}),
        )
        .await;
    assert!(
        v["data"]["userLogin"]["authToken"]
            .as_str()
            .unwrap()
            .starts_with("sess_"),
        "{v}"
    );

    // Bad input: a specific error, nothing registered.
    for input in [
        json!({"email": "not-an-email"}),
        json!({"email": "dave@example.com", "phone": "+41791234568"}),
    ] {
        let (_, v) = a.gql(Cred::None, REGISTER, json!({"input": input})).await;
        assert_eq!(
            v["data"]["userRegister"]["errors"][0]["code"], "INVALID_INPUT",
            "{v}"
        );
    }
    // A too short password is refused at the confirmation, which then uses nothing up.
    let (_, v) = a
        .gql(
            Cred::None,
            REGISTER,
            json!({"input": {"email": "erin@example.com"}}),
        )
        .await;
    assert_eq!(v["data"]["userRegister"]["success"], true, "{v}");
    let code = common::last_code(a.bank(), "erin@example.com").await;
    let (_, v) = a
        .gql(
            Cred::None,
            CODE_LOGIN,
            json!({"input": {"email": "erin@example.com", "code": code, "password": "short"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userCodeLogin"]["errors"][0]["code"], "INVALID_INPUT",
        "{v}"
    );
    let (_, v) = a
        .gql(
            Cred::None,
            CODE_LOGIN,
            json!({"input": {"email": "erin@example.com", "code": code, "password": "long enough now"}}),
        )
        .await;
    assert!(v["data"]["userCodeLogin"]["authToken"].is_string(), "{v}");
    let (_, v) = a
        .gql(
            Cred::None,
            PASSWORD_LOGIN,
            json!({"input": {"email": "dave@example.com", "password": "a long password"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordLogin"]["errors"][0]["code"],
        "INVALID_CREDENTIALS"
    );
}

#[tokio::test]
async fn registration_login_and_code_requests_are_rate_limited() {
    let a = api_with(strict_limits(3)).await;
    for i in 0..3 {
        let (_, v) = a
            .gql(Cred::None, PASSWORD_LOGIN, json!({"input": {"email": "x@example.com", "password": format!("guess number {i}")}}))
            .await;
        assert_eq!(
            v["data"]["userPasswordLogin"]["errors"][0]["code"], "INVALID_CREDENTIALS",
            "{v}"
        );
    }
    let (_, v) = a
        .gql(
            Cred::None,
            PASSWORD_LOGIN,
            json!({"input": {"email": "x@example.com", "password": "guess number 4"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordLogin"]["errors"][0]["code"], "RATE_LIMITED",
        "{v}"
    );
    // The per-client limit covers other identities too.
    let (_, v) = a
        .gql(
            Cred::None,
            PASSWORD_LOGIN,
            json!({"input": {"email": "y@example.com", "password": "guess number 5"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userPasswordLogin"]["errors"][0]["code"], "RATE_LIMITED",
        "{v}"
    );

    const CODE: &str = "mutation c($input: UserRequestAuthCodeInput!) { userRequestAuthCode(input: $input) { success errors { code } } }";
    for _ in 0..3 {
        let (_, v) = a
            .gql(
                Cred::None,
                CODE,
                json!({"input": {"email": "z@example.com"}}),
            )
            .await;
        assert_eq!(v["data"]["userRequestAuthCode"]["success"], true, "{v}");
    }
    let (_, v) = a
        .gql(
            Cred::None,
            CODE,
            json!({"input": {"email": "z@example.com"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userRequestAuthCode"]["errors"][0]["code"], "RATE_LIMITED",
        "{v}"
    );
    for i in 0..3 {
        let (_, v) = a
            .gql(
                Cred::None,
                REGISTER,
                json!({"input": {"email": format!("u{i}@example.com")}}),
            )
            .await;
        assert_eq!(v["data"]["userRegister"]["success"], true, "{v}");
    }
    let (_, v) = a
        .gql(
            Cred::None,
            REGISTER,
            json!({"input": {"email": "u9@example.com"}}),
        )
        .await;
    assert_eq!(
        v["data"]["userRegister"]["errors"][0]["code"], "RATE_LIMITED",
        "{v}"
    );
}
