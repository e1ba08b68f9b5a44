//! Voiding an external id: whichever of a void and a posting of the same id reaches the
//! database first wins, on one instance or two, and the loser is told so.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use common::{fund, ledger, second_writer, transfer, user};
use coordinator::LedgerError;
use coordinator::ledger::{Violation, VoidOutcome, system};

#[tokio::test]
async fn a_void_external_id_is_never_posted() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 10_000).await;

    let outcome = l
        .void(system::MAIN_JOURNAL, "pay-1", "gave up")
        .await
        .unwrap();
    assert_eq!(outcome, VoidOutcome::Voided);
    match l.post(transfer("pay-1", alice, bob, 3_000)).await {
        Err(LedgerError::Voided { external_id }) => assert_eq!(external_id, "pay-1"),
        other => panic!("posting a void id: {other:?}"),
    }
    // Voiding again says the same; nothing moved.
    let again = l
        .void(system::MAIN_JOURNAL, "pay-1", "gave up")
        .await
        .unwrap();
    assert_eq!(again, VoidOutcome::Voided);
    assert_eq!(l.balance(alice).await.unwrap().settled, 10_000);
    assert_eq!(l.balance(bob).await.unwrap().settled, 0);

    let stored = l
        .transaction_by_external_id("pay-1")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.voided);
    assert!(stored.entries.is_empty());
    assert_eq!(stored.description, "gave up");
    // A void is nobody's news: only the funding went to the outbox.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_outbox")
        .fetch_one(l.pool())
        .await
        .unwrap();
    assert_eq!(events, 1);
    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

#[tokio::test]
async fn voiding_a_posted_external_id_names_the_posting_and_changes_nothing() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 10_000).await;
    let posted = l.post(transfer("pay-2", alice, bob, 3_000)).await.unwrap();

    let outcome = l
        .void(system::MAIN_JOURNAL, "pay-2", "gave up")
        .await
        .unwrap();
    assert_eq!(outcome, VoidOutcome::Posted(posted.id));
    let stored = l
        .transaction_by_external_id("pay-2")
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.voided);
    assert_eq!(stored.entries.len(), 2);
    // The posting replays as before.
    let replay = l.post(transfer("pay-2", alice, bob, 3_000)).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(l.balance(bob).await.unwrap().settled, 3_000);
}

/// Two instances, one posting and one voiding the same external id at the same moment,
/// many times: each answer agrees with the other and with what the database holds.
#[tokio::test]
async fn a_void_racing_a_posting_on_another_instance_has_one_winner() {
    let t = ledger().await;
    let l = t.ledger.clone();
    let other = second_writer(&l).await;
    let alice = user(&l, "alice").await;
    let bob = user(&l, "bob").await;
    fund(&l, alice, 1_000_000).await;

    let rounds = 60;
    let (mut posted, mut voided) = (0u64, 0u64);
    for i in 0..rounds {
        let ext = format!("race-{i}");
        let (p, v) = tokio::join!(
            l.post(transfer(&ext, alice, bob, 1_000)),
            other.void(system::MAIN_JOURNAL, &ext, "gave up"),
        );
        let stored = l.transaction_by_external_id(&ext).await.unwrap().unwrap();
        match (p, v.unwrap()) {
            (Ok(tx), VoidOutcome::Posted(id)) => {
                assert_eq!(tx.id, id);
                assert!(!stored.voided && stored.entries.len() == 2);
                posted += 1;
            }
            (Err(LedgerError::Voided { .. }), VoidOutcome::Voided) => {
                assert!(stored.voided && stored.entries.is_empty());
                voided += 1;
            }
            (p, v) => panic!("round {i}: the post said {p:?}, the void said {v:?}"),
        }
    }
    eprintln!("{rounds} races: {posted} posted first, {voided} voided first");
    assert_eq!(l.balance(bob).await.unwrap().settled, 1_000 * posted as i64);
    assert_eq!(
        l.balance(alice).await.unwrap().settled,
        1_000_000 - 1_000 * posted as i64
    );
    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

/// An entry slipped under a void (by hand, past the API) is reported.
#[tokio::test]
async fn verify_reports_a_void_with_entries() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    l.void(system::MAIN_JOURNAL, "pay-3", "gave up")
        .await
        .unwrap();
    let void = l
        .transaction_by_external_id("pay-3")
        .await
        .unwrap()
        .unwrap();
    sqlx::query(
        "INSERT INTO ledger_entries \
           (transaction_id, seq, account_id, direction, layer, currency, amount) \
         VALUES ($1, 0, $2, 'credit', 'settled', 'BTC', 5000)",
    )
    .bind(void.id.as_uuid())
    .bind(alice.as_uuid())
    .execute(l.pool())
    .await
    .unwrap();
    let report = l.verify().await.unwrap();
    assert!(
        report.violations.contains(&Violation::VoidWithEntries {
            transaction_id: void.id,
            entries: 1,
        }),
        "{:?}",
        report.violations
    );
}
