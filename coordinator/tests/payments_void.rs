//! A payment refused for want of funds stays refused: its ledger posting is voided before
//! the row says FAILURE, so a retry or another instance's resumer that still sees it
//! PENDING cannot pay it after a credit arrives. What each finisher answers matches what
//! the database ends up holding.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use std::time::Duration;

use common::{Customer, bank, customer, fund, second_instance, settled_sats};
use coordinator::bank::{
    Bank, BankError, PaymentResult, PaymentStatus, Recipient, ResumeConfig, SendRequest,
};
use coordinator::{Sats, WalletId};

async fn credit(b: &Bank, w: WalletId, sats: u64) {
    fund(b.ledger(), Bank::ledger_account(w), sats * 1000).await;
}

async fn send(
    b: &Bank,
    from: &Customer,
    to: WalletId,
    key: &str,
) -> Result<PaymentResult, BankError> {
    let request = SendRequest {
        wallet_id: from.wallet,
        recipient: Recipient::Wallet(to),
        amount: Sats::new(500).unwrap(),
        memo: None,
        idempotency_key: Some(key.to_owned()),
    };
    b.send_internal(&from.me, &request).await
}

/// The payment's row once no finisher is at work on it: (status, ledger posting voided?,
/// ledger posting's entry count).
async fn settled_state(b: &Bank, key: &str) -> (String, bool, usize) {
    let pool = b.ledger().pool();
    for _ in 0..500 {
        let row: (uuid::Uuid, String) = sqlx::query_as(
            "SELECT id, status FROM intraledger_payments WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap();
        if row.1 != "PENDING" {
            let tx = b
                .ledger()
                .transaction_by_external_id(&format!("intraledger:{}", row.0))
                .await
                .unwrap()
                .unwrap();
            return (row.1, tx.voided, tx.entries.len());
        }
        // The settler records successes off the caller's path.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("payment {key} still PENDING after 5 s");
}

#[tokio::test]
async fn a_finisher_that_saw_the_payment_pending_cannot_pay_it_after_a_refusal() {
    let t = bank().await;
    let a = &t.bank;
    let b = second_instance(a).await;
    let alice = customer(a, "alice@example.com", 0).await;
    let bob = customer(a, "bob@example.com", 0).await;

    assert!(matches!(
        send(a, &alice, bob.wallet, "k1").await,
        Err(BankError::InsufficientBalance)
    ));
    assert_eq!(settled_state(a, "k1").await, ("FAILURE".into(), true, 0));

    // Money arrives. A retry is answered with the first outcome.
    credit(a, alice.wallet, 1_000).await;
    assert!(matches!(
        send(&b, &alice, bob.wallet, "k1").await,
        Err(BankError::InsufficientBalance)
    ));
    // A finisher that read the row before the FAILURE was written (here: the other
    // instance's resumer, shown the row as it was then: PENDING, its amount still in the
    // sender's running window) posts it again: the void refuses it.
    sqlx::query(
        "WITH p AS (UPDATE intraledger_payments SET status = 'PENDING' \
                    WHERE idempotency_key = 'k1' RETURNING sender_account_id, amount_sats) \
         UPDATE accounts a SET internal_sent_window = internal_sent_window + p.amount_sats \
         FROM p WHERE a.id = p.sender_account_id",
    )
    .execute(a.ledger().pool())
    .await
    .unwrap();
    let eager = ResumeConfig {
        grace: Duration::ZERO,
        ..ResumeConfig::default()
    };
    let report = b.resume_claimed_payments(&eager).await.unwrap();
    assert_eq!((report.claimed, report.finished), (1, 1));
    assert_eq!(settled_state(a, "k1").await, ("FAILURE".into(), true, 0));
    assert_eq!(settled_sats(a, alice.wallet).await, 1_000);
    assert_eq!(settled_sats(a, bob.wallet).await, 0);
    // The refused amount left the window again, once.
    let window: i64 = sqlx::query_scalar(
        "SELECT internal_sent_window FROM accounts a JOIN wallets w ON w.account_id = a.id \
         WHERE w.id = $1",
    )
    .bind(alice.wallet.as_uuid())
    .fetch_one(a.ledger().pool())
    .await
    .unwrap();
    assert_eq!(window, 0);
    let report = a.ledger().verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

/// A payment from an empty wallet and its retry on another instance just after a credit,
/// racing, many times: whoever wins, the answers, the row and the ledger agree, and the
/// money moved exactly when the row says SUCCESS.
#[tokio::test]
async fn a_refusal_racing_a_retry_after_a_credit_never_contradicts_the_ledger() {
    let t = bank().await;
    let a = &t.bank;
    let b = second_instance(a).await;
    let bob = customer(a, "bob@example.com", 0).await;
    let rounds = 30;
    let (mut paid, mut refused, mut refused_then_found_paid) = (0, 0, 0);
    for i in 0..rounds {
        let alice = customer(a, &format!("alice{i}@example.com"), 0).await;
        let key = format!("race-{i}");
        let (first, retry) = tokio::join!(send(a, &alice, bob.wallet, &key), async {
            tokio::time::sleep(Duration::from_micros(300 * (i % 7))).await;
            credit(&b, alice.wallet, 500).await;
            send(&b, &alice, bob.wallet, &key).await
        });
        let (status, voided, entries) = settled_state(a, &key).await;
        let answers = [&first, &retry];
        match status.as_str() {
            "SUCCESS" => {
                assert!(
                    !voided && entries == 2,
                    "round {i}: SUCCESS without a posting"
                );
                for r in answers {
                    assert!(
                        matches!(r, Ok(p) if p.status != PaymentStatus::Pending),
                        "round {i}: paid, but a finisher said {r:?}"
                    );
                }
                assert_eq!(settled_sats(a, alice.wallet).await, 0);
                if matches!(first, Ok(ref p) if p.status == PaymentStatus::AlreadyPaid) {
                    refused_then_found_paid += 1;
                }
                paid += 1;
            }
            "FAILURE" => {
                assert!(voided && entries == 0, "round {i}: FAILURE with a posting");
                for r in answers {
                    assert!(
                        matches!(r, Err(BankError::InsufficientBalance)),
                        "round {i}: refused, but a finisher said {r:?}"
                    );
                }
                assert_eq!(settled_sats(a, alice.wallet).await, 500);
                refused += 1;
            }
            other => panic!("round {i}: status {other}"),
        }
    }
    eprintln!(
        "{rounds} rounds: {paid} paid ({refused_then_found_paid} by the retry after the first \
         finisher was refused), {refused} refused"
    );
    assert_eq!(settled_sats(a, bob.wallet).await, 500 * paid);
    let report = a.ledger().verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}
