//! The address book: registration, unique addresses per account, the script index, and two
//! coordinator instances revealing at once.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod wallets_common;

use std::collections::HashSet;

use coordinator::AccountId;
use coordinator::wallets::{WalletConfig, WalletError, WalletRole, Wallets};
use policies::Keychain;
use wallets_common::{account, cold_policy, hot_policy, hot_wallet, scratch};

#[tokio::test]
async fn registration_is_idempotent_and_a_name_keeps_its_policy() {
    let (_db, pool) = scratch().await;
    let wallets = Wallets::new(pool.clone());
    let hot = hot_policy();
    let first = wallets
        .register("hot", WalletRole::Hot, &hot, None)
        .await
        .unwrap();
    let again = wallets
        .register("hot", WalletRole::Hot, &hot, None)
        .await
        .unwrap();
    assert_eq!(
        first.id, again.id,
        "same name, role and policy: same wallet"
    );

    let other_policy = wallets
        .register("hot", WalletRole::Hot, &cold_policy(), None)
        .await;
    assert!(
        matches!(other_policy, Err(WalletError::NameTaken { .. })),
        "{other_policy:?}"
    );
    let other_role = wallets.register("hot", WalletRole::Cold, &hot, None).await;
    assert!(matches!(other_role, Err(WalletError::NameTaken { .. })));
    assert!(matches!(
        wallets
            .register("Hot Wallet", WalletRole::Hot, &hot, None)
            .await,
        Err(WalletError::InvalidName(_))
    ));

    let cold = wallets
        .register("cold", WalletRole::Cold, &cold_policy(), None)
        .await
        .unwrap();
    assert_ne!(cold.id, first.id);
    let by_name = wallets.by_name("cold").await.unwrap();
    assert_eq!(by_name.policy.id, cold_policy().id);
    assert_eq!(by_name.role, WalletRole::Cold);

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM onchain_wallets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "refused registrations left nothing behind");
}

#[tokio::test]
async fn each_account_gets_its_own_addresses_and_current_is_stable() {
    let (_db, pool) = scratch().await;
    let (wallets, hot) = hot_wallet(&pool).await;
    let alice = account(&pool).await;
    let bob = account(&pool).await;

    let a0 = wallets.current_address(hot.id, alice).await.unwrap();
    let a0_again = wallets.current_address(hot.id, alice).await.unwrap();
    assert_eq!(a0, a0_again, "current is idempotent");
    assert_eq!(a0.index, 0);
    assert_eq!(a0.keychain, Keychain::Receive);
    assert_eq!(a0.account, Some(alice));

    let b0 = wallets.current_address(hot.id, bob).await.unwrap();
    assert_ne!(b0.address, a0.address);
    assert_eq!(b0.index, 1);

    let a1 = wallets.reveal_address_for(hot.id, alice).await.unwrap();
    assert_eq!(a1.index, 2, "create always takes a new index");
    assert_ne!(a1.address, a0.address);
    assert_eq!(
        wallets.current_address(hot.id, alice).await.unwrap(),
        a1,
        "current is the newest"
    );

    // The index maps to the wallet's policy: derived independently, the same address.
    for record in [&a0, &b0, &a1] {
        assert_eq!(
            hot.policy.address(Keychain::Receive, record.index).unwrap(),
            record.address
        );
    }

    let alice_all: Vec<u32> = wallets
        .addresses_of(alice)
        .await
        .unwrap()
        .iter()
        .map(|r| r.index)
        .collect();
    assert_eq!(alice_all, vec![0, 2]);

    // The script index: a block's scripts, ours and others', in one lookup.
    let stranger = hot.policy.address(Keychain::Receive, 99).unwrap();
    let found = wallets
        .lookup_scripts(&[
            a0.script_pubkey.clone(),
            stranger.script_pubkey(),
            b0.script_pubkey.clone(),
        ])
        .await
        .unwrap();
    let owners: HashSet<(u32, Option<AccountId>)> =
        found.iter().map(|r| (r.index, r.account)).collect();
    assert_eq!(
        owners,
        HashSet::from([(0, Some(alice)), (1, Some(bob))]),
        "an unrevealed index is not ours yet"
    );
    let by_address = wallets
        .lookup_address(&b0.address.to_string())
        .await
        .unwrap();
    assert_eq!(by_address, Some(b0));

    let change = wallets.reveal_change_address(hot.id).await.unwrap();
    assert_eq!(
        (change.keychain, change.index, change.account),
        (Keychain::Change, 0, None)
    );
    assert_eq!(
        hot.policy.address(Keychain::Change, 0).unwrap(),
        change.address
    );
}

#[tokio::test]
async fn an_unknown_account_gets_no_address_and_uses_no_index() {
    let (_db, pool) = scratch().await;
    let (wallets, hot) = hot_wallet(&pool).await;
    let ghost = AccountId::new();
    let r = wallets.reveal_address_for(hot.id, ghost).await;
    assert!(
        matches!(r, Err(WalletError::AccountNotFound(a)) if a == ghost),
        "{r:?}"
    );
    let r = wallets.current_address(hot.id, ghost).await;
    assert!(matches!(r, Err(WalletError::AccountNotFound(_))), "{r:?}");

    let real = account(&pool).await;
    let first = wallets.reveal_address_for(hot.id, real).await.unwrap();
    assert_eq!(
        first.index, 0,
        "the refused reveals did not consume an index"
    );
}

/// Two coordinator instances (two pools, two `Wallets`) reveal at once: no index is handed
/// out twice, none is skipped, and `current` for a new account reveals one address.
#[tokio::test]
async fn two_instances_revealing_at_once_never_share_an_index() {
    let (db, pool) = scratch().await;
    let (_, hot) = hot_wallet(&pool).await;
    let other_pool = db.pool(8).await.unwrap();
    let one = Wallets::new(pool.clone());
    let two = Wallets::new(other_pool);

    let mut accounts = Vec::new();
    for _ in 0..20 {
        accounts.push(account(&pool).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, account) in accounts.iter().copied().enumerate() {
        for round in 0..3 {
            let w = if (i + round) % 2 == 0 {
                one.clone()
            } else {
                two.clone()
            };
            tasks.spawn(async move { w.reveal_address_for(hot.id, account).await });
        }
    }
    let mut indexes = Vec::new();
    let mut scripts = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let record = r.unwrap().unwrap();
        indexes.push(record.index);
        assert!(
            scripts.insert(record.script_pubkey),
            "a script handed out twice"
        );
    }
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..60).collect::<Vec<u32>>(),
        "every index once, none skipped"
    );

    // `current` for a fresh account, asked of both instances at once, many times.
    let fresh = account(&pool).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let w = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.spawn(async move { w.current_address(hot.id, fresh).await });
    }
    let mut answers = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        answers.insert(r.unwrap().unwrap().address);
    }
    assert_eq!(answers.len(), 1, "one current address, not one per caller");
    let revealed: i64 = sqlx::query_scalar("SELECT count(*) FROM onchain_scripts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(revealed, 61);
}

#[tokio::test]
async fn hot_and_cold_wallets_register_from_configuration() {
    let (_db, pool) = scratch().await;
    let dir = tempfile::tempdir().unwrap();
    let hot_file = dir.path().join("hot.json");
    let cold_file = dir.path().join("cold.json");
    std::fs::write(&hot_file, hot_policy().to_json_pretty().unwrap()).unwrap();
    std::fs::write(&cold_file, cold_policy().to_json_pretty().unwrap()).unwrap();
    #[derive(serde::Deserialize)]
    struct Config {
        wallets: Vec<WalletConfig>,
    }
    let config: Config = toml::from_str(&format!(
        "[[wallets]]\nname = \"hot\"\nrole = \"hot\"\npolicy_file = {:?}\n\
         [[wallets]]\nname = \"cold\"\nrole = \"cold\"\npolicy_file = {:?}\n",
        hot_file, cold_file
    ))
    .unwrap();
    let wallets = Wallets::new(pool.clone());
    let registered = wallets
        .register_configured(&config.wallets, None)
        .await
        .unwrap();
    assert_eq!(registered.len(), 2);
    assert_eq!(registered[1].role, WalletRole::Cold);
    assert_eq!(registered[1].policy.id, cold_policy().id);
    // Every start registers again: the same wallets.
    let again = wallets
        .register_configured(&config.wallets, None)
        .await
        .unwrap();
    assert_eq!(again[0].id, registered[0].id);

    // A policy file edited by hand no longer matches its id: refused, nothing registered.
    let tampered = hot_policy()
        .to_json_pretty()
        .unwrap()
        .replace("\"version\": 1", "\"version\": 2");
    let bad_file = dir.path().join("tampered.json");
    std::fs::write(&bad_file, tampered).unwrap();
    let bad = [WalletConfig {
        name: "hot2".into(),
        role: WalletRole::Hot,
        policy_file: bad_file,
    }];
    let r = wallets.register_configured(&bad, None).await;
    assert!(
        matches!(&r, Err(WalletError::Policy { reason, .. }) if reason.contains("does not match")),
        "{r:?}"
    );
    assert!(matches!(
        wallets.by_name("hot2").await,
        Err(WalletError::NameNotFound(_))
    ));
}
