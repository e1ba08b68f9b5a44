//! What can go wrong talking to a Lightning node, in terms a caller can act on.

use thiserror::Error;

/// A Lightning node's answer, mapped to what the bank can do about it.
#[derive(Debug, Error)]
pub enum LightningError {
    /// The node cannot be reached or is not ready (starting, syncing). Nothing happened;
    /// try again later.
    #[error("Lightning node unavailable: {0}")]
    Unavailable(String),
    /// The node refused our credentials (macaroon wrong, expired or lacking a
    /// permission; TLS identity not accepted). Nothing happened, and retrying will not
    /// help: only an operator can fix the configuration.
    #[error("Lightning node refused our credentials: {0}")]
    Unauthorized(String),
    /// The request is invalid for this node (wrong network, expired invoice, amount
    /// missing or not allowed). Nothing happened.
    #[error("invalid Lightning request: {0}")]
    Invalid(String),
    /// No route, or no liquidity, for this payment. Nothing was paid.
    #[error("no route: {0}")]
    NoRoute(String),
    /// The invoice was already settled.
    #[error("invoice already settled")]
    AlreadySettled,
    /// No such invoice or payment on this node.
    #[error("not found on the Lightning node")]
    NotFound,
    /// The node answered something that cannot be read.
    #[error("Lightning node protocol error: {0}")]
    Protocol(String),
}
