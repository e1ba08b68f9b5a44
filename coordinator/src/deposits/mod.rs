//! On-chain deposits: detection, confirmations, reorgs and an exactly-once ledger credit.
//!
//! A [`DepositDriver`] (one per coordinator instance; one of them at a time holds the lease
//! and works) follows a [`ChainSource`](crate::chain::ChainSource) block by block from its
//! checkpoint, polls the mempool, and matches every output against a [`ScriptIndex`] (one
//! indexed lookup per block or mempool batch, whatever the number of addresses handed out).
//! Each output paying one of our scripts becomes a deposit keyed by its outpoint:
//!
//! ```text
//! seen (mempool or block) ──► PENDING ──(N confirmations)──► SETTLED ──(operator, after a reorg alert)──► REVERSED
//!                               │  ▲                      └─► HELD (closed account)
//!                               ▼  │ (seen again)
//!                             REMOVED          below the minimum: BELOW_MINIMUM (never credited)
//! ```
//!
//! The credit is one ledger posting with the external id `deposit:<txid>:<vout>` from the
//! bank's on-chain asset account (`bank.onchain`) to the user's wallet, so a crash between
//! posting and recording SETTLED posts again harmlessly (the ledger answers `replayed`).
//! Rules for dust, locked and closed accounts and reorgs are in the crate README and
//! ADR 0010.

mod driver;
mod error;
mod index;
mod setup;
mod store;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bdk_wallet::bitcoin::{OutPoint, ScriptBuf, Txid};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

pub use driver::{DepositDriver, DriverHandle, TickReport};
pub use error::DepositError;
pub use index::AddressBookIndex;
pub use setup::{DepositsSection, OnchainFile, OnchainRuntime};
pub use store::set_start_height;
pub use store::{DepositEventRecord, deposit_events_held_back, read_deposit_events};

use crate::amount::Sats;
use crate::ids::{AccountId, TransactionId, WalletId};
use crate::ledger::{Ledger, LedgerError, Posting, system};

/// How deposits are detected and credited.
#[derive(Clone, Debug)]
pub struct DepositConfig {
    /// Confirmations before the ledger is credited (1 counts the block holding it).
    pub confirmations: u32,
    /// Deposits below this are recorded but never credited (operators see them).
    pub minimum: Sats,
    /// Time between two looks at the chain source (new blocks, the mempool).
    pub poll_interval: Duration,
    /// How long the driver's lease lasts without renewal; another instance takes over
    /// after it runs out.
    pub lease_ttl: Duration,
    /// Most blocks fetched per request to the chain source.
    pub max_blocks: usize,
}

impl Default for DepositConfig {
    fn default() -> Self {
        DepositConfig {
            confirmations: 3,
            // Bitcoin Core's dust threshold for a P2PKH output; P2WSH's is 330.
            minimum: Sats::new(546).expect("546 sat is a valid amount"),
            poll_interval: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(10),
            max_blocks: 20,
        }
    }
}

/// The owner of one of our receive scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptOwner {
    /// The wallet credited.
    pub wallet_id: WalletId,
    /// Its account.
    pub account_id: AccountId,
    /// The address, as shown to the user.
    pub address: String,
}

/// Which scripts are ours: the address book of the wallets, as the deposits driver reads it.
/// Implementations answer with one indexed lookup, so the cost of a block does not grow with
/// the number of addresses ever handed out.
#[async_trait]
pub trait ScriptIndex: Send + Sync + std::fmt::Debug {
    /// The owners of those of `scripts` that are ours; others are left out.
    ///
    /// Idempotent (a read).
    ///
    /// # Errors
    /// [`DepositError::Index`] or [`DepositError::Database`].
    async fn owners(
        &self,
        scripts: &[ScriptBuf],
    ) -> Result<HashMap<ScriptBuf, ScriptOwner>, DepositError>;
}

/// Where a deposit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DepositState {
    /// Seen, not yet credited: pending incoming to the user.
    Pending,
    /// Credited in the ledger.
    Settled,
    /// Left the mempool and the chain before settlement.
    Removed,
    /// Below the configured minimum: never credited.
    BelowMinimum,
    /// Confirmed to a closed account: not credited.
    Held,
    /// Settled, then taken back by an operator after a reorg.
    Reversed,
}

impl DepositState {
    /// The database spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            DepositState::Pending => "PENDING",
            DepositState::Settled => "SETTLED",
            DepositState::Removed => "REMOVED",
            DepositState::BelowMinimum => "BELOW_MINIMUM",
            DepositState::Held => "HELD",
            DepositState::Reversed => "REVERSED",
        }
    }

    fn parse(s: &str) -> Result<DepositState, DepositError> {
        Ok(match s {
            "PENDING" => DepositState::Pending,
            "SETTLED" => DepositState::Settled,
            "REMOVED" => DepositState::Removed,
            "BELOW_MINIMUM" => DepositState::BelowMinimum,
            "HELD" => DepositState::Held,
            "REVERSED" => DepositState::Reversed,
            other => return Err(DepositError::Corrupt(format!("deposit state {other:?}"))),
        })
    }
}

/// A deposit as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deposit {
    /// Its id.
    pub id: Uuid,
    /// The output paying us.
    pub outpoint: OutPoint,
    /// The wallet it goes to.
    pub wallet_id: WalletId,
    /// The wallet's account.
    pub account_id: AccountId,
    /// The address paid.
    pub address: String,
    /// The output's value.
    pub amount: Sats,
    /// Where it stands.
    pub state: DepositState,
    /// The height of the block holding it, if confirmed in the best chain.
    pub block_height: Option<u32>,
    /// The ledger credit, once settled.
    pub ledger_transaction_id: Option<TransactionId>,
    /// When it was first seen.
    pub seen_at: DateTime<Utc>,
    /// When it was credited.
    pub settled_at: Option<DateTime<Utc>>,
}

impl Deposit {
    /// The ledger external id of its credit.
    pub fn credit_external_id(&self) -> String {
        credit_external_id(&self.outpoint)
    }
}

/// The ledger external id of the credit of `outpoint`: `deposit:<txid>:<vout>`.
pub fn credit_external_id(outpoint: &OutPoint) -> String {
    format!("deposit:{}:{}", outpoint.txid, outpoint.vout)
}

/// The ledger posting that credits a deposit: `deposit:<txid>:<vout>`, from the bank's
/// on-chain asset account to the wallet. Always the same for a deposit, so posting it
/// again is a replay.
///
/// # Errors
/// [`DepositError::Ledger`] if the amount cannot be posted (never for a stored deposit).
pub fn credit_posting(d: &Deposit) -> Result<Posting, DepositError> {
    Posting::transfer(
        system::MAIN_JOURNAL,
        credit_external_id(&d.outpoint),
        system::BANK_ONCHAIN,
        crate::bank::Bank::ledger_account(d.wallet_id),
        d.amount.to_msats(),
        format!("on-chain deposit {}", d.outpoint),
    )
    .map_err(|e| DepositError::Ledger(LedgerError::from(e)))
}

/// The ledger external id of an operator's reversal of `outpoint`'s credit.
pub fn reversal_external_id(outpoint: &OutPoint) -> String {
    format!("deposit-reversal:{}:{}", outpoint.txid, outpoint.vout)
}

/// How an alert was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertResolution {
    /// The credit was taken back by a reversing posting.
    Reversed,
    /// The operator found nothing to undo (for example the transaction was mined again).
    Dismissed,
}

/// A compliance alert: a reorg took a settled deposit's block out of the best chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DepositAlert {
    /// Its id.
    pub id: Uuid,
    /// The deposit.
    pub deposit: Deposit,
    /// `REORGED_AFTER_SETTLEMENT`.
    pub kind: String,
    /// The height of the block that left the best chain.
    pub block_height: u32,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
    /// How it was resolved, if it was.
    pub resolution: Option<AlertResolution>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// Why.
    pub resolution_reason: Option<String>,
    /// The reversing posting.
    pub reversal_transaction_id: Option<TransactionId>,
}

/// The deposits domain's reads and operator actions.
#[derive(Clone, Debug)]
pub struct Deposits {
    pool: PgPool,
    ledger: Ledger,
}

impl Deposits {
    /// Over the coordinator's database and ledger.
    pub fn new(ledger: Ledger) -> Deposits {
        Deposits {
            pool: ledger.pool().clone(),
            ledger,
        }
    }

    /// Deposits of a wallet still pending, newest first (optionally to one address).
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn pending(
        &self,
        wallet: WalletId,
        address: Option<&str>,
    ) -> Result<Vec<Deposit>, DepositError> {
        store::deposits_of_wallet(&self.pool, wallet, address, &[DepositState::Pending]).await
    }

    /// Deposits of a wallet to one address in any state, newest first.
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn to_address(
        &self,
        wallet: WalletId,
        address: &str,
    ) -> Result<Vec<Deposit>, DepositError> {
        store::deposits_of_wallet(&self.pool, wallet, Some(address), &[]).await
    }

    /// A deposit by outpoint.
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn by_outpoint(&self, outpoint: &OutPoint) -> Result<Option<Deposit>, DepositError> {
        store::deposit_by_outpoint(&self.pool, outpoint).await
    }

    /// A deposit by id.
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn by_id(&self, id: Uuid) -> Result<Option<Deposit>, DepositError> {
        store::deposit_by_id(&self.pool, id).await
    }

    /// The deposit credited by a ledger transaction, if any.
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn by_ledger_transaction(
        &self,
        transaction: TransactionId,
    ) -> Result<Option<Deposit>, DepositError> {
        store::deposit_by_ledger_transaction(&self.pool, transaction).await
    }

    /// Deposits the ledger credits by these external ids (`deposit:<txid>:<vout>`).
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn by_credit_ids(
        &self,
        external_ids: &[String],
    ) -> Result<HashMap<String, Deposit>, DepositError> {
        let outpoints: Vec<OutPoint> = external_ids
            .iter()
            .filter_map(|e| parse_credit_external_id(e))
            .collect();
        let found = store::deposits_by_outpoints(&self.pool, &outpoints).await?;
        Ok(found
            .into_iter()
            .map(|d| (d.credit_external_id(), d))
            .collect())
    }

    /// Deposits operators must look at: below the minimum, held, or pending.
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn for_operators(
        &self,
        states: &[DepositState],
        limit: u32,
    ) -> Result<Vec<Deposit>, DepositError> {
        store::deposits_in_states(&self.pool, states, limit).await
    }

    /// Compliance alerts, oldest first; only unresolved ones if `open_only`.
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn alerts(&self, open_only: bool) -> Result<Vec<DepositAlert>, DepositError> {
        store::alerts(&self.pool, open_only, None).await
    }

    /// Takes back the credit of a deposit whose block was reorged out, as an operator
    /// decided after an alert: posts `deposit-reversal:<txid>:<vout>` (user wallet to
    /// `bank.onchain`) and resolves the alert. Idempotent: reversing again returns the
    /// resolved alert.
    ///
    /// # Errors
    /// [`DepositError::NotFound`]; [`DepositError::AlreadyResolved`] if dismissed;
    /// [`DepositError::Ledger`] (for example the user spent the funds: insufficient
    /// balance), in which case nothing changed.
    pub async fn reverse(
        &self,
        alert: Uuid,
        actor: &str,
        reason: &str,
    ) -> Result<DepositAlert, DepositError> {
        store::reverse(&self.pool, &self.ledger, alert, actor, reason).await
    }

    /// Closes an alert without moving money (the transaction is in the best chain again).
    ///
    /// # Errors
    /// [`DepositError::NotFound`]; [`DepositError::AlreadyResolved`] if reversed.
    pub async fn dismiss(
        &self,
        alert: Uuid,
        actor: &str,
        reason: &str,
    ) -> Result<DepositAlert, DepositError> {
        store::dismiss(&self.pool, alert, actor, reason).await
    }

    /// The sum of credited deposits still credited (SETTLED), for reconciliation against
    /// the ledger's on-chain asset account and the wallets' UTXOs.
    ///
    /// # Errors
    /// [`DepositError::Database`].
    pub async fn settled_total(&self) -> Result<Sats, DepositError> {
        store::settled_total(&self.pool).await
    }
}

/// The outpoint of a `deposit:<txid>:<vout>` external id.
pub fn parse_credit_external_id(external_id: &str) -> Option<OutPoint> {
    let rest = external_id.strip_prefix("deposit:")?;
    let (txid, vout) = rest.split_once(':')?;
    Some(OutPoint {
        txid: txid.parse::<Txid>().ok()?,
        vout: vout.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_ids_round_trip_and_refuse_others() {
        let op = OutPoint {
            txid: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
                .parse()
                .expect("a valid txid"),
            vout: 7,
        };
        assert_eq!(parse_credit_external_id(&credit_external_id(&op)), Some(op));
        assert_eq!(parse_credit_external_id(&reversal_external_id(&op)), None);
        assert_eq!(parse_credit_external_id("intraledger:x"), None);
        assert_eq!(parse_credit_external_id("deposit:zz:1"), None);
    }
}
