//! Helpers for the API tests: a router over a fresh database, requests through
//! `tower::ServiceExt::oneshot` (no sockets), customers with money, API keys, staff.
#![allow(dead_code, reason = "each test file uses a different subset")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use coordinator::api::{ApiConfig, RateLimitConfig};
use coordinator::bank::{Bank, Principal, Scope, Secret, StaffRole};
use coordinator::ledger::system;
use coordinator::{AccountId, Posting, Sats, WalletId};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::common::{TestBank, bank, pw, signed_up};

/// A router over a fresh bank.
pub struct Api {
    pub router: Router,
    pub t: TestBank,
}

/// A credential for a request.
#[derive(Clone, Copy, Debug)]
pub enum Cred<'a> {
    None,
    Bearer(&'a str),
    Key(&'a str),
}

pub async fn api() -> Api {
    api_with(ApiConfig::default()).await
}

pub async fn api_with(config: ApiConfig) -> Api {
    let t = bank().await;
    let router = coordinator::api::router(t.bank.clone(), config);
    Api { router, t }
}

/// A config whose rate limits trip after `n` attempts.
pub fn strict_limits(n: u32) -> ApiConfig {
    ApiConfig {
        rate_limit: RateLimitConfig {
            max_attempts: n,
            window: std::time::Duration::from_secs(3600),
            ..RateLimitConfig::default()
        },
        ..ApiConfig::default()
    }
}

fn with_cred(mut b: axum::http::request::Builder, cred: Cred<'_>) -> axum::http::request::Builder {
    match cred {
        Cred::None => {}
        Cred::Bearer(t) => b = b.header("authorization", format!("Bearer {t}")),
        Cred::Key(k) => b = b.header("x-api-key", k),
    }
    b
}

impl Api {
    pub fn bank(&self) -> &Bank {
        &self.t.bank
    }

    pub async fn call(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, value)
    }

    /// A GraphQL request with extra headers.
    pub async fn gql_headers(
        &self,
        path: &str,
        cred: Cred<'_>,
        headers: &[(&str, &str)],
        query: &str,
        variables: Value,
    ) -> (StatusCode, Value) {
        let mut b = with_cred(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("content-type", "application/json"),
            cred,
        );
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let body = json!({ "query": query, "variables": variables });
        let (status, _, value) = self
            .call(b.body(Body::from(body.to_string())).unwrap())
            .await;
        (status, value)
    }

    /// A public GraphQL request.
    pub async fn gql(&self, cred: Cred<'_>, query: &str, variables: Value) -> (StatusCode, Value) {
        self.gql_headers("/graphql", cred, &[], query, variables)
            .await
    }

    /// An admin GraphQL request.
    pub async fn admin(
        &self,
        cred: Cred<'_>,
        query: &str,
        variables: Value,
    ) -> (StatusCode, Value) {
        self.gql_headers("/admin/graphql", cred, &[], query, variables)
            .await
    }

    pub async fn get(&self, path: &str, cred: Cred<'_>) -> (StatusCode, HeaderMap, Value) {
        let b = with_cred(Request::builder().method(Method::GET).uri(path), cred);
        self.call(b.body(Body::empty()).unwrap()).await
    }

    pub async fn post(
        &self,
        path: &str,
        cred: Cred<'_>,
        idempotency_key: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut b = with_cred(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("content-type", "application/json"),
            cred,
        );
        if let Some(k) = idempotency_key {
            b = b.header("idempotency-key", k);
        }
        self.call(b.body(Body::from(body.to_owned())).unwrap())
            .await
    }
}

/// A verified customer with a session token and, optionally, a deposit.
pub struct Customer {
    pub token: String,
    pub account: AccountId,
    pub wallet: WalletId,
    pub principal: Principal,
}

pub async fn customer(bank: &Bank, email: &str, deposit: u64) -> Customer {
    let (token, account, principal) = signed_up(bank, email).await;
    let wallet = bank.account(account).await.unwrap().default_wallet_id;
    if deposit > 0 {
        let p = Posting::transfer(
            system::MAIN_JOURNAL,
            format!("deposit-{wallet}"),
            system::BANK_ONCHAIN,
            Bank::ledger_account(wallet),
            Sats::new(deposit).unwrap().to_msats(),
            "deposit",
        )
        .unwrap();
        bank.ledger().post(p).await.unwrap();
    }
    Customer {
        token: token.expose().to_owned(),
        account,
        wallet,
        principal,
    }
}

/// An API key of `c` with these scopes.
pub async fn api_key(bank: &Bank, c: &Customer, scopes: &[Scope]) -> String {
    let (_, secret) = bank
        .create_api_key(&c.principal, "test key", scopes, None)
        .await
        .unwrap();
    secret.expose().to_owned()
}

/// A staff member's session token.
pub async fn staff_token(bank: &Bank, email: &str, role: StaffRole) -> String {
    let e = email.parse().unwrap();
    bank.create_staff(&e, &pw("staff password"), role)
        .await
        .unwrap();
    let s = bank
        .staff_login(&e, &Secret::new("staff password"))
        .await
        .unwrap();
    s.token.expose().to_owned()
}

/// Settled balance in whole satoshis.
pub async fn balance(bank: &Bank, w: WalletId) -> u64 {
    let b = bank
        .ledger()
        .balance(Bank::ledger_account(w))
        .await
        .unwrap();
    u64::try_from(b.settled).unwrap() / 1000
}

/// The code of a top-level GraphQL error, if any.
pub fn error_code(v: &Value) -> Option<String> {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

pub const SEND: &str = "mutation IntraLedgerPaymentSend($input: IntraLedgerPaymentSendInput!) {
  intraLedgerPaymentSend(input: $input) {
    status
    errors { message path code }
  }
}";

pub fn send_input(from: WalletId, to: WalletId, amount: u64) -> Value {
    json!({ "input": { "walletId": from.to_string(), "recipientWalletId": to.to_string(), "amount": amount, "memo": "lunch" } })
}

/// The REST body of an internal transfer.
pub fn send_body(from: &impl ToString, to: &impl ToString, amount: u64) -> String {
    json!({"wallet_id": from.to_string(), "recipient_wallet_id": to.to_string(), "amount_sats": amount, "memo": "rent"}).to_string()
}

/// The payload status of an `intraLedgerPaymentSend` answer (`SUCCESS`, `FAILURE`, ...).
pub fn send_status(v: &Value) -> Option<&str> {
    v["data"]["intraLedgerPaymentSend"]["status"].as_str()
}

/// The code of the first payload error of an `intraLedgerPaymentSend` answer.
pub fn send_error(v: &Value) -> Option<&str> {
    v["data"]["intraLedgerPaymentSend"]["errors"][0]["code"].as_str()
}

impl Api {
    /// Sends `amount` sats from `from` to `to` with Blink's `intraLedgerPaymentSend`.
    pub async fn send_via_graphql(
        &self,
        cred: Cred<'_>,
        from: WalletId,
        to: WalletId,
        amount: u64,
    ) -> (StatusCode, Value) {
        self.gql(cred, SEND, send_input(from, to, amount)).await
    }

    /// `intraLedgerPaymentSend` with this input and an `Idempotency-Key` header.
    pub async fn send_via_graphql_keyed(
        &self,
        cred: Cred<'_>,
        idempotency_key: &str,
        input: Value,
    ) -> (StatusCode, Value) {
        self.gql_headers(
            "/graphql",
            cred,
            &[("idempotency-key", idempotency_key)],
            SEND,
            input,
        )
        .await
    }

    /// `POST /v1/payments/intraledger` with this body (see [`send_body`]).
    pub async fn send_via_rest(
        &self,
        cred: Cred<'_>,
        idempotency_key: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        self.post("/v1/payments/intraledger", cred, idempotency_key, body)
            .await
    }
}

/// Blink's `me` document (the account, its level and wallets).
pub const ME: &str = "query me {
  me {
    id
    username
    defaultAccount {
      id
      level
      wallets {
        id
        walletCurrency
        balance
        pendingIncomingBalance
      }
    }
  }
}";

/// A GraphQL answer with HTTP 200 and no errors.
pub fn ok(status: StatusCode, v: &serde_json::Value) {
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
}
