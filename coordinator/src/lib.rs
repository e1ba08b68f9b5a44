#![doc = include_str!("../README.md")]

pub mod amount;
pub mod db;
pub mod ids;
pub mod ledger;

pub use amount::{AmountError, Msats, Sats};
pub use ids::{AccountId, JournalId, TransactionId};
pub use ledger::{Ledger, LedgerConfig, LedgerError, Posting};
