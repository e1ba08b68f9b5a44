//! The ledger's outbox, read through the ledger: one event per posted transaction, written
//! by the batch statement that posted it, in commit order (crate::commit_order) so that
//! readers on every instance see every event once, whichever instance's writer posted it.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::error::LedgerError;
use super::{StoredEntry, corrupt, parse_msats};
use crate::commit_order::{CommitCursor, CommitPosition, after_cursor, any_held_back};
use crate::ids::{LedgerAccountId, TransactionId};

/// The event type of a posted transaction.
pub const TRANSACTION_POSTED: &str = "ledger.transaction_posted";

/// One outbox event with the transaction it announces.
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    /// Its place in commit order.
    pub position: CommitPosition,
    /// What happened ([`TRANSACTION_POSTED`]).
    pub event_type: String,
    /// The transaction.
    pub transaction_id: TransactionId,
    /// The transaction's external id.
    pub external_id: String,
    /// The transaction's entries, in order.
    pub entries: Vec<StoredEntry>,
}

const READ_EVENTS: &str = concat!(
    "SELECT o.xid::text::bigint AS xid, o.seq, o.event_type, o.transaction_id, t.external_id \
     FROM ledger_outbox o JOIN ledger_transactions t ON t.id = o.transaction_id WHERE ",
    after_cursor!("o", readable),
    " ORDER BY o.xid, o.seq LIMIT $4"
);

/// The committed events after `cursor`, at most `limit`, in commit order. Move the cursor
/// to the last event's position after handling them.
///
/// # Errors
/// [`LedgerError::Database`] if PostgreSQL fails; [`LedgerError::Corrupt`] for a stored
/// value the ledger cannot read.
pub async fn read_outbox(
    pool: &PgPool,
    cursor: &CommitCursor,
    limit: i64,
) -> Result<Vec<OutboxEvent>, LedgerError> {
    let rows = sqlx::query(READ_EVENTS)
        .bind(cursor.after.xid)
        .bind(cursor.after.seq)
        .bind(cursor.since())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.try_get("transaction_id"))
        .collect::<Result<_, _>>()?;
    let mut entries: HashMap<Uuid, Vec<StoredEntry>> = HashMap::with_capacity(ids.len());
    for r in sqlx::query(
        "SELECT transaction_id, seq, account_id, direction, layer, currency, amount \
         FROM ledger_entries WHERE transaction_id = ANY($1) ORDER BY transaction_id, seq",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?
    {
        let tx: Uuid = r.try_get("transaction_id")?;
        entries.entry(tx).or_default().push(entry_from_row(&r)?);
    }
    rows.iter()
        .map(|r| {
            let tx: Uuid = r.try_get("transaction_id")?;
            Ok(OutboxEvent {
                position: CommitPosition {
                    xid: r.try_get("xid")?,
                    seq: r.try_get("seq")?,
                },
                event_type: r.try_get("event_type")?,
                transaction_id: TransactionId::from_uuid(tx),
                external_id: r.try_get("external_id")?,
                entries: entries.remove(&tx).unwrap_or_default(),
            })
        })
        .collect()
}

const HELD_BACK: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM ledger_outbox o WHERE ",
    after_cursor!("o", held_back),
    ")"
);

/// Whether events after `cursor` have committed but wait behind an older transaction
/// still running: read again shortly.
///
/// # Errors
/// [`LedgerError::Database`] if PostgreSQL fails.
pub async fn outbox_held_back(pool: &PgPool, cursor: &CommitCursor) -> Result<bool, LedgerError> {
    Ok(any_held_back(pool, HELD_BACK, cursor).await?)
}

/// An entry from a row with the columns of `ledger_entries`, by name.
pub(super) fn entry_from_row(r: &PgRow) -> Result<StoredEntry, LedgerError> {
    let direction: String = r.try_get("direction")?;
    let layer: String = r.try_get("layer")?;
    let currency: String = r.try_get("currency")?;
    Ok(StoredEntry {
        seq: r.try_get("seq")?,
        account_id: LedgerAccountId::from_uuid(r.try_get("account_id")?),
        direction: direction.parse().map_err(corrupt)?,
        layer: layer.parse().map_err(corrupt)?,
        currency: currency.parse().map_err(corrupt)?,
        amount: parse_msats(r.try_get("amount")?)?,
    })
}
