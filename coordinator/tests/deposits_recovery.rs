//! Deposits through failures: a driver dropped between detection and credit (its task
//! aborted without giving up its lease, as a crash would leave it) and a new driver on the
//! same database; a credit posted but not recorded; the chain source down then back; two
//! drivers at once.

mod deposits_common;

use std::process::Command;
use std::time::Duration;

use coordinator::deposits::{DepositState, credit_posting};
use deposits_common::{Env, config, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_dropped_between_detection_and_credit_is_replaced_and_credits_once() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let first = env.driver(config(2)).spawn();
    let op = env.pay(&alice, 75_000, 1).await;
    env.wait_state(&op, DepositState::Pending).await;
    // Crash: the task stops, the lease row still names it.
    first.abort();

    env.control().mine(2).await.expect("mined");
    // A new driver (another instance) takes over once the lease runs out, and credits.
    let second = env.driver(config(2)).spawn();
    env.wait_state(&op, DepositState::Settled).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.stop().await;
    assert_eq!(env.credits(&op).await, 1);
    assert_eq!(env.balance(alice.wallet).await, 75_000_000);
    env.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_posted_but_not_recorded_is_found_again_not_posted_twice() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let mut driver = env.driver(config(1));
    let op = env.pay(&alice, 55_000, 0).await;
    driver.tick().await.expect("tick");
    let d = env.deposit(&op).await.expect("recorded");

    // What a driver that crashed right after its posting leaves: the credit in the ledger,
    // the deposit still PENDING.
    let posted = env
        .tb
        .bank
        .ledger()
        .post(credit_posting(&d).expect("posting"))
        .await
        .expect("posted");
    env.control().mine(1).await.expect("mined");
    let r = driver.tick().await.expect("tick");
    assert_eq!(r.settled, 1, "{r:?}");
    let d = env.deposit(&op).await.expect("recorded");
    assert_eq!(d.state, DepositState::Settled);
    assert_eq!(
        d.ledger_transaction_id,
        Some(posted.id),
        "the original posting"
    );
    assert_eq!(env.credits(&op).await, 1);
    assert_eq!(env.balance(alice.wallet).await, 55_000_000);
    env.verify_ledger().await;
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_source_down_then_back_delays_deposits_and_loses_nothing() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let handle = env.driver(config(1)).spawn();
    let op = env.pay(&alice, 65_000, 0).await;
    env.wait_state(&op, DepositState::Pending).await;

    // The stand-in stops answering (frozen, as a hung server): passes fail, the driver
    // keeps running and says why.
    let pid = env.standin.pid();
    signal(pid, "-STOP");
    let failed = eventually(|| async {
        match handle.last() {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    })
    .await;
    signal(pid, "-CONT");
    let failed = failed.expect("a pass failed while the chain source was down");
    assert!(failed.contains("unavailable"), "{failed}");
    assert_eq!(env.credits(&op).await, 0);

    // Back: the deposit confirms and is credited once.
    env.control().mine(1).await.expect("mined");
    env.wait_state(&op, DepositState::Settled).await;
    let ok = eventually(|| async { handle.last().filter(|r| r.is_ok()) }).await;
    assert!(ok.is_some(), "passes succeed again");
    handle.stop().await;
    assert_eq!(env.credits(&op).await, 1);
    assert_eq!(env.balance(alice.wallet).await, 65_000_000);
    env.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_at_once_credit_each_deposit_once() {
    let env = Env::new().await;
    let mut customers = Vec::new();
    for i in 0..4 {
        customers.push(env.customer(&format!("user{i}@example.com")).await);
    }
    let a = env.driver(config(2)).spawn();
    let b = env.driver(config(2)).spawn();
    let mut paid = Vec::new();
    for round in 0..5u64 {
        for c in &customers {
            paid.push((env.pay(c, 10_000 + round * 1_000, 0).await, c.wallet));
        }
        env.control().mine(1).await.expect("mined");
    }
    env.control().mine(2).await.expect("mined");
    for (op, _) in &paid {
        env.wait_state(op, DepositState::Settled).await;
    }
    // One of them held the lease; stopping it lets the other take over.
    a.stop().await;
    env.control().mine(1).await.expect("mined");
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.stop().await;
    for (op, _) in &paid {
        assert_eq!(env.credits(op).await, 1, "{op}");
    }
    for c in &customers {
        // 10,000 + 11,000 + ... + 14,000 sat each.
        assert_eq!(env.balance(c.wallet).await, 60_000_000);
    }
    env.verify_ledger().await;
}
