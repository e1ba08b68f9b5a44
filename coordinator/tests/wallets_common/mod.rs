//! Helpers of the wallet and chain tests: policy documents, accounts, wallets on a scratch
//! database.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::str::FromStr;

use bdk_wallet::bitcoin::Network;
use bdk_wallet::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use coordinator::AccountId;
use coordinator::wallets::{WalletInfo, WalletRole, Wallets};
use policies::{HsmKey, PolicyDocument, RecoveryKey, Template};
use sqlx::PgPool;
use test_support::ScratchDatabase;

/// A test recovery key (BIP32 test vector 1's master tpub).
pub const RECOVERY_TPUB: &str = "tpubD6NzVbkrYhZ4XgiXtGrdW5XDAPFCL9h7we1vwNCpn8tGbBcgfVYjXyhWo4E1xkh56hjod1RhGjxbaTLV3X4FyWuejifB9jusQ46QzG87VKp";

pub fn hsm_key(label: &str, seed: u8) -> HsmKey {
    let sk = SecretKey::from_slice(&[seed; 32]).expect("valid test key");
    HsmKey::new(label, PublicKey::from_secret_key(&Secp256k1::new(), &sk))
}

/// A hot policy: one HSM key, or the recovery key after 144 blocks.
pub fn hot_policy() -> PolicyDocument {
    let template = Template::Hot {
        hsm_key: hsm_key("hot-1", 1),
        recovery: RecoveryKey::from_str(RECOVERY_TPUB).expect("test tpub"),
        recovery_after: 144,
    };
    PolicyDocument::new("hot", 1, Network::Regtest, &template).expect("hot policy compiles")
}

/// A cold policy: 2 of 3 HSM keys, or the recovery key after 4,320 blocks.
pub fn cold_policy() -> PolicyDocument {
    let template = Template::Cold {
        threshold: 2,
        hsm_keys: vec![
            hsm_key("cold-a", 2),
            hsm_key("cold-b", 3),
            hsm_key("cold-c", 4),
        ],
        recovery: RecoveryKey::from_str(RECOVERY_TPUB).expect("test tpub"),
        recovery_after: 4320,
    };
    PolicyDocument::new("cold", 1, Network::Regtest, &template).expect("cold policy compiles")
}

pub async fn scratch() -> (ScratchDatabase, PgPool) {
    ScratchDatabase::migrated("coordinator_wallets", 8, &coordinator::db::MIGRATOR)
        .await
        .expect("PostgreSQL must be reachable at DATABASE_URL (see scripts/pg-up.sh)")
}

/// A customer account (and its user), as the bank's sign-up leaves them.
pub async fn account(pool: &PgPool) -> AccountId {
    let user = uuid::Uuid::now_v7();
    let account = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
        .bind(user)
        .bind(format!("{}@example.com", user.simple()))
        .execute(pool)
        .await
        .expect("user inserted");
    sqlx::query("INSERT INTO accounts (id, user_id) VALUES ($1, $2)")
        .bind(account)
        .bind(user)
        .execute(pool)
        .await
        .expect("account inserted");
    AccountId::from_uuid(account)
}

pub async fn hot_wallet(pool: &PgPool) -> (Wallets, WalletInfo) {
    let wallets = Wallets::new(pool.clone());
    let info = wallets
        .register("hot", WalletRole::Hot, &hot_policy(), None)
        .await
        .expect("hot wallet registered");
    (wallets, info)
}
