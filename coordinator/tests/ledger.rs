//! Ledger behaviour against a real PostgreSQL: postings, rules, idempotency, outbox,
//! history, failures, the lease, and the invariant checker itself.

mod common;

use std::time::Duration;

use common::{fund, ledger, ledger_with, msats, second_writer, transfer, user};
use coordinator::ledger::{
    AccountKind, Currency, Direction, HistoryCursor, Layer, LedgerConfig, NewAccount, PostingError,
    Violation, system,
};
use coordinator::{LedgerError, Posting};

#[tokio::test]
async fn transfer_moves_money_and_writes_everything_once() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 10_000).await;

    let posted = l.post(transfer("t1", alice, bob, 3_000)).await.unwrap();
    assert!(!posted.replayed);
    assert_eq!(posted.external_id, "t1");

    let a = l.balance(alice).await.unwrap();
    let b = l.balance(bob).await.unwrap();
    assert_eq!((a.settled, a.pending), (7_000, 0));
    assert_eq!((b.settled, b.pending), (3_000, 0));
    assert_eq!(a.currency, Currency::Btc);
    // The omnibus asset account went up by the deposit (debit-normal).
    assert_eq!(
        l.balance(system::BANK_ONCHAIN).await.unwrap().settled,
        10_000
    );

    let stored = l.transaction(posted.id).await.unwrap();
    assert_eq!(stored.external_id, "t1");
    assert_eq!(stored.description, "transfer");
    assert_eq!(stored.entries.len(), 2);
    assert_eq!(stored.entries[0].account_id, alice);
    assert_eq!(stored.entries[0].direction, Direction::Debit);
    assert_eq!(stored.entries[1].account_id, bob);
    assert_eq!(stored.entries[1].amount, msats(3_000));

    // One outbox event per transaction, in the same commit.
    let events: Vec<(uuid::Uuid, serde_json::Value)> =
        sqlx::query_as("SELECT transaction_id, payload FROM ledger_outbox ORDER BY seq")
            .fetch_all(l.pool())
            .await
            .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0, posted.id.as_uuid());
    assert_eq!(events[1].1["external_id"], "t1");

    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.transactions, 2);
    assert_eq!(report.entries, 4);
}

#[tokio::test]
async fn replay_returns_the_original_and_changes_nothing() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 5_000).await;

    let first = l.post(transfer("pay-1", alice, bob, 5_000)).await.unwrap();
    // The replay would now fail for lack of funds, yet it must return the original.
    let again = l.post(transfer("pay-1", alice, bob, 5_000)).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.id, first.id);
    assert_eq!(
        again.created_at.timestamp_micros(),
        first.created_at.timestamp_micros()
    );
    assert_eq!(l.balance(alice).await.unwrap().settled, 0);
    assert_eq!(l.balance(bob).await.unwrap().settled, 5_000);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
        .fetch_one(l.pool())
        .await
        .unwrap();
    assert_eq!(count, 2);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_outbox")
        .fetch_one(l.pool())
        .await
        .unwrap();
    assert_eq!(outbox, 2);
}

#[tokio::test]
async fn concurrent_replays_in_one_batch_post_once() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 1_000).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let l = l.clone();
        set.spawn(async move { l.post(transfer("same", alice, bob, 700)).await });
    }
    let mut ids = Vec::new();
    let mut fresh = 0;
    while let Some(r) = set.join_next().await {
        let posted = r.unwrap().unwrap();
        if !posted.replayed {
            fresh += 1;
        }
        ids.push(posted.id);
    }
    assert_eq!(fresh, 1, "exactly one posting is new");
    assert!(ids.iter().all(|id| *id == ids[0]));
    assert_eq!(l.balance(alice).await.unwrap().settled, 300);
    assert_eq!(l.balance(bob).await.unwrap().settled, 700);
}

#[tokio::test]
async fn same_external_id_with_other_content_is_a_conflict() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 5_000).await;
    let first = l.post(transfer("k", alice, bob, 100)).await.unwrap();
    match l.post(transfer("k", alice, bob, 101)).await {
        Err(LedgerError::IdempotencyConflict {
            external_id,
            existing,
        }) => {
            assert_eq!(external_id, "k");
            assert_eq!(existing, first.id);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Another memo is other content too.
    let memo =
        Posting::transfer(system::MAIN_JOURNAL, "k", alice, bob, msats(100), "memo").unwrap();
    assert!(matches!(
        l.post(memo).await,
        Err(LedgerError::IdempotencyConflict { .. })
    ));
    assert_eq!(l.balance(alice).await.unwrap().settled, 4_900);
}

#[tokio::test]
async fn user_wallets_never_go_negative_and_a_refusal_writes_nothing() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 1_000).await;
    match l.post(transfer("too-much", alice, bob, 1_001)).await {
        Err(LedgerError::InsufficientBalance {
            account_id,
            settled,
            settled_change,
            ..
        }) => {
            assert_eq!(account_id, alice);
            assert_eq!(settled, 1_000);
            assert_eq!(settled_change, -1_001);
        }
        other => panic!("expected insufficient balance, got {other:?}"),
    }
    assert_eq!(l.balance(alice).await.unwrap().settled, 1_000);
    assert_eq!(l.balance(bob).await.unwrap().settled, 0);
    assert!(
        l.transaction_by_external_id("too-much")
            .await
            .unwrap()
            .is_none()
    );
    // The refused external id is free: a valid posting may use it later.
    l.post(transfer("too-much", alice, bob, 1_000))
        .await
        .unwrap();
    assert_eq!(l.balance(alice).await.unwrap().settled, 0);
}

#[tokio::test]
async fn the_database_itself_refuses_a_negative_user_balance() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let err = sqlx::query("UPDATE ledger_balances SET settled = -1 WHERE account_id = $1")
        .bind(alice.as_uuid())
        .execute(l.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("check constraint"), "{err}");
}

#[tokio::test]
async fn omnibus_and_system_accounts_may_go_negative() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    // A credit-normal system account (equity) pays a user: equity goes below zero.
    let p = Posting::transfer(
        system::MAIN_JOURNAL,
        "gift",
        system::BANK_EQUITY,
        alice,
        msats(50),
        "promo",
    )
    .unwrap();
    l.post(p).await.unwrap();
    assert_eq!(l.balance(system::BANK_EQUITY).await.unwrap().settled, -50);
    assert_eq!(l.balance(alice).await.unwrap().settled, 50);
    assert!(l.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn unknown_accounts_and_journals_are_refused() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    fund(l, alice, 100).await;
    let ghost = coordinator::LedgerAccountId::new();
    match l.post(transfer("g", alice, ghost, 10)).await {
        Err(LedgerError::UnknownAccount { account_id }) => assert_eq!(account_id, ghost),
        other => panic!("{other:?}"),
    }
    let journal = coordinator::JournalId::new();
    let p = Posting::transfer(journal, "j", alice, system::BANK_FEES, msats(10), "").unwrap();
    match l.post(p).await {
        Err(LedgerError::UnknownJournal { journal_id }) => assert_eq!(journal_id, journal),
        other => panic!("{other:?}"),
    }
    // A journal created after the writer started is found.
    let j2 = l.create_journal("fees", "Fees").await.unwrap();
    let p = Posting::transfer(j2, "j2", alice, system::BANK_FEES, msats(10), "").unwrap();
    l.post(p).await.unwrap();
    assert_eq!(l.balance(system::BANK_FEES).await.unwrap().settled, 10);
    assert_eq!(l.balance(alice).await.unwrap().settled, 90);
}

#[tokio::test]
async fn malformed_postings_never_reach_the_store() {
    let alice = coordinator::LedgerAccountId::new();
    let err = Posting::builder(system::MAIN_JOURNAL, "u")
        .debit(alice, msats(3))
        .credit(system::BANK_FEES, msats(2))
        .build()
        .unwrap_err();
    assert!(matches!(err, PostingError::Unbalanced { .. }));
}

#[tokio::test]
async fn pending_funds_are_kept_apart_and_outflows_reserve_settled_funds() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    // An unconfirmed deposit: pending layer only.
    let incoming = Posting::builder(system::MAIN_JOURNAL, "dep-pending")
        .entry(
            system::BANK_ONCHAIN,
            Direction::Debit,
            Layer::Pending,
            Currency::Btc,
            msats(800),
        )
        .entry(
            alice,
            Direction::Credit,
            Layer::Pending,
            Currency::Btc,
            msats(800),
        )
        .build()
        .unwrap();
    l.post(incoming).await.unwrap();
    let b = l.balance(alice).await.unwrap();
    assert_eq!((b.settled, b.pending), (0, 800));
    assert_eq!(b.available(), 0);
    // Pending funds cannot be spent.
    assert!(matches!(
        l.post(transfer("spend-pending", alice, bob, 1)).await,
        Err(LedgerError::InsufficientBalance { .. })
    ));
    // Confirmation: reverse the pending layer, post the settled one, in one transaction.
    let settle = Posting::builder(system::MAIN_JOURNAL, "dep-settle")
        .entry(
            alice,
            Direction::Debit,
            Layer::Pending,
            Currency::Btc,
            msats(800),
        )
        .entry(
            system::BANK_ONCHAIN,
            Direction::Credit,
            Layer::Pending,
            Currency::Btc,
            msats(800),
        )
        .debit(system::BANK_ONCHAIN, msats(800))
        .credit(alice, msats(800))
        .build()
        .unwrap();
    l.post(settle).await.unwrap();
    let b = l.balance(alice).await.unwrap();
    assert_eq!((b.settled, b.pending), (800, 0));
    // A pending outflow (a withdrawal in flight) reserves settled funds.
    let out = Posting::builder(system::MAIN_JOURNAL, "wd-pending")
        .entry(
            alice,
            Direction::Debit,
            Layer::Pending,
            Currency::Btc,
            msats(500),
        )
        .entry(
            system::BANK_ONCHAIN,
            Direction::Credit,
            Layer::Pending,
            Currency::Btc,
            msats(500),
        )
        .build()
        .unwrap();
    l.post(out).await.unwrap();
    let b = l.balance(alice).await.unwrap();
    assert_eq!((b.settled, b.pending, b.available()), (800, -500, 300));
    assert!(matches!(
        l.post(transfer("over-reserved", alice, bob, 301)).await,
        Err(LedgerError::InsufficientBalance { .. })
    ));
    l.post(transfer("within", alice, bob, 300)).await.unwrap();
    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

#[tokio::test]
async fn history_is_newest_first_with_a_cursor() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 1_000_000).await;
    for i in 0..25u64 {
        l.post(transfer(&format!("h{i}"), alice, bob, i + 1))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<HistoryCursor> = None;
    loop {
        let page = l.history(bob, 10, cursor).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        cursor = page.last().map(|line| line.cursor());
        seen.extend(page);
    }
    assert_eq!(seen.len(), 25);
    let amounts: Vec<u64> = seen.iter().map(|line| line.amount.to_msat()).collect();
    let expected: Vec<u64> = (1..=25).rev().collect();
    assert_eq!(amounts, expected, "newest first, no gaps, no repeats");
    assert!(seen.iter().all(|line| line.direction == Direction::Credit));
    assert_eq!(seen[0].external_id, "h24");
    // The payer's history includes the deposit as its oldest line.
    let alice_lines = l.history(alice, 100, None).await.unwrap();
    assert_eq!(alice_lines.len(), 26);
    assert_eq!(alice_lines.last().unwrap().description, "deposit");
}

#[tokio::test]
async fn a_posting_that_fails_midway_leaves_nothing_and_spares_its_batch() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 100_000).await;
    // Make the database fail the statement at its last step (the outbox insert) for one
    // posting, after its transaction, entries and balances were written in the statement.
    sqlx::query(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.payload->>'external_id' = 'poison' THEN \
           RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$",
    )
    .execute(l.pool())
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER boom BEFORE INSERT ON ledger_outbox FOR EACH ROW EXECUTE FUNCTION boom()",
    )
    .execute(l.pool())
    .await
    .unwrap();

    let mut set = tokio::task::JoinSet::new();
    for i in 0..30 {
        let l = l.clone();
        let ext = if i == 15 {
            "poison".to_owned()
        } else {
            format!("ok-{i}")
        };
        set.spawn(async move { (ext.clone(), l.post(transfer(&ext, alice, bob, 1_000)).await) });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        let (ext, result) = r.unwrap();
        if ext == "poison" {
            assert!(
                matches!(result, Err(LedgerError::StorageRejected { .. })),
                "{result:?}"
            );
        } else {
            result.unwrap();
            ok += 1;
        }
    }
    assert_eq!(ok, 29);
    assert!(
        l.transaction_by_external_id("poison")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        l.balance(alice).await.unwrap().settled,
        100_000 - 29 * 1_000
    );
    assert_eq!(l.balance(bob).await.unwrap().settled, 29 * 1_000);
    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.transactions, 30);
}

#[tokio::test]
async fn the_writer_survives_a_killed_connection() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 10_000).await;
    l.post(transfer("before", alice, bob, 1_000)).await.unwrap();
    // Kill the writer's connection.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(coordinator::ledger::WRITER_APPLICATION_NAME)
    .fetch_one(l.pool())
    .await
    .unwrap();
    assert_eq!(killed, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = l.post(transfer("after", alice, bob, 1_000)).await.unwrap();
    assert!(!after.replayed);
    assert_eq!(l.balance(alice).await.unwrap().settled, 8_000);
    assert!(l.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn postings_fail_fast_while_the_database_is_unreachable_and_resume_after() {
    let t = ledger_with(LedgerConfig::default()).await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 10_000).await;
    let admin = coordinator::db::connect(&test_support::db::database_url_from_env(), 1)
        .await
        .unwrap();
    let name = t.db.name().to_owned();
    // No new connections, and the writer's connection is killed.
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
    ))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = $2",
    )
    .bind(coordinator::ledger::WRITER_APPLICATION_NAME)
    .bind(&name)
    .execute(&admin)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let l = l.clone();
        set.spawn(async move { l.post(transfer(&format!("down-{i}"), alice, bob, 10)).await });
    }
    while let Some(r) = set.join_next().await {
        assert!(
            matches!(r.unwrap(), Err(LedgerError::OutcomeUnknown { .. })),
            "postings fail while the database is unreachable"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
    ))
    .execute(&admin)
    .await
    .unwrap();
    // Back: a retry with the same external id posts once.
    let p = l.post(transfer("down-7", alice, bob, 10)).await.unwrap();
    assert!(!p.replayed);
    assert_eq!(l.balance(bob).await.unwrap().settled, 10);
    assert!(l.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_writer_whose_cache_another_instance_made_stale_posts_correctly() {
    let t = ledger().await;
    let a = &t.ledger;
    // A second instance's writer on the same database.
    let b = second_writer(a).await;
    let alice = user(a, "alice").await;
    let bob = user(a, "bob").await;
    fund(a, alice, 1_000).await;
    // `a` caches alice at 0 after this.
    a.post(transfer("a-1", alice, bob, 1_000)).await.unwrap();
    // `b` moves alice behind `a`'s back.
    fund(&b, alice, 500).await;
    // On its cache `a` would refuse this; the stored balance allows it.
    let p = a.post(transfer("a-2", alice, bob, 300)).await.unwrap();
    assert!(!p.replayed);
    assert_eq!(a.balance(alice).await.unwrap().settled, 200);
    // `a`'s cache now says 200 but `b` moves alice again: `a`'s batch meets a newer
    // version, is rolled back and planned again on the stored balance.
    b.post(transfer("b-1", bob, alice, 100)).await.unwrap();
    let conflicts = a.stats().conflicts();
    a.post(transfer("a-3", alice, bob, 150)).await.unwrap();
    assert_eq!(a.stats().conflicts(), conflicts + 1);
    assert_eq!(a.balance(alice).await.unwrap().settled, 150);
    // A refusal on the stored balance is still a refusal, from either instance.
    let refused = b.post(transfer("b-2", alice, bob, 151)).await.unwrap_err();
    assert!(
        matches!(refused, LedgerError::InsufficientBalance { .. }),
        "{refused:?}"
    );
    let refused = a.post(transfer("a-4", alice, bob, 151)).await.unwrap_err();
    assert!(
        matches!(refused, LedgerError::InsufficientBalance { .. }),
        "{refused:?}"
    );
    assert!(a.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn two_writers_under_concurrent_load_keep_the_books_exact() {
    let t = ledger().await;
    let writers = [t.ledger.clone(), second_writer(&t.ledger).await];
    let l = &t.ledger;
    // A hot merchant every payer pays, and payers that also pay each other.
    let merchant = user(l, "merchant").await;
    let mut payers = Vec::new();
    for i in 0..8 {
        let p = user(l, &format!("payer-{i}")).await;
        fund(l, p, 10_000).await;
        payers.push(p);
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, payer) in payers.iter().copied().enumerate() {
        for (w, writer) in writers.iter().enumerate() {
            let writer = writer.clone();
            let next = payers[(i + 1) % payers.len()];
            set.spawn(async move {
                let mut posted = 0u64;
                for k in 0..40 {
                    // Every payer sends 40 x 100 from each instance: 8,000 of 10,000 in
                    // all, plus transfers around the ring that cancel out.
                    let (to, amount) = if k % 4 == 3 {
                        (next, 50)
                    } else {
                        (merchant, 100)
                    };
                    let id = format!("w{w}-p{i}-{k}");
                    writer.post(transfer(&id, payer, to, amount)).await.unwrap();
                    // The same external id through the other instance is a replay.
                    posted += u64::from(to == merchant) * amount;
                }
                posted
            });
        }
    }
    let mut to_merchant = 0u64;
    while let Some(r) = set.join_next().await {
        to_merchant += r.unwrap();
    }
    // Replays across instances answer the original.
    let again = writers[1]
        .post(transfer("w0-p0-0", payers[0], merchant, 100))
        .await
        .unwrap();
    assert!(again.replayed);
    let merchant_balance = l.balance(merchant).await.unwrap().settled;
    assert_eq!(u64::try_from(merchant_balance).unwrap(), to_merchant);
    let mut payers_total = 0i64;
    for p in &payers {
        payers_total += l.balance(*p).await.unwrap().settled;
    }
    assert_eq!(payers_total + merchant_balance, 8 * 10_000);
    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.transactions, 8 + 8 * 2 * 40);
}

/// Two writers posting into one hot account without pause: the one whose batch met the
/// other's commit plans again under the balance row's lock instead of retrying until it
/// gives up, so every posting is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_hot_account_starve_neither() {
    let t = ledger().await;
    let writers = [t.ledger.clone(), second_writer(&t.ledger).await];
    let l = &t.ledger;
    let merchant = user(l, "merchant").await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..32 {
        let payer = user(l, &format!("payer-{i}")).await;
        fund(l, payer, 1_000).await;
        let writer = writers[i % 2].clone();
        set.spawn(async move {
            for k in 0..25 {
                let id = format!("hot-{i}-{k}");
                writer.post(transfer(&id, payer, merchant, 10)).await?;
            }
            Ok::<_, LedgerError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(l.balance(merchant).await.unwrap().settled, 32 * 25 * 10);
    let conflicts = writers[0].stats().conflicts() + writers[1].stats().conflicts();
    assert!(
        conflicts > 0,
        "the writers never met: the test proves nothing"
    );
    // A batch conflicts at most once: its next round holds the locks.
    for w in &writers {
        let s = w.stats();
        assert!(
            s.conflicts() <= s.batches(),
            "{} conflicts in {} batches",
            s.conflicts(),
            s.batches()
        );
    }
    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

#[tokio::test]
async fn verify_detects_tampering() {
    let t = ledger().await;
    let l = &t.ledger;
    let alice = user(l, "alice").await;
    let bob = user(l, "bob").await;
    fund(l, alice, 1_000).await;
    let p = l.post(transfer("x", alice, bob, 400)).await.unwrap();
    assert!(l.verify().await.unwrap().is_ok());

    // The books are append-only.
    let refused =
        sqlx::query("UPDATE ledger_entries SET amount = 401 WHERE transaction_id = $1 AND seq = 1")
            .bind(p.id.as_uuid())
            .execute(l.pool())
            .await
            .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    for sql in [
        "DELETE FROM ledger_transactions",
        "TRUNCATE ledger_entries",
        "DELETE FROM ledger_accounts",
    ] {
        let e = sqlx::query(sql).execute(l.pool()).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }

    // An entry changed behind the ledger's back (its trigger disabled first): unbalanced,
    // and balances disagree.
    sqlx::query("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only")
        .execute(l.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE ledger_entries SET amount = 401 WHERE transaction_id = $1 AND seq = 1")
        .bind(p.id.as_uuid())
        .execute(l.pool())
        .await
        .unwrap();
    let report = l.verify().await.unwrap();
    assert!(report.violations.iter().any(|v| matches!(
        v,
        Violation::UnbalancedTransaction { transaction_id, difference: -1, .. } if *transaction_id == p.id
    )), "{:?}", report.violations);
    assert!(report.violations.iter().any(|v| matches!(
        v,
        Violation::BalanceMismatch { account_id, stored_settled: 400, entries_settled: 401, .. } if *account_id == bob
    )), "{:?}", report.violations);

    // A balance changed behind the ledger's back: totals no longer sum to zero.
    sqlx::query("UPDATE ledger_balances SET settled = settled + 5 WHERE account_id = $1")
        .bind(alice.as_uuid())
        .execute(l.pool())
        .await
        .unwrap();
    let report = l.verify().await.unwrap();
    assert!(
        report
            .violations
            .iter()
            .any(|v| matches!(v, Violation::NonZeroTotal { .. }))
    );

    // A user balance forced negative (the check constraint removed first).
    sqlx::query("ALTER TABLE ledger_balances DROP CONSTRAINT ledger_balances_check")
        .execute(l.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE ledger_balances SET settled = -7 WHERE account_id = $1")
        .bind(alice.as_uuid())
        .execute(l.pool())
        .await
        .unwrap();
    let report = l.verify().await.unwrap();
    assert!(report.violations.iter().any(|v| matches!(
        v,
        Violation::NegativeBalance { account_id, settled: -7, .. } if *account_id == alice
    )));

    // An entry on an account that does not exist.
    sqlx::query(
        "INSERT INTO ledger_entries (transaction_id, seq, account_id, direction, layer, currency, amount) \
         VALUES ($1, 9, $2, 'debit', 'settled', 'BTC', 1)",
    )
    .bind(p.id.as_uuid())
    .bind(uuid::Uuid::now_v7())
    .execute(l.pool())
    .await
    .unwrap();
    let report = l.verify().await.unwrap();
    assert!(
        report.violations.iter().any(|v| matches!(
            v,
            Violation::Orphan { row, missing, .. } if row == "entry" && missing == "account"
        )),
        "{:?}",
        report.violations
    );
}

#[tokio::test]
async fn accounts_are_created_with_their_rules() {
    let t = ledger().await;
    let l = &t.ledger;
    let onchain = l.account_by_code("bank.onchain").await.unwrap();
    assert_eq!(onchain.id, system::BANK_ONCHAIN);
    assert_eq!(onchain.kind, AccountKind::Omnibus);
    assert_eq!(onchain.normal_balance, Direction::Debit);
    for code in ["bank.lightning", "bank.fees", "bank.equity"] {
        l.account_by_code(code).await.unwrap();
    }
    let w = l
        .create_account(NewAccount::user_wallet("carol"))
        .await
        .unwrap();
    let stored = l.account(w.id).await.unwrap();
    assert_eq!(stored.kind, AccountKind::User);
    assert_eq!(stored.normal_balance, Direction::Credit);
    assert!(matches!(
        l.account(coordinator::LedgerAccountId::new()).await,
        Err(LedgerError::NotFound { .. })
    ));
    // A duplicate code is refused.
    let dup = NewAccount {
        id: None,
        code: Some("bank.fees".into()),
        name: "again".into(),
        kind: AccountKind::System,
        normal_balance: Direction::Credit,
        currency: Currency::Btc,
    };
    assert!(l.create_account(dup).await.is_err());
    let _ = ledger_with;
}
