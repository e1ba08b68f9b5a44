//! Finished payments are counted by final state on the instance that finished them
//! (`bastion_payments_finished_total`), once each, whichever path finished them.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use std::time::Duration;

use common::{bank, customer};
use coordinator::Sats;
use coordinator::bank::{BankError, Recipient, SendRequest};
use coordinator::ops::metrics;

fn counted(rendered: &str, state: &str) -> u64 {
    let prefix = format!("bastion_payments_finished_total{{state=\"{state}\"}} ");
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn finished_payments_are_counted_by_state_once_each() {
    // This test binary's own recorder: the only test in it.
    let handle = metrics::install().unwrap();
    let t = bank().await;
    let b = &t.bank;
    let alice = customer(b, "alice@example.com", 1_000).await;
    let bob = customer(b, "bob@example.com", 0).await;

    let send = |amount: u64, key: &str| SendRequest {
        wallet_id: alice.wallet,
        recipient: Recipient::Wallet(bob.wallet),
        amount: Sats::new(amount).unwrap(),
        memo: None,
        idempotency_key: Some(key.to_owned()),
    };
    for i in 0..3 {
        b.send_internal(&alice.me, &send(100, &format!("ok-{i}")))
            .await
            .unwrap();
    }
    // A replay is no new outcome.
    b.send_internal(&alice.me, &send(100, "ok-0"))
        .await
        .unwrap();
    for i in 0..2 {
        let refused = b
            .send_internal(&alice.me, &send(5_000, &format!("no-{i}")))
            .await;
        assert!(
            matches!(refused, Err(BankError::InsufficientBalance)),
            "{refused:?}"
        );
    }
    b.send_internal(&alice.me, &send(5_000, "no-0"))
        .await
        .unwrap_err();

    // Successes are recorded by the settler, off the caller's path.
    let mut rendered = handle.render();
    for _ in 0..200 {
        if counted(&rendered, "success") >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        rendered = handle.render();
    }
    assert_eq!(counted(&rendered, "success"), 3, "{rendered}");
    assert_eq!(counted(&rendered, "failure"), 2, "{rendered}");
}
