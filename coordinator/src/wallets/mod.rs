//! The bank's on-chain wallets and the address book.
//!
//! A wallet is a watch-only bdk_wallet wallet over a policy document of `policies` (hot: an
//! HSM key and the recovery key; cold: k-of-n HSM keys and the recovery key). The coordinator
//! holds no private key. Everything is in PostgreSQL:
//!
//! - `onchain_wallets`: the policy document, the next index of each keychain, and the row
//!   lock that makes one writer per wallet across coordinator instances;
//! - `onchain_wallet_changesets`: bdk's serde `ChangeSet`s, merged in order on load
//!   ([`OnchainWallet`]);
//! - `onchain_scripts`: every revealed script with its wallet, keychain, index and account,
//!   the index blocks are scanned against ([`Wallets::lookup_scripts`]).
//!
//! An address is handed to one account only, never again: the index is taken under the
//! wallet's row lock in the transaction that records the script.

mod bdk;
mod error;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use bdk_wallet::bitcoin::{Address, BlockHash, Network, ScriptBuf};
use chrono::{DateTime, Utc};
use policies::{Keychain, PolicyDocument};
use sqlx::PgPool;

use crate::AccountId;

pub use bdk::{OnchainWallet, WalletBalance};
pub use error::WalletError;

/// The id of an on-chain wallet (not a customer's ledger wallet, [`crate::WalletId`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct OnchainWalletId(uuid::Uuid);

impl OnchainWalletId {
    /// A fresh, time-ordered id (UUIDv7).
    #[allow(
        clippy::new_without_default,
        reason = "a fresh id is not a default value"
    )]
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub const fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    pub const fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for OnchainWalletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a wallet is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalletRole {
    /// Receives deposits, pays withdrawals (one HSM key and recovery).
    Hot,
    /// Holds reserves (k-of-n HSM keys and recovery).
    Cold,
}

impl WalletRole {
    /// `hot` or `cold`.
    pub fn as_str(self) -> &'static str {
        match self {
            WalletRole::Hot => "hot",
            WalletRole::Cold => "cold",
        }
    }

    fn parse(s: &str) -> Result<WalletRole, WalletError> {
        match s {
            "hot" => Ok(WalletRole::Hot),
            "cold" => Ok(WalletRole::Cold),
            other => Err(WalletError::Corrupt(format!("wallet role {other:?}"))),
        }
    }
}

/// A registered wallet.
#[derive(Debug, Clone)]
pub struct WalletInfo {
    /// Its id.
    pub id: OnchainWalletId,
    /// Its unique name (e.g. `hot`, `cold`).
    pub name: String,
    /// Hot or cold.
    pub role: WalletRole,
    /// The policy document it watches.
    pub policy: Arc<PolicyDocument>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl WalletInfo {
    /// The network of the policy.
    pub fn network(&self) -> Network {
        self.policy.network
    }
}

/// A revealed script and whose it is: an entry of the address book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRecord {
    /// The wallet whose descriptor it comes from.
    pub wallet: OnchainWalletId,
    /// Receive or change.
    pub keychain: Keychain,
    /// Derivation index in the keychain.
    pub index: u32,
    /// The account it was handed to (receive addresses); `None` for the bank's own.
    pub account: Option<AccountId>,
    /// The address.
    pub address: Address,
    /// Its output script.
    pub script_pubkey: ScriptBuf,
    /// When it was revealed.
    pub created_at: DateTime<Utc>,
}

/// A wallet registered from configuration: `[[wallets]]` in the coordinator's TOML, the
/// policy document in its own JSON file (as `policies` writes it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    /// Unique name.
    pub name: String,
    /// Hot or cold.
    pub role: WalletRole,
    /// Path of the policy document (JSON).
    pub policy_file: std::path::PathBuf,
}

/// The on-chain wallets and the address book, over PostgreSQL.
#[derive(Debug, Clone)]
pub struct Wallets {
    pool: PgPool,
    /// Wallet rows never change but for their indexes: their policy is read once.
    infos: Arc<RwLock<HashMap<OnchainWalletId, Arc<WalletInfo>>>>,
}

impl Wallets {
    /// The wallets in the coordinator's database (migrated).
    pub fn new(pool: PgPool) -> Wallets {
        Wallets {
            pool,
            infos: Arc::default(),
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Registers a wallet watching `policy`, starting at `genesis` (`None`: the network's
    /// genesis block). Idempotent: the same name, role and policy again return the wallet.
    ///
    /// # Errors
    /// [`WalletError::InvalidName`]; [`WalletError::NameTaken`] if the name is registered
    /// with another policy or role; [`WalletError::Policy`] if bdk refuses the descriptors.
    pub async fn register(
        &self,
        name: &str,
        role: WalletRole,
        policy: &PolicyDocument,
        genesis: Option<BlockHash>,
    ) -> Result<WalletInfo, WalletError> {
        let info = store::register(&self.pool, name, role, policy, genesis).await?;
        self.remember(&info);
        Ok(info)
    }

    /// Registers the wallets of the configuration (see [`Wallets::register`]).
    ///
    /// # Errors
    /// [`WalletError::Policy`] if a policy file cannot be read or verified; as
    /// [`Wallets::register`].
    pub async fn register_configured(
        &self,
        configs: &[WalletConfig],
        genesis: Option<BlockHash>,
    ) -> Result<Vec<WalletInfo>, WalletError> {
        let mut out = Vec::new();
        for c in configs {
            let unreadable = |reason: String| WalletError::Policy {
                wallet: OnchainWalletId::from_uuid(uuid::Uuid::nil()),
                reason: format!("{}: {reason}", c.policy_file.display()),
            };
            let json =
                std::fs::read_to_string(&c.policy_file).map_err(|e| unreadable(e.to_string()))?;
            let doc = PolicyDocument::from_json(&json).map_err(|e| unreadable(e.to_string()))?;
            out.push(self.register(&c.name, c.role, &doc, genesis).await?);
        }
        Ok(out)
    }

    /// A wallet by id.
    ///
    /// # Errors
    /// [`WalletError::NotFound`], [`WalletError::Db`], [`WalletError::Corrupt`].
    pub async fn info(&self, id: OnchainWalletId) -> Result<Arc<WalletInfo>, WalletError> {
        if let Some(info) = self
            .infos
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
        {
            return Ok(Arc::clone(info));
        }
        let info = store::info(&self.pool, id)
            .await?
            .ok_or(WalletError::NotFound(id))?;
        Ok(self.remember(&info))
    }

    /// A wallet by name.
    ///
    /// # Errors
    /// [`WalletError::NameNotFound`], [`WalletError::Db`], [`WalletError::Corrupt`].
    pub async fn by_name(&self, name: &str) -> Result<Arc<WalletInfo>, WalletError> {
        let info = store::info_by_name(&self.pool, name)
            .await?
            .ok_or_else(|| WalletError::NameNotFound(name.to_owned()))?;
        Ok(self.remember(&info))
    }

    fn remember(&self, info: &WalletInfo) -> Arc<WalletInfo> {
        let info = Arc::new(info.clone());
        self.infos
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(info.id, Arc::clone(&info));
        info
    }

    /// A new receive address of `wallet` for `account`, never handed out before (the
    /// GraphQL `onChainAddressCreate`). Each call reveals a new index.
    ///
    /// # Errors
    /// [`WalletError::NotFound`], [`WalletError::AccountNotFound`],
    /// [`WalletError::IndexesExhausted`], [`WalletError::Db`].
    pub async fn reveal_address_for(
        &self,
        wallet: OnchainWalletId,
        account: AccountId,
    ) -> Result<AddressRecord, WalletError> {
        let info = self.info(wallet).await?;
        let mut tx = self.pool.begin().await?;
        store::lock_wallet(&mut tx, wallet).await?;
        let record = store::reveal(&mut tx, &info, Keychain::Receive, Some(account)).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The account's latest receive address of `wallet`, revealing its first one if it has
    /// none (the GraphQL `onChainAddressCurrent`). Idempotent, also under concurrency: two
    /// calls for an account without address reveal one address, not two.
    ///
    /// # Errors
    /// As [`Wallets::reveal_address_for`].
    pub async fn current_address(
        &self,
        wallet: OnchainWalletId,
        account: AccountId,
    ) -> Result<AddressRecord, WalletError> {
        let info = self.info(wallet).await?;
        if let Some(record) = store::latest_of(&self.pool, &info, account).await? {
            return Ok(record);
        }
        let mut tx = self.pool.begin().await?;
        store::lock_wallet(&mut tx, wallet).await?;
        // Another instance may have revealed one while we waited for the lock.
        let record = match store::latest_of(&mut *tx, &info, account).await? {
            Some(record) => record,
            None => store::reveal(&mut tx, &info, Keychain::Receive, Some(account)).await?,
        };
        tx.commit().await?;
        Ok(record)
    }

    /// A new change address of `wallet` (the bank's own, no account).
    ///
    /// # Errors
    /// [`WalletError::NotFound`], [`WalletError::IndexesExhausted`], [`WalletError::Db`].
    pub async fn reveal_change_address(
        &self,
        wallet: OnchainWalletId,
    ) -> Result<AddressRecord, WalletError> {
        let info = self.info(wallet).await?;
        let mut tx = self.pool.begin().await?;
        store::lock_wallet(&mut tx, wallet).await?;
        let record = store::reveal(&mut tx, &info, Keychain::Change, None).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every address handed to `account`, oldest first.
    ///
    /// # Errors
    /// [`WalletError::Db`], [`WalletError::Corrupt`].
    pub async fn addresses_of(
        &self,
        account: AccountId,
    ) -> Result<Vec<AddressRecord>, WalletError> {
        let rows = store::addresses_of(&self.pool, account).await?;
        self.records(rows).await
    }

    /// The address-book entry of an address, if it is one of ours.
    ///
    /// # Errors
    /// [`WalletError::Db`], [`WalletError::Corrupt`].
    pub async fn lookup_address(
        &self,
        address: &str,
    ) -> Result<Option<AddressRecord>, WalletError> {
        let rows = store::by_address(&self.pool, address).await?;
        Ok(self.records(rows).await?.into_iter().next())
    }

    /// The entries of those `scripts` that are ours, in one indexed query: how blocks and
    /// mempool transactions are scanned (pass every output script of a block).
    ///
    /// # Errors
    /// [`WalletError::Db`], [`WalletError::Corrupt`].
    pub async fn lookup_scripts(
        &self,
        scripts: &[ScriptBuf],
    ) -> Result<Vec<AddressRecord>, WalletError> {
        let rows = store::by_scripts(&self.pool, scripts).await?;
        self.records(rows).await
    }

    async fn records(
        &self,
        rows: Vec<store::ScriptRow>,
    ) -> Result<Vec<AddressRecord>, WalletError> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let info = self.info(row.wallet).await?;
            out.push(row.into_record(info.network())?);
        }
        Ok(out)
    }

    /// Opens the bdk wallet of `wallet`: its changesets merged, every revealed index known.
    ///
    /// # Errors
    /// [`WalletError::NotFound`], [`WalletError::Bdk`] if the stored state does not load.
    pub async fn open(&self, wallet: OnchainWalletId) -> Result<OnchainWallet, WalletError> {
        let info = self.info(wallet).await?;
        OnchainWallet::open(self.pool.clone(), info).await
    }
}

fn parse_keychain(s: &str) -> Result<Keychain, WalletError> {
    match s {
        "receive" => Ok(Keychain::Receive),
        "change" => Ok(Keychain::Change),
        other => Err(WalletError::Corrupt(format!("keychain {other:?}"))),
    }
}
