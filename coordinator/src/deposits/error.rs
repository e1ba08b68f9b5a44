//! Errors of the deposits domain.

use crate::chain::ChainError;
use crate::ledger::LedgerError;

/// Why a deposits operation failed. Nothing was changed when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DepositError {
    /// The chain source failed; the driver waits and asks again.
    #[error("deposits: {0}")]
    Chain(#[from] ChainError),
    /// The ledger refused or failed a posting.
    #[error("deposits: {0}")]
    Ledger(#[from] LedgerError),
    /// PostgreSQL failed.
    #[error("deposits: database: {0}")]
    Database(#[from] sqlx::Error),
    /// Another coordinator instance holds the driver's lease (or took it over).
    #[error("deposits: the driver lease is held by another instance")]
    LeaseLost,
    /// No such deposit or alert.
    #[error("deposits: {what} not found")]
    NotFound {
        /// What.
        what: &'static str,
    },
    /// The alert was resolved already, another way.
    #[error("deposits: alert {alert} already resolved as {resolution}")]
    AlreadyResolved {
        /// The alert.
        alert: uuid::Uuid,
        /// How it was resolved.
        resolution: String,
    },
    /// The script index (the wallets' address book) failed.
    #[error("deposits: script index: {0}")]
    Index(String),
    /// A stored value that cannot be read back.
    #[error("deposits: corrupt row: {0}")]
    Corrupt(String),
}
