//! 1,000 deposits across 100 users through the stand-in and the driver, then the ledger's
//! invariants and a reconciliation: the ledger's on-chain asset account equals the sum of
//! the hot wallet's UTXOs, as bdk counts them from the same blocks, and the sum of the
//! settled deposits.

mod deposits_common;

use coordinator::chain::BlockLocator;
use coordinator::ledger::system;
use deposits_common::{Env, config, eventually_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deposits_to_a_hundred_users_reconcile() {
    // 250 blocks: the coinbases of heights 1 to 149 (50 BTC each) are spendable, so the
    // stand-in pays from confirmed coins rather than long chains of its own change.
    let env = Env::with_blocks(250).await;
    let mut customers = Vec::new();
    for i in 0..100 {
        customers.push(env.customer(&format!("user{i:03}@example.com")).await);
    }
    let handle = env.driver(config(1)).spawn();

    let mut expected = vec![0u64; customers.len()];
    let mut total = 0u64;
    for i in 0..1_000u64 {
        let who = usize::try_from(i % 100).expect("index");
        let amount = 1_000 + (i * 7_919) % 100_000;
        env.pay(&customers[who], amount, 0).await;
        expected[who] += amount;
        total += amount;
        if i % 25 == 24 {
            env.control().mine(1).await.expect("mined");
        }
    }
    env.control().mine(1).await.expect("mined");
    // Generous: a loaded machine shared with other builds.
    let settled = eventually_for(std::time::Duration::from_secs(120), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deposits WHERE state = 'SETTLED'")
            .fetch_one(env.pool())
            .await
            .expect("count");
        (n == 1_000).then_some(n)
    })
    .await;
    handle.stop().await;
    assert_eq!(settled, Some(1_000), "every deposit settled");

    for (c, sats) in customers.iter().zip(&expected) {
        assert_eq!(
            env.balance(c.wallet).await,
            i64::try_from(sats * 1_000).expect("fits")
        );
    }
    env.verify_ledger().await;
    let credits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transactions WHERE external_id LIKE 'deposit:%'",
    )
    .fetch_one(env.pool())
    .await
    .expect("count");
    assert_eq!(credits, 1_000);
    let not_settled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deposits WHERE state <> 'SETTLED'")
            .fetch_one(env.pool())
            .await
            .expect("count");
    assert_eq!(not_settled, 0);

    // The hot wallet as bdk sees the same chain, block by block from its birth.
    let wallet = env.wallets.open(env.hot.id).await.expect("wallet opens");
    loop {
        let from = wallet.tip().await;
        let batch = env
            .chain
            .blocks_since(
                &BlockLocator {
                    known: vec![from],
                    start_height: 0,
                },
                100,
            )
            .await
            .expect("blocks");
        assert!(batch.disconnected.is_empty());
        let mut prev = from;
        for block in &batch.connected {
            wallet.apply_block(block, prev).await.expect("applied");
            prev = block.id();
        }
        if batch.connected.is_empty() || prev.height >= batch.tip.height {
            break;
        }
    }
    let utxos = wallet.utxo_total().await.expect("utxo sum");
    let onchain = env
        .tb
        .bank
        .ledger()
        .balance(system::BANK_ONCHAIN)
        .await
        .expect("balance");
    assert_eq!(utxos.to_sat(), total);
    assert_eq!(onchain.settled, i64::try_from(total * 1_000).expect("fits"));
    assert_eq!(
        env.deposits.settled_total().await.expect("sum").to_sat(),
        total
    );
}
