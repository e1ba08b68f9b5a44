//! The chain: what the coordinator needs to know of the Bitcoin network, behind a trait it owns.
//!
//! [`ChainSource`] is block-based: callers ask for the full blocks after the blocks they have
//! already processed (a [`BlockLocator`]) and scan them against their own index of scripts,
//! rather than asking the source about every address. Two production adapters implement it:
//! [`esplora::EsploraSource`] (Esplora's HTTP API) and [`bitcoind::BitcoindSource`] (Bitcoin
//! Core's JSON-RPC). Both put a timeout on every call, retry only idempotent calls with
//! exponential backoff, and keep a [`ChainHealth`]. A source that is down answers
//! [`ChainError::Unavailable`]; callers wait and ask again, they never stop.

pub mod bitcoind;
mod blocks;
mod call;
pub mod config;
mod error;
pub mod esplora;
mod health;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bdk_wallet::bitcoin::{Block, BlockHash, FeeRate, Transaction, Txid};

pub use bdk_wallet::chain::BlockId;
pub use call::CallPolicy;
pub use config::{BitcoindAuth, ChainSourceConfig, connect};
pub use error::ChainError;
pub use health::ChainHealth;

/// A full block and its height in the chain it was fetched from.
#[derive(Debug, Clone)]
pub struct ChainBlock {
    /// Height of the block.
    pub height: u32,
    /// The block (header and every transaction).
    pub block: Arc<Block>,
}

impl ChainBlock {
    /// Height and hash.
    pub fn id(&self) -> BlockId {
        BlockId {
            height: self.height,
            hash: self.block.block_hash(),
        }
    }

    /// The hash of the block before this one.
    pub fn prev_hash(&self) -> BlockHash {
        self.block.header.prev_blockhash
    }
}

/// Where a caller stands: the blocks it has processed, to find new blocks and reorgs from.
///
/// `known` holds the caller's most recent processed blocks (any order; keeping the last 100
/// or so covers any reorg seen in practice). With no known block the source starts at
/// `start_height` (a wallet's birth height).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockLocator {
    /// Blocks the caller has processed.
    pub known: Vec<BlockId>,
    /// First height to fetch when `known` is empty.
    pub start_height: u32,
}

impl BlockLocator {
    /// A locator for a caller that has processed nothing yet.
    pub fn from_height(start_height: u32) -> BlockLocator {
        BlockLocator {
            known: Vec::new(),
            start_height,
        }
    }
}

/// What changed since a [`BlockLocator`].
#[derive(Debug, Clone)]
pub struct BlockBatch {
    /// Known blocks that are no longer in the best chain, highest first. The caller undoes
    /// what it did for them before applying `connected`.
    pub disconnected: Vec<BlockId>,
    /// New blocks of the best chain in ascending height; the first one's parent is the
    /// highest known block still in the best chain. At most the `max_blocks` asked for:
    /// the caller asks again while `connected`'s last block is below `tip`.
    pub connected: Vec<ChainBlock>,
    /// The best chain's tip when the batch was fetched.
    pub tip: BlockId,
}

/// Where a transaction stands, as the source sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// Neither in the mempool nor in the best chain (never seen, evicted, or reorged out).
    Unknown,
    /// In the mempool.
    Mempool,
    /// In a block of the best chain.
    Confirmed {
        /// The block.
        block: BlockId,
    },
}

/// Fee rate estimates by confirmation target in blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeEstimates(pub BTreeMap<u16, FeeRate>);

impl FeeEstimates {
    /// The estimate for the smallest target at or above `target` (a slower target is never
    /// given a faster, dearer rate by accident), or the slowest known one.
    pub fn for_target(&self, target: u16) -> Option<FeeRate> {
        self.0
            .range(target..)
            .next()
            .or_else(|| self.0.iter().next_back())
            .map(|(_, rate)| *rate)
    }
}

/// The mempool as seen by [`ChainSource::mempool_since`].
#[derive(Debug, Clone, Default)]
pub struct MempoolSnapshot {
    /// Every txid in the mempool now.
    pub txids: HashSet<Txid>,
    /// The transactions of `txids` that were not in the `seen` set passed in (those that
    /// left the mempool between listing and fetching are left out).
    pub new: Vec<Arc<Transaction>>,
}

/// A view of the Bitcoin network: the coordinator's only way to read the chain and to
/// broadcast.
///
/// Every method may fail with [`ChainError::Unavailable`] when the backend cannot be reached
/// (after the adapter's retries): the caller keeps its state and asks again later.
#[async_trait]
pub trait ChainSource: Send + Sync + std::fmt::Debug {
    /// The best chain's tip.
    ///
    /// Idempotent (a read); retried.
    ///
    /// # Errors
    /// [`ChainError::Unavailable`], [`ChainError::InvalidResponse`].
    async fn tip(&self) -> Result<BlockId, ChainError>;

    /// Blocks disconnected and connected since `locator`, at most `max_blocks` new blocks.
    ///
    /// Reorgs are found by comparing the hash at each known height with the best chain's;
    /// the batch is consistent (each connected block's parent is the previous one). If the
    /// chain changes while the batch is fetched, the batch ends early and the next call sees
    /// the change.
    ///
    /// Idempotent (a read); retried.
    ///
    /// # Errors
    /// [`ChainError::ReorgBeyondLocator`] if no known block is in the best chain any more;
    /// [`ChainError::Unavailable`], [`ChainError::InvalidResponse`].
    async fn blocks_since(
        &self,
        locator: &BlockLocator,
        max_blocks: usize,
    ) -> Result<BlockBatch, ChainError>;

    /// The txids in the mempool now.
    ///
    /// Idempotent (a read); retried.
    ///
    /// # Errors
    /// [`ChainError::Unavailable`], [`ChainError::InvalidResponse`].
    async fn mempool_txids(&self) -> Result<Vec<Txid>, ChainError>;

    /// A transaction by txid, from the mempool or (where the backend can: Esplora always,
    /// Bitcoin Core with `-txindex`) from the chain. `None` if the backend does not know it.
    ///
    /// Idempotent (a read); retried.
    ///
    /// # Errors
    /// [`ChainError::Unavailable`], [`ChainError::InvalidResponse`].
    async fn transaction(&self, txid: Txid) -> Result<Option<Arc<Transaction>>, ChainError>;

    /// Whether a transaction is unknown, in the mempool or confirmed.
    ///
    /// Idempotent (a read); retried. Bitcoin Core finds confirmed transactions only with
    /// `-txindex`; without it a confirmed transaction is [`TxStatus::Unknown`].
    ///
    /// # Errors
    /// [`ChainError::Unavailable`], [`ChainError::InvalidResponse`].
    async fn tx_status(&self, txid: Txid) -> Result<TxStatus, ChainError>;

    /// Sends a transaction to the network and returns its txid.
    ///
    /// Idempotent: the same transaction again is not an error (a node that already has it in
    /// its mempool or chain answers success), so it is retried on transport failures.
    ///
    /// # Errors
    /// [`ChainError::Rejected`] with the node's reason (missing inputs, already spent, script
    /// verification failed, non-final, dust...): retrying does not help.
    /// [`ChainError::Unavailable`] if the node could not be reached; the transaction may or
    /// may not have been received.
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError>;

    /// Fee rate estimates by confirmation target.
    ///
    /// Idempotent (a read); retried.
    ///
    /// # Errors
    /// [`ChainError::Unavailable`], [`ChainError::InvalidResponse`].
    async fn fee_estimates(&self) -> Result<FeeEstimates, ChainError>;

    /// Health of the source as its calls found it: last success, last error, consecutive
    /// failures. Makes no call.
    fn health(&self) -> ChainHealth;

    /// The mempool, with the transactions not in `seen` fetched.
    ///
    /// Idempotent (reads); each inner call is retried. A transaction that leaves the mempool
    /// between listing and fetching is left out of `new`.
    ///
    /// # Errors
    /// As [`ChainSource::mempool_txids`] and [`ChainSource::transaction`].
    async fn mempool_since(&self, seen: &HashSet<Txid>) -> Result<MempoolSnapshot, ChainError> {
        let txids: HashSet<Txid> = self.mempool_txids().await?.into_iter().collect();
        let mut new = Vec::new();
        for txid in txids.iter().filter(|t| !seen.contains(*t)) {
            if let Some(tx) = self.transaction(*txid).await? {
                new.push(tx);
            }
        }
        Ok(MempoolSnapshot { txids, new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_target_falls_back_to_slower_then_slowest() {
        let rate = FeeRate::from_sat_per_vb_u32;
        let e = FeeEstimates([(1, rate(20)), (6, rate(5)), (144, rate(1))].into());
        assert_eq!(e.for_target(1), Some(rate(20)));
        assert_eq!(e.for_target(2), Some(rate(5)));
        assert_eq!(e.for_target(6), Some(rate(5)));
        assert_eq!(e.for_target(1000), Some(rate(1)));
        assert_eq!(FeeEstimates::default().for_target(3), None);
    }
}
