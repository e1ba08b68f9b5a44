//! The `coordinator` command: `migrate` and `ledger verify` against a scratch database.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use std::process::Command;

use test_support::ScratchDatabase;

fn url_of(db: &ScratchDatabase) -> String {
    let o = db.options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        db.name()
    )
}

fn coordinator(url: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn migrate_then_verify_reports_ok_then_a_violation() {
    let db = ScratchDatabase::create(
        &test_support::db::database_url_from_env(),
        "coordinator_test",
    )
    .await
    .unwrap();
    let url = url_of(&db);
    let (code, _) = coordinator(&url, &["migrate"]);
    assert_eq!(code, 0);
    // Migrating again changes nothing.
    assert_eq!(coordinator(&url, &["migrate"]).0, 0);

    let pool = db.pool(2).await.unwrap();
    let ledger = coordinator::Ledger::start(pool.clone(), coordinator::LedgerConfig::default())
        .await
        .unwrap();
    let alice = common::user(&ledger, "alice").await;
    common::fund(&ledger, alice, 5_000).await;
    let (code, out) = coordinator(&url, &["ledger", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ledger OK"), "{out}");
    assert!(out.contains("1 transactions, 2 entries"), "{out}");

    let (code, json) = coordinator(&url, &["ledger", "verify", "--json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["violations"], serde_json::json!([]));

    // A balance changed behind the ledger's back: exit status 1 and the violation named.
    sqlx::query("UPDATE ledger_balances SET settled = settled + 1 WHERE account_id = $1")
        .bind(alice.as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    let (code, out) = coordinator(&url, &["ledger", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("VIOLATION"), "{out}");
    assert!(out.contains(&alice.to_string()), "{out}");
    drop(ledger);
    pool.close().await;
}
