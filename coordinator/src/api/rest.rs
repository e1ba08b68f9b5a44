//! REST under `/v1`: the same operations as the GraphQL API, JSON in and out, amounts as
//! integer satoshis, errors as `{"code", "message"}` with an HTTP status. Every POST needs
//! an `Idempotency-Key` header (see `idempotency`). The OpenAPI document is generated
//! from these handlers by utoipa and served at `/v1/openapi.json`.
//!
//! Authentication: `X-API-KEY: <key>` or `Authorization: Bearer <session token>`. Scopes:
//! reads need `read`, sending and settings need `write`; API keys can be managed only
//! from a login session.

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tracing::Instrument;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::errors::{ApiError, ErrorBody};
use super::idempotency::{self, RedactedBody};
use super::paging::page_size;
use super::payments::{find_line, send_payment};
use super::{AppState, authenticate};
use crate::Sats;
use crate::bank::{
    AccountView, ApiKeyInfo, LimitView, Limits, PaymentStatus, Principal, Recipient, Scope,
    SendRequest, Username, WalletTransaction, WalletView,
};
use crate::ids::{ApiKeyId, WalletId};

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDto {
    /// Account id.
    pub id: String,
    /// User id.
    pub user_id: String,
    /// Payable username, once set.
    pub username: Option<String>,
    /// KYC level, 0 to 3.
    pub level: u8,
    /// ACTIVE, LOCKED or CLOSED.
    pub status: String,
    /// The default BTC wallet.
    pub default_wallet_id: String,
    /// When it was created (RFC 3339).
    pub created_at: DateTime<Utc>,
}

impl From<AccountView> for AccountDto {
    fn from(a: AccountView) -> AccountDto {
        AccountDto {
            id: a.id.to_string(),
            user_id: a.user_id.to_string(),
            username: a.username,
            level: a.level.get(),
            status: a.status.as_str().to_owned(),
            default_wallet_id: a.default_wallet_id.to_string(),
            created_at: a.created_at,
        }
    }
}

/// A wallet with its balances in satoshis.
#[derive(Debug, Serialize, ToSchema)]
pub struct WalletDto {
    /// Wallet id.
    pub id: String,
    /// Owning account.
    pub account_id: String,
    /// "BTC".
    pub currency: String,
    /// Settled balance, satoshis.
    pub balance_sats: u64,
    /// Incoming funds not yet settled, satoshis.
    pub pending_incoming_sats: u64,
}

impl From<WalletView> for WalletDto {
    fn from(w: WalletView) -> WalletDto {
        WalletDto {
            id: w.id.to_string(),
            account_id: w.account_id.to_string(),
            currency: w.currency,
            balance_sats: w.balance.to_sat(),
            pending_incoming_sats: w.pending_incoming.to_sat(),
        }
    }
}

/// One transaction of a wallet.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionDto {
    /// Ledger transaction id.
    pub id: String,
    /// SEND or RECEIVE.
    pub direction: String,
    /// SUCCESS or PENDING.
    pub status: String,
    /// Amount in satoshis (always positive; see `direction`).
    pub amount_sats: u64,
    /// Fee paid by this wallet, satoshis.
    pub fee_sats: u64,
    /// Memo.
    pub memo: String,
    /// The other wallet, for internal transfers.
    pub counterparty_wallet_id: Option<String>,
    /// The other side's username, when it has one.
    pub counterparty_username: Option<String>,
    /// When (RFC 3339).
    pub created_at: DateTime<Utc>,
    /// Cursor of this line, for `after`.
    pub cursor: String,
}

impl From<WalletTransaction> for TransactionDto {
    fn from(t: WalletTransaction) -> TransactionDto {
        TransactionDto {
            id: t.id.to_string(),
            direction: match t.direction {
                crate::bank::TxDirection::Send => "SEND",
                crate::bank::TxDirection::Receive => "RECEIVE",
            }
            .to_owned(),
            status: t.status.to_owned(),
            amount_sats: t.amount.to_sat(),
            fee_sats: t.fee.to_sat(),
            memo: t.memo,
            counterparty_wallet_id: t.counterparty_wallet_id.map(|w| w.to_string()),
            counterparty_username: t.counterparty_username,
            created_at: t.created_at,
            cursor: t.cursor,
        }
    }
}

/// A page of transactions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionPageDto {
    /// The transactions.
    pub transactions: Vec<TransactionDto>,
    /// Whether older transactions follow.
    pub has_next_page: bool,
    /// Pass as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// Page parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many (1 to 100, default 20).
    pub first: Option<i32>,
    /// The `cursor` of the last transaction seen.
    pub after: Option<String>,
}

/// An internal transfer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendPaymentRequest {
    /// The paying wallet (the caller's).
    pub wallet_id: String,
    /// The recipient wallet (give this or `recipient_username`).
    pub recipient_wallet_id: Option<String>,
    /// The recipient's username (give this or `recipient_wallet_id`).
    pub recipient_username: Option<String>,
    /// Amount in satoshis (an integer).
    pub amount_sats: u64,
    /// Memo (at most 1000 bytes).
    pub memo: Option<String>,
}

/// Result of a send.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendPaymentResponse {
    /// SUCCESS, ALREADY_PAID (the domain's own replay) or PENDING.
    pub status: String,
    /// The ledger transaction, once posted.
    pub transaction_id: Option<String>,
    /// The sender's side of it (when the credential may read).
    pub transaction: Option<TransactionDto>,
}

/// A limit over a rolling 24 hours.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitDto {
    /// The limit, satoshis.
    pub total_sats: u64,
    /// Used in the window, satoshis.
    pub used_sats: u64,
    /// Left, satoshis.
    pub remaining_sats: u64,
    /// The window, seconds.
    pub interval_seconds: u64,
}

impl From<LimitView> for LimitDto {
    fn from(l: LimitView) -> LimitDto {
        LimitDto {
            total_sats: l.total.to_sat(),
            used_sats: l.used.to_sat(),
            remaining_sats: l.remaining.to_sat(),
            interval_seconds: 86_400,
        }
    }
}

/// An account's limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsDto {
    /// The KYC level they come from.
    pub level: u8,
    /// Internal sends.
    pub internal_send: LimitDto,
    /// Withdrawals.
    pub withdrawal: LimitDto,
}

impl From<Limits> for LimitsDto {
    fn from(l: Limits) -> LimitsDto {
        LimitsDto {
            level: l.level.get(),
            internal_send: l.internal_send.into(),
            withdrawal: l.withdrawal.into(),
        }
    }
}

/// An API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
    /// Key id.
    pub id: String,
    /// Name.
    pub name: String,
    /// "read", "receive", "write".
    pub scopes: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked, if so.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last used to authenticate a request, to within a minute; null if never.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyInfo> for ApiKeyDto {
    fn from(k: ApiKeyInfo) -> ApiKeyDto {
        ApiKeyDto {
            id: k.id.to_string(),
            name: k.name,
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// Create an API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// "read", "receive", "write" (at least one).
    pub scopes: Vec<String>,
    /// Days until it expires (1 to 3650); never when absent.
    pub expire_in_days: Option<u32>,
}

/// A new API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateApiKeyResponse {
    /// The key.
    pub api_key: ApiKeyDto,
    /// The secret for `X-API-KEY`: in the first response only. A replay of the request
    /// (same Idempotency-Key) returns null here: the secret is never stored.
    pub secret: Option<String>,
}

/// Set the username.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetUsernameRequest {
    /// 3 to 50 letters, digits or `_`, a letter first.
    pub username: String,
}

pub(super) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn wallet_id(s: &str, field: &str) -> Result<WalletId, ApiError> {
    s.trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("invalid {field}: not a wallet id")))
}

type ApiResult<T> = Result<T, ApiError>;

/// The caller's account.
#[utoipa::path(get, path = "/v1/me", tag = "account",
    responses((status = 200, body = AccountDto), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn me(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<AccountDto>> {
    p.require(Scope::Read)?;
    Ok(Json(app.bank.me(&p).await?.into()))
}

/// Sets the caller's username (once).
#[utoipa::path(post, path = "/v1/me/username", tag = "account", request_body = SetUsernameRequest,
    params(("Idempotency-Key" = String, Header, description = "1 to 200 characters")),
    responses((status = 200, body = AccountDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn set_username(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<AccountDto>> {
    p.require(Scope::Write)?;
    let req: SetUsernameRequest = json_body(&body)?;
    let username: Username = req
        .username
        .parse()
        .map_err(|e: crate::bank::ParseError| ApiError::invalid(e.to_string()))?;
    app.bank.set_username(&p, &username).await?;
    Ok(Json(app.bank.account(p.account_id).await?.into()))
}

/// The caller's wallets.
#[utoipa::path(get, path = "/v1/wallets", tag = "wallets",
    responses((status = 200, body = [WalletDto]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn wallets(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Vec<WalletDto>>> {
    p.require(Scope::Read)?;
    let w = app.bank.wallets_of(p.account_id).await?;
    Ok(Json(w.into_iter().map(WalletDto::from).collect()))
}

/// One of the caller's wallets (another account's wallet is not found).
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}", tag = "wallets",
    params(("wallet_id" = String, Path, description = "Wallet id")),
    responses((status = 200, body = WalletDto), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn wallet(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<WalletDto>> {
    p.require(Scope::Read)?;
    let id = wallet_id(&id, "wallet_id")?;
    Ok(Json(app.bank.wallet(&p, id).await?.into()))
}

/// A wallet's transactions, newest first.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/transactions", tag = "wallets",
    params(("wallet_id" = String, Path, description = "Wallet id"), PageQuery),
    responses((status = 200, body = TransactionPageDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn transactions(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<TransactionPageDto>> {
    p.require(Scope::Read)?;
    let id = wallet_id(&id, "wallet_id")?;
    let n = page_size(q.first, None, None)?;
    let page = app.bank.transactions(&p, id, n, q.after.as_deref()).await?;
    let end_cursor = page.lines.last().map(|l| l.cursor.clone());
    Ok(Json(TransactionPageDto {
        transactions: page.lines.into_iter().map(TransactionDto::from).collect(),
        has_next_page: page.has_next_page,
        end_cursor,
    }))
}

/// Sends satoshis to another wallet of this bank. Replaying the same request with the
/// same Idempotency-Key returns the stored response and moves nothing.
#[utoipa::path(post, path = "/v1/payments/intraledger", tag = "payments", request_body = SendPaymentRequest,
    params(("Idempotency-Key" = String, Header, description = "1 to 200 characters")),
    responses(
        (status = 200, body = SendPaymentResponse),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn send(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Json<SendPaymentResponse>> {
    p.require(Scope::Write)?;
    let req: SendPaymentRequest = json_body(&body)?;
    let wallet = wallet_id(&req.wallet_id, "wallet_id")?;
    // Resolve a username here so the payment event names the recipient wallet.
    let to = match (
        req.recipient_wallet_id.as_deref(),
        req.recipient_username.as_deref(),
    ) {
        (Some(w), None) => wallet_id(w, "recipient_wallet_id")?,
        (None, Some(u)) => {
            let u: Username = u
                .parse()
                .map_err(|e: crate::bank::ParseError| ApiError::invalid(e.to_string()))?;
            app.bank.wallet_of_username(&u).await?
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of recipient_wallet_id and recipient_username",
            ));
        }
    };
    let amount = Sats::new(req.amount_sats)
        .map_err(|_| ApiError::from(crate::bank::BankError::InvalidAmount))?;
    let request = SendRequest {
        wallet_id: wallet,
        recipient: Recipient::Wallet(to),
        amount,
        memo: req.memo,
        // The same key protects the payment in the domain too, should the stored
        // response be lost.
        idempotency_key: super::idempotency_key(&headers)?,
    };
    let (status, tx, line) = send_payment(&app, &p, request, true).await?;
    let transaction = match line {
        Some(l) => Some(l),
        None => match tx {
            Some(tx) if p.require(Scope::Read).is_ok() => find_line(&app, &p, wallet, tx).await?,
            _ => None,
        },
    };
    Ok(Json(SendPaymentResponse {
        status: match status {
            PaymentStatus::Success => "SUCCESS",
            PaymentStatus::AlreadyPaid => "ALREADY_PAID",
            PaymentStatus::Pending => "PENDING",
        }
        .to_owned(),
        transaction_id: tx.map(|t| t.to_string()),
        transaction: transaction.map(TransactionDto::from),
    }))
}

/// The caller's limits over the last 24 hours.
#[utoipa::path(get, path = "/v1/limits", tag = "account",
    responses((status = 200, body = LimitsDto), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn limits(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<LimitsDto>> {
    p.require(Scope::Read)?;
    Ok(Json(app.bank.limits(p.account_id).await?.into()))
}

/// The account's API keys (without secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    responses((status = 200, body = [ApiKeyDto]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn api_keys(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Vec<ApiKeyDto>>> {
    p.require(Scope::Read)?;
    let keys = app.bank.api_keys(&p).await?;
    Ok(Json(keys.into_iter().map(ApiKeyDto::from).collect()))
}

/// Creates an API key (from a login session only). The secret is in this response only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateApiKeyRequest,
    params(("Idempotency-Key" = String, Header, description = "1 to 200 characters")),
    responses((status = 201, body = CreateApiKeyResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_api_key(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    p.require(Scope::Write)?;
    let req: CreateApiKeyRequest = json_body(&body)?;
    let scopes = req
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let expires_at = match req.expire_in_days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => {
            Some(Utc::now() + chrono::Duration::days(i64::from(d)))
        }
        Some(_) => return Err(ApiError::invalid("expire_in_days must be 1 to 3650")),
    };
    let (info, secret) = app
        .bank
        .create_api_key(&p, &req.name, &scopes, expires_at)
        .await?;
    let redacted = CreateApiKeyResponse {
        api_key: info.clone().into(),
        secret: None,
    };
    let mut response = (
        StatusCode::CREATED,
        Json(CreateApiKeyResponse {
            api_key: info.into(),
            secret: Some(secret.expose().to_owned()),
        }),
    )
        .into_response();
    let redacted = serde_json::to_value(redacted).map_err(|e| ApiError::internal(&e))?;
    response.extensions_mut().insert(RedactedBody(redacted));
    Ok(response)
}

/// Revokes one of the account's API keys (from a login session only).
#[utoipa::path(post, path = "/v1/api-keys/{key_id}/revoke", tag = "api-keys",
    params(("key_id" = String, Path, description = "API key id"), ("Idempotency-Key" = String, Header, description = "1 to 200 characters")),
    responses((status = 200, body = ApiKeyDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn revoke_api_key(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyDto>> {
    p.require(Scope::Write)?;
    let id: ApiKeyId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("invalid key_id: not an API key id"))?;
    app.bank.revoke_api_key(&p, id).await?;
    let key = app
        .bank
        .api_keys(&p)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or(ApiError::from(crate::bank::BankError::NotFound {
            what: "api key",
        }))?;
    Ok(Json(key.into()))
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-KEY"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of `/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Coordinator REST API", description = "Registration and login, accounts, wallets, internal transfers and API keys. Amounts are integer satoshis."),
    paths(me, set_username, wallets, wallet, transactions, send, limits, api_keys, create_api_key, revoke_api_key),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// The OpenAPI document as pretty JSON, as committed in `openapi.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::rest_auth::AuthDoc::openapi());
    doc.merge(super::rest_onchain::OnchainDoc::openapi());
    doc.merge(super::rest_health::HealthDoc::openapi());
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
}

/// Authenticates every `/v1` request except the OpenAPI document; the principal goes
/// into the request's extensions.
async fn auth(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    match authenticate(&app.bank, req.headers()).await {
        Ok((Some(p), _)) => {
            let span = tracing::info_span!("rest", account = %p.account_id);
            req.extensions_mut().insert(p);
            next.run(req).instrument(span).await
        }
        Ok((None, _)) => ApiError::unauthenticated().into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) fn routes(app: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/me", get(me))
        .route("/v1/me/username", post(set_username))
        .route("/v1/wallets", get(wallets))
        .route("/v1/wallets/{wallet_id}", get(wallet))
        .route("/v1/wallets/{wallet_id}/transactions", get(transactions))
        .route("/v1/payments/intraledger", post(send))
        .route("/v1/limits", get(limits))
        .route("/v1/api-keys", get(api_keys).post(create_api_key))
        .route("/v1/api-keys/{key_id}/revoke", post(revoke_api_key))
        .merge(super::rest_onchain::routes())
        // Layers run outside-in: authentication first, then idempotency. Route layers:
        // they wrap these routes only, so an unknown path reaches the router's 404
        // instead of a credential or idempotency-key error.
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            idempotency::middleware,
        ))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth));
    let health = super::rest_health::health_routes(app.readiness.clone());
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .merge(authed)
        .with_state(app)
        .merge(health)
}
