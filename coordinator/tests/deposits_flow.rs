//! Deposits against the regtest stand-in (a separate process) and real PostgreSQL:
//! pending, then settled once; two outputs of one transaction; reorgs before and after
//! settlement; the dust and closed/locked account rules.

mod deposits_common;

use coordinator::bank::{AccountStatus, Actor};
use coordinator::deposits::{AlertResolution, DepositError, DepositState, credit_external_id};
use deposits_common::{Env, config, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_is_pending_then_credited_once_after_its_confirmations() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let handle = env.driver(config(3)).spawn();

    let op = env.pay(&alice, 120_000, 0).await;
    let d = env.wait_state(&op, DepositState::Pending).await;
    assert_eq!(d.amount.to_sat(), 120_000);
    assert_eq!(d.wallet_id, alice.wallet);
    assert_eq!(d.address, alice.address.to_string());
    assert_eq!(d.block_height, None, "seen in the mempool first");
    assert_eq!(env.pending_incoming(&alice).await, 120_000);
    assert_eq!(env.balance(alice.wallet).await, 0);

    // Two confirmations of three: still pending, nothing credited.
    env.control().mine(2).await.expect("mined");
    let confirmed =
        eventually(|| async { env.deposit(&op).await.filter(|d| d.block_height.is_some()) })
            .await
            .expect("the deposit's block is seen");
    assert_eq!(confirmed.state, DepositState::Pending);
    // Let the driver pass over the second block too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(env.credits(&op).await, 0);
    assert_eq!(env.balance(alice.wallet).await, 0);

    env.control().mine(1).await.expect("mined");
    let settled = env.wait_state(&op, DepositState::Settled).await;
    assert!(settled.ledger_transaction_id.is_some());
    assert_eq!(env.balance(alice.wallet).await, 120_000_000);
    assert_eq!(env.pending_incoming(&alice).await, 0);

    // More blocks change nothing: credited once.
    env.control().mine(3).await.expect("mined");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(env.credits(&op).await, 1);
    assert_eq!(env.balance(alice.wallet).await, 120_000_000);
    handle.stop().await;

    // The credit comes from the bank's on-chain asset account.
    let tx = env
        .tb
        .bank
        .ledger()
        .transaction_by_external_id(&credit_external_id(&op))
        .await
        .expect("read")
        .expect("posted");
    assert!(tx.entries.iter().any(
        |e| e.account_id == coordinator::ledger::system::BANK_ONCHAIN
            && e.direction == coordinator::ledger::Direction::Debit
    ));
    // myUpdates' source: one PENDING and one SETTLED event.
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM deposit_events WHERE deposit_id = $1 ORDER BY seq")
            .bind(d.id)
            .fetch_all(env.pool())
            .await
            .expect("events");
    assert_eq!(kinds, ["PENDING", "SETTLED"]);
    env.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outputs_of_one_transaction_credit_two_users() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let bob = env.customer("bob@example.com").await;
    let mut driver = env.driver(config(1));

    let txid =
        deposits_common::pay_many(&env, &[(&alice.address, 50_000), (&bob.address, 70_000)]).await;
    let r = driver.tick().await.expect("tick");
    assert_eq!(r.pending, 2, "{r:?}");
    env.control().mine(1).await.expect("mined");
    let r = driver.tick().await.expect("tick");
    assert_eq!(r.settled, 2, "{r:?}");

    assert_eq!(env.balance(alice.wallet).await, 50_000_000);
    assert_eq!(env.balance(bob.wallet).await, 70_000_000);
    let rows: Vec<(i32, uuid::Uuid)> =
        sqlx::query_as("SELECT vout, wallet_id FROM deposits WHERE txid = $1 ORDER BY vout")
            .bind(bdk_wallet::bitcoin::hashes::Hash::to_byte_array(txid).to_vec())
            .fetch_all(env.pool())
            .await
            .expect("rows");
    assert_eq!(rows.len(), 2);
    env.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_before_settlement_takes_the_confirmation_back_and_credits_once_later() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let mut driver = env.driver(config(3));

    let op = env.pay(&alice, 80_000, 2).await;
    driver.tick().await.expect("tick");
    let d = env.deposit(&op).await.expect("recorded");
    assert_eq!(d.state, DepositState::Pending);
    let h = d.block_height.expect("confirmed");

    // Both blocks go: the transaction is back in the stand-in's mempool.
    let inv = env.control().invalidate(2).await.expect("invalidated");
    assert!(inv.returned_to_mempool.contains(&op.txid));
    let r = driver.tick().await.expect("tick");
    assert_eq!(r.blocks_disconnected, 2, "{r:?}");
    let d = env.deposit(&op).await.expect("recorded");
    assert_eq!(d.state, DepositState::Pending);
    assert_eq!(d.block_height, None, "no longer confirmed");
    assert_eq!(env.credits(&op).await, 0);

    // A new chain of three blocks: confirmed again, three confirmations, credited once.
    env.control().mine(3).await.expect("mined");
    let r = driver.tick().await.expect("tick");
    assert_eq!(r.settled, 1, "{r:?}");
    let d = env.deposit(&op).await.expect("recorded");
    assert_eq!(d.state, DepositState::Settled);
    assert_eq!(d.block_height, Some(h), "mined again at the same height");
    assert_eq!(env.credits(&op).await, 1);
    assert_eq!(env.balance(alice.wallet).await, 80_000_000);
    env.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_drops_the_transaction_removes_its_pending_credit() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let mut driver = env.driver(config(3));

    // The stand-in pays from the coinbase of block 1; taking every block away (a reorg
    // deeper than the driver's last 100 blocks) makes the payment invalid for good.
    let op = env.pay(&alice, 90_000, 1).await;
    driver.tick().await.expect("tick");
    assert_eq!(env.pending_incoming(&alice).await, 90_000);
    let tip = env.control().tip().await.expect("tip").height;
    let inv = env.control().invalidate(tip).await.expect("invalidated");
    assert!(inv.dropped.contains(&op.txid), "{inv:?}");
    // The new chain is longer than the old one, without the payment.
    env.control().mine(tip + 1).await.expect("mined");

    let r = driver.tick().await.expect("tick");
    assert_eq!(r.removed, 1, "{r:?}");
    let d = env.deposit(&op).await.expect("recorded");
    assert_eq!(d.state, DepositState::Removed);
    assert_eq!(env.pending_incoming(&alice).await, 0);
    assert_eq!(env.credits(&op).await, 0);
    assert_eq!(env.balance(alice.wallet).await, 0);
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM deposit_events WHERE deposit_id = $1 ORDER BY seq")
            .bind(d.id)
            .fetch_all(env.pool())
            .await
            .expect("events");
    assert_eq!(kinds, ["PENDING", "REMOVED"]);
    env.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_after_settlement_raises_an_alert_and_the_reversal_is_idempotent() {
    let env = Env::new().await;
    let alice = env.customer("alice@example.com").await;
    let mut driver = env.driver(config(1));

    let op = env.pay(&alice, 60_000, 1).await;
    let r = driver.tick().await.expect("tick");
    assert_eq!(r.settled, 1, "{r:?}");
    assert_eq!(env.balance(alice.wallet).await, 60_000_000);
    assert!(env.deposits.alerts(true).await.expect("alerts").is_empty());

    env.control().invalidate(1).await.expect("invalidated");
    let r = driver.tick().await.expect("tick");
    assert_eq!(r.alerts, 1, "{r:?}");
    // Never silently ignored: the alert stays until an operator resolves it, and passing
    // over the same reorg again raises no second alert.
    driver.tick().await.expect("tick");
    let alerts = env.deposits.alerts(true).await.expect("alerts");
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.kind, "REORGED_AFTER_SETTLEMENT");
    assert_eq!(alert.deposit.outpoint, op);
    // The credit stands until then.
    assert_eq!(env.balance(alice.wallet).await, 60_000_000);

    let first = env
        .deposits
        .reverse(alert.id, "staff:test", "payment reorged out")
        .await
        .expect("reversed");
    assert_eq!(first.resolution, Some(AlertResolution::Reversed));
    let again = env
        .deposits
        .reverse(alert.id, "staff:test", "again")
        .await
        .expect("replayed");
    assert_eq!(again.reversal_transaction_id, first.reversal_transaction_id);
    assert_eq!(env.balance(alice.wallet).await, 0);
    let reversals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transactions WHERE external_id LIKE 'deposit-reversal:%'",
    )
    .fetch_one(env.pool())
    .await
    .expect("count");
    assert_eq!(reversals, 1);
    assert!(matches!(
        env.deposits.dismiss(alert.id, "staff:test", "no").await,
        Err(DepositError::AlreadyResolved { .. })
    ));
    let d = env.deposit(&op).await.expect("recorded");
    assert_eq!(d.state, DepositState::Reversed);
    // Mining the payment again credits nothing more: the deposit was settled once.
    env.control().mine(2).await.expect("mined");
    driver.tick().await.expect("tick");
    assert_eq!(env.credits(&op).await, 1);
    assert_eq!(env.balance(alice.wallet).await, 0);
    env.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dust_closed_and_locked_accounts_follow_the_documented_rules() {
    let env = Env::new().await;
    let small = env.customer("small@example.com").await;
    let closed = env.customer("closed@example.com").await;
    let locked = env.customer("locked@example.com").await;
    let bank = &env.tb.bank;
    bank.set_status(Actor::System, closed.account, AccountStatus::Closed, "test")
        .await
        .expect("closed");
    bank.set_status(Actor::System, locked.account, AccountStatus::Locked, "test")
        .await
        .expect("locked");
    let mut driver = env.driver(config(1));

    // 400 sat is above the network's dust for this script but below the bank's minimum.
    let dust = env.pay(&small, 400, 0).await;
    let to_closed = env.pay(&closed, 30_000, 0).await;
    let to_locked = env.pay(&locked, 40_000, 0).await;
    let r = driver.tick().await.expect("tick");
    assert_eq!(
        r.pending, 2,
        "the dust deposit is not shown as pending: {r:?}"
    );
    assert_eq!(env.pending_incoming(&small).await, 0);
    env.control().mine(1).await.expect("mined");
    let r = driver.tick().await.expect("tick");
    assert_eq!((r.settled, r.held), (1, 1), "{r:?}");

    let d = env.deposit(&dust).await.expect("recorded");
    assert_eq!(d.state, DepositState::BelowMinimum);
    assert_eq!(env.credits(&dust).await, 0);
    assert_eq!(
        env.deposit(&to_closed).await.expect("recorded").state,
        DepositState::Held
    );
    assert_eq!(env.balance(closed.wallet).await, 0);
    // Locked accounts receive (they cannot send).
    assert_eq!(
        env.deposit(&to_locked).await.expect("recorded").state,
        DepositState::Settled
    );
    assert_eq!(env.balance(locked.wallet).await, 40_000_000);
    // Operators see the dust and the held deposit.
    let open = env
        .deposits
        .for_operators(&[DepositState::BelowMinimum, DepositState::Held], 10)
        .await
        .expect("list");
    assert_eq!(open.len(), 2);
    env.verify_ledger().await;
}
