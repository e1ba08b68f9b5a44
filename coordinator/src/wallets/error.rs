//! Errors of the on-chain wallets and the address book.

use crate::AccountId;

use super::OnchainWalletId;

/// What went wrong with an on-chain wallet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// No wallet with this id.
    #[error("on-chain wallet {0} not found")]
    NotFound(OnchainWalletId),
    /// No wallet with this name.
    #[error("on-chain wallet {0:?} not found")]
    NameNotFound(String),
    /// The account does not exist.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// A wallet of this name exists with another policy or role.
    #[error(
        "on-chain wallet {name:?} is registered with policy {registered} as {registered_role}; refused {offered} as {offered_role}"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// The policy id registered under it.
        registered: String,
        /// Its role.
        registered_role: String,
        /// The policy id offered.
        offered: String,
        /// The role offered.
        offered_role: String,
    },
    /// The name is not 1 to 63 of `a-z 0-9 _ -`, starting with a letter.
    #[error("invalid wallet name {0:?} (a-z, 0-9, _ and -, starting with a letter, at most 63)")]
    InvalidName(String),
    /// Every non-hardened index of the keychain is used.
    #[error("on-chain wallet {0} has no address index left")]
    IndexesExhausted(OnchainWalletId),
    /// The stored policy or descriptors are not usable.
    #[error("policy of on-chain wallet {wallet}: {reason}")]
    Policy {
        /// The wallet.
        wallet: OnchainWalletId,
        /// What is wrong.
        reason: String,
    },
    /// bdk refused the stored state or an update.
    #[error("bdk wallet {wallet}: {reason}")]
    Bdk {
        /// The wallet.
        wallet: OnchainWalletId,
        /// bdk's message.
        reason: String,
    },
    /// A stored value does not decode (a changeset, a keychain, an address).
    #[error("stored on-chain wallet data is corrupt: {0}")]
    Corrupt(String),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}
