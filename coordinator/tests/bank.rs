//! Users, authentication, API keys, usernames, status, levels, limits and staff roles,
//! against a real PostgreSQL.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use common::{bank, bank_with, id, last_code, pw, signed_up, staff};

use std::time::Duration;

use coordinator::bank::{
    AccountQuery, AccountStatus, Actor, AuthMethod, Bank, BankConfig, BankError, Level, Scope,
    Secret, StaffRole,
};

#[tokio::test]
async fn register_confirm_and_log_in_by_email() {
    let t = bank().await;
    let b = &t.bank;
    let alice = id("Alice@Example.com");
    b.register(&alice).await.unwrap();
    // Registering again before the confirmation sends a new code: an unconfirmed
    // registration never blocks its identity.
    b.register(&id("alice@example.com")).await.unwrap();
    // Not verified yet: no password exists, so no password login.
    assert!(matches!(
        b.login(&alice, &Secret::new("a long password")).await,
        Err(BankError::InvalidCredentials)
    ));
    let code = last_code(b, "alice@example.com").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert!(matches!(
        b.confirm_code(&alice, wrong).await,
        Err(BankError::InvalidCode)
    ));
    let (session, account) = b
        .confirm_code_with_password(&alice, &code, Some(&pw("a long password")))
        .await
        .unwrap();
    // Confirmed: the identity is taken now.
    assert!(matches!(
        b.register(&id("alice@example.com")).await,
        Err(BankError::IdentityTaken)
    ));
    // A code works once.
    assert!(matches!(
        b.confirm_code(&alice, &code).await,
        Err(BankError::InvalidCode)
    ));

    let me = b.authenticate(session.token.expose()).await.unwrap();
    assert_eq!(me.account_id, account);
    assert_eq!(me.method, AuthMethod::Session);
    assert_eq!(me.scopes, Scope::ALL.to_vec());
    let view = b.me(&me).await.unwrap();
    assert_eq!(view.level, Level::new(0).unwrap());
    assert_eq!(view.status, AccountStatus::Active);
    assert_eq!(view.username, None);
    // The default wallet is a zero-balance user ledger account.
    let wallets = b.wallets_of(account).await.unwrap();
    assert_eq!(wallets.len(), 1);
    assert_eq!(wallets[0].id, view.default_wallet_id);
    assert_eq!(wallets[0].balance.to_sat(), 0);
    assert_eq!(wallets[0].currency, "BTC");
    let ledger_account = b
        .ledger()
        .account(Bank::ledger_account(view.default_wallet_id))
        .await
        .unwrap();
    assert_eq!(ledger_account.kind, coordinator::ledger::AccountKind::User);

    let user = b.user(me.user_id).await.unwrap();
    assert_eq!(user.email.as_deref(), Some("alice@example.com"));
    assert_eq!(user.phone, None);
    assert!(user.verified);

    let s2 = b
        .login(&alice, &Secret::new("a long password"))
        .await
        .unwrap();
    assert_eq!(
        b.authenticate(s2.token.expose()).await.unwrap().account_id,
        account
    );
    assert!(matches!(
        b.login(&alice, &Secret::new("wrong password")).await,
        Err(BankError::InvalidCredentials)
    ));
    assert!(matches!(
        b.login(&id("nobody@example.com"), &Secret::new("a long password"))
            .await,
        Err(BankError::InvalidCredentials)
    ));
    // Logout revokes only that session.
    b.logout(s2.token.expose()).await.unwrap();
    assert!(matches!(
        b.authenticate(s2.token.expose()).await,
        Err(BankError::Unauthenticated)
    ));
    assert!(b.authenticate(session.token.expose()).await.is_ok());
    assert!(matches!(
        b.authenticate("sess_forged").await,
        Err(BankError::Unauthenticated)
    ));
    assert!(matches!(
        b.authenticate("").await,
        Err(BankError::Unauthenticated)
    ));

    // Secrets are stored only hashed.
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(b.ledger().pool())
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"));
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'",
    )
    .bind(&session.token.expose()[5..20])
    .fetch_one(b.ledger().pool())
    .await
    .unwrap();
    assert_eq!(plain, 0);
}

#[tokio::test]
async fn phone_users_get_codes_by_sms_and_can_log_in_with_a_code() {
    let t = bank().await;
    let b = &t.bank;
    let phone = id("+41 79 555 12 34");
    b.register(&phone).await.unwrap();
    let channel: String = sqlx::query_scalar("SELECT channel FROM notification_outbox")
        .fetch_one(b.ledger().pool())
        .await
        .unwrap();
    assert_eq!(channel, "sms");
    let code = last_code(b, "+41795551234").await;
    let (_, account) = b.confirm_code(&phone, &code).await.unwrap();
    // Later: a login code.
    b.request_code(&phone).await.unwrap();
    let code = last_code(b, "+41795551234").await;
    let (session, again) = b.confirm_code(&phone, &code).await.unwrap();
    assert_eq!(again, account);
    assert!(b.authenticate(session.token.expose()).await.is_ok());
    // Asking for a code for an unknown number says nothing and sends nothing.
    b.request_code(&id("+41790000000")).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notification_outbox WHERE recipient = '+41790000000'",
    )
    .fetch_one(b.ledger().pool())
    .await
    .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn codes_allow_few_attempts_and_expire() {
    let t = bank().await;
    let b = &t.bank;
    let who = id("bob@example.com");
    b.register(&who).await.unwrap();
    let code = last_code(b, "bob@example.com").await;
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for _ in 0..5 {
        assert!(matches!(
            b.confirm_code(&who, wrong).await,
            Err(BankError::InvalidCode)
        ));
    }
    // Locked out of this code even with the right value.
    assert!(matches!(
        b.confirm_code(&who, &code).await,
        Err(BankError::InvalidCode)
    ));
    // A new code works.
    b.request_code(&who).await.unwrap();
    let code = last_code(b, "bob@example.com").await;
    b.confirm_code(&who, &code).await.unwrap();

    let t2 = bank_with(BankConfig {
        code_ttl: Duration::from_millis(200),
        ..BankConfig::default()
    })
    .await;
    let b2 = &t2.bank;
    b2.register(&who).await.unwrap();
    let code = last_code(b2, "bob@example.com").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        b2.confirm_code(&who, &code).await,
        Err(BankError::InvalidCode)
    ));
}

#[tokio::test]
async fn api_keys_have_scopes_expiry_and_can_be_revoked() {
    let t = bank().await;
    let b = &t.bank;
    let (_, account, me) = signed_up(b, "carol@example.com").await;
    let (info, secret) = b
        .create_api_key(&me, "read only", &[Scope::Read], None)
        .await
        .unwrap();
    assert!(secret.expose().starts_with("key_"));
    let key = b.authenticate(secret.expose()).await.unwrap();
    assert_eq!(key.account_id, account);
    assert_eq!(key.scopes, vec![Scope::Read]);
    assert_eq!(key.method, AuthMethod::ApiKey(info.id));
    // Read works, write does not.
    b.me(&key).await.unwrap();
    assert!(matches!(
        b.set_username(&key, &"carol".parse().unwrap()).await,
        Err(BankError::Forbidden { needed: "write" })
    ));
    // An API key cannot make or revoke keys.
    assert!(matches!(
        b.create_api_key(&key, "x", &Scope::ALL, None).await,
        Err(BankError::Forbidden { .. })
    ));
    // A write-only key cannot read.
    let (_, w) = b
        .create_api_key(&me, "writer", &[Scope::Write], None)
        .await
        .unwrap();
    let w = b.authenticate(w.expose()).await.unwrap();
    assert!(matches!(
        b.me(&w).await,
        Err(BankError::Forbidden { needed: "read" })
    ));
    b.set_username(&w, &"carol".parse().unwrap()).await.unwrap();

    // Listing shows no secrets; revoking stops the key.
    let keys = b.api_keys(&me).await.unwrap();
    assert_eq!(keys.len(), 2);
    b.revoke_api_key(&me, info.id).await.unwrap();
    assert!(matches!(
        b.authenticate(secret.expose()).await,
        Err(BankError::Unauthenticated)
    ));
    assert!(b.api_keys(&me).await.unwrap()[0].revoked_at.is_some());

    // Expiry.
    assert!(matches!(
        b.create_api_key(&me, "past", &[Scope::Read], Some(chrono::Utc::now()))
            .await,
        Err(BankError::Invalid(_))
    ));
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (_, short) = b
        .create_api_key(&me, "short", &[Scope::Read], Some(soon))
        .await
        .unwrap();
    assert!(b.authenticate(short.expose()).await.is_ok());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(matches!(
        b.authenticate(short.expose()).await,
        Err(BankError::Unauthenticated)
    ));
    assert!(matches!(
        b.create_api_key(&me, "none", &[], None).await,
        Err(BankError::Invalid(_))
    ));
}

/// The stored `last_used_at` of a key and the transaction that last wrote its row.
async fn last_used(
    b: &Bank,
    id: coordinator::ApiKeyId,
) -> (Option<chrono::DateTime<chrono::Utc>>, String) {
    let row: (Option<chrono::DateTime<chrono::Utc>>, String) =
        sqlx::query_as("SELECT last_used_at, xmin::text FROM api_keys WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_one(b.ledger().pool())
            .await
            .unwrap();
    row
}

#[tokio::test]
async fn api_key_last_use_is_recorded_at_most_once_per_granularity() {
    // Without the authentication cache, so that every use below reaches the statement
    // under test (with it, uses reach the database even less often: tests/auth_cache.rs).
    let t = bank_with(BankConfig {
        auth_cache_ttl: Duration::ZERO,
        ..BankConfig::default()
    })
    .await;
    let b = &t.bank;
    let (_, _, me) = signed_up(b, "dave@example.com").await;
    let (info, secret) = b
        .create_api_key(&me, "bot", &[Scope::Read], None)
        .await
        .unwrap();
    assert_eq!(info.last_used_at, None);
    assert_eq!(last_used(b, info.id).await.0, None, "never used yet");

    // The first use records it.
    let before = chrono::Utc::now();
    b.authenticate(secret.expose()).await.unwrap();
    let (first, first_writer) = last_used(b, info.id).await;
    let first = first.expect("set by the first use");
    assert!(
        first >= before - chrono::Duration::seconds(1),
        "{first} {before}"
    );
    assert_eq!(b.api_keys(&me).await.unwrap()[0].last_used_at, Some(first));

    // Later uses within the granularity do not write the row at all (same xmin).
    for _ in 0..3 {
        b.authenticate(secret.expose()).await.unwrap();
    }
    assert_eq!(
        last_used(b, info.id).await,
        (Some(first), first_writer.clone())
    );

    // Once the stored value is older than the granularity, the next use refreshes it.
    let stale = first
        - chrono::Duration::from_std(coordinator::bank::API_KEY_LAST_USED_GRANULARITY).unwrap()
        - chrono::Duration::seconds(1);
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(stale)
        .bind(info.id.as_uuid())
        .execute(b.ledger().pool())
        .await
        .unwrap();
    b.authenticate(secret.expose()).await.unwrap();
    let refreshed = last_used(b, info.id).await.0.unwrap();
    assert!(
        refreshed > stale + chrono::Duration::seconds(30),
        "{refreshed} {stale}"
    );

    // A revoked (or expired) key is refused and its row is not touched, even when stale.
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(stale)
        .bind(info.id.as_uuid())
        .execute(b.ledger().pool())
        .await
        .unwrap();
    b.revoke_api_key(&me, info.id).await.unwrap();
    let revoked = last_used(b, info.id).await;
    assert!(matches!(
        b.authenticate(secret.expose()).await,
        Err(BankError::Unauthenticated)
    ));
    assert_eq!(last_used(b, info.id).await, revoked);
    assert_eq!(revoked.0, Some(stale));

    // Another key of the account is unaffected by this one's use.
    let (other, other_secret) = b
        .create_api_key(&me, "other", &[Scope::Read], None)
        .await
        .unwrap();
    assert_eq!(last_used(b, other.id).await.0, None);
    b.authenticate(other_secret.expose()).await.unwrap();
    assert!(last_used(b, other.id).await.0.is_some());
}

#[tokio::test]
async fn users_cannot_see_or_touch_each_other() {
    let t = bank().await;
    let b = &t.bank;
    let (_, a_acct, a) = signed_up(b, "a@example.com").await;
    let (_, b_acct, bee) = signed_up(b, "b@example.com").await;
    let b_wallet = b.account(b_acct).await.unwrap().default_wallet_id;
    let a_wallet = b.account(a_acct).await.unwrap().default_wallet_id;
    assert!(matches!(
        b.wallet(&a, b_wallet).await,
        Err(BankError::NotFound { .. })
    ));
    assert_eq!(b.wallet(&a, a_wallet).await.unwrap().id, a_wallet);
    assert_eq!(b.wallet(&bee, b_wallet).await.unwrap().id, b_wallet);
    // A's session cannot revoke B's keys.
    let (k, _) = b
        .create_api_key(&bee, "b key", &[Scope::Read], None)
        .await
        .unwrap();
    assert!(matches!(
        b.revoke_api_key(&a, k.id).await,
        Err(BankError::NotFound { .. })
    ));
}

#[tokio::test]
async fn usernames_are_unique_case_insensitive_and_payable() {
    let t = bank().await;
    let b = &t.bank;
    let (_, acct, a) = signed_up(b, "a@example.com").await;
    let (_, _, other) = signed_up(b, "b@example.com").await;
    b.set_username(&a, &"Satoshi".parse().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        b.set_username(&other, &"satoshi".parse().unwrap()).await,
        Err(BankError::UsernameTaken)
    ));
    assert!(matches!(
        b.set_username(&a, &"another".parse().unwrap()).await,
        Err(BankError::UsernameAlreadySet)
    ));
    assert!(
        !b.username_available(&"satoshi".parse().unwrap())
            .await
            .unwrap()
    );
    assert!(b.username_available(&"hal".parse().unwrap()).await.unwrap());
    let wallet = b
        .wallet_of_username(&"SATOSHI".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(wallet, b.account(acct).await.unwrap().default_wallet_id);
    assert!(matches!(
        b.wallet_of_username(&"nobody".parse().unwrap()).await,
        Err(BankError::NotFound { .. })
    ));
}

#[tokio::test]
async fn status_changes_follow_the_rules_and_are_audited() {
    let t = bank().await;
    let b = &t.bank;
    let (_, acct, me) = signed_up(b, "a@example.com").await;
    let support = staff(b, "support@bank.example", StaffRole::Support).await;
    let compliance = staff(b, "compliance@bank.example", StaffRole::Compliance).await;

    // A user may lock their own account, not unlock it.
    b.set_status(
        Actor::User(me.user_id),
        acct,
        AccountStatus::Locked,
        "lost my phone",
    )
    .await
    .unwrap();
    assert!(matches!(
        b.set_status(
            Actor::User(me.user_id),
            acct,
            AccountStatus::Active,
            "found it"
        )
        .await,
        Err(BankError::InvalidTransition {
            from: "LOCKED",
            to: "ACTIVE"
        })
    ));
    // Support unlocks; support may not close; compliance closes; closed is final.
    b.staff_set_status(
        &support,
        acct,
        AccountStatus::Active,
        "identity checked by phone",
    )
    .await
    .unwrap();
    assert!(matches!(
        b.staff_set_status(&support, acct, AccountStatus::Closed, "x")
            .await,
        Err(BankError::Forbidden { .. })
    ));
    assert!(matches!(
        b.staff_set_status(&compliance, acct, AccountStatus::Closed, "")
            .await,
        Err(BankError::Invalid(_))
    ));
    b.staff_set_status(&compliance, acct, AccountStatus::Closed, "customer request")
        .await
        .unwrap();
    assert!(matches!(
        b.staff_set_status(&compliance, acct, AccountStatus::Active, "oops")
            .await,
        Err(BankError::InvalidTransition { from: "CLOSED", .. })
    ));
    assert_eq!(b.account(acct).await.unwrap().status, AccountStatus::Closed);

    let events = b.account_events(acct).await.unwrap();
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| (e.old_value.clone(), e.new_value.clone(), e.reason.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ACTIVE".into(), "LOCKED".into(), "lost my phone".into()),
            (
                "LOCKED".into(),
                "ACTIVE".into(),
                "identity checked by phone".into()
            ),
            ("ACTIVE".into(), "CLOSED".into(), "customer request".into()),
        ]
    );
    assert_eq!(events[0].actor, format!("user:{}", me.user_id));
    assert_eq!(events[1].actor, format!("staff:{}", support.staff_id));
    assert_eq!(events[2].actor, format!("staff:{}", compliance.staff_id));
}

#[tokio::test]
async fn levels_set_limits_and_only_compliance_changes_them() {
    let t = bank().await;
    let b = &t.bank;
    let (_, acct, _) = signed_up(b, "a@example.com").await;
    let limits = b.limits(acct).await.unwrap();
    let l0 = b.config().limits.level0;
    assert_eq!(limits.level, Level::new(0).unwrap());
    assert_eq!(limits.internal_send.total, l0.internal_send);
    assert_eq!(limits.internal_send.used.to_sat(), 0);
    assert_eq!(limits.internal_send.remaining, l0.internal_send);

    let support = staff(b, "s@bank.example", StaffRole::Support).await;
    let treasury = staff(b, "t@bank.example", StaffRole::Treasury).await;
    let compliance = staff(b, "c@bank.example", StaffRole::Compliance).await;
    for who in [&support, &treasury] {
        assert!(matches!(
            b.set_level(who, acct, Level::new(2).unwrap(), "kyc").await,
            Err(BankError::Forbidden { .. })
        ));
    }
    b.set_level(
        &compliance,
        acct,
        Level::new(2).unwrap(),
        "passport verified",
    )
    .await
    .unwrap();
    let limits = b.limits(acct).await.unwrap();
    assert_eq!(limits.level, Level::new(2).unwrap());
    assert_eq!(
        limits.internal_send.total,
        b.config().limits.level2.internal_send
    );
    assert_eq!(limits.withdrawal.total, b.config().limits.level2.withdrawal);
    let events = b.account_events(acct).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].kind.as_str(),
            events[0].old_value.as_str(),
            events[0].new_value.as_str()
        ),
        ("level", "0", "2")
    );
}

#[tokio::test]
async fn staff_sessions_are_separate_from_user_sessions() {
    let t = bank().await;
    let b = &t.bank;
    let (user_token, acct, _) = signed_up(b, "a@example.com").await;
    b.create_staff(
        &"admin@bank.example".parse().unwrap(),
        &pw("staff password"),
        StaffRole::Admin,
    )
    .await
    .unwrap();
    assert!(matches!(
        b.create_staff(
            &"admin@bank.example".parse().unwrap(),
            &pw("staff password"),
            StaffRole::Admin
        )
        .await,
        Err(BankError::IdentityTaken)
    ));
    assert!(matches!(
        b.staff_login(
            &"admin@bank.example".parse().unwrap(),
            &Secret::new("wrong")
        )
        .await,
        Err(BankError::InvalidCredentials)
    ));
    let s = b
        .staff_login(
            &"admin@bank.example".parse().unwrap(),
            &Secret::new("staff password"),
        )
        .await
        .unwrap();
    let admin = b.authenticate_staff(s.token.expose()).await.unwrap();
    assert_eq!(admin.role, StaffRole::Admin);
    // Neither token works on the other side.
    assert!(matches!(
        b.authenticate(s.token.expose()).await,
        Err(BankError::Unauthenticated)
    ));
    assert!(matches!(
        b.authenticate_staff(user_token.expose()).await,
        Err(BankError::Unauthenticated)
    ));
    // Staff find accounts by id, e-mail and username.
    let by_email = b
        .find_account(
            &admin,
            &AccountQuery::Email("A@example.com".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(by_email.id, acct);
    assert_eq!(
        b.find_account(&admin, &AccountQuery::Id(acct))
            .await
            .unwrap()
            .id,
        acct
    );
    assert!(matches!(
        b.find_account(&admin, &AccountQuery::Username("ghost".parse().unwrap()))
            .await,
        Err(BankError::NotFound { .. })
    ));
}
