//! The bank service's error type.

use super::notifier::NotifyError;
use super::secrets::HashError;
use super::types::ParseError;
use crate::ledger::LedgerError;

/// Why a bank operation failed. Nothing was changed when one is returned, except that a
/// wrong one-time code counts as an attempt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BankError {
    /// Input that does not parse.
    #[error(transparent)]
    Invalid(#[from] ParseError),
    /// The e-mail address or phone number is registered already.
    #[error("bank: identity already registered")]
    IdentityTaken,
    /// Unknown identity or wrong password.
    #[error("bank: invalid credentials")]
    InvalidCredentials,
    /// The registration code was not confirmed yet.
    #[error("bank: identity not verified")]
    NotVerified,
    /// A wrong, used or expired one-time code, or too many attempts.
    #[error("bank: invalid or expired code")]
    InvalidCode,
    /// No valid credential.
    #[error("bank: not authenticated")]
    Unauthenticated,
    /// The credential lacks a scope or role.
    #[error("bank: forbidden (needs {needed})")]
    Forbidden {
        /// What was needed.
        needed: &'static str,
    },
    /// The account's lock was placed by another role: only that role or an admin may
    /// lift it.
    #[error("bank: the lock was placed by {placed_by}; only {placed_by} or an admin may lift it")]
    LockHeld {
        /// Who placed the lock: a staff role, "user" or "system".
        placed_by: &'static str,
    },
    /// Not found (or not visible to the caller).
    #[error("bank: {what} not found")]
    NotFound {
        /// What.
        what: &'static str,
    },
    /// The username belongs to another account.
    #[error("bank: username taken")]
    UsernameTaken,
    /// The account has a username already.
    #[error("bank: username already set")]
    UsernameAlreadySet,
    /// A status change that is not allowed.
    #[error("bank: status cannot change from {from} to {to}")]
    InvalidTransition {
        /// Status now.
        from: &'static str,
        /// Status asked for.
        to: &'static str,
    },
    /// The amount is zero or too large.
    #[error("bank: invalid amount")]
    InvalidAmount,
    /// The sending wallet lacks the funds.
    #[error("bank: insufficient balance")]
    InsufficientBalance,
    /// The payment would pass the account's rolling 24-hour limit.
    #[error("bank: limit exceeded: limit {limit}, used {used}, asked {amount}")]
    LimitExceeded {
        /// The limit.
        limit: crate::amount::Sats,
        /// Used in the last 24 hours.
        used: crate::amount::Sats,
        /// The payment's amount.
        amount: crate::amount::Sats,
    },
    /// The sending account is locked or closed.
    #[error("bank: account is {status}")]
    AccountNotActive {
        /// Its status.
        status: &'static str,
    },
    /// The recipient wallet is the sending wallet.
    #[error("bank: cannot pay the same wallet")]
    SelfPayment,
    /// The recipient's account is closed.
    #[error("bank: recipient cannot receive")]
    RecipientUnavailable,
    /// The idempotency key was used for a different payment.
    #[error("bank: idempotency key reused with different content")]
    IdempotencyConflict,
    /// The Lightning node cannot be reached (or the bank has none). Nothing moved.
    #[error("bank: the Lightning node is unavailable; nothing moved")]
    LightningUnavailable,
    /// No route to the payee within the fee reserve. Nothing was paid.
    #[error("bank: no route")]
    NoRoute,
    /// The invoice was paid already.
    #[error("bank: invoice already paid")]
    InvoiceAlreadyPaid,
    /// The invoice can no longer be paid.
    #[error("bank: invoice expired")]
    InvoiceExpired,
    /// A stored value could not be read back.
    #[error("bank: corrupt stored value: {0}")]
    Corrupt(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A message could not be sent.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// Password hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The database failed.
    #[error("bank: database error")]
    Database(#[from] sqlx::Error),
}
