//! The API's one error type: a stable code, an HTTP status and a safe message.
//! Internal detail goes to tracing, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::hsm::pool::HsmFault;
use crate::store::StoreError;

/// The error body of every failed call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine code (see docs/signer-api.md).
    pub code: String,
    /// What went wrong, safe to show.
    pub message: String,
}

/// Every error the API answers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No or malformed `Authorization: Bearer` header, or an unknown token.
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// The client may not use this policy.
    #[error("this client may not submit to policy {0}")]
    PolicyForbidden(String),
    /// No policy with this id is registered.
    #[error("no policy {0} is registered")]
    UnknownPolicy(String),
    /// The policy is registered but retired.
    #[error("policy {0} is retired")]
    PolicyRetired(String),
    /// No such signing request (or not this client's).
    #[error("no signing request {0}")]
    UnknownRequest(String),
    /// The body is not JSON, or not the expected JSON.
    #[error("the body is not valid JSON for this call: {0}")]
    BodyNotJson(String),
    /// A field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The PSBT does not decode.
    #[error("the psbt is malformed: {0}")]
    PsbtMalformed(String),
    /// Same idempotency key, other body.
    #[error("idempotency key {0:?} was used with another body")]
    IdempotencyConflict(String),
    /// The request is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// The HSM cannot be used now.
    #[error("hsm unavailable: {0}")]
    Hsm(#[from] HsmFault),
    /// The database cannot be used now, or failed.
    #[error("database unavailable")]
    Store(#[from] StoreError),
    /// The audit anchor on the HSM could not be updated, so nothing is released yet.
    #[error("the audit anchor could not be updated: {0}")]
    Anchor(HsmFault),
    /// Anything else (a bug).
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::PolicyForbidden(_) => "POLICY_FORBIDDEN",
            ApiError::UnknownPolicy(_) => "UNKNOWN_POLICY",
            ApiError::PolicyRetired(_) => "POLICY_RETIRED",
            ApiError::UnknownRequest(_) => "UNKNOWN_REQUEST",
            ApiError::BodyNotJson(_) => "BODY_NOT_JSON",
            ApiError::InvalidField { .. } => "INVALID_FIELD",
            ApiError::PsbtMalformed(_) => "PSBT_MALFORMED",
            ApiError::IdempotencyConflict(_) => "IDEMPOTENCY_CONFLICT",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::Hsm(fault) | ApiError::Anchor(fault) => fault.code(),
            ApiError::Store(_) => "DATABASE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::PolicyForbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownPolicy(_) | ApiError::UnknownRequest(_) => StatusCode::NOT_FOUND,
            ApiError::BodyNotJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::PsbtMalformed(_) => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyConflict(_)
            | ApiError::Conflict(_)
            | ApiError::PolicyRetired(_) => StatusCode::CONFLICT,
            ApiError::Hsm(_) | ApiError::Store(_) | ApiError::Anchor(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The full chain (database errors included) goes to the log only.
            tracing::error!(code = self.code(), error = ?self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let message = match &self {
            ApiError::Store(_) => "the signer's database is unavailable".to_owned(),
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        (
            status,
            Json(ErrorBody {
                code: self.code().to_owned(),
                message,
            }),
        )
            .into_response()
    }
}

/// JSON extraction whose rejections become [`ApiError::BodyNotJson`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::BodyNotJson(rejection.body_text())),
        }
    }
}
