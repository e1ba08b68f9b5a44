//! The one mapping from domain errors to stable API codes and safe messages. Internal
//! detail (database errors, corrupt rows, ledger failures) goes to tracing with its full
//! chain, never to the client. GraphQL carries the code in `extensions.code` (top-level
//! errors) or in `errors { code message path }` (Blink's payload errors); REST sends
//! `{"code", "message"}` with the HTTP status below.

use async_graphql::ErrorExtensions;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::bank::{BankError, NotifyError};
use crate::ledger::LedgerError;
use crate::webhooks::WebhookError;

/// A stable, machine-readable error for API clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Stable code, e.g. `INSUFFICIENT_BALANCE`.
    pub code: &'static str,
    /// Safe, human-readable message.
    pub message: String,
    /// HTTP status for REST.
    pub http_status: u16,
}

fn e(code: &'static str, message: impl Into<String>, http_status: u16) -> ApiError {
    ApiError {
        code,
        message: message.into(),
        http_status,
    }
}

impl ApiError {
    /// Input that does not parse or is out of range.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        e("INVALID_INPUT", message, 400)
    }

    /// A Lightning payment that failed; `reason` is the stored failure reason (the funds
    /// were returned).
    pub fn payment_failed(reason: &str) -> ApiError {
        let message = match reason {
            "NO_ROUTE" => "no route to the payee within the fee reserve",
            "RECIPIENT_REJECTED" => "the recipient refused the payment",
            "TIMEOUT" => "the payment timed out",
            "INSUFFICIENT_BALANCE" => "insufficient balance",
            _ => "the payment failed",
        };
        e(
            "PAYMENT_FAILED",
            format!("{message}; nothing was paid"),
            422,
        )
    }

    /// No (valid) credential.
    pub fn unauthenticated() -> ApiError {
        e("NOT_AUTHENTICATED", "not authenticated", 401)
    }

    /// Too many attempts from one address or for one identity.
    pub fn rate_limited() -> ApiError {
        e("RATE_LIMITED", "too many requests; try again later", 429)
    }

    /// Introspection (`__schema`, `__type`) outside development, or on the staff schema
    /// without an admin session.
    pub fn introspection_disabled() -> ApiError {
        e(
            "INTROSPECTION_DISABLED",
            "introspection is disabled here; the schema is published with the API",
            403,
        )
    }

    /// A GraphQL document whose fields, counted as often as their lists repeat them,
    /// cost more than the limit.
    pub fn query_too_complex(cost: usize, limit: usize) -> ApiError {
        e(
            "QUERY_TOO_COMPLEX",
            format!(
                "query too complex: it costs {cost}, the limit is {limit} (each field counts once per item of the lists around it; ask for smaller pages or fewer fields)"
            ),
            400,
        )
    }

    /// A known path with a method it does not take.
    pub fn method_not_allowed(method: &axum::http::Method, path: &str) -> ApiError {
        let path: String = path.chars().take(200).collect();
        e(
            "METHOD_NOT_ALLOWED",
            format!("{path} does not take {method}"),
            405,
        )
    }

    /// No route for this method and path.
    pub fn route_not_found(method: &axum::http::Method, path: &str) -> ApiError {
        // The path is the client's; a bounded copy is enough to recognise it.
        let path: String = path.chars().take(200).collect();
        e("NOT_FOUND", format!("no route for {method} {path}"), 404)
    }

    /// Too many WebSocket connections (in total, or for one credential).
    pub fn too_many_connections(message: impl Into<String>) -> ApiError {
        e("TOO_MANY_CONNECTIONS", message, 503)
    }

    /// A POST without an `Idempotency-Key` header.
    pub fn idempotency_key_required() -> ApiError {
        e(
            "IDEMPOTENCY_KEY_REQUIRED",
            "the Idempotency-Key header (1 to 200 characters) is required on POST",
            400,
        )
    }

    /// The idempotency key was used for a different request.
    pub fn idempotency_key_reused() -> ApiError {
        e(
            "IDEMPOTENCY_CONFLICT",
            "idempotency key reused with different content",
            409,
        )
    }

    /// The first request with this idempotency key is still running.
    pub fn request_in_progress() -> ApiError {
        e(
            "REQUEST_IN_PROGRESS",
            "a request with this idempotency key is in progress; retry later",
            409,
        )
    }

    /// The request ran past the server's time limit and was abandoned. A payment in it
    /// may or may not have been made: repeating it with the same idempotency key tells.
    pub fn timeout() -> ApiError {
        e(
            "REQUEST_TIMEOUT",
            "the request took too long and was abandoned; its outcome is unknown, \
             repeat it with the same idempotency key",
            503,
        )
    }

    /// A request body larger than the server accepts.
    pub fn payload_too_large(limit: usize) -> ApiError {
        e(
            "PAYLOAD_TOO_LARGE",
            format!("request body larger than {limit} bytes"),
            413,
        )
    }

    /// An unexpected failure whose detail was logged.
    pub fn internal(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        e("INTERNAL_ERROR", "internal error", 500)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// As a GraphQL top-level error with `extensions.code`.
    pub fn to_graphql(&self) -> async_graphql::Error {
        let code = self.code;
        async_graphql::Error::new(self.message.clone()).extend_with(|_, ext| ext.set("code", code))
    }
}

impl From<&BankError> for ApiError {
    fn from(err: &BankError) -> ApiError {
        let auth_failure = match err {
            BankError::InvalidCredentials => Some("invalid_credentials"),
            BankError::InvalidCode => Some("invalid_code"),
            BankError::Unauthenticated => Some("unauthenticated"),
            _ => None,
        };
        if let Some(kind) = auth_failure {
            metrics::counter!("bastion_auth_failures_total", "kind" => kind).increment(1);
        }
        match err {
            BankError::Invalid(p) => e("INVALID_INPUT", p.to_string(), 400),
            BankError::IdentityTaken => e("IDENTITY_TAKEN", "already registered", 409),
            BankError::InvalidCredentials => e("INVALID_CREDENTIALS", "invalid credentials", 401),
            BankError::NotVerified => e("NOT_VERIFIED", "confirm the code sent to you first", 403),
            BankError::InvalidCode => e("INVALID_CODE", "invalid or expired code", 400),
            BankError::Unauthenticated => ApiError::unauthenticated(),
            BankError::Forbidden { needed } => e(
                "NOT_AUTHORIZED",
                format!("not authorized (needs {needed})"),
                403,
            ),
            BankError::LockHeld { placed_by } => e(
                "LOCK_HELD",
                format!(
                    "the lock was placed by {placed_by}; only {placed_by} or an admin may lift it"
                ),
                403,
            ),
            BankError::NotFound { what } => e("NOT_FOUND", format!("{what} not found"), 404),
            BankError::UsernameTaken => e("USERNAME_TAKEN", "username taken", 409),
            BankError::UsernameAlreadySet => e("USERNAME_ALREADY_SET", "username already set", 409),
            BankError::InvalidTransition { from, to } => e(
                "INVALID_STATUS_CHANGE",
                format!("status cannot change from {from} to {to}"),
                409,
            ),
            BankError::InvalidAmount => e("INVALID_AMOUNT", "invalid amount", 400),
            BankError::InsufficientBalance => {
                e("INSUFFICIENT_BALANCE", "insufficient balance", 422)
            }
            BankError::LimitExceeded { limit, used, .. } => e(
                "LIMIT_EXCEEDED",
                format!(
                    "limit exceeded: {} sats per 24 hours, {} used",
                    limit.to_sat(),
                    used.to_sat()
                ),
                422,
            ),
            BankError::AccountNotActive { status } => {
                e("ACCOUNT_NOT_ACTIVE", format!("account is {status}"), 403)
            }
            BankError::SelfPayment => e("SELF_PAYMENT", "cannot pay the same wallet", 400),
            BankError::RecipientUnavailable => {
                e("RECIPIENT_UNAVAILABLE", "recipient cannot receive", 422)
            }
            BankError::IdempotencyConflict => ApiError::idempotency_key_reused(),
            BankError::LightningUnavailable => e(
                "LIGHTNING_UNAVAILABLE",
                "the Lightning node is unavailable; nothing was paid",
                503,
            ),
            BankError::NoRoute => e("ROUTE_FINDING_ERROR", "no route to the payee", 422),
            BankError::InvoiceAlreadyPaid => e("ALREADY_PAID", "invoice already paid", 409),
            BankError::InvoiceExpired => e("INVOICE_EXPIRED", "invoice expired", 422),
            BankError::Ledger(LedgerError::OutcomeUnknown { .. }) => {
                tracing::warn!(error = %err, "ledger outcome unknown");
                e(
                    "OUTCOME_UNKNOWN",
                    "outcome unknown; retry with the same idempotency key",
                    503,
                )
            }
            BankError::Notify(NotifyError::NoChannel { channel }) => e(
                "CHANNEL_UNAVAILABLE",
                format!("codes cannot be sent by {channel} here; use an e-mail address"),
                422,
            ),
            BankError::Notify(NotifyError::Rejected { .. }) => {
                tracing::warn!(error = %ErrorChain(err), "notifier refused the message");
                e(
                    "NOTIFICATION_REJECTED",
                    "the code could not be delivered to this address",
                    422,
                )
            }
            BankError::Notify(_) => {
                // The detail (server, reply) is for operators; the client may retry.
                tracing::warn!(error = %ErrorChain(err), "notifier failed");
                e(
                    "NOTIFICATION_FAILED",
                    "the code could not be sent; try again later",
                    503,
                )
            }
            other => ApiError::internal(&ErrorChain(other)),
        }
    }
}

impl From<BankError> for ApiError {
    fn from(err: BankError) -> ApiError {
        ApiError::from(&err)
    }
}

impl From<&WebhookError> for ApiError {
    fn from(err: &WebhookError) -> ApiError {
        match err {
            WebhookError::InvalidUrl(why) => e("INVALID_INPUT", format!("invalid url: {why}"), 400),
            WebhookError::TooManyEndpoints { max } => e(
                "LIMIT_EXCEEDED",
                format!("at most {max} callback endpoints per account"),
                409,
            ),
            WebhookError::NotFound => e("NOT_FOUND", "callback endpoint not found", 404),
            WebhookError::Bank(b) => ApiError::from(b),
            other => ApiError::internal(&ErrorChain(other)),
        }
    }
}

/// Displays an error with its sources, for the log.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// The REST error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: String,
    /// Safe human-readable message.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status(),
            Json(ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_does_not_leak() {
        let db = BankError::Database(sqlx::Error::Protocol("secret table xyz".into()));
        let api = ApiError::from(&db);
        assert_eq!(api.code, "INTERNAL_ERROR");
        assert!(!api.message.contains("xyz"));
        assert_eq!(
            ApiError::from(&BankError::InsufficientBalance).code,
            "INSUFFICIENT_BALANCE"
        );
        assert_eq!(ApiError::from(&BankError::Unauthenticated).http_status, 401);
        let down = BankError::Notify(NotifyError::Unavailable {
            channel: "smtp",
            detail: "mail.internal:587: connection refused".to_owned(),
        });
        let api = ApiError::from(&down);
        assert_eq!((api.code, api.http_status), ("NOTIFICATION_FAILED", 503));
        assert!(!api.message.contains("mail.internal"));
        let sms = ApiError::from(&BankError::Notify(NotifyError::NoChannel {
            channel: "sms",
        }));
        assert_eq!((sms.code, sms.http_status), ("CHANNEL_UNAVAILABLE", 422));
    }
}
