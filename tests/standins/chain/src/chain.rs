//! The active chain: blocks by height, the UTXO set, and the indexes Esplora's
//! API reads (transactions, spenders, script-hash histories). Blocks taken off
//! by an invalidation are kept as stale, so their status can still be asked.

use std::collections::HashMap;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::{Amount, Block, BlockHash, OutPoint, Script, Transaction, Txid};

use crate::block;
use crate::utxo::UtxoSet;

/// Esplora's script hash: SHA-256 of the script, shown in byte order.
pub fn script_hash(script: &Script) -> sha256::Hash {
    sha256::Hash::hash(script.as_bytes())
}

/// Where a confirmed transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Block height.
    pub height: u32,
    /// Position in the block.
    pub index: usize,
}

/// The active chain and its indexes.
#[derive(Debug)]
pub struct Chain {
    blocks: Vec<Block>,
    heights: HashMap<BlockHash, u32>,
    stale: HashMap<BlockHash, (u32, Block)>,
    utxos: UtxoSet,
    tx_index: HashMap<Txid, TxLocation>,
    fees: HashMap<Txid, Amount>,
    spenders: HashMap<OutPoint, (Txid, u32)>,
    history: HashMap<sha256::Hash, Vec<Txid>>,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// A chain holding only Bitcoin Core's regtest genesis block (whose
    /// output, as in Bitcoin Core, is not spendable).
    pub fn new() -> Self {
        let genesis = block::genesis();
        let mut chain = Self {
            blocks: Vec::new(),
            heights: HashMap::new(),
            stale: HashMap::new(),
            utxos: UtxoSet::default(),
            tx_index: HashMap::new(),
            fees: HashMap::new(),
            spenders: HashMap::new(),
            history: HashMap::new(),
        };
        let txid = genesis.txdata[0].compute_txid();
        chain.tx_index.insert(
            txid,
            TxLocation {
                height: 0,
                index: 0,
            },
        );
        chain.fees.insert(txid, Amount::ZERO);
        chain.heights.insert(genesis.block_hash(), 0);
        chain.blocks.push(genesis);
        chain
    }

    /// Height of the tip.
    pub fn tip_height(&self) -> u32 {
        u32::try_from(self.blocks.len() - 1).unwrap_or(u32::MAX)
    }

    /// The tip block.
    pub fn tip(&self) -> &Block {
        // The genesis block is never removed, so there is always a tip.
        &self.blocks[self.blocks.len() - 1]
    }

    /// The active block at `height`.
    pub fn block_at(&self, height: u32) -> Option<&Block> {
        self.blocks.get(usize::try_from(height).ok()?)
    }

    /// Height of an active block.
    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        self.heights.get(hash).copied()
    }

    /// A block taken off the active chain, and the height it had.
    pub fn stale(&self, hash: &BlockHash) -> Option<(u32, &Block)> {
        self.stale.get(hash).map(|(h, b)| (*h, b))
    }

    /// The unspent outputs of the active chain.
    pub fn utxos(&self) -> &UtxoSet {
        &self.utxos
    }

    /// Where a confirmed transaction is.
    pub fn locate(&self, txid: &Txid) -> Option<TxLocation> {
        self.tx_index.get(txid).copied()
    }

    /// A confirmed transaction.
    pub fn tx(&self, txid: &Txid) -> Option<&Transaction> {
        let at = self.locate(txid)?;
        self.block_at(at.height)?.txdata.get(at.index)
    }

    /// The fee a confirmed transaction paid (zero for a coinbase).
    pub fn fee(&self, txid: &Txid) -> Option<Amount> {
        self.fees.get(txid).copied()
    }

    /// The confirmed transaction and input that spent `outpoint`.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<(Txid, u32)> {
        self.spenders.get(outpoint).copied()
    }

    /// Confirmed transactions touching a script hash, oldest first.
    pub fn history(&self, script_hash: &sha256::Hash) -> &[Txid] {
        self.history.get(script_hash).map_or(&[], Vec::as_slice)
    }

    /// Bitcoin Core's median time past: the median of the last 11 block times
    /// up to and including `height`.
    pub fn median_time_past(&self, height: u32) -> u32 {
        let end = usize::try_from(height)
            .unwrap_or(usize::MAX)
            .min(self.blocks.len() - 1)
            + 1;
        let start = end.saturating_sub(11);
        let mut times: Vec<u32> = self.blocks[start..end]
            .iter()
            .map(|b| b.header.time)
            .collect();
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// Appends a block that was validated against this chain.
    pub fn connect(&mut self, block: Block) {
        let height = self.tip_height() + 1;
        for (index, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            let mut touched = Vec::new();
            let mut value_in = Amount::ZERO;
            if !tx.is_coinbase() {
                for (vin, input) in (0u32..).zip(&tx.input) {
                    self.spenders.insert(input.previous_output, (txid, vin));
                }
            }
            for coin in self.utxos.apply(tx, height) {
                value_in = value_in
                    .checked_add(coin.output.value)
                    .unwrap_or(Amount::MAX);
                touched.push(script_hash(&coin.output.script_pubkey));
            }
            let value_out = tx
                .output
                .iter()
                .try_fold(Amount::ZERO, |sum, o| sum.checked_add(o.value))
                .unwrap_or(Amount::MAX);
            let fee = if tx.is_coinbase() {
                Amount::ZERO
            } else {
                value_in.checked_sub(value_out).unwrap_or(Amount::ZERO)
            };
            self.fees.insert(txid, fee);
            touched.extend(tx.output.iter().map(|o| script_hash(&o.script_pubkey)));
            touched.sort_unstable();
            touched.dedup();
            for sh in touched {
                self.history.entry(sh).or_default().push(txid);
            }
            self.tx_index.insert(txid, TxLocation { height, index });
        }
        self.heights.insert(block.block_hash(), height);
        self.blocks.push(block);
    }

    /// Takes the last `n` blocks off (never the genesis block) and rebuilds
    /// the indexes from the blocks that remain. Returns the blocks removed,
    /// lowest first.
    pub fn disconnect(&mut self, n: u32) -> Vec<Block> {
        let keep = self
            .blocks
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX))
            .max(1);
        let removed: Vec<Block> = self.blocks.drain(keep..).collect();
        let remaining = std::mem::take(&mut self.blocks);
        let stale = std::mem::take(&mut self.stale);
        *self = Self::new();
        self.stale = stale;
        for block in remaining.into_iter().skip(1) {
            self.connect(block);
        }
        for (offset, block) in removed.iter().enumerate() {
            let height = u32::try_from(keep + offset).unwrap_or(u32::MAX);
            self.stale
                .insert(block.block_hash(), (height, block.clone()));
        }
        removed
    }
}
