//! The ledger's error type.

use super::posting::PostingError;
use super::types::Currency;
use crate::ids::{JournalId, LedgerAccountId, TransactionId};

/// Why a ledger operation failed. Apart from [`LedgerError::OutcomeUnknown`], a failed
/// posting wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The posting is malformed.
    #[error(transparent)]
    InvalidPosting(#[from] PostingError),
    /// An entry names an account that does not exist.
    #[error("ledger: unknown account {account_id}")]
    UnknownAccount {
        /// The account.
        account_id: LedgerAccountId,
    },
    /// The posting names a journal that does not exist.
    #[error("ledger: unknown journal {journal_id}")]
    UnknownJournal {
        /// The journal.
        journal_id: JournalId,
    },
    /// An entry's currency is not its account's.
    #[error("ledger: account {account_id} is in {account_currency}, entry in {entry_currency}")]
    CurrencyMismatch {
        /// The account.
        account_id: LedgerAccountId,
        /// The account's currency.
        account_currency: Currency,
        /// The entry's currency.
        entry_currency: Currency,
    },
    /// The posting would take an account that may not go negative below zero.
    #[error(
        "ledger: insufficient balance in account {account_id}: settled {settled}, pending {pending}, change {settled_change}/{pending_change}"
    )]
    InsufficientBalance {
        /// The account.
        account_id: LedgerAccountId,
        /// Its settled balance before the posting.
        settled: i64,
        /// Its pending balance before the posting.
        pending: i64,
        /// The settled change the posting asked for.
        settled_change: i64,
        /// The pending change the posting asked for.
        pending_change: i64,
    },
    /// A balance would leave the 64-bit range.
    #[error("ledger: balance of account {account_id} would overflow")]
    Overflow {
        /// The account.
        account_id: LedgerAccountId,
    },
    /// The external id was already used for a posting with different content.
    #[error(
        "ledger: external id {external_id:?} already used by transaction {existing} with different content"
    )]
    IdempotencyConflict {
        /// The external id.
        external_id: String,
        /// The transaction that holds it.
        existing: TransactionId,
    },
    /// The external id was voided ([`super::Ledger::void`]): nothing may post it.
    #[error("ledger: external id {external_id:?} is void")]
    Voided {
        /// The external id.
        external_id: String,
    },
    /// The writer task stopped.
    #[error("ledger: the writer is not running")]
    WriterStopped,
    /// The database failed in a way whose outcome is not known (for example the connection
    /// broke during commit). Posting again with the same external id is safe.
    #[error("ledger: outcome unknown ({reason}); retry with the same external id")]
    OutcomeUnknown {
        /// What went wrong.
        reason: String,
    },
    /// The database refused the write; nothing was written.
    #[error("ledger: the database refused the posting ({reason}); nothing was written")]
    StorageRejected {
        /// What went wrong.
        reason: String,
    },
    /// The item asked for does not exist.
    #[error("ledger: {what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A stored value could not be read back.
    #[error("ledger: corrupt stored value: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("ledger: database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("ledger: migration failed")]
    Migrate(#[from] embedded_migrations::MigrateError),
}
