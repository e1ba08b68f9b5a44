//! Migration 0010 on a database that already has locked accounts: each lock gets its
//! holder from the audit trail, and a lock with no trail is an admin's to lift.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use std::borrow::Cow;
use std::sync::Arc;

use coordinator::bank::{AccountStatus, Bank, BankConfig, BankError, OutboxNotifier, StaffRole};
use coordinator::db::MIGRATOR;
use coordinator::{Ledger, LedgerConfig};
use embedded_migrations::Migrator;
use test_support::ScratchDatabase;
use test_support::db::database_url_from_env;

#[tokio::test]
async fn existing_locks_get_their_holder_from_the_audit_trail() {
    let db = ScratchDatabase::create(&database_url_from_env(), "coordinator_test")
        .await
        .unwrap();
    let pool = db.pool(8).await.unwrap();
    // The schema as it was before this migration.
    let before = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version < 10)
                .cloned()
                .collect(),
        ),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    before.run(&pool).await.unwrap();
    let ledger = Ledger::start(pool.clone(), LedgerConfig::default())
        .await
        .unwrap();
    let config = BankConfig {
        password_cost: coordinator::bank::PasswordCost::insecure_for_tests(),
        ..BankConfig::default()
    };
    let bank = Bank::new(ledger, Arc::new(OutboxNotifier::new(pool.clone())), config);
    let compliance = common::staff(&bank, "c@bank.example", StaffRole::Compliance).await;
    let support = common::staff(&bank, "s@bank.example", StaffRole::Support).await;
    let (_, by_staff, _) = common::signed_up(&bank, "a@example.com").await;
    let (_, by_user, user) = common::signed_up(&bank, "b@example.com").await;
    let (_, untraced, _) = common::signed_up(&bank, "c@example.com").await;
    let (_, active, _) = common::signed_up(&bank, "d@example.com").await;
    // Locks as the old code wrote them: the status and an event with the actor's label.
    for (account, actor) in [
        (by_staff, Some(format!("staff:{}", compliance.staff_id))),
        (by_user, Some(format!("user:{}", user.user_id))),
        (untraced, None),
    ] {
        sqlx::query("UPDATE accounts SET status = 'LOCKED' WHERE id = $1")
            .bind(account.as_uuid())
            .execute(&pool)
            .await
            .unwrap();
        if let Some(actor) = actor {
            sqlx::query(
                "INSERT INTO account_events (account_id, kind, old_value, new_value, actor, reason) \
                 VALUES ($1, 'status', 'ACTIVE', 'LOCKED', $2, 'before 0010')",
            )
            .bind(account.as_uuid())
            .bind(actor)
            .execute(&pool)
            .await
            .unwrap();
        }
    }

    MIGRATOR.run(&pool).await.unwrap();

    let holder = |a| bank.lock_holder(a);
    assert_eq!(
        holder(by_staff).await.unwrap().as_deref(),
        Some("compliance")
    );
    assert_eq!(holder(by_user).await.unwrap().as_deref(), Some("user"));
    assert_eq!(holder(untraced).await.unwrap().as_deref(), Some("admin"));
    assert_eq!(holder(active).await.unwrap(), None);
    // And the rule holds for them: support cannot lift the compliance lock or the
    // untraced one, but may lift the user's own.
    assert!(matches!(
        bank.staff_set_status(&support, by_staff, AccountStatus::Active, "x")
            .await,
        Err(BankError::LockHeld {
            placed_by: "compliance"
        })
    ));
    assert!(matches!(
        bank.staff_set_status(&support, untraced, AccountStatus::Active, "x")
            .await,
        Err(BankError::LockHeld { placed_by: "admin" })
    ));
    bank.staff_set_status(&support, by_user, AccountStatus::Active, "verified")
        .await
        .unwrap();
    // The database itself keeps the holder set exactly while LOCKED.
    let err = sqlx::query("UPDATE accounts SET status = 'LOCKED' WHERE id = $1")
        .bind(active.as_uuid())
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("accounts_locked_by_while_locked"),
        "{err}"
    );
    drop(bank);
    pool.close().await;
}
