//! Helpers shared by the integration tests: a fresh database per test and funding.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::sync::Arc;

use coordinator::bank::{
    Bank, BankConfig, Identity, NewPassword, OutboxNotifier, PasswordCost, Principal, Secret,
    StaffPrincipal, StaffRole,
};
use coordinator::ledger::{NewAccount, system};
use coordinator::{
    AccountId, Ledger, LedgerAccountId, LedgerConfig, Msats, Posting, Sats, WalletId,
};
use test_support::ScratchDatabase;

pub struct TestLedger {
    pub ledger: Ledger,
    // Dropped last: drops the database.
    pub db: ScratchDatabase,
}

pub async fn ledger() -> TestLedger {
    ledger_with(LedgerConfig::default()).await
}

pub async fn ledger_with(config: LedgerConfig) -> TestLedger {
    let (db, pool) = ScratchDatabase::migrated("coordinator_test", 8, &coordinator::db::MIGRATOR)
        .await
        .expect("PostgreSQL must be reachable at DATABASE_URL (see scripts/pg-up.sh)");
    let ledger = Ledger::start(pool, config).await.expect("ledger starts");
    TestLedger { ledger, db }
}

pub fn msats(v: u64) -> Msats {
    Msats::new(v).expect("test amount in range")
}

pub async fn user(ledger: &Ledger, name: &str) -> LedgerAccountId {
    ledger
        .create_account(NewAccount::user_wallet(name))
        .await
        .expect("account created")
        .id
}

/// A deposit: debit the on-chain omnibus account, credit the user.
pub async fn fund(ledger: &Ledger, account: LedgerAccountId, amount: u64) {
    let p = Posting::transfer(
        system::MAIN_JOURNAL,
        format!("fund-{}", uuid::Uuid::now_v7()),
        system::BANK_ONCHAIN,
        account,
        msats(amount),
        "deposit",
    )
    .expect("valid posting");
    ledger.post(p).await.expect("funding posts");
}

/// Moves `amount` from one user wallet to another (both credit-normal: debit the payer).
pub fn transfer(ext: &str, from: LedgerAccountId, to: LedgerAccountId, amount: u64) -> Posting {
    Posting::transfer(
        system::MAIN_JOURNAL,
        ext,
        from,
        to,
        msats(amount),
        "transfer",
    )
    .expect("valid posting")
}

pub struct TestBank {
    pub bank: Bank,
    pub t: TestLedger,
}

pub async fn bank_with(mut config: BankConfig) -> TestBank {
    let t = ledger().await;
    config.password_cost = PasswordCost::insecure_for_tests();
    let notifier = Arc::new(OutboxNotifier::new(t.ledger.pool().clone()));
    TestBank {
        bank: Bank::new(t.ledger.clone(), notifier, config),
        t,
    }
}

pub async fn bank() -> TestBank {
    bank_with(BankConfig::default()).await
}

pub fn id(s: &str) -> Identity {
    s.parse().expect("test helper")
}

pub fn pw(s: &str) -> NewPassword {
    NewPassword::new(Secret::new(s)).expect("test helper")
}

/// The six-digit code in a message body.
pub fn code_in(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {body:?}"))
        .to_owned()
}

/// Registered users, verified or not.
pub async fn users(t: &TestLedger) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(t.ledger.pool())
        .await
        .expect("test helper")
}

/// The code in the latest message to `recipient`.
pub async fn last_code(bank: &Bank, recipient: &str) -> String {
    let body: String = sqlx::query_scalar(
        "SELECT body FROM notification_outbox WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(recipient)
    .fetch_one(bank.ledger().pool())
    .await
    .expect("test helper");
    body.split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6
                && w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit())
        })
        .expect("test helper")
        .trim_end_matches('.')
        .to_owned()
}

/// A registered, verified user: their session token, account and principal.
pub async fn signed_up(bank: &Bank, who: &str) -> (Secret, AccountId, Principal) {
    let identity = id(who);
    bank.register(&identity).await.expect("test helper");
    let code = last_code(bank, &identity.to_string()).await;
    let (session, account) = bank
        .confirm_code_with_password(&identity, &code, Some(&pw("a long password")))
        .await
        .expect("test helper");
    let principal = bank
        .authenticate(session.token.expose())
        .await
        .expect("test helper");
    (session.token, account, principal)
}

/// A signed-up user with their default wallet.
pub struct Customer {
    pub account: AccountId,
    pub wallet: WalletId,
    pub me: Principal,
}

/// A signed-up user whose default wallet holds `deposit` sats.
pub async fn customer(bank: &Bank, email: &str, deposit: u64) -> Customer {
    let (_, account, me) = signed_up(bank, email).await;
    let wallet = bank
        .account(account)
        .await
        .expect("test helper")
        .default_wallet_id;
    if deposit > 0 {
        let p = Posting::transfer(
            system::MAIN_JOURNAL,
            format!("deposit-{wallet}"),
            system::BANK_ONCHAIN,
            Bank::ledger_account(wallet),
            Sats::new(deposit).expect("test amount in range").to_msats(),
            "deposit",
        )
        .expect("valid posting");
        bank.ledger().post(p).await.expect("deposit posts");
    }
    Customer {
        account,
        wallet,
        me,
    }
}

pub async fn staff(bank: &Bank, email: &str, role: StaffRole) -> StaffPrincipal {
    bank.create_staff(
        &email.parse().expect("test helper"),
        &pw("staff password"),
        role,
    )
    .await
    .expect("test helper");
    let s = bank
        .staff_login(
            &email.parse().expect("test helper"),
            &Secret::new("staff password"),
        )
        .await
        .expect("test helper");
    bank.authenticate_staff(s.token.expose())
        .await
        .expect("test helper")
}

/// A second coordinator instance on the same database as `bank`: its own ledger writer and
/// bank, as another replica has.
pub async fn second_instance(bank: &Bank) -> Bank {
    let pool = bank.ledger().pool().clone();
    let ledger = second_writer(bank.ledger()).await;
    let config = BankConfig {
        password_cost: PasswordCost::insecure_for_tests(),
        ..BankConfig::default()
    };
    Bank::new(ledger, Arc::new(OutboxNotifier::new(pool)), config)
}

/// A wallet's settled balance, whole satoshis.
pub async fn settled_sats(bank: &Bank, wallet: WalletId) -> i64 {
    bank.ledger()
        .balance(Bank::ledger_account(wallet))
        .await
        .expect("balance")
        .settled
        / 1000
}

/// Another instance's ledger writer on the same database as `ledger`.
pub async fn second_writer(ledger: &Ledger) -> Ledger {
    Ledger::start(ledger.pool().clone(), LedgerConfig::default())
        .await
        .expect("second ledger writer")
}
