//! The outbox read in commit order: with several writers, an event whose `seq` is lower
//! but whose transaction commits later is still read, once, and nothing committed before
//! a reader started is read again.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use std::time::Duration;

use common::{fund, ledger, transfer, user};
use coordinator::commit_order::CommitCursor;
use coordinator::ledger::{OutboxEvent, outbox_held_back, read_outbox, system};
use sqlx::Connection;

/// Reads everything the cursor may read now.
async fn drain(pool: &sqlx::PgPool, cursor: &mut CommitCursor) -> Vec<OutboxEvent> {
    let mut all = Vec::new();
    loop {
        let events = read_outbox(pool, cursor, 2).await.unwrap();
        let Some(last) = events.last() else {
            return all;
        };
        cursor.advance(last.position);
        all.extend(events);
    }
}

/// Reads until `n` events arrived (other tests' transactions on the same server may hold
/// the horizon back for a moment).
async fn read_n(pool: &sqlx::PgPool, cursor: &mut CommitCursor, n: usize) -> Vec<OutboxEvent> {
    let mut all = Vec::new();
    for _ in 0..100 {
        all.extend(drain(pool, cursor).await);
        if all.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all
}

#[tokio::test]
async fn an_event_that_commits_after_a_later_seq_is_still_read_once() {
    let t = ledger().await;
    let l = &t.ledger;
    let pool = l.pool().clone();
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 10_000).await;
    let mut cursor = CommitCursor::now(&pool).await.unwrap();

    // A slow writer: its transaction draws the next `seq` and stays open.
    let mut slow = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let mut tx = slow.begin().await.unwrap();
    let slow_id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO ledger_transactions \
         (id, journal_id, external_id, fingerprint, description, created_at) \
         VALUES ($1, $2, 'slow-writer', $3, 'slow', now())",
    )
    .bind(slow_id)
    .bind(system::MAIN_JOURNAL.as_uuid())
    .bind(vec![7u8; 32])
    .execute(&mut *tx)
    .await
    .unwrap();
    let slow_seq: i64 = sqlx::query_scalar(
        "INSERT INTO ledger_outbox (event_type, transaction_id, payload) \
         VALUES ('ledger.transaction_posted', $1, '{}') RETURNING seq",
    )
    .bind(slow_id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();

    // Meanwhile the writer commits a posting with a higher `seq`.
    let fast = l.post(transfer("fast", alice, bob, 1_000)).await.unwrap();
    let fast_seq: i64 =
        sqlx::query_scalar("SELECT seq FROM ledger_outbox WHERE transaction_id = $1")
            .bind(fast.id.as_uuid())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(fast_seq > slow_seq);
    // Committed, but behind a transaction still open: not read yet (a reader keeping the
    // last `seq` would now step over the slow one for ever).
    assert!(drain(&pool, &mut cursor).await.is_empty());
    // The reader is told to look again soon: a committed event waits.
    assert!(outbox_held_back(&pool, &cursor).await.unwrap());

    tx.commit().await.unwrap();
    let events = read_n(&pool, &mut cursor, 2).await;
    let ids: Vec<_> = events.iter().map(|e| e.external_id.as_str()).collect();
    assert_eq!(ids, ["slow-writer", "fast"]);
    // The posting's entries come with its event.
    assert_eq!(events[1].entries.len(), 2);
    // Nothing is read twice.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain(&pool, &mut cursor).await.is_empty());
}

#[tokio::test]
async fn a_reader_starts_after_what_was_committed_before_it() {
    let t = ledger().await;
    let l = &t.ledger;
    let pool = l.pool().clone();
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 10_000).await;
    l.post(transfer("before", alice, bob, 1)).await.unwrap();
    let mut cursor = CommitCursor::now(&pool).await.unwrap();
    l.post(transfer("after", alice, bob, 1)).await.unwrap();
    let events = read_n(&pool, &mut cursor, 1).await;
    let ids: Vec<_> = events.iter().map(|e| e.external_id.as_str()).collect();
    assert_eq!(ids, ["after"]);
}
