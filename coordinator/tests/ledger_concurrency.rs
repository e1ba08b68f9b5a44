//! Many clients at once: the writer batches their postings; nothing is lost, created or
//! duplicated, and no user balance goes below zero.

mod common;

use std::collections::HashMap;

use common::{fund, ledger, transfer, user};
use coordinator::{LedgerAccountId, LedgerError};
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_ten_thousand_random_transfers_among_a_hundred_accounts() {
    const ACCOUNTS: usize = 100;
    const CLIENTS: usize = 16;
    const TRANSFERS: usize = 10_000;
    const FUNDING: u64 = 50_000;

    let t = ledger().await;
    let l = &t.ledger;
    let mut accounts = Vec::with_capacity(ACCOUNTS);
    for i in 0..ACCOUNTS {
        let a = user(l, &format!("u{i}")).await;
        fund(l, a, FUNDING).await;
        accounts.push(a);
    }

    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let l = l.clone();
        let accounts = accounts.clone();
        clients.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            // (from, to, amount) of every transfer that succeeded
            let mut done: Vec<(LedgerAccountId, LedgerAccountId, i64)> = Vec::new();
            let mut refused = 0usize;
            let mut replays = 0usize;
            let mut posted_ids = Vec::new();
            for i in 0..TRANSFERS / CLIENTS {
                let from = accounts[rng.gen_range(0..ACCOUNTS)];
                let mut to = accounts[rng.gen_range(0..ACCOUNTS)];
                while to == from {
                    to = accounts[rng.gen_range(0..ACCOUNTS)];
                }
                // Large enough that some transfers must be refused.
                let amount = rng.gen_range(1..20_000u64);
                let ext = format!("c{c}-{i}");
                match l.post(transfer(&ext, from, to, amount)).await {
                    Ok(p) => {
                        assert!(!p.replayed);
                        done.push((from, to, amount as i64));
                        posted_ids.push((ext.clone(), p.id, from, to, amount));
                    }
                    Err(LedgerError::InsufficientBalance { account_id, .. }) => {
                        assert_eq!(account_id, from);
                        refused += 1;
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
                // Now and then a client retries an earlier successful posting.
                if i % 50 == 49 && !posted_ids.is_empty() {
                    let (ext, id, from, to, amount) =
                        posted_ids[rng.gen_range(0..posted_ids.len())].clone();
                    let again = l.post(transfer(&ext, from, to, amount)).await.unwrap();
                    assert!(again.replayed);
                    assert_eq!(again.id, id);
                    replays += 1;
                }
            }
            (done, refused, replays)
        });
    }

    let mut expected: HashMap<LedgerAccountId, i64> =
        accounts.iter().map(|a| (*a, FUNDING as i64)).collect();
    let (mut succeeded, mut refused, mut replays) = (0, 0, 0);
    while let Some(r) = clients.join_next().await {
        let (done, r_refused, r_replays) = r.unwrap();
        succeeded += done.len();
        refused += r_refused;
        replays += r_replays;
        for (from, to, amount) in done {
            *expected.entry(from).or_default() -= amount;
            *expected.entry(to).or_default() += amount;
        }
    }
    assert_eq!(succeeded + refused, TRANSFERS);
    assert!(
        succeeded > TRANSFERS / 2,
        "most transfers succeed ({succeeded})"
    );
    assert!(refused > 0, "some transfers are refused");
    assert!(replays > 0);

    // Every successful transfer is in the balances exactly once, whatever the order.
    let mut total = 0i64;
    for a in &accounts {
        let b = l.balance(*a).await.unwrap();
        assert!(b.settled >= 0, "negative balance on {a}");
        assert_eq!(b.settled, expected[a], "balance of {a}");
        total += b.settled;
    }
    assert_eq!(
        total,
        FUNDING as i64 * ACCOUNTS as i64,
        "no satoshi created or lost"
    );

    let report = l.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.transactions as usize, ACCOUNTS + succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_payers_into_one_merchant_account() {
    const PAYERS: usize = 16;
    const PAYMENTS: usize = 200;
    let t = ledger().await;
    let l = &t.ledger;
    let merchant = user(l, "merchant").await;
    let mut payers = Vec::new();
    for i in 0..PAYERS {
        let p = user(l, &format!("payer{i}")).await;
        fund(l, p, 1_000_000).await;
        payers.push(p);
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, payer) in payers.iter().copied().enumerate() {
        let l = l.clone();
        set.spawn(async move {
            for n in 0..PAYMENTS {
                l.post(transfer(
                    &format!("p{i}-{n}"),
                    payer,
                    merchant,
                    1_000 + n as u64,
                ))
                .await
                .unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let per_payer: i64 = (0..PAYMENTS as i64).map(|n| 1_000 + n).sum();
    let m = l.balance(merchant).await.unwrap();
    assert_eq!(m.settled, per_payer * PAYERS as i64);
    for p in payers {
        assert_eq!(l.balance(p).await.unwrap().settled, 1_000_000 - per_payer);
    }
    let history = l.history(merchant, 10_000, None).await.unwrap();
    assert_eq!(history.len(), PAYERS * PAYMENTS);
    assert!(l.verify().await.unwrap().is_ok());
}
