//! Reading a table in commit order when several transactions insert into it at once.
//!
//! A `BIGSERIAL` is drawn when a row is inserted, not when it commits: with two writers, a
//! row with `seq` 10 can become visible after the row with `seq` 11, and a reader that keeps
//! "the last `seq` seen" would step over it for ever. Tables read this way carry the id of
//! the transaction that wrote each row (`xid xid8 DEFAULT pg_current_xact_id()`, migration
//! 0015). Every transaction with an id below the oldest one still running
//! (`pg_snapshot_xmin` of the current snapshot) has ended, so reading only rows below that
//! horizon, in `(xid, seq)` order and after the last position read, is complete: no row can
//! later appear before a position already passed. A long transaction anywhere on the server
//! holds the horizon back, delaying (never losing) rows.
//!
//! A reader starts "now" by remembering the snapshot of its start: rows visible in it are
//! the past and are skipped; every other row is read once.

use sqlx::PgPool;

/// A row's place in commit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommitPosition {
    /// The writing transaction's id (`xid8` as a number).
    pub xid: i64,
    /// The row's `seq`.
    pub seq: i64,
}

/// Where a reader is: after `after`, skipping what its start snapshot already saw.
#[derive(Clone, Debug)]
pub struct CommitCursor {
    /// The last position read.
    pub after: CommitPosition,
    since: String,
}

impl CommitCursor {
    /// A cursor at the present: rows committed from now on.
    ///
    /// # Errors
    /// The database.
    pub async fn now(pool: &PgPool) -> Result<CommitCursor, sqlx::Error> {
        let (since, xmin): (String, i64) = sqlx::query_as(
            "SELECT s::text, pg_snapshot_xmin(s)::text::bigint \
             FROM (SELECT pg_current_snapshot() AS s) now",
        )
        .fetch_one(pool)
        .await?;
        // Transactions below the snapshot's xmin had ended: all of their rows are visible
        // in it, so the reader starts at that xid.
        Ok(CommitCursor {
            after: CommitPosition { xid: xmin, seq: 0 },
            since,
        })
    }

    /// A cursor persisted earlier (its position and [`CommitCursor::since`]), for a reader
    /// that must resume where it stopped across restarts.
    pub fn resume(after: CommitPosition, since: String) -> CommitCursor {
        CommitCursor { after, since }
    }

    /// Moves past a row just read.
    pub fn advance(&mut self, to: CommitPosition) {
        self.after = to;
    }

    /// The start snapshot, bound as `$3` of [`filter`].
    pub fn since(&self) -> &str {
        &self.since
    }
}

/// The `WHERE` condition selecting rows after a cursor, for a table alias with `xid` and
/// `seq` columns (a string literal); binds `$1` (the cursor's xid), `$2` (its seq) and `$3`
/// (its start snapshot).
///
/// `after_cursor!("o", readable)`: the rows safe to read (order by `xid, seq`).
/// `after_cursor!("o", held_back)`: the rows that have committed but wait behind an older
/// transaction still running (the reader should look again shortly, not at its next
/// notification). The two differ only in which side of the horizon they take.
macro_rules! after_cursor {
    ($alias:literal, readable) => {
        $crate::commit_order::after_cursor!(@horizon $alias, "<")
    };
    ($alias:literal, held_back) => {
        $crate::commit_order::after_cursor!(@horizon $alias, ">=")
    };
    (@horizon $alias:literal, $cmp:literal) => {
        concat!(
            "(",
            $alias,
            ".xid, ",
            $alias,
            ".seq) > ($1::text::xid8, $2) AND ",
            $alias,
            ".xid ",
            $cmp,
            " pg_snapshot_xmin(pg_current_snapshot()) AND NOT pg_visible_in_snapshot(",
            $alias,
            ".xid, $3::text::pg_snapshot)"
        )
    };
}
pub(crate) use after_cursor;

/// Whether `sql` (an `EXISTS` over `after_cursor!(_, held_back)`) finds rows waiting
/// behind an older transaction.
///
/// # Errors
/// The database.
pub(crate) async fn any_held_back(
    pool: &PgPool,
    sql: &'static str,
    cursor: &CommitCursor,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(sql)
        .bind(cursor.after.xid)
        .bind(cursor.after.seq)
        .bind(cursor.since())
        .fetch_one(pool)
        .await
}
