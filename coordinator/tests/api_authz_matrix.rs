//! The authorization matrix: every GraphQL operation (public and staff) and every REST
//! operation, called for real against PostgreSQL by every kind of caller, with what each
//! caller must get: allowed, or refused with a code.
//!
//! The operations are read from the schemas' SDL and the OpenAPI document, not listed by
//! hand: an operation without a row here fails the test, and so does a row for an
//! operation that no longer exists. Adding an operation means adding one line to
//! `GRAPHQL` or `REST` below.
//!
//! "Allowed" means the call ran past authentication and authorization: its answer carries
//! neither `NOT_AUTHENTICATED` nor `NOT_AUTHORIZED`, no server error, and no
//! malformed-request error (which would mean the row's request is wrong, not the rule).
//! A business answer (an unknown code, an empty wallet) still counts as allowed; most
//! rows are written so that the call succeeds.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;
mod wallets_common;

use std::collections::BTreeSet;
use std::time::Duration;

use api_common::{Api, Cred, Customer, api_key, customer, staff_token};
use async_graphql::futures_util::{SinkExt, StreamExt};
use axum::http::StatusCode;
use coordinator::api::{ApiConfig, AppState, OnchainConfig, RateLimitConfig};
use coordinator::bank::{Scope, StaffRole};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Who calls. The order of the columns of every row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Anonymous,
    Session,
    KeyRead,
    KeyWrite,
    KeyReceive,
    Support,
    Compliance,
    Treasury,
    Admin,
}

const ROLES: [Role; 9] = [
    Role::Anonymous,
    Role::Session,
    Role::KeyRead,
    Role::KeyWrite,
    Role::KeyReceive,
    Role::Support,
    Role::Compliance,
    Role::Treasury,
    Role::Admin,
];

/// What a caller must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Refused(&'static str),
}

const OK: Expect = Expect::Allowed;
/// No (valid) credential for this API: `NOT_AUTHENTICATED` (HTTP 401 on REST).
const NA: Expect = Expect::Refused("NOT_AUTHENTICATED");
/// A credential without the scope or role: `NOT_AUTHORIZED` (HTTP 403 on REST).
const NZ: Expect = Expect::Refused("NOT_AUTHORIZED");

/// A staff token on the public API or REST, a user credential on the staff API: refused
/// as unauthenticated, whatever the operation.
const STAFF_NA: [Expect; 4] = [NA, NA, NA, NA];

/// What a row's call needs to be real: a fresh target account (username set), the
/// caller's own wallet and a spare API key of the caller to revoke, and a unique number.
struct Fx {
    n: usize,
    target: Customer,
    target_username: String,
    caller_wallet: Option<String>,
    spare_key: Option<String>,
    code: String,
    /// A password reset code of the target.
    reset_code: String,
}

enum Call {
    Public(String, Value),
    Admin(String, Value),
    Ws(&'static str),
    Get(String),
    Post(String, Value),
}

fn public(q: &str, v: Value) -> Call {
    Call::Public(q.to_owned(), v)
}

fn admin(q: &str, v: Value) -> Call {
    Call::Admin(q.to_owned(), v)
}

/// The caller's wallet, or the target's when the caller has none (the call is refused
/// before the wallet matters).
fn from(f: &Fx) -> String {
    f.caller_wallet
        .clone()
        .unwrap_or_else(|| f.target.wallet.to_string())
}

fn spare(f: &Fx) -> String {
    f.spare_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// A regtest address for the deposit look-up (BIP 173's P2WPKH test vector, on regtest).
const DEPOSIT_ADDRESS: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

type Row = (&'static str, fn(&Fx) -> Call, [Expect; 5], [Expect; 4]);

/// Public and staff GraphQL. Columns: anonymous, session, key read, key write, key
/// receive | support, compliance, treasury, admin.
#[rustfmt::skip]
const GRAPHQL: &[Row] = &[
    ("Query.accountDefaultWallet", |f| public("query($u: Username!) { accountDefaultWallet(username: $u) { id } }", json!({"u": f.target_username})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Query.authorization", |_| public("{ authorization { scopes } }", json!({})), [NA, OK, OK, OK, OK], STAFF_NA),
    ("Query.me", |_| public("{ me { id defaultAccount { id } } }", json!({})), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("Query.userDefaultWalletId", |f| public("query($u: Username!) { userDefaultWalletId(username: $u) }", json!({"u": f.target_username})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Query.usernameAvailable", |f| public("query($u: Username!) { usernameAvailable(username: $u) }", json!({"u": format!("free{}", f.n)})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.apiKeyCreate", |_| public("mutation { apiKeyCreate(input: {name: \"m\", scopes: [READ]}) { apiKey { id } apiKeySecret } }", json!({})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("Mutation.apiKeyRevoke", |f| public("mutation($id: ID!) { apiKeyRevoke(input: {id: $id}) { apiKey { id revoked } } }", json!({"id": spare(f)})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("Mutation.onChainAddressCreate", |f| public("mutation($i: OnChainAddressCreateInput!) { onChainAddressCreate(input: $i) { address errors { code } } }", json!({"i": {"walletId": from(f)}})), [NA, OK, NZ, NZ, OK], STAFF_NA),
    ("Mutation.onChainAddressCurrent", |f| public("mutation($i: OnChainAddressCurrentInput!) { onChainAddressCurrent(input: $i) { address errors { code } } }", json!({"i": {"walletId": from(f)}})), [NA, OK, NZ, NZ, OK], STAFF_NA),
    ("Mutation.callbackEndpointAdd", |f| public("mutation($i: CallbackEndpointAddInput!) { callbackEndpointAdd(input: $i) { id errors { code } } }", json!({"i": {"url": format!("https://example.com/hook/{}", f.n)}})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Mutation.callbackEndpointDelete", |_| public("mutation($i: CallbackEndpointDeleteInput!) { callbackEndpointDelete(input: $i) { success errors { code } } }", json!({"i": {"id": uuid::Uuid::now_v7().to_string()}})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Query.lnInvoicePaymentStatusByHash", |_| public("query($i: LnInvoicePaymentStatusByHashInput!) { lnInvoicePaymentStatusByHash(input: $i) { status } }", json!({"i": {"paymentHash": "0000000000000000000000000000000000000000000000000000000000000000"}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Query.lnInvoicePaymentStatusByPaymentRequest", |_| public("query($i: LnInvoicePaymentStatusByPaymentRequestInput!) { lnInvoicePaymentStatusByPaymentRequest(input: $i) { status } }", json!({"i": {"paymentRequest": "lnbcrt1"}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.lnInvoiceCreate", |f| public("mutation($i: LnInvoiceCreateInput!) { lnInvoiceCreate(input: $i) { invoice { paymentHash } errors { code } } }", json!({"i": {"walletId": from(f), "amount": 1000}})), [NA, OK, NZ, NZ, OK], STAFF_NA),
    ("Mutation.lnNoAmountInvoiceCreate", |f| public("mutation($i: LnNoAmountInvoiceCreateInput!) { lnNoAmountInvoiceCreate(input: $i) { invoice { paymentHash } errors { code } } }", json!({"i": {"walletId": from(f)}})), [NA, OK, NZ, NZ, OK], STAFF_NA),
    ("Mutation.lnInvoiceCreateOnBehalfOfRecipient", |f| public("mutation($i: LnInvoiceCreateOnBehalfOfRecipientInput!) { lnInvoiceCreateOnBehalfOfRecipient(input: $i) { invoice { paymentHash } errors { code } } }", json!({"i": {"recipientWalletId": f.target.wallet.to_string(), "amount": 1000}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.lnNoAmountInvoiceCreateOnBehalfOfRecipient", |f| public("mutation($i: LnNoAmountInvoiceCreateOnBehalfOfRecipientInput!) { lnNoAmountInvoiceCreateOnBehalfOfRecipient(input: $i) { invoice { paymentHash } errors { code } } }", json!({"i": {"recipientWalletId": f.target.wallet.to_string()}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.lnInvoiceCancel", |f| public("mutation($i: LnInvoiceCancelInput!) { lnInvoiceCancel(input: $i) { success errors { code } } }", json!({"i": {"walletId": from(f), "paymentHash": "0000000000000000000000000000000000000000000000000000000000000000"}})), [NA, OK, NZ, NZ, OK], STAFF_NA),
    ("Mutation.lnInvoiceFeeProbe", |f| public("mutation($i: LnInvoiceFeeProbeInput!) { lnInvoiceFeeProbe(input: $i) { amount errors { code } } }", json!({"i": {"walletId": from(f), "paymentRequest": "lnbcrt1"}})), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("Mutation.lnNoAmountInvoiceFeeProbe", |f| public("mutation($i: LnNoAmountInvoiceFeeProbeInput!) { lnNoAmountInvoiceFeeProbe(input: $i) { amount errors { code } } }", json!({"i": {"walletId": from(f), "paymentRequest": "lnbcrt1", "amount": 1}})), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("Mutation.lnInvoicePaymentSend", |f| public("mutation($i: LnInvoicePaymentInput!) { lnInvoicePaymentSend(input: $i) { status errors { code } } }", json!({"i": {"walletId": from(f), "paymentRequest": "lnbcrt1"}})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Mutation.lnNoAmountInvoicePaymentSend", |f| public("mutation($i: LnNoAmountInvoicePaymentInput!) { lnNoAmountInvoicePaymentSend(input: $i) { status errors { code } } }", json!({"i": {"walletId": from(f), "paymentRequest": "lnbcrt1", "amount": 1}})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Mutation.intraLedgerPaymentSend", |f| public("mutation($i: IntraLedgerPaymentSendInput!) { intraLedgerPaymentSend(input: $i) { status errors { code } } }", json!({"i": {"walletId": from(f), "recipientWalletId": f.target.wallet.to_string(), "amount": 1}})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    // Without a Lightning node the payment stops at LIGHTNING_UNAVAILABLE, after authorization and before any call out.
    ("Mutation.lnAddressPaymentSend", |f| public("mutation($i: LnAddressPaymentSendInput!) { lnAddressPaymentSend(input: $i) { status errors { code } } }", json!({"i": {"walletId": from(f), "lnAddress": "shop@example.com", "amount": 1}})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Mutation.lnurlPaymentSend", |f| public("mutation($i: LnurlPaymentSendInput!) { lnurlPaymentSend(input: $i) { status errors { code } } }", json!({"i": {"walletId": from(f), "lnurl": "LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56NYD3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS", "amount": 1}})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Mutation.userCodeLogin", |f| public("mutation($i: UserCodeLoginInput!) { userCodeLogin(input: $i) { authToken errors { code } } }", json!({"i": {"email": format!("t{}@example.com", f.n), "code": f.code}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.userLogin", |f| public("mutation($i: UserLoginInput!) { userLogin(input: $i) { authToken errors { code } } }", json!({"i": {"phone": format!("+4179555{:04}", f.n), "code": "000000"}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.userLogout", |_| public("mutation { userLogout { success errors { code } } }", json!({})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("Mutation.userPasswordChange", |_| public("mutation { userPasswordChange(input: {currentPassword: \"a long password\", newPassword: \"another long password\"}) { success errors { code } } }", json!({})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("Mutation.userPasswordLogin", |f| public("mutation($i: UserPasswordLoginInput!) { userPasswordLogin(input: $i) { authToken errors { code } } }", json!({"i": {"email": format!("t{}@example.com", f.n), "password": "a long password"}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.userPasswordReset", |f| public("mutation($i: UserPasswordResetInput!) { userPasswordReset(input: $i) { success errors { code } } }", json!({"i": {"email": format!("t{}@example.com", f.n), "code": f.reset_code, "newPassword": "another long password"}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.userPasswordResetRequest", |f| public("mutation($i: UserPasswordResetRequestInput!) { userPasswordResetRequest(input: $i) { success errors { code } } }", json!({"i": {"email": format!("t{}@example.com", f.n)}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.userRegister", |f| public("mutation($i: UserRegisterInput!) { userRegister(input: $i) { success errors { code } } }", json!({"i": {"email": format!("new{}@example.com", f.n)}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.userRequestAuthCode", |f| public("mutation($i: UserRequestAuthCodeInput!) { userRequestAuthCode(input: $i) { success errors { code } } }", json!({"i": {"email": format!("t{}@example.com", f.n)}})), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Mutation.userUpdateLanguage", |_| public("mutation { userUpdateLanguage(input: {language: \"es\"}) { errors { code } } }", json!({})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Mutation.userUpdateUsername", |f| public("mutation($u: Username!) { userUpdateUsername(input: {username: $u}) { errors { code } } }", json!({"u": format!("caller{}", f.n)})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("Subscription.lnInvoicePaymentStatusByHash", |_| Call::Ws("subscription { lnInvoicePaymentStatusByHash(input: {paymentHash: \"0000000000000000000000000000000000000000000000000000000000000000\"}) { status errors { code } } }"), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Subscription.lnInvoicePaymentStatusByPaymentRequest", |_| Call::Ws("subscription { lnInvoicePaymentStatusByPaymentRequest(input: {paymentRequest: \"lnbcrt1\"}) { status errors { code } } }"), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Subscription.lnInvoicePaymentStatus", |_| Call::Ws("subscription { lnInvoicePaymentStatus(input: {paymentRequest: \"lnbcrt1\"}) { status errors { code } } }"), [OK, OK, OK, OK, OK], STAFF_NA),
    ("Subscription.myUpdates", |_| Call::Ws("subscription { myUpdates { update { __typename } } }"), [NA, OK, OK, NZ, NZ], STAFF_NA),
    // The staff schema: users (anonymous aside) are refused as unauthenticated.
    ("admin:Query.accountDetailsByAccountId", |f| admin("query($id: ID!) { accountDetailsByAccountId(accountId: $id) { id status } }", json!({"id": f.target.account.to_string()})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    ("admin:Query.accountDetailsByEmail", |f| admin("query($e: EmailAddress!) { accountDetailsByEmail(email: $e) { id } }", json!({"e": format!("t{}@example.com", f.n)})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    ("admin:Query.accountDetailsByUserId", |f| admin("query($id: ID!) { accountDetailsByUserId(userId: $id) { id } }", json!({"id": f.target.principal.user_id.to_string()})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    ("admin:Query.accountDetailsByUserPhone", |f| admin("query($p: Phone!) { accountDetailsByUserPhone(phone: $p) { id } }", json!({"p": format!("+4179555{:04}", f.n)})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    ("admin:Query.accountDetailsByUsername", |f| admin("query($u: Username!) { accountDetailsByUsername(username: $u) { id } }", json!({"u": f.target_username})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    ("admin:Query.allLevels", |_| admin("{ allLevels }", json!({})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    // No node in this bank: past authorization, the answer is null.
    ("admin:Query.lightningNode", |_| admin("{ lightningNode { pubkey } }", json!({})), [NA, NA, NA, NA, NA], [NZ, NZ, OK, OK]),
    ("admin:Query.onChainDepositAlerts", |_| admin("{ onChainDepositAlerts { id } }", json!({})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    ("admin:Query.onChainDeposits", |_| admin("{ onChainDeposits(first: 5) { transactionHash } }", json!({})), [NA, NA, NA, NA, NA], [OK, OK, OK, OK]),
    ("admin:Query.treasuryBalances", |_| admin("{ treasuryBalances { code settledMsat } }", json!({})), [NA, NA, NA, NA, NA], [NZ, NZ, OK, OK]),
    ("admin:Mutation.accountUpdateLevel", |f| admin("mutation($i: AccountUpdateLevelInput!) { accountUpdateLevel(input: $i) { errors { code } accountDetails { level } } }", json!({"i": {"accountId": f.target.account.to_string(), "level": "ONE", "comment": "kyc done"}})), [NA, NA, NA, NA, NA], [NZ, OK, NZ, OK]),
    ("admin:Mutation.accountUpdateStatus", |f| admin("mutation($i: AccountUpdateStatusInput!) { accountUpdateStatus(input: $i) { errors { code } accountDetails { status } } }", json!({"i": {"accountId": f.target.account.to_string(), "status": "LOCKED", "comment": "review"}})), [NA, NA, NA, NA, NA], [OK, OK, NZ, OK]),
    // An unknown alert: past authorization, the answer is "not found".
    ("admin:Mutation.onChainDepositAlertResolve", |_| admin("mutation($i: OnChainDepositAlertResolveInput!) { onChainDepositAlertResolve(input: $i) { errors { code } } }", json!({"i": {"alertId": uuid::Uuid::now_v7().to_string(), "resolution": "DISMISSED", "reason": "no loss"}})), [NA, NA, NA, NA, NA], [NZ, OK, NZ, OK]),
    ("admin:Mutation.staffLogin", |_| admin("mutation { staffLogin(input: {email: \"admin@bank.example\", password: \"staff password\"}) { authToken errors { code } } }", json!({})), [OK, NA, NA, NA, NA], [OK, OK, OK, OK]),
];

/// REST, by OpenAPI method and path. Same columns.
#[rustfmt::skip]
const REST: &[Row] = &[
    // The probes: anyone (load balancers and orchestrators hold no credential).
    ("GET /healthz", |_| Call::Get("/healthz".into()), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("GET /readyz", |_| Call::Get("/readyz".into()), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("GET /v1/api-keys", |_| Call::Get("/v1/api-keys".into()), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("POST /v1/api-keys", |_| Call::Post("/v1/api-keys".into(), json!({"name": "m", "scopes": ["read"]})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("POST /v1/api-keys/{key_id}/revoke", |f| Call::Post(format!("/v1/api-keys/{}/revoke", spare(f)), json!({})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("POST /v1/auth/code", |f| Call::Post("/v1/auth/code".into(), json!({"email": format!("t{}@example.com", f.n)})), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("POST /v1/auth/code/confirm", |f| Call::Post("/v1/auth/code/confirm".into(), json!({"email": format!("t{}@example.com", f.n), "code": f.code})), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("POST /v1/auth/login", |f| Call::Post("/v1/auth/login".into(), json!({"email": format!("t{}@example.com", f.n), "password": "a long password"})), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("POST /v1/auth/logout", |_| Call::Post("/v1/auth/logout".into(), json!({})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("POST /v1/auth/password/change", |_| Call::Post("/v1/auth/password/change".into(), json!({"current_password": "a long password", "new_password": "another long password"})), [NA, OK, NZ, NZ, NZ], STAFF_NA),
    ("POST /v1/auth/password/reset", |f| Call::Post("/v1/auth/password/reset".into(), json!({"email": format!("t{}@example.com", f.n), "code": f.reset_code, "new_password": "another long password"})), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("POST /v1/auth/password/reset/request", |f| Call::Post("/v1/auth/password/reset/request".into(), json!({"email": format!("t{}@example.com", f.n)})), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("POST /v1/auth/register", |f| Call::Post("/v1/auth/register".into(), json!({"email": format!("new{}@example.com", f.n)})), [OK, OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("GET /v1/limits", |_| Call::Get("/v1/limits".into()), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("GET /v1/me", |_| Call::Get("/v1/me".into()), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("POST /v1/me/username", |f| Call::Post("/v1/me/username".into(), json!({"username": format!("caller{}", f.n)})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("POST /v1/payments/intraledger", |f| Call::Post("/v1/payments/intraledger".into(), json!({"wallet_id": from(f), "recipient_wallet_id": f.target.wallet.to_string(), "amount_sats": 1})), [NA, OK, NZ, OK, NZ], STAFF_NA),
    ("GET /v1/wallets", |_| Call::Get("/v1/wallets".into()), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("GET /v1/wallets/{wallet_id}", |f| Call::Get(format!("/v1/wallets/{}", from(f))), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("GET /v1/wallets/{wallet_id}/deposits", |f| Call::Get(format!("/v1/wallets/{}/deposits?address={DEPOSIT_ADDRESS}", from(f))), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("GET /v1/wallets/{wallet_id}/onchain-address", |f| Call::Get(format!("/v1/wallets/{}/onchain-address", from(f))), [NA, OK, NZ, NZ, OK], STAFF_NA),
    ("POST /v1/wallets/{wallet_id}/onchain-address", |f| Call::Post(format!("/v1/wallets/{}/onchain-address", from(f)), json!({})), [NA, OK, NZ, NZ, OK], STAFF_NA),
    ("GET /v1/wallets/{wallet_id}/pending-incoming", |f| Call::Get(format!("/v1/wallets/{}/pending-incoming", from(f))), [NA, OK, OK, NZ, NZ], STAFF_NA),
    ("GET /v1/wallets/{wallet_id}/transactions", |f| Call::Get(format!("/v1/wallets/{}/transactions", from(f))), [NA, OK, OK, NZ, NZ], STAFF_NA),
];

/// The root fields of a schema, as `Query.x`, `Mutation.y`, `Subscription.z`.
fn root_fields(sdl: &str, prefix: &str) -> BTreeSet<String> {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    let doc = async_graphql::parser::parse_schema(sdl).unwrap();
    let mut out = BTreeSet::new();
    for def in &doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let name = t.node.name.node.as_str();
        if !matches!(name, "Query" | "Mutation" | "Subscription") {
            continue;
        }
        if let TypeKind::Object(o) = &t.node.kind {
            for f in &o.fields {
                out.insert(format!("{prefix}{name}.{}", f.node.name.node));
            }
        }
    }
    out
}

/// Every REST operation of the OpenAPI document, as `METHOD /path`.
fn rest_operations() -> BTreeSet<String> {
    let doc: Value = serde_json::from_str(&coordinator::api::openapi_json()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    out
}

#[test]
fn every_operation_has_a_row_and_every_row_an_operation() {
    let mut ops = root_fields(&coordinator::api::public_sdl(), "");
    ops.extend(root_fields(&coordinator::api::admin_sdl(), "admin:"));
    ops.extend(rest_operations());
    let rows: BTreeSet<String> = GRAPHQL.iter().chain(REST).map(|r| r.0.to_owned()).collect();
    assert_eq!(
        rows.len(),
        GRAPHQL.len() + REST.len(),
        "a row appears twice"
    );
    let missing: Vec<_> = ops.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&ops).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "operations without a row in the matrix: {missing:?}; rows for no operation: {stale:?}"
    );
}

/// The codes anywhere in a GraphQL answer: top-level errors and payload errors.
fn codes(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(c)) = m.get("code") {
                out.push(c.clone());
            }
            m.values().for_each(|x| codes(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| codes(x, out)),
        _ => {}
    }
}

/// What a GraphQL answer means for the matrix, or why the row itself is wrong.
fn graphql_outcome(status: StatusCode, v: &Value) -> Result<Expect, String> {
    let mut found = Vec::new();
    codes(v, &mut found);
    for refusal in ["NOT_AUTHENTICATED", "NOT_AUTHORIZED"] {
        if found.iter().any(|c| c == refusal) {
            return Ok(Expect::Refused(refusal));
        }
    }
    let uncoded = v["errors"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e["extensions"]["code"].is_null()));
    if status.is_server_error()
        || uncoded
        || found
            .iter()
            .any(|c| c == "INTERNAL_ERROR" || c == "INVALID_INPUT")
    {
        return Err(format!("{status} {v}"));
    }
    Ok(Expect::Allowed)
}

fn rest_outcome(status: StatusCode, v: &Value) -> Result<Expect, String> {
    let code = v["code"].as_str().unwrap_or_default();
    match (status, code) {
        (StatusCode::UNAUTHORIZED, "NOT_AUTHENTICATED") => Ok(NA),
        (StatusCode::FORBIDDEN, "NOT_AUTHORIZED") => Ok(NZ),
        (s, _) if s.is_server_error() || s == StatusCode::BAD_REQUEST => {
            Err(format!("{status} {v}"))
        }
        (s, _) if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
            Err(format!("refused with another code: {status} {v}"))
        }
        _ => Ok(OK),
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(wait, ws.next()).await.ok()??;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// A subscription over a real WebSocket. Allowed means an update arrives: the funder
/// pays the caller once the subscription is open.
async fn subscribe(
    a: &Api,
    addr: std::net::SocketAddr,
    auth: Value,
    query: &str,
    pay_to: Option<&str>,
    funder: &Customer,
) -> Result<Expect, String> {
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init = json!({"type": "connection_init", "payload": auth});
    ws.send(Message::text(init.to_string())).await.unwrap();
    match next_json(&mut ws, Duration::from_secs(10)).await {
        Some(ack) if ack["type"] == "connection_ack" => {}
        // The credential is refused at `connection_init`: the socket is closed.
        None => return Ok(NA),
        Some(other) => return Err(format!("unexpected {other}")),
    }
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": query}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    if let Some(first) = next_json(&mut ws, Duration::from_millis(300)).await {
        return graphql_outcome(StatusCode::OK, &first["payload"]).or(Err(format!("{first}")));
    }
    let Some(wallet) = pay_to else {
        return Err("no error and no wallet to pay".into());
    };
    let send = json!({"i": {"walletId": funder.wallet.to_string(), "recipientWalletId": wallet, "amount": 1}});
    let (_, v) = a
        .gql(
            Cred::Bearer(&funder.token),
            "mutation($i: IntraLedgerPaymentSendInput!) { intraLedgerPaymentSend(input: $i) { status } }",
            send,
        )
        .await;
    assert_eq!(
        v["data"]["intraLedgerPaymentSend"]["status"], "SUCCESS",
        "{v}"
    );
    match next_json(&mut ws, Duration::from_secs(10)).await {
        Some(m) if m["type"] == "next" && m["payload"]["data"]["myUpdates"].is_object() => Ok(OK),
        other => Err(format!("no update: {other:?}")),
    }
}

#[tokio::test]
async fn every_caller_on_every_operation() {
    // Rate limits are tested elsewhere; here they would cut the matrix short.
    let config = ApiConfig {
        rate_limit: RateLimitConfig {
            max_attempts: 1_000_000,
            window: Duration::from_secs(60),
            max_attempts_per_day: 1_000_000,
            max_sms_per_country: 1_000_000,
            ..RateLimitConfig::default()
        },
        ..ApiConfig::default()
    };
    // With a hot wallet, so that the address operations run past their availability
    // check (handing out an address needs the wallet, not a chain).
    let t = common::bank().await;
    let (wallets, hot) = wallets_common::hot_wallet(t.bank.ledger().pool()).await;
    let state = AppState::new(t.bank.clone(), config).with_onchain(OnchainConfig {
        wallets,
        hot_wallet: hot.id,
    });
    let a = Api {
        router: coordinator::api::router_with_state(state),
        t,
    };
    let bank = a.bank().clone();
    let mut staff = Vec::new();
    for (email, role) in [
        ("support@bank.example", StaffRole::Support),
        ("compliance@bank.example", StaffRole::Compliance),
        ("treasury@bank.example", StaffRole::Treasury),
        ("admin@bank.example", StaffRole::Admin),
    ] {
        staff.push(staff_token(&bank, email, role).await);
    }
    let funder = customer(&bank, "funder@example.com", 1_000_000).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = a.router.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let mut failures = Vec::new();
    let mut n = 0usize;
    for (name, call, user, staff_cols) in GRAPHQL.iter().chain(REST) {
        let expected: Vec<Expect> = user.iter().chain(staff_cols).copied().collect();
        for (role, want) in ROLES.iter().zip(expected) {
            n += 1;
            // A fresh target and caller for every call: logouts, revocations, locks and
            // usernames of one call cannot change the next.
            let target = customer(&bank, &format!("t{n}@example.com"), 0).await;
            let target_username = format!("target{n}");
            bank.set_username(&target.principal, &target_username.parse().unwrap())
                .await
                .unwrap();
            bank.request_code(&common::id(&format!("t{n}@example.com")))
                .await
                .unwrap();
            let code = common::last_code(&bank, &format!("t{n}@example.com")).await;
            bank.request_password_reset(&common::id(&format!("t{n}@example.com")))
                .await
                .unwrap();
            let reset_code = common::last_code(&bank, &format!("t{n}@example.com")).await;
            let caller = match role {
                Role::Session | Role::KeyRead | Role::KeyWrite | Role::KeyReceive => {
                    Some(customer(&bank, &format!("c{n}@example.com"), 10_000).await)
                }
                _ => None,
            };
            let spare_key = match &caller {
                Some(c) => Some(
                    bank.create_api_key(&c.principal, "spare", &[Scope::Read], None)
                        .await
                        .unwrap()
                        .0
                        .id
                        .to_string(),
                ),
                None => None,
            };
            let secret = match (role, &caller) {
                (Role::Session, Some(c)) => c.token.clone(),
                (Role::KeyRead, Some(c)) => api_key(&bank, c, &[Scope::Read]).await,
                (Role::KeyWrite, Some(c)) => api_key(&bank, c, &[Scope::Write]).await,
                (Role::KeyReceive, Some(c)) => api_key(&bank, c, &[Scope::Receive]).await,
                (Role::Support, _) => staff[0].clone(),
                (Role::Compliance, _) => staff[1].clone(),
                (Role::Treasury, _) => staff[2].clone(),
                (Role::Admin, _) => staff[3].clone(),
                _ => String::new(),
            };
            let cred = match role {
                Role::Anonymous => Cred::None,
                Role::KeyRead | Role::KeyWrite | Role::KeyReceive => Cred::Key(&secret),
                _ => Cred::Bearer(&secret),
            };
            let fx = Fx {
                n,
                caller_wallet: caller.as_ref().map(|c| c.wallet.to_string()),
                target,
                target_username,
                spare_key,
                code,
                reset_code,
            };
            let got = match call(&fx) {
                Call::Public(q, v) => {
                    let (s, v) = a.gql(cred, &q, v).await;
                    graphql_outcome(s, &v)
                }
                Call::Admin(q, v) => {
                    let (s, v) = a.admin(cred, &q, v).await;
                    graphql_outcome(s, &v)
                }
                Call::Get(path) => {
                    let (s, _, v) = a.get(&path, cred).await;
                    rest_outcome(s, &v)
                }
                Call::Post(path, body) => {
                    let key = format!("matrix-{n}");
                    let (s, _, v) = a.post(&path, cred, Some(&key), &body.to_string()).await;
                    rest_outcome(s, &v)
                }
                Call::Ws(q) => {
                    let auth = match cred {
                        Cred::None => json!({}),
                        Cred::Key(k) => json!({"X-API-KEY": k}),
                        Cred::Bearer(t) => json!({"Authorization": format!("Bearer {t}")}),
                    };
                    subscribe(&a, addr, auth, q, fx.caller_wallet.as_deref(), &funder).await
                }
            };
            match got {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!("{name} as {role:?}: want {want:?}, got {got:?}")),
                Err(why) => {
                    failures.push(format!("{name} as {role:?}: the call went wrong: {why}"))
                }
            }
        }
    }
    server.abort();
    assert!(
        failures.is_empty(),
        "{} of {n} calls disagree with the matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
