//! Helpers shared by the integration tests: a fresh database per test and funding.
#![allow(dead_code, reason = "each test file uses a different subset")]

use coordinator::db::ScratchDatabase;
use coordinator::ledger::{NewAccount, system};
use coordinator::{Ledger, LedgerAccountId, LedgerConfig, Msats, Posting};

pub struct TestLedger {
    pub ledger: Ledger,
    // Dropped last: drops the database.
    pub db: ScratchDatabase,
}

pub async fn ledger() -> TestLedger {
    ledger_with(LedgerConfig::default()).await
}

pub async fn ledger_with(config: LedgerConfig) -> TestLedger {
    let (db, pool) = ScratchDatabase::migrated("coordinator_test", 8)
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
