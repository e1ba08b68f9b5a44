//! Finding new blocks and reorgs, the same way for every backend: compare the hash at each
//! known height with the best chain's, then walk up from the highest block still in it.

use std::sync::Arc;

use async_trait::async_trait;
use bdk_wallet::bitcoin::{Block, BlockHash};

use super::{BlockBatch, BlockId, BlockLocator, ChainBlock, ChainError};

/// The three reads the walk needs; each adapter implements them with its own retries.
#[async_trait]
pub(crate) trait BlockReader: Send + Sync {
    /// The best chain's tip.
    async fn tip(&self) -> Result<BlockId, ChainError>;
    /// The hash of the best chain's block at `height`, `None` above the tip.
    async fn hash_at(&self, height: u32) -> Result<Option<BlockHash>, ChainError>;
    /// A block by hash, `None` if the backend does not have it.
    async fn block(&self, hash: BlockHash) -> Result<Option<Block>, ChainError>;
    /// For [`ChainError::InvalidResponse`].
    fn source_name(&self) -> &'static str;
}

/// See [`super::ChainSource::blocks_since`].
pub(crate) async fn blocks_since<R: BlockReader + ?Sized>(
    reader: &R,
    locator: &BlockLocator,
    max_blocks: usize,
) -> Result<BlockBatch, ChainError> {
    let tip = reader.tip().await?;

    let mut known = locator.known.clone();
    known.sort_by_key(|b| std::cmp::Reverse(b.height));
    known.dedup_by_key(|b| b.height);
    let mut disconnected = Vec::new();
    let mut base = None;
    for block in known {
        if block.height <= tip.height && reader.hash_at(block.height).await? == Some(block.hash) {
            base = Some(block);
            break;
        }
        disconnected.push(block);
    }
    if let (None, Some(lowest)) = (base, disconnected.last()) {
        return Err(ChainError::ReorgBeyondLocator {
            lowest_known: lowest.height,
        });
    }

    let mut connected: Vec<ChainBlock> = Vec::new();
    let mut prev = base.map(|b| b.hash);
    let mut height = base.map_or(locator.start_height, |b| b.height.saturating_add(1));
    while height <= tip.height && connected.len() < max_blocks {
        let Some(hash) = reader.hash_at(height).await? else {
            break; // the chain got shorter since the tip was read
        };
        let Some(block) = reader.block(hash).await? else {
            break; // reorged away between the two reads
        };
        if block.block_hash() != hash {
            return Err(ChainError::InvalidResponse {
                source_name: reader.source_name(),
                reason: format!("asked for block {hash}, got {}", block.block_hash()),
            });
        }
        if prev.is_some_and(|p| p != block.header.prev_blockhash) {
            // The chain changed under the walk: stop at a consistent batch; the next call
            // finds the reorg from the blocks given so far.
            break;
        }
        prev = Some(hash);
        connected.push(ChainBlock {
            height,
            block: Arc::new(block),
        });
        height = height.saturating_add(1);
    }

    Ok(BlockBatch {
        disconnected,
        connected,
        tip,
    })
}
