//! LND's gRPC answers mapped to [`LightningError`]: what the bank can do about them.
//!
//! LND reports most refusals with the code `Unknown` and a message, so the message decides
//! where the code does not (the phrases are LND's own).

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use fedimint_tonic_lnd::tonic::{Code, Response, Status};

use crate::lightning::LightningError;

/// Phrases of LND's refusals of our credentials (macaroon missing, wrong, expired).
const AUTH: &[&str] = &[
    "macaroon",
    "verification failed",
    "permission denied",
    "cannot get macaroon",
];
/// Phrases of a node that is not ready yet.
const NOT_READY: &[&str] = &[
    "in the process of starting",
    "not yet ready",
    "wallet locked",
    "is not synced",
    "chain backend is still syncing",
];
/// Phrases of a request the node will never accept.
const INVALID: &[&str] = &[
    "invoice expired",
    "amount must",
    "unable to decode",
    "invalid",
    "mutually exclusive",
    "must be exactly",
    "too long",
];

/// Whether the error came from below gRPC: the connection, TLS or the HTTP/2 client.
fn is_transport(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(e) = source {
        if e.is::<std::io::Error>() || e.is::<rustls::Error>() {
            return true;
        }
        source = e.source();
    }
    let message = status.message();
    [
        "transport error",
        "client error",
        "error trying to connect",
        "connection",
    ]
    .iter()
    .any(|p| message.contains(p))
}

/// The [`LightningError`] for a gRPC status from LND.
pub(super) fn from_status(status: &Status) -> LightningError {
    let message = status.message().to_string();
    let has = |phrases: &[&str]| {
        let lower = message.to_lowercase();
        phrases.iter().any(|p| lower.contains(p))
    };
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => LightningError::Unauthorized(message),
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted => {
            LightningError::Unavailable(format!("{}: {message}", status.code()))
        }
        Code::ResourceExhausted => LightningError::Unavailable(message),
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            LightningError::Invalid(message)
        }
        Code::NotFound => LightningError::NotFound,
        Code::AlreadyExists if has(&["already paid", "already settled"]) => {
            LightningError::AlreadySettled
        }
        Code::Unknown if has(AUTH) => LightningError::Unauthorized(message),
        Code::Unknown if is_transport(status) => {
            LightningError::Unavailable(format!("cannot reach the node: {}", chain(status)))
        }
        Code::Unknown if has(NOT_READY) => LightningError::Unavailable(message),
        Code::Unknown if has(&["already settled", "already paid"]) => {
            LightningError::AlreadySettled
        }
        Code::Unknown if has(&["unable to locate", "unable to find", "not found"]) => {
            LightningError::NotFound
        }
        Code::Unknown if has(INVALID) => LightningError::Invalid(message),
        code => LightningError::Protocol(format!("{code}: {message}")),
    }
}

/// The status and its causes, for a message (TLS errors say what is wrong only there).
fn chain(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = status.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Awaits a call for at most `timeout`; no answer in time is [`LightningError::Unavailable`].
pub(super) async fn call<T>(
    what: &'static str,
    timeout: Duration,
    fut: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, LightningError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(LightningError::Unavailable(format!(
            "{what}: no answer within {timeout:?}"
        ))),
        Ok(Err(status)) => {
            let error = from_status(&status);
            tracing::debug!(what, code = ?status.code(), %error, "LND refused");
            Err(error)
        }
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// An amount LND sent as a signed integer, as what it is.
pub(super) fn non_negative(what: &str, value: i64) -> Result<u64, LightningError> {
    u64::try_from(value).map_err(|_| LightningError::Protocol(format!("negative {what}: {value}")))
}

/// A 32-byte hash or preimage LND sent.
pub(super) fn bytes32(what: &str, bytes: &[u8]) -> Result<[u8; 32], LightningError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| LightningError::Protocol(format!("{what} of {} bytes", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnd_refusals_map_to_what_the_bank_can_do() {
        let cases = [
            (
                Status::unknown("expected 1 macaroon, got 0"),
                "unauthorized",
            ),
            (
                Status::unknown(
                    "verification failed: signature mismatch after caveat verification",
                ),
                "unauthorized",
            ),
            (
                Status::permission_denied("permission denied"),
                "unauthorized",
            ),
            (Status::unavailable("connection refused"), "unavailable"),
            (
                Status::unknown("invoice expired. Valid until 2024-01-01"),
                "invalid",
            ),
            (
                Status::invalid_argument(
                    "amount must be specified when paying a zero amount invoice",
                ),
                "invalid",
            ),
            (Status::unknown("invoice already settled"), "settled"),
            (Status::already_exists("invoice is already paid"), "settled"),
            (Status::not_found("unable to locate invoice"), "not found"),
            (Status::unknown("unable to locate invoice"), "not found"),
            (Status::unknown("something new"), "protocol"),
        ];
        for (status, expected) in cases {
            let got = match from_status(&status) {
                LightningError::Unavailable(_) => "unavailable",
                LightningError::Unauthorized(_) => "unauthorized",
                LightningError::Invalid(_) => "invalid",
                LightningError::AlreadySettled => "settled",
                LightningError::NotFound => "not found",
                LightningError::Protocol(_) => "protocol",
                LightningError::NoRoute(_) => "no route",
            };
            assert_eq!(got, expected, "{status:?}");
        }
    }
}
