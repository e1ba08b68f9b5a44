//! The deposit driver's writes: its lease, every write fenced by it, its block checkpoint,
//! deposits seen, unwound by a reorg, and settled.

use bdk_wallet::bitcoin::hashes::Hash;
use bdk_wallet::bitcoin::{BlockHash, OutPoint, Txid};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::{DEPOSIT_COLUMNS, corrupt, deposit_from_row, outpoint_arrays, txid_from};
use crate::amount::Sats;
use crate::chain::BlockId;
use crate::deposits::{Deposit, DepositError, DepositState};
use crate::ids::TransactionId;

/// Takes or renews the driver's lease; false if another instance holds it.
pub(in crate::deposits) async fn claim_lease(
    pool: &PgPool,
    holder: Uuid,
    ttl: std::time::Duration,
) -> Result<bool, DepositError> {
    let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let got = sqlx::query(
        "UPDATE deposit_driver SET holder = $1, \
         lease_until = now() + $2 * interval '1 millisecond', updated_at = now() \
         WHERE id = 1 AND (holder = $1 OR lease_until < now())",
    )
    .bind(holder)
    .bind(ms)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(got == 1)
}

/// Gives the lease up (a clean stop), so another instance need not wait for it to expire.
pub(in crate::deposits) async fn release_lease(
    pool: &PgPool,
    holder: Uuid,
) -> Result<(), DepositError> {
    sqlx::query(
        "UPDATE deposit_driver SET holder = NULL, lease_until = '-infinity', updated_at = now() \
         WHERE id = 1 AND holder = $1",
    )
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(())
}

/// Begins a driver write: locks the lease row and checks this instance still holds it, so
/// an instance that lost the lease (paused past its expiry) writes nothing.
pub(in crate::deposits) async fn fenced(
    pool: &PgPool,
    holder: Uuid,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, DepositError> {
    let mut tx = pool.begin().await?;
    let ok: Option<i16> = sqlx::query_scalar(
        "SELECT id FROM deposit_driver WHERE id = 1 AND holder = $1 AND lease_until > now() \
         FOR UPDATE",
    )
    .bind(holder)
    .fetch_optional(&mut *tx)
    .await?;
    if ok.is_none() {
        return Err(DepositError::LeaseLost);
    }
    Ok(tx)
}

/// The driver's checkpoint: its last 100 processed blocks, then blocks at doubling
/// distances down to the first (as Bitcoin's block locators), so a reorg deeper than 100
/// blocks still finds its fork point; and where to start without any.
pub(in crate::deposits) async fn checkpoint(
    pool: &PgPool,
) -> Result<(Vec<BlockId>, u32), DepositError> {
    let top: Option<i32> = sqlx::query_scalar!("SELECT max(height) FROM deposit_blocks")
        .fetch_one(pool)
        .await?;
    let mut heights: Vec<i32> = Vec::new();
    if let Some(top) = top {
        heights.extend((0..100).map(|i| top - i).filter(|h| *h >= 0));
        let mut step = 2i32;
        let mut h = top - 100;
        while h > 0 {
            heights.push(h);
            h -= step;
            step = step.saturating_mul(2);
        }
        heights.push(0);
    }
    let rows = sqlx::query!(
        "SELECT height, hash FROM deposit_blocks WHERE height = ANY($1) ORDER BY height DESC",
        &heights,
    )
    .fetch_all(pool)
    .await?;
    let known = rows
        .iter()
        .map(|r| {
            let arr: [u8; 32] = r.hash.as_slice().try_into().map_err(corrupt)?;
            Ok(BlockId {
                height: u32::try_from(r.height).map_err(corrupt)?,
                hash: BlockHash::from_byte_array(arr),
            })
        })
        .collect::<Result<Vec<_>, DepositError>>()?;
    let start: i32 = sqlx::query_scalar!("SELECT start_height FROM deposit_driver WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok((known, u32::try_from(start).map_err(corrupt)?))
}

/// Sets the first height to scan when nothing was processed yet (a fresh deployment
/// starts at the wallets' birth height, not at genesis).
///
/// # Errors
/// [`DepositError::Database`].
pub async fn set_start_height(pool: &PgPool, height: u32) -> Result<(), DepositError> {
    sqlx::query!(
        "UPDATE deposit_driver SET start_height = $1 WHERE id = 1",
        i32::try_from(height).map_err(corrupt)?
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// What a disconnected block did to deposits.
#[derive(Debug, Default)]
pub(in crate::deposits) struct Unwound {
    /// Settled deposits that lost their block: alerts raised.
    pub alerts: usize,
    /// Pending deposits back to unconfirmed.
    pub unconfirmed: usize,
}

/// Undoes every processed block above `fork` (the highest block still in the best chain):
/// their deposits lose their block; settled ones raise an alert (once per deposit and
/// block). The locator names only some of the processed blocks, so this goes by height.
pub(in crate::deposits) async fn disconnect_above(
    conn: &mut PgConnection,
    fork: i64,
) -> Result<Unwound, DepositError> {
    let rows = sqlx::query(
        "SELECT id, state, block_height, block_hash FROM deposits \
         WHERE block_height > $1 FOR UPDATE",
    )
    .bind(fork)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Unwound::default();
    for r in &rows {
        let id: Uuid = r.try_get("id")?;
        let state: String = r.try_get("state")?;
        let height: i32 = r.try_get("block_height")?;
        let hash: Vec<u8> = r.try_get("block_hash")?;
        if matches!(
            DepositState::parse(&state)?,
            DepositState::Settled | DepositState::Reversed
        ) {
            let raised = sqlx::query(
                "INSERT INTO deposit_alerts (id, deposit_id, kind, block_height, block_hash) \
                 VALUES ($1, $2, 'REORGED_AFTER_SETTLEMENT', $3, $4) \
                 ON CONFLICT (deposit_id, block_hash) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(id)
            .bind(height)
            .bind(&hash)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            out.alerts += raised as usize;
            tracing::error!(
                deposit = %id,
                height,
                "a settled deposit's block left the best chain: compliance alert raised"
            );
        } else {
            out.unconfirmed += 1;
        }
    }
    sqlx::query(
        "UPDATE deposits SET block_height = NULL, block_hash = NULL, updated_at = now() \
         WHERE block_height > $1",
    )
    .bind(fork)
    .execute(&mut *conn)
    .await?;
    // `::int8`: the fork point is an i64 here, the column an INT.
    sqlx::query!("DELETE FROM deposit_blocks WHERE height > $1::int8", fork)
        .execute(&mut *conn)
        .await?;
    Ok(out)
}

/// Records a processed block in the checkpoint.
pub(in crate::deposits) async fn add_block(
    conn: &mut PgConnection,
    block: BlockId,
) -> Result<(), DepositError> {
    // A block at a height we still hold (possible only if a disconnect was missed) replaces it.
    sqlx::query(
        "INSERT INTO deposit_blocks (height, hash) VALUES ($1, $2) \
         ON CONFLICT (height) DO UPDATE SET hash = EXCLUDED.hash, processed_at = now()",
    )
    .bind(i32::try_from(block.height).map_err(corrupt)?)
    .bind(block.hash.to_byte_array().to_vec())
    .execute(&mut *conn)
    .await?;
    // Older checkpoint rows than the locator needs are kept: they are small and tell
    // operators which blocks were scanned.
    Ok(())
}

/// One output paying one of our scripts.
#[derive(Clone, Debug)]
pub(in crate::deposits) struct Seen {
    pub outpoint: OutPoint,
    pub owner: crate::deposits::ScriptOwner,
    pub amount: Sats,
}

/// Records outputs seen in the mempool (`block` None) or in a block; returns how many
/// became pending now (new, or back from REMOVED), which are announced to `myUpdates`.
pub(in crate::deposits) async fn record_seen(
    conn: &mut PgConnection,
    seen: &[Seen],
    block: Option<BlockId>,
    minimum: Sats,
) -> Result<usize, DepositError> {
    if seen.is_empty() {
        return Ok(0);
    }
    let outpoints: Vec<OutPoint> = seen.iter().map(|s| s.outpoint).collect();
    let (txids, vouts) = outpoint_arrays(&outpoints);
    let ids: Vec<Uuid> = seen.iter().map(|_| Uuid::now_v7()).collect();
    let wallets: Vec<Uuid> = seen.iter().map(|s| s.owner.wallet_id.as_uuid()).collect();
    let accounts: Vec<Uuid> = seen.iter().map(|s| s.owner.account_id.as_uuid()).collect();
    let addresses: Vec<String> = seen.iter().map(|s| s.owner.address.clone()).collect();
    let amounts: Vec<i64> = seen
        .iter()
        .map(|s| i64::try_from(s.amount.to_sat()).unwrap_or(i64::MAX))
        .collect();
    let states: Vec<&str> = seen
        .iter()
        .map(|s| {
            if s.amount < minimum {
                DepositState::BelowMinimum.as_str()
            } else {
                DepositState::Pending.as_str()
            }
        })
        .collect();
    let height = block
        .map(|b| i32::try_from(b.height).map_err(corrupt))
        .transpose()?;
    let hash = block.map(|b| b.hash.to_byte_array().to_vec());
    // New outpoints are inserted; known ones take the block (a mempool sighting never
    // clears one), and a REMOVED one is pending again. `prev` (the statement's snapshot,
    // before the upsert) tells which became pending now. No FOR UPDATE there: a row the
    // upsert changes would be skipped by it; the driver's lease lock serialises writers.
    let rows = sqlx::query(
        "WITH input AS ( \
             SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::int4[], $4::uuid[], $5::uuid[], \
                                  $6::text[], $7::int8[], $8::text[]) \
             AS i(id, txid, vout, wallet_id, account_id, address, amount_sat, state) \
         ), prev AS ( \
             SELECT d.txid, d.vout, d.state FROM deposits d \
             JOIN input i ON d.txid = i.txid AND d.vout = i.vout \
         ), up AS ( \
             INSERT INTO deposits AS d (id, txid, vout, wallet_id, account_id, address, \
                                        amount_sat, state, block_height, block_hash) \
             SELECT id, txid, vout, wallet_id, account_id, address, amount_sat, state, $9, $10 \
             FROM input \
             ON CONFLICT (txid, vout) DO UPDATE SET \
                 block_height = coalesce(EXCLUDED.block_height, d.block_height), \
                 block_hash = coalesce(EXCLUDED.block_hash, d.block_hash), \
                 state = CASE WHEN d.state = 'REMOVED' THEN 'PENDING' ELSE d.state END, \
                 updated_at = now() \
             RETURNING d.id, d.wallet_id, d.txid, d.vout, d.state \
         ) \
         INSERT INTO deposit_events (deposit_id, wallet_id, kind) \
         SELECT up.id, up.wallet_id, 'PENDING' FROM up \
         LEFT JOIN prev ON prev.txid = up.txid AND prev.vout = up.vout \
         WHERE up.state = 'PENDING' AND (prev.state IS NULL OR prev.state = 'REMOVED') \
         RETURNING seq",
    )
    .bind(&ids)
    .bind(&txids)
    .bind(&vouts)
    .bind(&wallets)
    .bind(&accounts)
    .bind(&addresses)
    .bind(&amounts)
    .bind(&states)
    .bind(height)
    .bind(hash)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.len())
}

/// Unconfirmed pending deposits' txids (to notice those that leave the mempool).
pub(in crate::deposits) async fn unconfirmed_pending(
    pool: &PgPool,
) -> Result<Vec<Txid>, DepositError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar!(
        "SELECT DISTINCT txid FROM deposits WHERE state = 'PENDING' AND block_hash IS NULL"
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(|t| txid_from(t)).collect()
}

/// Marks the unconfirmed pending deposits of these transactions REMOVED (their pending
/// credit goes away) and announces it.
pub(in crate::deposits) async fn mark_removed(
    conn: &mut PgConnection,
    txids: &[Txid],
) -> Result<usize, DepositError> {
    let txids: Vec<Vec<u8>> = txids.iter().map(|t| t.to_byte_array().to_vec()).collect();
    let rows = sqlx::query(
        "WITH r AS ( \
             UPDATE deposits SET state = 'REMOVED', updated_at = now() \
             WHERE txid = ANY($1) AND state = 'PENDING' AND block_hash IS NULL \
             RETURNING id, wallet_id \
         ) \
         INSERT INTO deposit_events (deposit_id, wallet_id, kind) \
         SELECT id, wallet_id, 'REMOVED' FROM r RETURNING seq",
    )
    .bind(&txids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.len())
}

/// A deposit with enough confirmations, and its account's status.
#[derive(Debug)]
pub(in crate::deposits) struct Due {
    pub deposit: Deposit,
    pub account_status: String,
}

/// Pending deposits with at least `confirmations` at `tip`.
pub(in crate::deposits) async fn due(
    pool: &PgPool,
    tip: u32,
    confirmations: u32,
) -> Result<Vec<Due>, DepositError> {
    // Confirmed at height h has tip - h + 1 confirmations.
    let max_height = i64::from(tip) + 1 - i64::from(confirmations.max(1));
    let rows = sqlx::query(&format!(
        "SELECT {DEPOSIT_COLUMNS}, a.status AS account_status FROM deposits d \
         JOIN accounts a ON a.id = d.account_id \
         WHERE d.state = 'PENDING' AND d.block_height IS NOT NULL AND d.block_height <= $1 \
         ORDER BY d.block_height, d.id LIMIT 1000"
    ))
    .bind(max_height)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                deposit: deposit_from_row(r)?,
                account_status: r.try_get("account_status")?,
            })
        })
        .collect()
}

/// Records a credit (or a hold) of a pending deposit that is still confirmed deep enough.
/// False if it changed meanwhile (then the credit, if posted, is found again next time).
pub(in crate::deposits) async fn finish(
    conn: &mut PgConnection,
    deposit: Uuid,
    state: DepositState,
    transaction: Option<TransactionId>,
) -> Result<bool, DepositError> {
    let rows = sqlx::query(
        "WITH s AS ( \
             UPDATE deposits SET state = $2, ledger_transaction_id = $3, updated_at = now(), \
                 settled_at = CASE WHEN $2 = 'SETTLED' THEN now() END \
             WHERE id = $1 AND state = 'PENDING' RETURNING id, wallet_id, state \
         ), e AS ( \
             INSERT INTO deposit_events (deposit_id, wallet_id, kind) \
             SELECT id, wallet_id, 'SETTLED' FROM s WHERE state = 'SETTLED' \
         ) SELECT count(*) AS changed FROM s",
    )
    .bind(deposit)
    .bind(state.as_str())
    .bind(transaction.map(|t| t.as_uuid()))
    .fetch_one(&mut *conn)
    .await?;
    let n: i64 = rows.try_get("changed")?;
    Ok(n == 1)
}

/// Records the credits of pending deposits (deposit id, ledger transaction) and announces
/// them; returns how many changed (a deposit that left PENDING meanwhile is left alone).
pub(in crate::deposits) async fn finish_settled(
    conn: &mut PgConnection,
    credited: &[(Uuid, TransactionId)],
) -> Result<usize, DepositError> {
    let ids: Vec<Uuid> = credited.iter().map(|c| c.0).collect();
    let txs: Vec<Uuid> = credited.iter().map(|c| c.1.as_uuid()).collect();
    let rows = sqlx::query(
        "WITH s AS ( \
             UPDATE deposits d SET state = 'SETTLED', ledger_transaction_id = u.tx, \
                 updated_at = now(), settled_at = now() \
             FROM unnest($1::uuid[], $2::uuid[]) AS u(id, tx) \
             WHERE d.id = u.id AND d.state = 'PENDING' RETURNING d.id, d.wallet_id \
         ) \
         INSERT INTO deposit_events (deposit_id, wallet_id, kind) \
         SELECT id, wallet_id, 'SETTLED' FROM s RETURNING seq",
    )
    .bind(&ids)
    .bind(&txs)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.len())
}
