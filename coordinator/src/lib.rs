#![doc = include_str!("../README.md")]

pub mod amount;
pub mod api;
pub mod bank;
pub mod chain;
pub mod commit_order;
pub mod db;
pub mod deposits;
pub mod ids;
pub mod ledger;
pub mod lightning;
pub mod lnurl;
pub mod notify;
pub mod ops;
pub mod wallets;
pub mod webhooks;

pub use amount::{AmountError, Msats, Sats};
pub use ids::{
    AccountId, ApiKeyId, JournalId, LedgerAccountId, PaymentId, StaffId, TransactionId, UserId,
    WalletId,
};
pub use ledger::{Ledger, LedgerConfig, LedgerError, Posting};
