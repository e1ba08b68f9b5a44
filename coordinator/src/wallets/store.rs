//! The wallets' tables: SQL only.

use std::str::FromStr;
use std::sync::Arc;

use bdk_wallet::bitcoin::{Address, BlockHash, Network, ScriptBuf};
use bdk_wallet::{ChangeSet, Wallet};
use chrono::{DateTime, Utc};
use policies::{Keychain, PolicyDocument};
use sqlx::{PgConnection, PgExecutor, PgPool, Row};

use super::{AddressRecord, OnchainWalletId, WalletError, WalletInfo, WalletRole, parse_keychain};
use crate::AccountId;

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 63
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

pub(super) async fn register(
    pool: &PgPool,
    name: &str,
    role: WalletRole,
    policy: &PolicyDocument,
    genesis: Option<BlockHash>,
) -> Result<WalletInfo, WalletError> {
    if !valid_name(name) {
        return Err(WalletError::InvalidName(name.to_owned()));
    }
    let id = OnchainWalletId::new();
    let json = policy.to_json_pretty().map_err(|e| WalletError::Policy {
        wallet: id,
        reason: e.to_string(),
    })?;
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO onchain_wallets (id, name, role, policy_id, policy_json, network)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO NOTHING
         RETURNING created_at",
    )
    .bind(id.as_uuid())
    .bind(name)
    .bind(role.as_str())
    .bind(policy.id.to_string())
    .bind(&json)
    .bind(policy.network.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        tx.rollback().await?;
        let existing = info_by_name(pool, name)
            .await?
            .ok_or_else(|| WalletError::NameNotFound(name.to_owned()))?;
        if existing.policy.id != policy.id || existing.role != role {
            return Err(WalletError::NameTaken {
                name: name.to_owned(),
                registered: existing.policy.id.to_string(),
                registered_role: existing.role.as_str().to_owned(),
                offered: policy.id.to_string(),
                offered_role: role.as_str().to_owned(),
            });
        }
        return Ok(existing);
    };
    // bdk's first changeset: descriptors, network, genesis block.
    let mut params = Wallet::create(
        policy.descriptors.receive.to_string(),
        policy.descriptors.change.to_string(),
    )
    .network(policy.network)
    // Derived scripts go into the changesets, so a load does not derive every revealed
    // index again (measured: about 1.5 ms per index in a debug build).
    .use_spk_cache(true);
    if let Some(hash) = genesis {
        params = params.genesis_hash(hash);
    }
    let mut wallet = params
        .create_wallet_no_persist()
        .map_err(|e| WalletError::Policy {
            wallet: id,
            reason: e.to_string(),
        })?;
    let initial = wallet.take_staged().unwrap_or_default();
    append_changeset(&mut tx, id, 1, &initial).await?;
    tx.commit().await?;
    Ok(WalletInfo {
        id,
        name: name.to_owned(),
        role,
        policy: Arc::new(policy.clone()),
        created_at: row.try_get("created_at")?,
    })
}

fn info_from_row(row: &sqlx::postgres::PgRow) -> Result<WalletInfo, WalletError> {
    let id = OnchainWalletId::from_uuid(row.try_get("id")?);
    let json: String = row.try_get("policy_json")?;
    let policy = PolicyDocument::from_json(&json).map_err(|e| WalletError::Policy {
        wallet: id,
        reason: e.to_string(),
    })?;
    let role: String = row.try_get("role")?;
    Ok(WalletInfo {
        id,
        name: row.try_get("name")?,
        role: WalletRole::parse(&role)?,
        policy: Arc::new(policy),
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn info(
    pool: &PgPool,
    id: OnchainWalletId,
) -> Result<Option<WalletInfo>, WalletError> {
    let row = sqlx::query(
        "SELECT id, name, role, policy_json, created_at FROM onchain_wallets WHERE id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(info_from_row).transpose()
}

pub(super) async fn info_by_name(
    pool: &PgPool,
    name: &str,
) -> Result<Option<WalletInfo>, WalletError> {
    let row = sqlx::query(
        "SELECT id, name, role, policy_json, created_at FROM onchain_wallets WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(info_from_row).transpose()
}

/// The next index of each keychain, read under the wallet's row lock (held to COMMIT).
#[derive(Debug, Clone, Copy)]
pub(super) struct LockedIndexes {
    pub(super) next_receive: u32,
    pub(super) next_change: u32,
}

pub(super) async fn lock_wallet(
    conn: &mut PgConnection,
    id: OnchainWalletId,
) -> Result<LockedIndexes, WalletError> {
    let row = sqlx::query(
        "SELECT next_receive_index, next_change_index FROM onchain_wallets
         WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(WalletError::NotFound(id))?;
    let index = |col: &str| -> Result<u32, WalletError> {
        let v: i32 = row.try_get(col)?;
        u32::try_from(v).map_err(|_| WalletError::Corrupt(format!("{col} {v}")))
    };
    Ok(LockedIndexes {
        next_receive: index("next_receive_index")?,
        next_change: index("next_change_index")?,
    })
}

/// Reveals the next index of `keychain`; the caller holds the wallet's row lock.
pub(super) async fn reveal(
    conn: &mut PgConnection,
    info: &WalletInfo,
    keychain: Keychain,
    account: Option<AccountId>,
) -> Result<AddressRecord, WalletError> {
    let indexes = lock_wallet(conn, info.id).await?;
    let index = match keychain {
        Keychain::Receive => indexes.next_receive,
        Keychain::Change => indexes.next_change,
    };
    // Indexes at or above 2^31 are hardened, which a public descriptor cannot derive.
    let next = i32::try_from(index.saturating_add(1))
        .map_err(|_| WalletError::IndexesExhausted(info.id))?;
    let address = info
        .policy
        .address(keychain, index)
        .map_err(|e| WalletError::Policy {
            wallet: info.id,
            reason: e.to_string(),
        })?;
    let script_pubkey = address.script_pubkey();
    let inserted = sqlx::query(
        "INSERT INTO onchain_scripts
             (script_pubkey, wallet_id, keychain, derivation_index, account_id, address)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING created_at",
    )
    .bind(script_pubkey.as_bytes())
    .bind(info.id.as_uuid())
    .bind(keychain.as_str())
    .bind(next - 1)
    .bind(account.map(|a| a.as_uuid()))
    .bind(address.to_string())
    .fetch_one(&mut *conn)
    .await;
    let row = match inserted {
        Ok(row) => row,
        Err(e)
            if e.as_database_error().and_then(|d| d.constraint())
                == Some("onchain_scripts_account_id_fkey") =>
        {
            let account = account.ok_or(WalletError::Db(e))?;
            return Err(WalletError::AccountNotFound(account));
        }
        Err(e) => return Err(e.into()),
    };
    let column = match keychain {
        Keychain::Receive => "next_receive_index",
        Keychain::Change => "next_change_index",
    };
    sqlx::query(&format!(
        "UPDATE onchain_wallets SET {column} = $2 WHERE id = $1"
    ))
    .bind(info.id.as_uuid())
    .bind(next)
    .execute(&mut *conn)
    .await?;
    Ok(AddressRecord {
        wallet: info.id,
        keychain,
        index,
        account,
        address,
        script_pubkey,
        created_at: row.try_get("created_at")?,
    })
}

/// A row of `onchain_scripts`.
pub(super) struct ScriptRow {
    pub(super) wallet: OnchainWalletId,
    keychain: String,
    index: i32,
    account: Option<uuid::Uuid>,
    address: String,
    script: Vec<u8>,
    created_at: DateTime<Utc>,
}

impl ScriptRow {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<ScriptRow, sqlx::Error> {
        Ok(ScriptRow {
            wallet: OnchainWalletId::from_uuid(row.try_get("wallet_id")?),
            keychain: row.try_get("keychain")?,
            index: row.try_get("derivation_index")?,
            account: row.try_get("account_id")?,
            address: row.try_get("address")?,
            script: row.try_get("script_pubkey")?,
            created_at: row.try_get("created_at")?,
        })
    }

    pub(super) fn into_record(self, network: Network) -> Result<AddressRecord, WalletError> {
        let address = Address::from_str(&self.address)
            .and_then(|a| a.require_network(network))
            .map_err(|e| WalletError::Corrupt(format!("address {:?}: {e}", self.address)))?;
        Ok(AddressRecord {
            wallet: self.wallet,
            keychain: parse_keychain(&self.keychain)?,
            index: u32::try_from(self.index)
                .map_err(|_| WalletError::Corrupt(format!("index {}", self.index)))?,
            account: self.account.map(AccountId::from_uuid),
            address,
            script_pubkey: ScriptBuf::from_bytes(self.script),
            created_at: self.created_at,
        })
    }
}

const SCRIPT_COLUMNS: &str =
    "script_pubkey, wallet_id, keychain, derivation_index, account_id, address, created_at";

pub(super) async fn latest_of<'c>(
    executor: impl PgExecutor<'c>,
    info: &WalletInfo,
    account: AccountId,
) -> Result<Option<AddressRecord>, WalletError> {
    let row = sqlx::query(&format!(
        "SELECT {SCRIPT_COLUMNS} FROM onchain_scripts
         WHERE account_id = $1 AND wallet_id = $2
         ORDER BY derivation_index DESC LIMIT 1"
    ))
    .bind(account.as_uuid())
    .bind(info.id.as_uuid())
    .fetch_optional(executor)
    .await?;
    row.map(|r| {
        ScriptRow::from_row(&r)?
            .into_record(info.network())
            .map(Some)
    })
    .unwrap_or(Ok(None))
}

pub(super) async fn addresses_of(
    pool: &PgPool,
    account: AccountId,
) -> Result<Vec<ScriptRow>, WalletError> {
    let rows = sqlx::query(&format!(
        "SELECT {SCRIPT_COLUMNS} FROM onchain_scripts
         WHERE account_id = $1 ORDER BY created_at, derivation_index"
    ))
    .bind(account.as_uuid())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(ScriptRow::from_row)
        .collect::<Result<_, _>>()?)
}

pub(super) async fn by_address(
    pool: &PgPool,
    address: &str,
) -> Result<Vec<ScriptRow>, WalletError> {
    let rows = sqlx::query(&format!(
        "SELECT {SCRIPT_COLUMNS} FROM onchain_scripts WHERE address = $1"
    ))
    .bind(address)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(ScriptRow::from_row)
        .collect::<Result<_, _>>()?)
}

pub(super) async fn by_scripts(
    pool: &PgPool,
    scripts: &[ScriptBuf],
) -> Result<Vec<ScriptRow>, WalletError> {
    let keys: Vec<&[u8]> = scripts.iter().map(|s| s.as_bytes()).collect();
    // One index probe per script (a nested loop over the array): O(k log n) for k scripts
    // and n revealed, where `= ANY` may turn into a scan of the table as it grows.
    let rows = sqlx::query(&format!(
        "SELECT {SCRIPT_COLUMNS} FROM unnest($1::bytea[]) AS k(script)
         JOIN onchain_scripts ON script_pubkey = k.script"
    ))
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(ScriptRow::from_row)
        .collect::<Result<_, _>>()?)
}

pub(super) async fn append_changeset(
    conn: &mut PgConnection,
    wallet: OnchainWalletId,
    seq: i64,
    changeset: &ChangeSet,
) -> Result<(), WalletError> {
    let json = serde_json::to_value(changeset)
        .map_err(|e| WalletError::Corrupt(format!("changeset does not serialise: {e}")))?;
    sqlx::query!(
        "INSERT INTO onchain_wallet_changesets (wallet_id, seq, changeset) VALUES ($1, $2, $3)",
        wallet.as_uuid(),
        seq,
        json
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The highest changeset seq of the wallet (0 if none).
pub(super) async fn last_seq(
    conn: &mut PgConnection,
    wallet: OnchainWalletId,
) -> Result<i64, WalletError> {
    let seq: Option<i64> = sqlx::query_scalar!(
        "SELECT max(seq) FROM onchain_wallet_changesets WHERE wallet_id = $1",
        wallet.as_uuid()
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(seq.unwrap_or(0))
}

/// Every changeset of the wallet merged in order, and the last seq.
pub(super) async fn merged_changeset(
    conn: &mut PgConnection,
    wallet: OnchainWalletId,
) -> Result<(ChangeSet, i64), WalletError> {
    use bdk_wallet::chain::Merge as _;
    let rows = sqlx::query(
        "SELECT seq, changeset FROM onchain_wallet_changesets WHERE wallet_id = $1 ORDER BY seq",
    )
    .bind(wallet.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    let mut merged = ChangeSet::default();
    let mut last = 0;
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let value: serde_json::Value = row.try_get("changeset")?;
        let cs: ChangeSet = serde_json::from_value(value)
            .map_err(|e| WalletError::Corrupt(format!("changeset {seq} of {wallet}: {e}")))?;
        merged.merge(cs);
        last = seq;
    }
    Ok((merged, last))
}
