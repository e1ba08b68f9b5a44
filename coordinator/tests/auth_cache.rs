//! Authentications answered from memory (bank/auth_cache.rs): a remembered credential is
//! not read from the database again, yet a revocation, by this instance, another one or
//! by hand in SQL, stops it at once; a lost listener connection empties the cache.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use common::{TestBank, bank, signed_up};

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SubsecRound;
use coordinator::bank::{
    ApiKeyInfo, Bank, BankConfig, BankError, OutboxNotifier, Principal, Scope, Secret,
};

/// How long a notification may take to arrive on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until the bank's revocation listener listens (its cache is in use).
async fn live(b: &Bank) {
    let start = Instant::now();
    while !b.auth_cache_live() {
        assert!(start.elapsed() < DEADLINE, "auth listener never listened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `b` refuses `token`; fails after the deadline.
async fn refused_soon(b: &Bank, token: &str) {
    let start = Instant::now();
    loop {
        match b.authenticate(token).await {
            Err(BankError::Unauthenticated) => return,
            Ok(_) => assert!(
                start.elapsed() < DEADLINE,
                "still accepted after {DEADLINE:?}"
            ),
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Alice, signed up on `b` once its cache is live: her session, principal, and a read key.
async fn alice(b: &Bank) -> (Secret, Principal, ApiKeyInfo, Secret) {
    live(b).await;
    let (session, _, me) = signed_up(b, "alice@example.com").await;
    let (info, key) = b
        .create_api_key(&me, "bot", &[Scope::Read], None)
        .await
        .unwrap();
    (session, me, info, key)
}

/// A second coordinator instance on the same database.
fn second_instance(t: &TestBank) -> Bank {
    Bank::new(
        t.t.ledger.clone(),
        Arc::new(OutboxNotifier::new(t.t.ledger.pool().clone())),
        BankConfig::default(),
    )
}

/// Clears the key's `last_used_at` behind the cache's back (this column notifies
/// nothing) and reports whether an authentication then wrote it again: it does only if
/// the database was read.
async fn read_from_database(b: &Bank, secret: &Secret) -> bool {
    let pool = b.ledger().pool();
    sqlx::query("UPDATE api_keys SET last_used_at = NULL")
        .execute(pool)
        .await
        .unwrap();
    b.authenticate(secret.expose()).await.unwrap();
    let (used,): (Option<chrono::DateTime<chrono::Utc>>,) =
        sqlx::query_as("SELECT last_used_at FROM api_keys")
            .fetch_one(pool)
            .await
            .unwrap();
    used.is_some()
}

#[tokio::test]
async fn a_remembered_credential_is_refused_as_soon_as_it_is_revoked_here() {
    let t = bank().await;
    let b = &t.bank;
    let (session, me, info, key) = alice(b).await;
    // The first use reads the database, the next ones do not.
    assert!(read_from_database(b, &key).await);
    assert!(!read_from_database(b, &key).await);
    assert_eq!(
        b.authenticate(key.expose()).await.unwrap().account_id,
        me.account_id
    );

    b.revoke_api_key(&me, info.id).await.unwrap();
    assert!(matches!(
        b.authenticate(key.expose()).await,
        Err(BankError::Unauthenticated)
    ));

    // A session likewise.
    b.authenticate(session.expose()).await.unwrap();
    b.authenticate(session.expose()).await.unwrap();
    b.logout(session.expose()).await.unwrap();
    assert!(matches!(
        b.authenticate(session.expose()).await,
        Err(BankError::Unauthenticated)
    ));
}

#[tokio::test]
async fn revocations_reach_other_instances_including_by_hand() {
    let t = bank().await;
    let a = &t.bank;
    let b = second_instance(&t);
    live(&b).await;
    let (session, me, info, key) = alice(a).await;
    // Remembered by the second instance.
    assert!(read_from_database(&b, &key).await);
    assert!(!read_from_database(&b, &key).await);

    // Revoked through the first instance: the second refuses it too.
    a.revoke_api_key(&me, info.id).await.unwrap();
    refused_soon(&b, key.expose()).await;

    // A session remembered by the second instance and revoked by an operator in SQL.
    b.authenticate(session.expose()).await.unwrap();
    b.authenticate(session.expose()).await.unwrap();
    sqlx::query("UPDATE sessions SET revoked_at = now()")
        .execute(a.ledger().pool())
        .await
        .unwrap();
    refused_soon(&b, session.expose()).await;
    refused_soon(a, session.expose()).await;
}

#[tokio::test]
async fn a_lost_listener_connection_forgets_everything_remembered() {
    let t = bank().await;
    let b = &t.bank;
    let (_, me, _, key) = alice(b).await;
    assert!(read_from_database(b, &key).await);
    assert!(!read_from_database(b, &key).await);

    // A revocation whose notification is lost: written with the trigger disabled, as if
    // it had committed while the listener was disconnected.
    let pool = b.ledger().pool();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET revoked_at = now()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE api_keys ENABLE TRIGGER api_keys_changed")
        .execute(&mut *conn)
        .await
        .unwrap();
    // Unnotified, the remembered key still works: this is what the reset must undo.
    b.authenticate(key.expose()).await.unwrap();

    // The listener's connection is lost.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()) k",
    )
    .bind(coordinator::bank::AUTH_LISTENER_APPLICATION_NAME)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    refused_soon(b, key.expose()).await;
    // And it listens, and remembers, again.
    live(b).await;
    let (_, other) = b
        .create_api_key(&me, "other", &[Scope::Read], None)
        .await
        .unwrap();
    b.authenticate(other.expose()).await.unwrap();
    live(b).await;
    b.authenticate(other.expose()).await.unwrap();
}

#[tokio::test]
async fn a_remembered_key_still_records_its_last_use_every_granularity() {
    let t = bank().await;
    let b = &t.bank;
    let (_, _, _, key) = alice(b).await;
    let pool = b.ledger().pool();
    // Recorded 1 s short of the granularity ago: the next use reads the database but
    // records nothing, and is remembered only until the record is a granularity old.
    let granularity =
        chrono::Duration::from_std(coordinator::bank::API_KEY_LAST_USED_GRANULARITY).unwrap();
    // (In microseconds, as PostgreSQL stores it.)
    let recorded =
        (chrono::Utc::now() - granularity + chrono::Duration::seconds(1)).trunc_subsecs(6);
    sqlx::query("UPDATE api_keys SET last_used_at = $1")
        .bind(recorded)
        .execute(pool)
        .await
        .unwrap();
    let last_used = || async {
        let (at,): (chrono::DateTime<chrono::Utc>,) =
            sqlx::query_as("SELECT last_used_at FROM api_keys")
                .fetch_one(pool)
                .await
                .unwrap();
        at
    };
    b.authenticate(key.expose()).await.unwrap();
    assert_eq!(last_used().await, recorded);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    b.authenticate(key.expose()).await.unwrap();
    assert!(last_used().await > recorded + granularity);
}
