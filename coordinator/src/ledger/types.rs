//! Plain ledger vocabulary: currencies, directions, layers, account kinds, balances.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{JournalId, LedgerAccountId};

/// A currency the ledger keeps. Amounts are integers in the currency's ledger unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Currency {
    /// Bitcoin; the ledger unit is the millisatoshi.
    #[serde(rename = "BTC")]
    Btc,
}

impl Currency {
    /// The ISO-like code stored in the database.
    pub const fn code(self) -> &'static str {
        match self {
            Currency::Btc => "BTC",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A string that names no known value of a ledger enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownVariant {
    /// Which enum.
    pub what: &'static str,
    /// The string that was given.
    pub value: String,
}

impl FromStr for Currency {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "BTC" => Ok(Currency::Btc),
            other => Err(UnknownVariant {
                what: "currency",
                value: other.to_owned(),
            }),
        }
    }
}

/// The side of an entry, and the normal balance of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Debit (left side).
    Debit,
    /// Credit (right side).
    Credit,
}

impl Direction {
    /// The database spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "debit",
            Direction::Credit => "credit",
        }
    }
}

impl FromStr for Direction {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "debit" => Ok(Direction::Debit),
            "credit" => Ok(Direction::Credit),
            other => Err(UnknownVariant {
                what: "direction",
                value: other.to_owned(),
            }),
        }
    }
}

/// Which balance an entry moves: settled funds, or pending ones (for example an incoming
/// on-chain payment that is not yet confirmed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Final funds.
    Settled,
    /// Funds on their way in or out.
    Pending,
}

impl Layer {
    /// The database spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::Settled => "settled",
            Layer::Pending => "pending",
        }
    }
}

impl FromStr for Layer {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "settled" => Ok(Layer::Settled),
            "pending" => Ok(Layer::Pending),
            other => Err(UnknownVariant {
                what: "layer",
                value: other.to_owned(),
            }),
        }
    }
}

/// What an account is for; decides whether it may go negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// A customer's wallet: credit-normal, never below zero.
    User,
    /// The bank's pooled assets (on-chain, Lightning): may go negative.
    Omnibus,
    /// Fees, equity and other bank books: may go negative.
    System,
}

impl AccountKind {
    /// The database spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::Omnibus => "omnibus",
            AccountKind::System => "system",
        }
    }

    /// Whether balances of this kind may go below zero.
    pub const fn allows_negative(self) -> bool {
        !matches!(self, AccountKind::User)
    }
}

impl FromStr for AccountKind {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(AccountKind::User),
            "omnibus" => Ok(AccountKind::Omnibus),
            "system" => Ok(AccountKind::System),
            other => Err(UnknownVariant {
                what: "account kind",
                value: other.to_owned(),
            }),
        }
    }
}

/// A ledger account as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerAccount {
    /// Its id.
    pub id: LedgerAccountId,
    /// Well-known code of a system or omnibus account.
    pub code: Option<String>,
    /// Human-readable name.
    pub name: String,
    /// What it is for.
    pub kind: AccountKind,
    /// The side on which it grows.
    pub normal_balance: Direction,
    /// Its currency.
    pub currency: Currency,
}

/// An account's balances, in the account's normal direction and the currency's ledger unit
/// (millisatoshi for BTC). Signed: omnibus and system accounts may be negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// The account.
    pub account_id: LedgerAccountId,
    /// Its currency.
    pub currency: Currency,
    /// Settled balance.
    pub settled: i64,
    /// Pending balance (incoming positive, outgoing negative).
    pub pending: i64,
    /// Number of postings that changed this balance.
    pub version: i64,
}

impl Balance {
    /// What the owner can spend now: the settled balance less pending outflows.
    pub fn available(&self) -> i64 {
        self.settled.saturating_add(self.pending.min(0))
    }
}

/// Ids of the accounts and journal created by the first migration.
pub mod system {
    use super::{JournalId, LedgerAccountId};
    use uuid::Uuid;

    /// The main journal.
    pub const MAIN_JOURNAL: JournalId =
        JournalId::from_uuid(Uuid::from_u128(0x01900000_0000_7000_8000_000000000001));
    /// Bank on-chain assets (omnibus, debit-normal).
    pub const BANK_ONCHAIN: LedgerAccountId =
        LedgerAccountId::from_uuid(Uuid::from_u128(0x01900000_0000_7000_8000_000000000101));
    /// Bank Lightning assets (omnibus, debit-normal).
    pub const BANK_LIGHTNING: LedgerAccountId =
        LedgerAccountId::from_uuid(Uuid::from_u128(0x01900000_0000_7000_8000_000000000102));
    /// Fee revenue (system, credit-normal).
    pub const BANK_FEES: LedgerAccountId =
        LedgerAccountId::from_uuid(Uuid::from_u128(0x01900000_0000_7000_8000_000000000103));
    /// Bank equity (system, credit-normal).
    pub const BANK_EQUITY: LedgerAccountId =
        LedgerAccountId::from_uuid(Uuid::from_u128(0x01900000_0000_7000_8000_000000000104));
}
