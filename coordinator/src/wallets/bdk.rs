//! A bdk wallet loaded from its changesets in PostgreSQL, changed only under the wallet's row
//! lock, its changes appended in the same transaction.

use std::sync::Arc;

use bdk_wallet::bitcoin::{Amount, Transaction};
use bdk_wallet::chain::{BlockId, Merge as _};
use bdk_wallet::{ChangeSet, KeychainKind, Wallet};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Mutex;

use super::{OnchainWalletId, WalletError, WalletInfo, store};
use crate::chain::ChainBlock;

/// Confirmed and unconfirmed funds of a wallet, as bdk counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletBalance {
    /// Confirmed outputs (including immature coinbase, which the bank never receives).
    pub confirmed: Amount,
    /// Unconfirmed outputs.
    pub unconfirmed: Amount,
}

/// A bank wallet as a bdk wallet (watch-only).
///
/// Every change goes through [`OnchainWallet::update`]: it takes the wallet's row lock, reloads
/// the wallet if another instance appended changesets since, brings the revealed indexes up
/// to the address book's, applies the change and appends bdk's staged changeset, all in one
/// transaction.
#[derive(Debug)]
pub struct OnchainWallet {
    pool: PgPool,
    info: Arc<WalletInfo>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    wallet: Wallet,
    /// The last changeset this copy reflects; -1 when it must be reloaded.
    seq: i64,
}

impl OnchainWallet {
    pub(super) async fn open(
        pool: PgPool,
        info: Arc<WalletInfo>,
    ) -> Result<OnchainWallet, WalletError> {
        let mut conn = pool.acquire().await?;
        let (wallet, seq) = load(&mut conn, &info).await?;
        drop(conn);
        Ok(OnchainWallet {
            pool,
            info,
            inner: Mutex::new(Inner { wallet, seq }),
        })
    }

    /// The wallet's id.
    pub fn id(&self) -> OnchainWalletId {
        self.info.id
    }

    /// The wallet's registration.
    pub fn info(&self) -> &WalletInfo {
        &self.info
    }

    /// Applies a change to the wallet and persists it; see the type's documentation.
    ///
    /// # Errors
    /// [`WalletError::Db`], or `f`'s error (then nothing is written and the copy in memory
    /// is reloaded before the next change).
    pub async fn update<R>(
        &self,
        f: impl FnOnce(&mut Wallet) -> Result<R, WalletError>,
    ) -> Result<R, WalletError> {
        let mut inner = self.inner.lock().await;
        let mut tx = self.pool.begin().await?;
        let indexes = store::lock_wallet(&mut tx, self.info.id).await?;
        if store::last_seq(&mut tx, self.info.id).await? != inner.seq {
            let (wallet, seq) = load(&mut tx, &self.info).await?;
            *inner = Inner { wallet, seq };
        }
        reveal_to(&mut inner.wallet, indexes.next_receive, indexes.next_change);
        // From here the copy may differ from the store until COMMIT: reload if anything fails.
        let seq_before = inner.seq;
        inner.seq = -1;
        let result = f(&mut inner.wallet)?;
        let mut seq = seq_before;
        if let Some(staged) = inner.wallet.take_staged().filter(|c| !c.is_empty()) {
            seq += 1;
            store::append_changeset(&mut tx, self.info.id, seq, &staged).await?;
        }
        tx.commit().await?;
        inner.seq = seq;
        Ok(result)
    }

    /// Applies a block of the best chain (its relevant transactions and the block itself),
    /// connected to `connected_to` (the previous block). A block at a height the wallet
    /// knows with another hash replaces it and what was above it (a reorg).
    ///
    /// # Errors
    /// [`WalletError::Bdk`] if the block does not connect to the wallet's chain.
    pub async fn apply_block(
        &self,
        block: &ChainBlock,
        connected_to: BlockId,
    ) -> Result<(), WalletError> {
        let id = self.info.id;
        self.update(|w| {
            w.apply_block_connected_to(&block.block, block.height, connected_to)
                .map_err(|e| WalletError::Bdk {
                    wallet: id,
                    reason: e.to_string(),
                })
        })
        .await
    }

    /// Applies mempool transactions, each with the UNIX time it was last seen; irrelevant
    /// ones are ignored.
    ///
    /// # Errors
    /// [`WalletError::Db`].
    pub async fn apply_unconfirmed(
        &self,
        txs: Vec<(Arc<Transaction>, u64)>,
    ) -> Result<(), WalletError> {
        self.update(|w| {
            w.apply_unconfirmed_txs(txs);
            Ok(())
        })
        .await
    }

    /// The balance as bdk counts it.
    pub async fn balance(&self) -> WalletBalance {
        let inner = self.inner.lock().await;
        let b = inner.wallet.balance();
        WalletBalance {
            confirmed: b
                .confirmed
                .checked_add(b.immature)
                .unwrap_or(Amount::MAX_MONEY),
            unconfirmed: b
                .trusted_pending
                .checked_add(b.untrusted_pending)
                .unwrap_or(Amount::MAX_MONEY),
        }
    }

    /// The sum of the wallet's unspent outputs (confirmed or not): what the ledger's on-chain
    /// asset account is reconciled against.
    ///
    /// # Errors
    /// [`WalletError::Corrupt`] if the sum overflows the money supply.
    pub async fn utxo_total(&self) -> Result<Amount, WalletError> {
        let inner = self.inner.lock().await;
        inner
            .wallet
            .list_unspent()
            .try_fold(Amount::ZERO, |sum, u| sum.checked_add(u.txout.value))
            .ok_or_else(|| WalletError::Corrupt("utxo sum overflows".into()))
    }

    /// The wallet's latest block.
    pub async fn tip(&self) -> BlockId {
        self.inner
            .lock()
            .await
            .wallet
            .latest_checkpoint()
            .block_id()
    }

    /// Reads the bdk wallet (for building transactions later, or reports).
    pub async fn read<R>(&self, f: impl FnOnce(&Wallet) -> R) -> R {
        f(&self.inner.lock().await.wallet)
    }
}

/// Makes bdk know every index the address book has handed out.
fn reveal_to(wallet: &mut Wallet, next_receive: u32, next_change: u32) {
    for (keychain, next) in [
        (KeychainKind::External, next_receive),
        (KeychainKind::Internal, next_change),
    ] {
        if let Some(last) = next.checked_sub(1)
            && wallet.derivation_index(keychain).is_none_or(|i| i < last)
        {
            let _ = wallet.reveal_addresses_to(keychain, last).count();
        }
    }
}

async fn load(conn: &mut PgConnection, info: &WalletInfo) -> Result<(Wallet, i64), WalletError> {
    let (changeset, seq): (ChangeSet, i64) = store::merged_changeset(conn, info.id).await?;
    let bdk_error = |reason: String| WalletError::Bdk {
        wallet: info.id,
        reason,
    };
    let wallet = Wallet::load()
        .descriptor(
            KeychainKind::External,
            Some(info.policy.descriptors.receive.to_string()),
        )
        .descriptor(
            KeychainKind::Internal,
            Some(info.policy.descriptors.change.to_string()),
        )
        .check_network(info.policy.network)
        .use_spk_cache(true)
        .load_wallet_no_persist(changeset)
        .map_err(|e| bdk_error(e.to_string()))?
        .ok_or_else(|| bdk_error("no stored changeset".into()))?;
    Ok((wallet, seq))
}
