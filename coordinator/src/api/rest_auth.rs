//! REST registration and login under `/v1/auth`: the same operations as the GraphQL
//! mutations `userRegister`, `userRequestAuthCode`, `userCodeLogin`, `userPasswordLogin`
//! and `userLogout`, with the same rate limits (shared counters, so switching API does
//! not buy more attempts) and the same error mapping.
//!
//! **Idempotency.** These POSTs take no `Idempotency-Key` (one sent is ignored): stored
//! replay is scoped to an account, and these requests have none yet; a stored login
//! response would hold a session token. Each is safe to retry as it is: a repeated
//! registration sends a new code (or, once confirmed, answers `IDENTITY_TAKEN`), a repeated code request
//! sends another code (the latest one counts), a repeated confirmation answers
//! `INVALID_CODE` (the code is used; log in again), a repeated login opens another
//! session, and a repeated logout answers 401 (the token is revoked already).
//!
//! Passwords and codes are read straight into [`Secret`]s and the request body is
//! zeroized after parsing (best effort: copies in the HTTP stack are not reached).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::Instrument;
use utoipa::{OpenApi, ToSchema};
use zeroize::Zeroize;

use super::errors::{ApiError, ErrorBody};
use super::ratelimit::LimitedOp;
use super::rest::json_body;
use super::{AppState, ClientAddr, authenticate};
use crate::bank::{
    AuthMethod, BankError, Identity, NewPassword, ParseError, PasswordProof, Secret, Session,
};

/// A secret request field: goes straight into a [`Secret`] (zeroized, redacted in
/// `Debug`).
#[derive(Debug)]
pub struct SecretField(Secret);

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretField(Secret::new(s)))
    }
}

/// Registration with an e-mail address or a phone number. The password is set when the
/// code is confirmed, by the identity's proven owner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// E-mail address (give this or `phone`).
    pub email: Option<String>,
    /// Phone number in E.164 form, e.g. `+41791234567` (give this or `email`).
    pub phone: Option<String>,
}

/// Ask for a one-time code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// E-mail address (give this or `phone`).
    pub email: Option<String>,
    /// Phone number (give this or `email`).
    pub phone: Option<String>,
}

/// Confirm a one-time code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmCodeRequest {
    /// E-mail address (give this or `phone`).
    pub email: Option<String>,
    /// Phone number (give this or `email`).
    pub phone: Option<String>,
    /// The six-digit code.
    #[schema(value_type = String, format = Password)]
    pub code: SecretField,
    /// With the first confirmation only: the account's password (10 to 128 characters).
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretField>,
}

/// Change the password: prove it with the current password or a reset code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    /// The current password (give this or `code`).
    #[schema(value_type = Option<String>, format = Password)]
    pub current_password: Option<SecretField>,
    /// A code from `POST /v1/auth/password/reset/request` (give this or
    /// `current_password`).
    #[schema(value_type = Option<String>, format = Password)]
    pub code: Option<SecretField>,
    /// 10 to 128 characters.
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretField,
}

/// Set a new password with a reset code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// E-mail address (give this or `phone`).
    pub email: Option<String>,
    /// Phone number (give this or `email`).
    pub phone: Option<String>,
    /// The six-digit code.
    #[schema(value_type = String, format = Password)]
    pub code: SecretField,
    /// 10 to 128 characters.
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretField,
}

/// Log in with a password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// E-mail address (give this or `phone`).
    pub email: Option<String>,
    /// Phone number (give this or `email`).
    pub phone: Option<String>,
    /// The password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretField,
}

/// A code was sent (or, for a code request, would have been: the answer does not tell
/// whether the identity is registered).
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeSentResponse {
    /// `CODE_SENT`.
    pub status: String,
}

impl CodeSentResponse {
    fn new() -> CodeSentResponse {
        CodeSentResponse {
            status: "CODE_SENT".to_owned(),
        }
    }
}

/// A login session: use `Authorization: Bearer <token>`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// The session token (`sess_...`), shown once.
    pub token: String,
    /// `Bearer`.
    pub token_type: String,
    /// When it stops working (RFC 3339).
    pub expires_at: DateTime<Utc>,
}

fn identity(email: Option<&str>, phone: Option<&str>) -> Result<Identity, ApiError> {
    let parsed = match (email, phone) {
        (Some(e), None) => e.parse().map(Identity::Email),
        (None, Some(p)) => p.parse().map(Identity::Phone),
        _ => return Err(ApiError::invalid("give exactly one of email and phone")),
    };
    parsed.map_err(|e: ParseError| ApiError::invalid(e.to_string()))
}

/// Parses a body holding a secret, then wipes the body.
fn secret_body<T: serde::de::DeserializeOwned>(body: Bytes) -> Result<T, ApiError> {
    let parsed = serde_json::from_slice(&body).map_err(|e| {
        // serde quotes a wrongly typed value in its message, and here it may be a
        // password: say where, not what.
        if e.classify() == serde_json::error::Category::Data && e.to_string().starts_with("invalid")
        {
            ApiError::invalid(format!(
                "invalid JSON body: a field has the wrong type at line {} column {}",
                e.line(),
                e.column()
            ))
        } else {
            ApiError::invalid(format!("invalid JSON body: {e}"))
        }
    });
    if let Ok(mut bytes) = body.try_into_mut() {
        bytes.zeroize();
    }
    parsed
}

/// The same counters as the GraphQL side.
async fn rate_limit(
    app: &AppState,
    client: &ClientAddr,
    op: LimitedOp,
    identity: &Identity,
) -> Result<(), ApiError> {
    app.limiter.check(op, &client.0, identity).await
}

fn new_password(secret: SecretField) -> Result<NewPassword, ApiError> {
    NewPassword::new(secret.0).map_err(|e| ApiError::invalid(e.to_string()))
}

fn session_response(session: &Session) -> Response {
    let mut response = Json(SessionResponse {
        token: session.token.expose().to_owned(),
        token_type: "Bearer".to_owned(),
        expires_at: session.expires_at,
    })
    .into_response();
    // RFC 6749 5.1: responses carrying a token are not to be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

type ApiResult<T> = Result<T, ApiError>;

/// Registers an e-mail address or a phone number.
///
/// Sends a verification code; confirm it with `POST /v1/auth/code/confirm`, which also
/// sets the password. If the code cannot be sent, nothing is kept and the registration
/// can be repeated. No Idempotency-Key: a repeat before the confirmation sends a new
/// code, after it answers `IDENTITY_TAKEN`. Rate-limited per client and per identity.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = CodeSentResponse),
        (status = 400, body = ErrorBody, description = "INVALID_INPUT"),
        (status = 409, body = ErrorBody, description = "IDENTITY_TAKEN"),
        (status = 422, body = ErrorBody, description = "CHANNEL_UNAVAILABLE (no channel for this kind of identity) or NOTIFICATION_REJECTED"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED"),
        (status = 503, body = ErrorBody, description = "NOTIFICATION_FAILED: try again later")))]
async fn register(
    State(app): State<AppState>,
    client: ClientAddr,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    let req: RegisterRequest = json_body(&body)?;
    let identity = identity(req.email.as_deref(), req.phone.as_deref())?;
    rate_limit(&app, &client, LimitedOp::Register, &identity).await?;
    app.bank.register(&identity).await?;
    Ok((StatusCode::CREATED, Json(CodeSentResponse::new())))
}

/// Sends a fresh one-time code.
///
/// A verification code before the registration is confirmed, a login code after. The
/// answer is the same whether or not the identity is registered. No Idempotency-Key: a
/// repeat sends another code. Rate-limited.
#[utoipa::path(post, path = "/v1/auth/code", tag = "auth", request_body = CodeRequest,
    responses(
        (status = 202, body = CodeSentResponse),
        (status = 400, body = ErrorBody, description = "INVALID_INPUT"),
        (status = 422, body = ErrorBody, description = "CHANNEL_UNAVAILABLE or NOTIFICATION_REJECTED"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED"),
        (status = 503, body = ErrorBody, description = "NOTIFICATION_FAILED: a code sent earlier stays valid")))]
async fn request_code(
    State(app): State<AppState>,
    client: ClientAddr,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    let req: CodeRequest = json_body(&body)?;
    let identity = identity(req.email.as_deref(), req.phone.as_deref())?;
    rate_limit(&app, &client, LimitedOp::Code, &identity).await?;
    app.bank.request_code(&identity).await?;
    Ok((StatusCode::ACCEPTED, Json(CodeSentResponse::new())))
}

/// Confirms a one-time code and opens a session.
///
/// The first confirmation verifies the registration and creates the account with its
/// BTC wallet, and sets the password if one is given. No Idempotency-Key: a repeat answers
/// `INVALID_CODE` (the code is used). Rate-limited with logins.
#[utoipa::path(post, path = "/v1/auth/code/confirm", tag = "auth", request_body = ConfirmCodeRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 400, body = ErrorBody, description = "INVALID_INPUT or INVALID_CODE"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED")))]
async fn confirm_code(
    State(app): State<AppState>,
    client: ClientAddr,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ConfirmCodeRequest = secret_body(body)?;
    let identity = identity(req.email.as_deref(), req.phone.as_deref())?;
    rate_limit(&app, &client, LimitedOp::Login, &identity).await?;
    let password = req.password.map(new_password).transpose()?;
    let (session, _) = app
        .bank
        .confirm_code_with_password(&identity, req.code.0.expose(), password.as_ref())
        .await?;
    Ok(session_response(&session))
}

/// Logs in with a password and opens a session.
///
/// An unknown or unconfirmed identity, one without a password and a wrong password give
/// the same answer. No Idempotency-Key: a repeat opens another session. Rate-limited per
/// client and per identity.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 400, body = ErrorBody, description = "INVALID_INPUT"),
        (status = 401, body = ErrorBody, description = "INVALID_CREDENTIALS"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED")))]
async fn login(
    State(app): State<AppState>,
    client: ClientAddr,
    body: Bytes,
) -> ApiResult<Response> {
    let req: LoginRequest = secret_body(body)?;
    let identity = identity(req.email.as_deref(), req.phone.as_deref())?;
    rate_limit(&app, &client, LimitedOp::Login, &identity).await?;
    let session = app.bank.login(&identity, &req.password.0).await?;
    Ok(session_response(&session))
}

/// Revokes the session token of this request.
///
/// The token is the one in `Authorization: Bearer`; an API key cannot log out. No
/// Idempotency-Key: a repeat answers 401 (the token is revoked).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, body = ErrorBody, description = "NOT_AUTHENTICATED"),
        (status = 403, body = ErrorBody, description = "NOT_AUTHORIZED: needs a session")),
    security(("bearer" = [])))]
async fn logout(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<StatusCode> {
    let (principal, bearer) = authenticate(&app.bank, &headers).await?;
    let principal = principal.ok_or_else(ApiError::unauthenticated)?;
    let (AuthMethod::Session, Some(token)) = (principal.method, bearer) else {
        return Err(BankError::Forbidden { needed: "session" }.into());
    };
    let span = tracing::info_span!("rest", account = %principal.account_id);
    app.bank.logout(token.expose()).instrument(span).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the password of the logged-in user.
///
/// Proved by the current password or a reset code; ends the user's other sessions (this
/// one and the account's API keys stay). Needs a session, not an API key. No
/// Idempotency-Key: a repeat with the same proof changes nothing new (a used code answers
/// `INVALID_CODE`). Rate-limited with logins.
#[utoipa::path(post, path = "/v1/auth/password/change", tag = "auth", request_body = PasswordChangeRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, body = ErrorBody, description = "INVALID_INPUT or INVALID_CODE"),
        (status = 401, body = ErrorBody, description = "NOT_AUTHENTICATED or INVALID_CREDENTIALS (wrong current password)"),
        (status = 403, body = ErrorBody, description = "NOT_AUTHORIZED: needs a session"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED")),
    security(("bearer" = [])))]
async fn change_password(
    State(app): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (principal, bearer) = authenticate(&app.bank, &headers).await?;
    let principal = principal.ok_or_else(ApiError::unauthenticated)?;
    let (AuthMethod::Session, Some(token)) = (principal.method, bearer) else {
        return Err(BankError::Forbidden { needed: "session" }.into());
    };
    let req: PasswordChangeRequest = secret_body(body)?;
    let proof = match (req.current_password, req.code) {
        (Some(p), None) => PasswordProof::Current(p.0),
        (None, Some(c)) => PasswordProof::Code(c.0),
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of current_password and code",
            ));
        }
    };
    let password = new_password(req.new_password)?;
    app.limiter
        .check_account(LimitedOp::Login, &client.0, principal.account_id)
        .await?;
    let span = tracing::info_span!("rest", account = %principal.account_id);
    app.bank
        .change_password(&principal, &token, &proof, &password)
        .instrument(span)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a password reset code.
///
/// To a verified e-mail address or phone; the answer is the same whether or not the
/// identity is registered. No Idempotency-Key: a repeat sends another code.
/// Rate-limited with code requests.
#[utoipa::path(post, path = "/v1/auth/password/reset/request", tag = "auth", request_body = CodeRequest,
    responses(
        (status = 202, body = CodeSentResponse),
        (status = 400, body = ErrorBody, description = "INVALID_INPUT"),
        (status = 422, body = ErrorBody, description = "CHANNEL_UNAVAILABLE or NOTIFICATION_REJECTED"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED"),
        (status = 503, body = ErrorBody, description = "NOTIFICATION_FAILED")))]
async fn request_password_reset(
    State(app): State<AppState>,
    client: ClientAddr,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    let req: CodeRequest = json_body(&body)?;
    let identity = identity(req.email.as_deref(), req.phone.as_deref())?;
    rate_limit(&app, &client, LimitedOp::Code, &identity).await?;
    app.bank.request_password_reset(&identity).await?;
    Ok((StatusCode::ACCEPTED, Json(CodeSentResponse::new())))
}

/// Sets a new password with a reset code.
///
/// Ends every session of the user and revokes the account's API keys. No
/// Idempotency-Key: a repeat answers `INVALID_CODE` (the code is used). Rate-limited with
/// logins.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "auth", request_body = PasswordResetRequest,
    responses(
        (status = 204, description = "Reset"),
        (status = 400, body = ErrorBody, description = "INVALID_INPUT or INVALID_CODE"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED")))]
async fn reset_password(
    State(app): State<AppState>,
    client: ClientAddr,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: PasswordResetRequest = secret_body(body)?;
    let identity = identity(req.email.as_deref(), req.phone.as_deref())?;
    rate_limit(&app, &client, LimitedOp::Login, &identity).await?;
    let password = new_password(req.new_password)?;
    app.bank
        .reset_password(&identity, req.code.0.expose(), &password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI paths of `/v1/auth`, merged into the `/v1` document.
#[derive(OpenApi)]
#[openapi(
    paths(
        register,
        request_code,
        confirm_code,
        login,
        logout,
        change_password,
        request_password_reset,
        reset_password
    ),
    components(schemas(ErrorBody))
)]
pub(crate) struct AuthDoc;

pub(crate) fn routes(app: AppState) -> Router {
    // No authentication or idempotency layers: these routes make the credentials (see
    // the module documentation); logout authenticates itself.
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/code", post(request_code))
        .route("/v1/auth/code/confirm", post(confirm_code))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/password/change", post(change_password))
        .route(
            "/v1/auth/password/reset/request",
            post(request_password_reset),
        )
        .route("/v1/auth/password/reset", post(reset_password))
        .with_state(app)
}
