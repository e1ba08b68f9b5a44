//! Errors of a chain source, shaped by what a caller can do about them.

/// What went wrong talking to a chain source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The backend could not be reached or did not answer in time (connection refused,
    /// timeout, 5xx, node warming up), after the adapter's retries. Wait and ask again.
    #[error("chain source {source_name} is unavailable: {reason}")]
    Unavailable {
        /// `esplora` or `bitcoind`.
        source_name: &'static str,
        /// The last failure.
        reason: String,
    },
    /// The node refused a transaction; the reason is the node's own text.
    #[error("transaction rejected: {reason}")]
    Rejected {
        /// The node's reason (e.g. `bad-txns-inputs-missingorspent`).
        reason: String,
    },
    /// The backend answered something that is not what its API promises.
    #[error("chain source {source_name} sent an invalid response: {reason}")]
    InvalidResponse {
        /// `esplora` or `bitcoind`.
        source_name: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// None of the caller's known blocks is in the best chain any more: a reorg deeper than
    /// the locator, which needs an operator.
    #[error("reorg deeper than every known block (lowest known height {lowest_known})")]
    ReorgBeyondLocator {
        /// The lowest height the locator held.
        lowest_known: u32,
    },
    /// The configuration cannot work (bad URL, unreadable secret file).
    #[error("chain source configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl ChainError {
    /// Whether asking again may succeed: only [`ChainError::Unavailable`].
    pub fn is_transient(&self) -> bool {
        matches!(self, ChainError::Unavailable { .. })
    }
}
