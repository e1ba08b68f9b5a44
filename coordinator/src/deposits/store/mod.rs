//! The deposits domain's tables (migration 0013): reads here, the operators' alert
//! resolutions in `alerts.rs`, the driver's fenced writes in `driver.rs`.

mod alerts;
mod driver;
mod events;

pub(super) use alerts::{alerts, dismiss, reverse};
pub use driver::set_start_height;
pub(super) use driver::{
    Seen, add_block, checkpoint, claim_lease, disconnect_above, due, fenced, finish,
    finish_settled, mark_removed, record_seen, release_lease, unconfirmed_pending,
};
pub use events::{DepositEventRecord, deposit_events_held_back, read_deposit_events};

use bdk_wallet::bitcoin::hashes::Hash;
use bdk_wallet::bitcoin::{OutPoint, Txid};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{Deposit, DepositError, DepositState};
use crate::amount::Sats;
use crate::ids::{AccountId, TransactionId, WalletId};

pub(super) const DEPOSIT_COLUMNS: &str = "d.id, d.txid, d.vout, d.wallet_id, d.account_id, d.address, \
     d.amount_sat, d.state, d.block_height, d.ledger_transaction_id, d.seen_at, d.settled_at";

pub(super) fn corrupt(e: impl std::fmt::Display) -> DepositError {
    DepositError::Corrupt(e.to_string())
}

pub(super) fn txid_from(bytes: &[u8]) -> Result<Txid, DepositError> {
    let arr: [u8; 32] = bytes.try_into().map_err(corrupt)?;
    Ok(Txid::from_byte_array(arr))
}

/// A deposit from the columns of [`DEPOSIT_COLUMNS`], by name: a query that joins another
/// table gives that table's columns other names.
pub(super) fn deposit_from_row(r: &PgRow) -> Result<Deposit, DepositError> {
    let txid: Vec<u8> = r.try_get("txid")?;
    let vout: i32 = r.try_get("vout")?;
    let amount: i64 = r.try_get("amount_sat")?;
    let state: String = r.try_get("state")?;
    let height: Option<i32> = r.try_get("block_height")?;
    let ltx: Option<Uuid> = r.try_get("ledger_transaction_id")?;
    Ok(Deposit {
        id: r.try_get("id")?,
        outpoint: OutPoint {
            txid: txid_from(&txid)?,
            vout: u32::try_from(vout).map_err(corrupt)?,
        },
        wallet_id: WalletId::from_uuid(r.try_get("wallet_id")?),
        account_id: AccountId::from_uuid(r.try_get("account_id")?),
        address: r.try_get("address")?,
        amount: Sats::new(u64::try_from(amount).map_err(corrupt)?).map_err(corrupt)?,
        state: DepositState::parse(&state)?,
        block_height: height.map(u32::try_from).transpose().map_err(corrupt)?,
        ledger_transaction_id: ltx.map(TransactionId::from_uuid),
        seen_at: r.try_get("seen_at")?,
        settled_at: r.try_get("settled_at")?,
    })
}

fn state_strings(states: &[DepositState]) -> Vec<String> {
    states.iter().map(|s| s.as_str().to_owned()).collect()
}

/// A wallet's deposits, newest first, optionally to one address and in some states
/// (all states when `states` is empty).
pub(super) async fn deposits_of_wallet(
    pool: &PgPool,
    wallet: WalletId,
    address: Option<&str>,
    states: &[DepositState],
) -> Result<Vec<Deposit>, DepositError> {
    let rows = sqlx::query(&format!(
        "SELECT {DEPOSIT_COLUMNS} FROM deposits d WHERE d.wallet_id = $1 \
         AND ($2::text IS NULL OR d.address = $2) \
         AND (cardinality($3::text[]) = 0 OR d.state = ANY($3)) \
         ORDER BY d.seen_at DESC, d.id DESC LIMIT 1000"
    ))
    .bind(wallet.as_uuid())
    .bind(address)
    .bind(state_strings(states))
    .fetch_all(pool)
    .await?;
    rows.iter().map(deposit_from_row).collect()
}

pub(super) async fn deposit_by_outpoint(
    pool: &PgPool,
    outpoint: &OutPoint,
) -> Result<Option<Deposit>, DepositError> {
    Ok(deposits_by_outpoints(pool, std::slice::from_ref(outpoint))
        .await?
        .pop())
}

pub(super) async fn deposits_by_outpoints(
    pool: &PgPool,
    outpoints: &[OutPoint],
) -> Result<Vec<Deposit>, DepositError> {
    if outpoints.is_empty() {
        return Ok(Vec::new());
    }
    let (txids, vouts) = outpoint_arrays(outpoints);
    let rows = sqlx::query(&format!(
        "SELECT {DEPOSIT_COLUMNS} FROM deposits d \
         JOIN unnest($1::bytea[], $2::int4[]) AS o(txid, vout) \
           ON d.txid = o.txid AND d.vout = o.vout"
    ))
    .bind(txids)
    .bind(vouts)
    .fetch_all(pool)
    .await?;
    rows.iter().map(deposit_from_row).collect()
}

pub(super) async fn deposit_by_id(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<Deposit>, DepositError> {
    let row = sqlx::query(&format!(
        "SELECT {DEPOSIT_COLUMNS} FROM deposits d WHERE d.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(deposit_from_row).transpose()
}

pub(super) async fn deposit_by_ledger_transaction(
    pool: &PgPool,
    transaction: TransactionId,
) -> Result<Option<Deposit>, DepositError> {
    let row = sqlx::query(&format!(
        "SELECT {DEPOSIT_COLUMNS} FROM deposits d WHERE d.ledger_transaction_id = $1"
    ))
    .bind(transaction.as_uuid())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(deposit_from_row).transpose()
}

pub(super) fn outpoint_arrays(outpoints: &[OutPoint]) -> (Vec<Vec<u8>>, Vec<i32>) {
    outpoints
        .iter()
        .map(|o| {
            (
                o.txid.to_byte_array().to_vec(),
                // Output indexes are far below i32::MAX in any valid transaction.
                i32::try_from(o.vout).unwrap_or(i32::MAX),
            )
        })
        .unzip()
}

pub(super) async fn deposits_in_states(
    pool: &PgPool,
    states: &[DepositState],
    limit: u32,
) -> Result<Vec<Deposit>, DepositError> {
    let rows = sqlx::query(&format!(
        "SELECT {DEPOSIT_COLUMNS} FROM deposits d WHERE d.state = ANY($1) \
         ORDER BY d.seen_at DESC, d.id DESC LIMIT $2"
    ))
    .bind(state_strings(states))
    .bind(i64::from(limit.clamp(1, 1000)))
    .fetch_all(pool)
    .await?;
    rows.iter().map(deposit_from_row).collect()
}

pub(super) async fn settled_total(pool: &PgPool) -> Result<Sats, DepositError> {
    let total: i64 = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(amount_sat), 0)::int8 AS "total!" FROM deposits
           WHERE state = 'SETTLED'"#
    )
    .fetch_one(pool)
    .await?;
    Sats::new(u64::try_from(total).map_err(corrupt)?).map_err(corrupt)
}
