//! Internal transfers: outcomes, idempotency, limits, status, authorization, crash resume
//! and history, against a real PostgreSQL.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use common::{Customer, TestBank, bank, customer, staff};
use coordinator::bank::{
    AccountStatus, Actor, Bank, BankError, PaymentStatus, Recipient, Scope, SendRequest, StaffRole,
    TxDirection,
};
use coordinator::ledger::system;
use coordinator::{AccountId, PaymentId, Posting, Sats, WalletId};

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn send(from: &Customer, to: Recipient, amount: u64, key: Option<&str>) -> SendRequest {
    SendRequest {
        wallet_id: from.wallet,
        recipient: to,
        amount: sats(amount),
        memo: Some("lunch".into()),
        idempotency_key: key.map(str::to_owned),
    }
}

async fn balance(b: &Bank, w: WalletId) -> u64 {
    b.ledger()
        .balance(Bank::ledger_account(w))
        .await
        .unwrap()
        .settled as u64
        / 1000
}

/// What `Bank::limits` reports as sent internally over the last 24 hours.
async fn sent_24h(b: &Bank, account: AccountId) -> u64 {
    b.limits(account).await.unwrap().internal_send.used.to_sat()
}

/// The sender's running window (migrations 0004 and 0006). Its invariant: it is exactly
/// the sum of the account's non-FAILURE payments created after `internal_window_from`,
/// and so never less than what `Bank::limits` reports for the last 24 hours (it may be
/// more: payments leave it lazily, when a send would otherwise be refused).
async fn running_window(b: &Bank, account: AccountId) -> u64 {
    let (window, counted): (i64, i64) = sqlx::query_as(
        "SELECT a.internal_sent_window, coalesce(( \
           SELECT sum(p.amount_sats) FROM intraledger_payments p \
           WHERE p.sender_account_id = a.id AND p.status <> 'FAILURE' \
             AND p.created_at > a.internal_window_from), 0)::BIGINT \
         FROM accounts a WHERE a.id = $1",
    )
    .bind(account.as_uuid())
    .fetch_one(b.ledger().pool())
    .await
    .unwrap();
    assert_eq!(window, counted, "running window vs its payments");
    let window = u64::try_from(window).unwrap();
    assert!(
        window >= sent_24h(b, account).await,
        "window below the 24 h sum"
    );
    window
}

/// `count` sends of `amount` from `from` to `to` at once, each with its own key.
async fn concurrent_sends(
    b: &Bank,
    from: &Customer,
    to: WalletId,
    count: usize,
    amount: u64,
) -> Vec<Result<coordinator::bank::PaymentResult, BankError>> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        let b = b.clone();
        let me = from.me.clone();
        let req = send(from, Recipient::Wallet(to), amount, Some(&format!("k{i}")));
        set.spawn(async move { b.send_internal(&me, &req).await });
    }
    set.join_all().await
}

async fn travel_back_25_hours(b: &Bank) {
    let pool = b.ledger().pool();
    sqlx::query("UPDATE intraledger_payments SET created_at = created_at - interval '25 hours'")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE accounts SET internal_window_from = internal_window_from - interval '25 hours'",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn setup() -> (TestBank, Customer, Customer) {
    let t = bank().await;
    let alice = customer(&t.bank, "alice@example.com", 50_000).await;
    let bob = customer(&t.bank, "bob@example.com", 0).await;
    (t, alice, bob)
}

#[tokio::test]
async fn send_by_wallet_or_username_and_see_it_in_both_histories() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    b.set_username(&bob.me, &"bob".parse().unwrap())
        .await
        .unwrap();
    let r = b
        .send_internal(
            &alice.me,
            &send(
                &alice,
                Recipient::Username("BOB".parse().unwrap()),
                1_200,
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, PaymentStatus::Success);
    let r2 = b
        .send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 300, None),
        )
        .await
        .unwrap();
    assert_eq!(r2.status, PaymentStatus::Success);
    assert_eq!(balance(b, alice.wallet).await, 50_000 - 1_500);
    assert_eq!(balance(b, bob.wallet).await, 1_500);
    // The ledger transaction carries the memo and the payment id.
    let line = b
        .sender_transaction(alice.wallet, r.transaction_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (line.direction, line.amount),
        (TxDirection::Send, sats(1_200))
    );
    assert_eq!(line.counterparty_wallet_id, Some(bob.wallet));
    let seen_by_bob = b
        .sender_transaction(bob.wallet, r.transaction_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen_by_bob.direction, TxDirection::Receive);
    let carols = customer(b, "carol@example.com", 0).await;
    assert_eq!(
        b.sender_transaction(carols.wallet, r.transaction_id.unwrap())
            .await
            .unwrap(),
        None
    );
    let tx = b
        .ledger()
        .transaction(r.transaction_id.unwrap())
        .await
        .unwrap();
    assert_eq!(tx.description, "lunch");
    assert_eq!(tx.external_id, format!("intraledger:{}", r.payment_id));

    let a_hist = b
        .transactions(&alice.me, alice.wallet, 10, None)
        .await
        .unwrap();
    assert_eq!(a_hist.lines.len(), 3);
    assert!(!a_hist.has_next_page);
    let newest = &a_hist.lines[0];
    assert_eq!(newest.direction, TxDirection::Send);
    assert_eq!(newest.amount, sats(300));
    assert_eq!(newest.counterparty_wallet_id, Some(bob.wallet));
    assert_eq!(newest.counterparty_username.as_deref(), Some("bob"));
    assert_eq!(newest.status, "SUCCESS");
    assert_eq!(a_hist.lines[2].memo, "deposit");
    assert_eq!(a_hist.lines[2].direction, TxDirection::Receive);
    assert_eq!(a_hist.lines[2].counterparty_wallet_id, None);

    let b_hist = b.transactions(&bob.me, bob.wallet, 10, None).await.unwrap();
    assert_eq!(b_hist.lines.len(), 2);
    assert_eq!(b_hist.lines[1].direction, TxDirection::Receive);
    assert_eq!(b_hist.lines[1].counterparty_wallet_id, Some(alice.wallet));
    assert_eq!(b_hist.lines[1].amount, sats(1_200));
    // Nobody reads another's history.
    assert!(matches!(
        b.transactions(&alice.me, bob.wallet, 10, None).await,
        Err(BankError::NotFound { .. })
    ));
    assert!(b.ledger().verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn an_idempotency_key_pays_once() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    let req = send(
        &alice,
        Recipient::Wallet(bob.wallet),
        1_000,
        Some("order-7"),
    );
    let first = b.send_internal(&alice.me, &req).await.unwrap();
    assert_eq!(first.status, PaymentStatus::Success);
    let again = b.send_internal(&alice.me, &req).await.unwrap();
    assert_eq!(again.status, PaymentStatus::AlreadyPaid);
    assert_eq!(again.payment_id, first.payment_id);
    assert_eq!(again.transaction_id, first.transaction_id);
    let other = send(
        &alice,
        Recipient::Wallet(bob.wallet),
        1_001,
        Some("order-7"),
    );
    assert!(matches!(
        b.send_internal(&alice.me, &other).await,
        Err(BankError::IdempotencyConflict)
    ));
    assert_eq!(balance(b, bob.wallet).await, 1_000);
    // The same key from another account is another payment.
    let carol = customer(b, "carol@example.com", 5_000).await;
    let theirs = send(
        &carol,
        Recipient::Wallet(bob.wallet),
        1_000,
        Some("order-7"),
    );
    assert_eq!(
        b.send_internal(&carol.me, &theirs).await.unwrap().status,
        PaymentStatus::Success
    );
    assert_eq!(balance(b, bob.wallet).await, 2_000);
}

#[tokio::test]
async fn refusals_move_nothing() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    // Insufficient funds: the payment fails and does not count against the limit.
    let r = b
        .send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 60_000, Some("big")),
        )
        .await;
    assert!(matches!(r, Err(BankError::InsufficientBalance)), "{r:?}");
    assert_eq!(running_window(b, alice.account).await, 0);
    // Replaying the failed key reports the same failure.
    assert!(matches!(
        b.send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 60_000, Some("big"))
        )
        .await,
        Err(BankError::InsufficientBalance)
    ));
    assert!(matches!(
        b.send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(alice.wallet), 1, None)
        )
        .await,
        Err(BankError::SelfPayment)
    ));
    assert!(matches!(
        b.send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 0, None)
        )
        .await,
        Err(BankError::InvalidAmount)
    ));
    assert!(matches!(
        b.send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(WalletId::new()), 1, None)
        )
        .await,
        Err(BankError::NotFound { what: "recipient" })
    ));
    assert!(matches!(
        b.send_internal(
            &alice.me,
            &send(
                &alice,
                Recipient::Username("nobody".parse().unwrap()),
                1,
                None
            )
        )
        .await,
        Err(BankError::NotFound { .. })
    ));
    // Bob cannot spend from Alice's wallet.
    assert!(matches!(
        b.send_internal(
            &bob.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 1, None)
        )
        .await,
        Err(BankError::NotFound { what: "wallet" })
    ));
    let mut long = send(&alice, Recipient::Wallet(bob.wallet), 1, None);
    long.memo = Some("x".repeat(1_001));
    assert!(matches!(
        b.send_internal(&alice.me, &long).await,
        Err(BankError::Invalid(_))
    ));
    assert_eq!(balance(b, alice.wallet).await, 50_000);
    assert_eq!(balance(b, bob.wallet).await, 0);
}

#[tokio::test]
async fn api_key_scopes_are_enforced_on_sends() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    for scopes in [
        vec![Scope::Read],
        vec![Scope::Receive],
        vec![Scope::Read, Scope::Receive],
    ] {
        let (_, secret) = b
            .create_api_key(&alice.me, "k", &scopes, None)
            .await
            .unwrap();
        let key = b.authenticate(secret.expose()).await.unwrap();
        assert!(matches!(
            b.send_internal(&key, &send(&alice, Recipient::Wallet(bob.wallet), 1, None))
                .await,
            Err(BankError::Forbidden { needed: "write" })
        ));
    }
    let (_, secret) = b
        .create_api_key(&alice.me, "w", &[Scope::Write], None)
        .await
        .unwrap();
    let key = b.authenticate(secret.expose()).await.unwrap();
    b.send_internal(&key, &send(&alice, Recipient::Wallet(bob.wallet), 1, None))
        .await
        .unwrap();
    // Write without read cannot list history.
    assert!(matches!(
        b.transactions(&key, alice.wallet, 10, None).await,
        Err(BankError::Forbidden { needed: "read" })
    ));
}

#[tokio::test]
async fn locked_and_closed_accounts() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    let support = staff(b, "support@bank.example", StaffRole::Support).await;
    let compliance = staff(b, "compliance@bank.example", StaffRole::Compliance).await;
    b.staff_set_status(
        &support,
        alice.account,
        AccountStatus::Locked,
        "fraud report",
    )
    .await
    .unwrap();
    assert!(matches!(
        b.send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 1, None)
        )
        .await,
        Err(BankError::AccountNotActive { status: "LOCKED" })
    ));
    // A locked account still receives.
    let carol = customer(b, "carol@example.com", 1_000).await;
    b.send_internal(
        &carol.me,
        &send(&carol, Recipient::Wallet(alice.wallet), 100, None),
    )
    .await
    .unwrap();
    b.staff_set_status(&support, alice.account, AccountStatus::Active, "cleared")
        .await
        .unwrap();
    b.send_internal(
        &alice.me,
        &send(&alice, Recipient::Wallet(bob.wallet), 1, None),
    )
    .await
    .unwrap();
    // A closed account neither sends nor receives.
    b.set_status(
        Actor::User(bob.me.user_id),
        bob.account,
        AccountStatus::Closed,
        "leaving",
    )
    .await
    .unwrap();
    assert!(matches!(
        b.send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 1, None)
        )
        .await,
        Err(BankError::RecipientUnavailable)
    ));
    assert!(matches!(
        b.send_internal(
            &bob.me,
            &send(&bob, Recipient::Wallet(alice.wallet), 1, None)
        )
        .await,
        Err(BankError::AccountNotActive { status: "CLOSED" })
    ));
    let _ = compliance;
}

#[tokio::test]
async fn the_rolling_limit_holds_under_concurrency_and_frees_after_24_hours() {
    let t = bank().await;
    let b = &t.bank;
    let alice = customer(b, "alice@example.com", 1_000_000).await;
    let bob = customer(b, "bob@example.com", 0).await;
    let limit = b.config().limits.level0.internal_send.to_sat();
    assert_eq!(limit, 100_000);
    // 20 concurrent sends of 10,000 against a 100,000 limit: exactly 10 pass.
    let outcomes = concurrent_sends(b, &alice, bob.wallet, 20, 10_000).await;
    let (mut ok, mut limited) = (0, 0);
    for r in outcomes {
        match r {
            Ok(_) => ok += 1,
            Err(BankError::LimitExceeded { limit, .. }) => {
                assert_eq!(limit.to_sat(), 100_000);
                limited += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, limited), (10, 10));
    assert_eq!(balance(b, bob.wallet).await, 100_000);
    let l = b.limits(alice.account).await.unwrap();
    assert_eq!(
        (
            l.internal_send.used.to_sat(),
            l.internal_send.remaining.to_sat()
        ),
        (100_000, 0)
    );

    assert_eq!(running_window(b, alice.account).await, 100_000);

    // Payments older than 24 hours leave the window: 25 hours pass for every time the
    // limit depends on (the payments and the running window's start).
    travel_back_25_hours(b).await;
    assert_eq!(sent_24h(b, alice.account).await, 0);
    b.send_internal(
        &alice.me,
        &send(&alice, Recipient::Wallet(bob.wallet), 100_000, None),
    )
    .await
    .unwrap();
    assert_eq!(running_window(b, alice.account).await, 100_000);
    // A higher level has a higher limit.
    let compliance = staff(b, "c@bank.example", StaffRole::Compliance).await;
    b.set_level(
        &compliance,
        alice.account,
        coordinator::bank::Level::new(1).unwrap(),
        "id checked",
    )
    .await
    .unwrap();
    b.send_internal(
        &alice.me,
        &send(&alice, Recipient::Wallet(bob.wallet), 500_000, None),
    )
    .await
    .unwrap();
    assert_eq!(running_window(b, alice.account).await, 600_000);
    assert!(b.ledger().verify().await.unwrap().is_ok());
}

/// Payments older than 24 hours leave the running window only when a send would
/// otherwise be refused (migration 0006): until then the window over-counts, never
/// under-counts, and the refusal is decided on the exact 24 h sum.
#[tokio::test]
async fn old_payments_leave_the_window_when_the_limit_needs_them_to() {
    let t = bank().await;
    let b = &t.bank;
    let alice = customer(b, "alice@example.com", 1_000_000).await;
    let bob = customer(b, "bob@example.com", 0).await;
    let pay = |amount: u64| send(&alice, Recipient::Wallet(bob.wallet), amount, None);
    b.send_internal(&alice.me, &pay(60_000)).await.unwrap();
    travel_back_25_hours(b).await;

    // 60k + 10k fits the level-0 limit (100k) even counting the old payment: the
    // window keeps it.
    b.send_internal(&alice.me, &pay(10_000)).await.unwrap();
    assert_eq!(sent_24h(b, alice.account).await, 10_000);
    assert_eq!(running_window(b, alice.account).await, 70_000);

    // 70k + 50k would not fit: the old 60k leaves, and 10k + 50k does.
    b.send_internal(&alice.me, &pay(50_000)).await.unwrap();
    assert_eq!(running_window(b, alice.account).await, 60_000);
    assert_eq!(sent_24h(b, alice.account).await, 60_000);

    // Nothing old is left to take out: 60k + 41k is refused on the exact sum, and the
    // refusal writes nothing.
    let r = b.send_internal(&alice.me, &pay(41_000)).await;
    match r {
        Err(BankError::LimitExceeded { limit, used, .. }) => {
            assert_eq!((limit.to_sat(), used.to_sat()), (100_000, 60_000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(running_window(b, alice.account).await, 60_000);
    assert_eq!(balance(b, bob.wallet).await, 120_000);

    // 25 hours later the whole limit is free again: the send that needs it takes the
    // old payments out.
    travel_back_25_hours(b).await;
    b.send_internal(&alice.me, &pay(100_000)).await.unwrap();
    assert_eq!(running_window(b, alice.account).await, 100_000);
    assert_eq!(sent_24h(b, alice.account).await, 100_000);
    assert!(b.ledger().verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_payment_interrupted_by_a_crash_is_finished_once() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    let pool = b.ledger().pool();
    // Crash after the PENDING row committed, before the posting.
    let p1 = uuid::Uuid::now_v7();
    // Crash after the posting, before the row was marked.
    let p2 = uuid::Uuid::now_v7();
    for p in [p1, p2] {
        sqlx::query(
            "INSERT INTO intraledger_payments (id, sender_account_id, sender_wallet_id, \
               recipient_wallet_id, amount_sats, memo, status) VALUES ($1, $2, $3, $4, 700, 'x', 'PENDING')",
        )
        .bind(p)
        .bind(alice.account.as_uuid())
        .bind(alice.wallet.as_uuid())
        .bind(bob.wallet.as_uuid())
        .execute(pool)
        .await
        .unwrap();
    }
    let posting = Posting::builder(system::MAIN_JOURNAL, format!("intraledger:{p2}"))
        .description("x")
        .metadata(serde_json::json!({ "type": "intraledger", "payment_id": p2 }))
        .debit(Bank::ledger_account(alice.wallet), sats(700).to_msats())
        .credit(Bank::ledger_account(bob.wallet), sats(700).to_msats())
        .build()
        .unwrap();
    b.ledger().post(posting).await.unwrap();
    assert_eq!(balance(b, bob.wallet).await, 700);
    // Pending payments count against the limit meanwhile.
    assert_eq!(sent_24h(b, alice.account).await, 1_400);

    assert_eq!(b.resume_pending_payments().await.unwrap(), 2);
    assert_eq!(b.resume_pending_payments().await.unwrap(), 0);
    assert_eq!(balance(b, bob.wallet).await, 1_400);
    assert_eq!(balance(b, alice.wallet).await, 50_000 - 1_400);
    let states: Vec<String> =
        sqlx::query_scalar("SELECT status FROM intraledger_payments ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(states, vec!["SUCCESS", "SUCCESS"]);
    assert!(b.ledger().verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn history_pages_with_cursors() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    for i in 1..=25u64 {
        b.send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), i, None),
        )
        .await
        .unwrap();
    }
    let mut after: Option<String> = None;
    let mut amounts = Vec::new();
    let mut pages = 0;
    loop {
        let page = b
            .transactions(&bob.me, bob.wallet, 10, after.as_deref())
            .await
            .unwrap();
        pages += 1;
        amounts.extend(page.lines.iter().map(|l| l.amount.to_sat()));
        if !page.has_next_page {
            break;
        }
        after = page.lines.last().map(|l| l.cursor.clone());
    }
    assert_eq!(pages, 3);
    assert_eq!(amounts, (1..=25u64).rev().collect::<Vec<_>>());
    assert!(matches!(
        b.transactions(&bob.me, bob.wallet, 10, Some("garbage"))
            .await,
        Err(BankError::Invalid(_))
    ));
}

/// A success is recorded on the payment row after the payer has its answer; until then
/// (or if that record is lost) the row is PENDING, and a replay or a restart must neither
/// pay again nor report the payment as failed.
/// Waits (up to 2 s) for the settler to record the payment's success; its transaction.
async fn settled(pool: &sqlx::PgPool, payment: PaymentId) -> Option<uuid::Uuid> {
    for _ in 0..100 {
        let row = sqlx::query_as::<_, (String, Option<uuid::Uuid>)>(
            "SELECT status, transaction_id FROM intraledger_payments WHERE id = $1",
        )
        .bind(payment.as_uuid())
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some((status, transaction)) = row
            && status == "SUCCESS"
        {
            return transaction;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the settler did not record {payment:?}");
}

#[tokio::test]
async fn a_success_recorded_late_or_lost_never_pays_twice() {
    let (t, alice, bob) = setup().await;
    let b = &t.bank;
    let pool = b.ledger().pool();
    let first = b
        .send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 1_000, Some("rent")),
        )
        .await
        .unwrap();
    assert_eq!(first.status, PaymentStatus::Success);
    let posted = first.transaction_id.unwrap();

    // The settler records the success with the ledger transaction.
    assert_eq!(
        settled(pool, first.payment_id).await,
        Some(posted.as_uuid())
    );

    // The record lost (a crash before the settler's statement): the row is PENDING again.
    sqlx::query("UPDATE intraledger_payments SET status = 'PENDING', transaction_id = NULL")
        .execute(pool)
        .await
        .unwrap();
    let again = b
        .send_internal(
            &alice.me,
            &send(&alice, Recipient::Wallet(bob.wallet), 1_000, Some("rent")),
        )
        .await
        .unwrap();
    assert_eq!(again.status, PaymentStatus::AlreadyPaid);
    assert_eq!(again.payment_id, first.payment_id);
    assert_eq!(again.transaction_id, Some(posted));
    assert_eq!(balance(b, bob.wallet).await, 1_000);
    // The replay's success is recorded too (waited for, so that it cannot land after the
    // next reset).
    assert_eq!(
        settled(pool, first.payment_id).await,
        Some(posted.as_uuid())
    );

    // A pending row still counts against the limit, and the history still names the
    // counterparty (it is found through the posting, not through the row).
    assert_eq!(sent_24h(b, alice.account).await, 1_000);
    sqlx::query("UPDATE intraledger_payments SET status = 'PENDING', transaction_id = NULL")
        .execute(pool)
        .await
        .unwrap();
    let page = b.transactions(&bob.me, bob.wallet, 10, None).await.unwrap();
    assert_eq!(page.lines.len(), 1);
    assert_eq!(page.lines[0].counterparty_wallet_id, Some(alice.wallet));

    // At start the coordinator records it, without posting again.
    assert_eq!(b.resume_pending_payments().await.unwrap(), 1);
    let row: (String, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT status, transaction_id FROM intraledger_payments")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(row, ("SUCCESS".to_owned(), Some(posted.as_uuid())));
    assert_eq!(balance(b, bob.wallet).await, 1_000);
    assert_eq!(balance(b, alice.wallet).await, 49_000);
    assert!(b.ledger().verify().await.unwrap().is_ok());
}

/// Sends that fail for want of funds race with sends that reserve: the running window
/// must still equal the sum of the payments that count.
#[tokio::test]
async fn the_running_window_survives_concurrent_failures() {
    let t = bank().await;
    let b = &t.bank;
    let alice = customer(b, "alice@example.com", 30_000).await;
    let bob = customer(b, "bob@example.com", 0).await;
    let outcomes = concurrent_sends(b, &alice, bob.wallet, 40, 1_000).await;
    let (mut ok, mut poor) = (0, 0);
    for r in outcomes {
        match r {
            Ok(_) => ok += 1,
            Err(BankError::InsufficientBalance) => poor += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, poor), (30, 10));
    assert_eq!(running_window(b, alice.account).await, 30_000);
    assert_eq!(balance(b, bob.wallet).await, 30_000);
    assert!(b.ledger().verify().await.unwrap().is_ok());
}
