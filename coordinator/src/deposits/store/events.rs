//! `deposit_events` read in commit order (crate::commit_order): what `myUpdates` shows of
//! deposits, on every instance, whichever instance's driver recorded it.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::commit_order::{CommitCursor, CommitPosition, after_cursor, any_held_back};
use crate::ids::WalletId;

/// One recorded deposit event.
#[derive(Clone, Debug)]
pub struct DepositEventRecord {
    /// Its place in commit order.
    pub position: CommitPosition,
    /// The deposit.
    pub deposit_id: Uuid,
    /// The wallet it goes to.
    pub wallet_id: WalletId,
    /// `PENDING`, `SETTLED` or `REMOVED`.
    pub kind: String,
}

const READ_EVENTS: &str = concat!(
    "SELECT e.xid::text::bigint AS xid, e.seq, e.deposit_id, e.wallet_id, e.kind \
     FROM deposit_events e WHERE ",
    after_cursor!("e", readable),
    " ORDER BY e.xid, e.seq LIMIT $4"
);

/// The committed deposit events after `cursor`, at most `limit`, in commit order.
///
/// # Errors
/// The database.
pub async fn read_deposit_events(
    pool: &PgPool,
    cursor: &CommitCursor,
    limit: i64,
) -> Result<Vec<DepositEventRecord>, sqlx::Error> {
    sqlx::query(READ_EVENTS)
        .bind(cursor.after.xid)
        .bind(cursor.after.seq)
        .bind(cursor.since())
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(DepositEventRecord {
                position: CommitPosition {
                    xid: r.try_get("xid")?,
                    seq: r.try_get("seq")?,
                },
                deposit_id: r.try_get("deposit_id")?,
                wallet_id: WalletId::from_uuid(r.try_get("wallet_id")?),
                kind: r.try_get("kind")?,
            })
        })
        .collect()
}

const HELD_BACK: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM deposit_events e WHERE ",
    after_cursor!("e", held_back),
    ")"
);

/// Whether deposit events after `cursor` have committed but wait behind an older
/// transaction still running: read again shortly.
///
/// # Errors
/// The database.
pub async fn deposit_events_held_back(
    pool: &PgPool,
    cursor: &CommitCursor,
) -> Result<bool, sqlx::Error> {
    any_held_back(pool, HELD_BACK, cursor).await
}
