//! Property tests: random sequences of postings against a model of the ledger. Every
//! outcome (posted, refused, replayed, conflict) must match the model, the stored balances
//! must equal the model's, and `verify` must find nothing.

mod common;

use std::collections::HashMap;

use common::msats;
use coordinator::ledger::{Currency, Direction, Layer, NewAccount, system};
use coordinator::{Ledger, LedgerAccountId, LedgerError, Posting};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const USERS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        to: usize,
        amount: u64,
        pending: bool,
    },
    Confirm {
        to: usize,
        amount: u64,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    WithFee {
        from: usize,
        to: usize,
        amount: u64,
        fee: u64,
    },
    Replay {
        which: usize,
    },
    Conflict {
        which: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let amount = 1..5_000u64;
    prop_oneof![
        (user.clone(), amount.clone(), any::<bool>()).prop_map(|(to, amount, pending)| {
            Op::Deposit {
                to,
                amount,
                pending,
            }
        }),
        (user.clone(), amount.clone()).prop_map(|(to, amount)| Op::Confirm { to, amount }),
        (user.clone(), user.clone(), amount.clone()).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (user.clone(), user, amount, 1..100u64).prop_map(|(from, to, amount, fee)| Op::WithFee {
            from,
            to,
            amount,
            fee
        }),
        any::<usize>().prop_map(|which| Op::Replay { which }),
        any::<usize>().prop_map(|which| Op::Conflict { which }),
    ]
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Model {
    settled: i64,
    pending: i64,
}

struct Account {
    id: LedgerAccountId,
    normal: Direction,
    allow_negative: bool,
}

/// What the model says a posting does: the new balances, or the account it would take
/// below zero.
fn predict(
    posting: &Posting,
    accounts: &[Account],
    model: &HashMap<LedgerAccountId, Model>,
) -> Result<HashMap<LedgerAccountId, Model>, LedgerAccountId> {
    let mut next = model.clone();
    for e in posting.entries() {
        let acc = accounts
            .iter()
            .find(|a| a.id == e.account_id)
            .expect("known account");
        let v = e.amount.to_i64();
        let signed = if e.direction == acc.normal { v } else { -v };
        let m = next.entry(e.account_id).or_default();
        match e.layer {
            Layer::Settled => m.settled += signed,
            Layer::Pending => m.pending += signed,
        }
    }
    for acc in accounts {
        let m = next[&acc.id];
        if !acc.allow_negative && (m.settled < 0 || m.settled + m.pending < 0) {
            return Err(acc.id);
        }
    }
    Ok(next)
}

async fn run_case(ledger: &Ledger, case: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut accounts = Vec::new();
    for i in 0..USERS {
        let a = ledger
            .create_account(NewAccount::user_wallet(format!("case{case}-u{i}")))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        accounts.push(Account {
            id: a.id,
            normal: Direction::Credit,
            allow_negative: false,
        });
    }
    let onchain = Account {
        id: system::BANK_ONCHAIN,
        normal: Direction::Debit,
        allow_negative: true,
    };
    let fees = Account {
        id: system::BANK_FEES,
        normal: Direction::Credit,
        allow_negative: true,
    };
    accounts.push(onchain);
    accounts.push(fees);
    let mut model: HashMap<LedgerAccountId, Model> = HashMap::new();
    for a in &accounts {
        let b = ledger
            .balance(a.id)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        model.insert(
            a.id,
            Model {
                settled: b.settled,
                pending: b.pending,
            },
        );
    }
    let u = |i: usize| accounts[i].id;
    // Every posting sent so far, with the id it got if it was posted.
    let mut sent: Vec<(Posting, Option<coordinator::TransactionId>)> = Vec::new();

    for (n, op) in ops.into_iter().enumerate() {
        let ext = format!("case{case}-op{n}");
        let b = || Posting::builder(system::MAIN_JOURNAL, ext.clone());
        let posting = match op {
            Op::Deposit {
                to,
                amount,
                pending,
            } => {
                let layer = if pending {
                    Layer::Pending
                } else {
                    Layer::Settled
                };
                b().entry(
                    system::BANK_ONCHAIN,
                    Direction::Debit,
                    layer,
                    Currency::Btc,
                    msats(amount),
                )
                .entry(
                    u(to),
                    Direction::Credit,
                    layer,
                    Currency::Btc,
                    msats(amount),
                )
                .build()
            }
            Op::Confirm { to, amount } => b()
                .entry(
                    u(to),
                    Direction::Debit,
                    Layer::Pending,
                    Currency::Btc,
                    msats(amount),
                )
                .entry(
                    system::BANK_ONCHAIN,
                    Direction::Credit,
                    Layer::Pending,
                    Currency::Btc,
                    msats(amount),
                )
                .debit(system::BANK_ONCHAIN, msats(amount))
                .credit(u(to), msats(amount))
                .build(),
            Op::Transfer { from, to, amount } => Posting::transfer(
                system::MAIN_JOURNAL,
                ext.clone(),
                u(from),
                u(to),
                msats(amount),
                "t",
            ),
            Op::WithFee {
                from,
                to,
                amount,
                fee,
            } => b()
                .debit(u(from), msats(amount + fee))
                .credit(u(to), msats(amount))
                .credit(system::BANK_FEES, msats(fee))
                .build(),
            Op::Replay { which } | Op::Conflict { which } if sent.is_empty() => {
                let _ = which;
                continue;
            }
            Op::Replay { which } => Ok(sent[which % sent.len()].0.clone()),
            Op::Conflict { which } => {
                let (orig, _) = &sent[which % sent.len()];
                let first = orig.entries()[0];
                // Same external id, one more unit on a simple two-sided posting.
                Posting::builder(system::MAIN_JOURNAL, orig.external_id())
                    .debit(first.account_id, msats(first.amount.to_msat() + 1))
                    .credit(system::BANK_ONCHAIN, msats(first.amount.to_msat() + 1))
                    .build()
            }
        }
        .map_err(|e| TestCaseError::fail(format!("posting {e}")))?;

        let earlier = sent
            .iter()
            .find(|(p, _)| p.external_id() == posting.external_id())
            .cloned();
        let result = ledger.post(posting.clone()).await;
        match (earlier, result) {
            // An external id already posted: replay or conflict, nothing changes.
            (Some((orig, Some(id))), result) => {
                if orig == posting {
                    let r = result.map_err(|e| TestCaseError::fail(format!("replay: {e}")))?;
                    prop_assert!(r.replayed);
                    prop_assert_eq!(r.id, id);
                } else {
                    prop_assert!(
                        matches!(result, Err(LedgerError::IdempotencyConflict { existing, .. }) if existing == id),
                        "expected a conflict"
                    );
                }
            }
            // New, or an id whose earlier posting was refused: judged afresh.
            (_, result) => match predict(&posting, &accounts, &model) {
                Ok(next) => {
                    let r = result.map_err(|e| TestCaseError::fail(format!("op {n}: {e}")))?;
                    prop_assert!(!r.replayed);
                    model = next;
                    sent.retain(|(p, _)| p.external_id() != posting.external_id());
                    sent.push((posting, Some(r.id)));
                }
                Err(account) => {
                    prop_assert!(
                        matches!(result, Err(LedgerError::InsufficientBalance { account_id, .. }) if account_id == account),
                        "op {n}: expected refusal on {account}, got {result:?}"
                    );
                    if !sent
                        .iter()
                        .any(|(p, _)| p.external_id() == posting.external_id())
                    {
                        sent.push((posting, None));
                    }
                }
            },
        }
    }
    for a in &accounts {
        let b = ledger
            .balance(a.id)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            Model {
                settled: b.settled,
                pending: b.pending
            },
            model[&a.id]
        );
    }
    let report = ledger
        .verify()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.is_ok(), "{:?}", report.violations);
    Ok(())
}

#[test]
fn random_postings_match_the_model_and_keep_every_invariant() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(common::ledger());
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    // Shrinking runs cases again: each run gets its own external ids.
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(run_case(&t.ledger, n, ops))
        })
        .unwrap();
    drop(t);
}
