//! Payments left PENDING are claimed and finished by any live instance, continuously: two
//! instances never work on one payment at once, one payment that cannot finish never stops
//! the others, and nothing is paid twice.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use std::time::Duration;

use common::{Customer, bank, customer, second_instance, settled_sats};
use coordinator::bank::{Bank, ResumeConfig};
use coordinator::ledger::system;
use coordinator::{Posting, Sats, WalletId};

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

/// A PENDING payment as a crash leaves it, `age_secs` old.
async fn stuck(b: &Bank, from: &Customer, to: WalletId, amount: i64, age_secs: i64) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO intraledger_payments (id, sender_account_id, sender_wallet_id, \
           recipient_wallet_id, amount_sats, memo, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'x', 'PENDING', now() - make_interval(secs => $6))",
    )
    .bind(id)
    .bind(from.account.as_uuid())
    .bind(from.wallet.as_uuid())
    .bind(to.as_uuid())
    .bind(amount)
    .bind(age_secs as f64)
    .execute(b.ledger().pool())
    .await
    .unwrap();
    id
}

async fn status(b: &Bank, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM intraledger_payments WHERE id = $1")
        .bind(id)
        .fetch_one(b.ledger().pool())
        .await
        .unwrap()
}

fn config(lease: Duration) -> ResumeConfig {
    ResumeConfig {
        lease,
        ..ResumeConfig::default()
    }
}

#[tokio::test]
async fn one_instance_claims_a_payment_a_failing_one_waits_and_a_fresh_one_is_left_alone() {
    let t = bank().await;
    let a = &t.bank;
    let b = second_instance(a).await;
    let alice = customer(a, "alice@example.com", 10_000).await;
    let bob = customer(a, "bob@example.com", 0).await.wallet;
    let ok1 = stuck(a, &alice, bob, 100, 60).await;
    let ok2 = stuck(a, &alice, bob, 200, 60).await;
    let bad = stuck(a, &alice, bob, 300, 60).await;
    let fresh = stuck(a, &alice, bob, 400, 0).await;
    // The failing one: its external id was taken by another posting, so the ledger
    // answers with a conflict every time.
    let squatter = Posting::transfer(
        system::MAIN_JOURNAL,
        format!("intraledger:{bad}"),
        system::BANK_ONCHAIN,
        Bank::ledger_account(bob),
        sats(1).to_msats(),
        "other",
    )
    .unwrap();
    a.ledger().post(squatter).await.unwrap();

    let first = a
        .resume_claimed_payments(&config(Duration::from_millis(500)))
        .await
        .unwrap();
    assert_eq!((first.claimed, first.finished, first.failed), (3, 2, 1));
    assert_eq!(status(a, ok1).await, "SUCCESS");
    assert_eq!(status(a, ok2).await, "SUCCESS");
    assert_eq!(status(a, bad).await, "PENDING");
    assert_eq!(status(a, fresh).await, "PENDING", "younger than the grace");
    // The other instance does not take the failing one while its claim holds...
    let second = b
        .resume_claimed_payments(&config(Duration::from_millis(500)))
        .await
        .unwrap();
    assert_eq!(second.claimed, 0);
    // ...and does once it lapses.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let third = b
        .resume_claimed_payments(&config(Duration::from_millis(500)))
        .await
        .unwrap();
    assert_eq!((third.claimed, third.failed), (1, 1));
    assert_eq!(settled_sats(a, bob).await, 1 + 100 + 200);
    assert_eq!(settled_sats(a, alice.wallet).await, 10_000 - 300);
}

#[tokio::test]
async fn two_instances_resuming_at_once_finish_each_payment_once() {
    let t = bank().await;
    let a = &t.bank;
    let b = second_instance(a).await;
    let alice = customer(a, "alice@example.com", 100_000).await;
    let bob = customer(a, "bob@example.com", 0).await.wallet;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(stuck(a, &alice, bob, 100 + i, 60).await);
    }
    let small = ResumeConfig {
        batch: 7,
        ..ResumeConfig::default()
    };
    let (mut claimed_a, mut claimed_b) = (0, 0);
    loop {
        let (ra, rb) = tokio::join!(
            a.resume_claimed_payments(&small),
            b.resume_claimed_payments(&small)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!((ra.failed, rb.failed), (0, 0));
        claimed_a += ra.claimed;
        claimed_b += rb.claimed;
        if ra.claimed + rb.claimed == 0 {
            break;
        }
    }
    assert_eq!(claimed_a + claimed_b, 40, "each payment claimed once");
    assert!(claimed_a > 0 && claimed_b > 0, "{claimed_a} / {claimed_b}");
    for id in ids {
        assert_eq!(status(a, id).await, "SUCCESS");
    }
    let expected: i64 = (0..40).map(|i| 100 + i).sum();
    assert_eq!(settled_sats(a, bob).await, expected);
    assert!(a.ledger().verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn the_running_resumer_finishes_payments_without_being_asked() {
    let t = bank().await;
    let a = &t.bank;
    let alice = customer(a, "alice@example.com", 10_000).await;
    let bob = customer(a, "bob@example.com", 0).await.wallet;
    let _resumer = a.spawn_payment_resumer(ResumeConfig {
        interval: Duration::from_millis(100),
        grace: Duration::from_millis(200),
        ..ResumeConfig::default()
    });
    // Left PENDING while the resumer runs (not only at its start).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = stuck(a, &alice, bob, 500, 0).await;
    let mut done = false;
    for _ in 0..100 {
        if status(a, id).await == "SUCCESS" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the resumer finished the payment");
    assert_eq!(settled_sats(a, bob).await, 500);
}
