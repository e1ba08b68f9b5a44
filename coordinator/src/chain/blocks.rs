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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use bdk_wallet::bitcoin::block::{Header, Version};
    use bdk_wallet::bitcoin::hashes::Hash as _;
    use bdk_wallet::bitcoin::{CompactTarget, TxMerkleNode};

    use super::*;

    /// A chain in memory: the best chain by height, and every block ever made by hash.
    #[derive(Default)]
    struct Chain {
        best: Mutex<Vec<Block>>,
        all: Mutex<HashMap<BlockHash, Block>>,
    }

    impl Chain {
        fn block(prev: BlockHash, salt: u32) -> Block {
            Block {
                header: Header {
                    version: Version::TWO,
                    prev_blockhash: prev,
                    merkle_root: TxMerkleNode::all_zeros(),
                    time: salt,
                    bits: CompactTarget::from_consensus(0x207f_ffff),
                    nonce: 0,
                },
                txdata: Vec::new(),
            }
        }

        fn new(len: u32) -> Chain {
            let chain = Chain::default();
            chain.extend(len, 0);
            chain
        }

        /// Adds `n` blocks; `salt` makes them differ from other branches.
        fn extend(&self, n: u32, salt: u32) {
            let mut best = self.best.lock().unwrap();
            for i in 0..n {
                let prev = best
                    .last()
                    .map_or(BlockHash::all_zeros(), Block::block_hash);
                let b = Chain::block(prev, salt * 1000 + i + 1);
                self.all.lock().unwrap().insert(b.block_hash(), b.clone());
                best.push(b);
            }
        }

        fn truncate(&self, len: usize) {
            self.best.lock().unwrap().truncate(len);
        }

        fn id(&self, height: u32) -> BlockId {
            let best = self.best.lock().unwrap();
            BlockId {
                height,
                hash: best[height as usize].block_hash(),
            }
        }
    }

    #[async_trait]
    impl BlockReader for Chain {
        async fn tip(&self) -> Result<BlockId, ChainError> {
            let height = u32::try_from(self.best.lock().unwrap().len() - 1).unwrap();
            Ok(self.id(height))
        }
        async fn hash_at(&self, height: u32) -> Result<Option<BlockHash>, ChainError> {
            Ok(self
                .best
                .lock()
                .unwrap()
                .get(height as usize)
                .map(Block::block_hash))
        }
        async fn block(&self, hash: BlockHash) -> Result<Option<Block>, ChainError> {
            Ok(self.all.lock().unwrap().get(&hash).cloned())
        }
        fn source_name(&self) -> &'static str {
            "memory"
        }
    }

    fn heights(batch: &BlockBatch) -> Vec<u32> {
        batch.connected.iter().map(|b| b.height).collect()
    }

    #[tokio::test]
    async fn from_a_start_height_in_batches() {
        let chain = Chain::new(10); // heights 0..=9
        let batch = blocks_since(&chain, &BlockLocator::from_height(3), 4)
            .await
            .unwrap();
        assert_eq!(heights(&batch), vec![3, 4, 5, 6]);
        assert!(batch.disconnected.is_empty());
        assert_eq!(batch.tip, chain.id(9));
        let next = BlockLocator {
            known: batch.connected.iter().map(ChainBlock::id).collect(),
            start_height: 3,
        };
        let batch = blocks_since(&chain, &next, 100).await.unwrap();
        assert_eq!(heights(&batch), vec![7, 8, 9]);
        assert_eq!(batch.connected[0].prev_hash(), chain.id(6).hash);
    }

    #[tokio::test]
    async fn a_reorg_disconnects_the_replaced_blocks() {
        let chain = Chain::new(8);
        let known: Vec<BlockId> = (4..8).map(|h| chain.id(h)).collect();
        chain.truncate(6); // heights 6 and 7 invalidated
        chain.extend(3, 7); // a longer branch from 5
        let batch = blocks_since(
            &chain,
            &BlockLocator {
                known: known.clone(),
                start_height: 0,
            },
            10,
        )
        .await
        .unwrap();
        assert_eq!(
            batch.disconnected,
            vec![known[3], known[2]],
            "highest first"
        );
        assert_eq!(heights(&batch), vec![6, 7, 8]);
        assert_eq!(batch.connected[0].prev_hash(), known[1].hash);
    }

    #[tokio::test]
    async fn a_shorter_chain_only_disconnects() {
        let chain = Chain::new(8);
        let known: Vec<BlockId> = (5..8).map(|h| chain.id(h)).collect();
        chain.truncate(6);
        let batch = blocks_since(
            &chain,
            &BlockLocator {
                known: known.clone(),
                start_height: 0,
            },
            10,
        )
        .await
        .unwrap();
        assert_eq!(batch.disconnected, vec![known[2], known[1]]);
        assert!(batch.connected.is_empty());
        assert_eq!(batch.tip, known[0]);
    }

    #[tokio::test]
    async fn a_reorg_below_every_known_block_is_an_error() {
        let chain = Chain::new(5);
        let known: Vec<BlockId> = (3..5).map(|h| chain.id(h)).collect();
        chain.truncate(2);
        chain.extend(4, 9);
        let r = blocks_since(
            &chain,
            &BlockLocator {
                known,
                start_height: 0,
            },
            10,
        )
        .await;
        assert_eq!(
            r.unwrap_err(),
            ChainError::ReorgBeyondLocator { lowest_known: 3 }
        );
    }
}
