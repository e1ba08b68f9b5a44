//! The node: the active chain, the mempool, fee estimates and the stand-in's
//! own wallet, with the operations the HTTP faces call. Every mutation is
//! logged under the `regtest_standin` target.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::{
    Amount, BlockHash, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness, absolute, transaction,
};

use crate::block::{self, COINBASE_MATURITY, Template};
use crate::chain::Chain;
use crate::mempool::{Entry, Mempool};
use crate::validation::{self, Reject};
use crate::wallet::Wallet;

/// Weight left for transactions in a block (4M minus room for the coinbase).
const MAX_BLOCK_TX_WEIGHT: u64 = 4_000_000 - 4_000;
/// Fee rate of the stand-in's own funding transactions, in sat/vB.
const FUND_FEE_SAT_PER_VB: u64 = 2;

/// What went wrong in a node operation.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The transaction was refused by the mempool rules.
    #[error("transaction refused: {0}")]
    Rejected(#[from] Reject),
    /// The stand-in's wallet holds too few matured coins.
    #[error(
        "the stand-in wallet has {available} spendable, {needed} needed (coinbase matures after 100 blocks: mine more)"
    )]
    InsufficientFunds {
        /// Spendable now.
        available: Amount,
        /// Amount plus fee.
        needed: Amount,
    },
    /// A request the node cannot carry out.
    #[error("{0}")]
    Invalid(String),
}

/// The result of taking blocks off the tip.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Invalidated {
    /// Hashes of the blocks removed, highest first.
    pub removed: Vec<BlockHash>,
    /// Their transactions (and earlier mempool ones) that are back in the mempool.
    pub returned_to_mempool: Vec<Txid>,
    /// Transactions that no longer fit the chain (for example spending a
    /// removed coinbase) and were dropped.
    pub dropped: Vec<Txid>,
}

/// The stand-in node.
#[derive(Debug)]
pub struct Node {
    chain: Chain,
    mempool: Mempool,
    /// Fee estimates by confirmation target, in sat/kvB (integers, as Bitcoin
    /// Core's `CFeeRate`; floats appear only in the API's JSON).
    fee_estimates: BTreeMap<u16, u64>,
    wallet: Wallet,
    /// Blocks this process has mined (the coinbase's extra nonce).
    mined: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Node {
    /// A node with only the regtest genesis block, whose wallet key comes from `seed`.
    ///
    /// # Errors
    /// If the seed gives no valid key.
    pub fn new(seed: &str) -> Result<Self, NodeError> {
        let wallet =
            Wallet::from_seed(seed).map_err(|e| NodeError::Invalid(format!("wallet seed: {e}")))?;
        // Every target at the minimum relay fee until a test sets others.
        let fee_estimates = [1u16, 2, 3, 6, 12, 25, 144, 504, 1008]
            .into_iter()
            .map(|t| (t, 1_000))
            .collect();
        Ok(Self {
            chain: Chain::new(),
            mempool: Mempool::default(),
            fee_estimates,
            wallet,
            mined: 0,
        })
    }

    /// The active chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// The stand-in's wallet.
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// Fee estimates by target, sat/kvB.
    pub fn fee_estimates(&self) -> &BTreeMap<u16, u64> {
        &self.fee_estimates
    }

    /// Replaces the fee estimates.
    ///
    /// # Errors
    /// An empty table or a target outside 1..=1008.
    pub fn set_fee_estimates(&mut self, estimates: BTreeMap<u16, u64>) -> Result<(), NodeError> {
        if estimates.is_empty() || estimates.keys().any(|t| !(1..=1008).contains(t)) {
            return Err(NodeError::Invalid(
                "fee estimates need at least one target, each between 1 and 1008".into(),
            ));
        }
        tracing::info!(target: "regtest_standin", ?estimates, "fee estimates set (sat/kvB)");
        self.fee_estimates = estimates;
        Ok(())
    }

    /// The estimate for confirming within `target` blocks: the one set for the
    /// nearest target at or above it, else the largest target's.
    pub fn fee_estimate(&self, target: u16) -> Option<(u16, u64)> {
        self.fee_estimates
            .range(target..)
            .next()
            .or_else(|| self.fee_estimates.iter().next_back())
            .map(|(t, r)| (*t, *r))
    }

    /// Checks `tx` and adds it to the mempool. A transaction already in the
    /// mempool is accepted again without change (as `sendrawtransaction`).
    ///
    /// # Errors
    /// Bitcoin Core's reason for refusing it.
    pub fn submit(&mut self, tx: Transaction) -> Result<Txid, Reject> {
        let txid = tx.compute_txid();
        if self.mempool.contains(&txid) {
            return Ok(txid);
        }
        match validation::check(&tx, &self.chain, &self.mempool) {
            Ok(accepted) => {
                tracing::info!(target: "regtest_standin", %txid, fee = accepted.fee.to_sat(), "transaction accepted to the mempool");
                self.mempool.insert(
                    txid,
                    Entry {
                        tx,
                        fee: accepted.fee,
                        time: now(),
                        height: self.chain.tip_height(),
                    },
                );
                Ok(txid)
            }
            Err(reject) => {
                tracing::info!(target: "regtest_standin", %txid, %reject, "transaction refused");
                Err(reject)
            }
        }
    }

    /// Mines `n` blocks paying `payout` (the stand-in's wallet when `None`),
    /// each taking mempool transactions in acceptance order up to the block
    /// weight limit.
    ///
    /// # Errors
    /// Only if a block cannot be assembled (fees overflow).
    pub fn mine(&mut self, n: u32, payout: Option<ScriptBuf>) -> Result<Vec<BlockHash>, NodeError> {
        let payout = payout.unwrap_or_else(|| self.wallet.script_pubkey());
        let mut hashes = Vec::new();
        for _ in 0..n {
            let mut weight = 0u64;
            let mut fees = Amount::ZERO;
            let mut txs = Vec::new();
            for (_, entry) in self.mempool.iter() {
                weight += entry.tx.weight().to_wu();
                if weight > MAX_BLOCK_TX_WEIGHT {
                    break;
                }
                fees = fees
                    .checked_add(entry.fee)
                    .ok_or_else(|| NodeError::Invalid("fees overflow".into()))?;
                txs.push(entry.tx.clone());
            }
            let prev = self.chain.tip().header;
            let time = u32::try_from(now()).unwrap_or(u32::MAX).max(prev.time + 1);
            let height = self.chain.tip_height() + 1;
            let block = block::assemble(Template {
                prev: &prev,
                height,
                time,
                payout: payout.clone(),
                fees,
                txs,
                extra_nonce: self.mined,
            })
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
            self.mined += 1;
            let hash = block.block_hash();
            for tx in block.txdata.iter().skip(1) {
                self.mempool.remove(&tx.compute_txid());
            }
            tracing::info!(target: "regtest_standin", height, %hash, txs = block.txdata.len(), "block mined");
            self.chain.connect(block);
            hashes.push(hash);
        }
        Ok(hashes)
    }

    /// Pays `amount` to `script_pubkey` from the stand-in's matured coins (and
    /// its own unconfirmed change), with a signed transaction that goes
    /// through the same mempool checks as any other. Mines nothing.
    ///
    /// # Errors
    /// Too few matured coins, or the transaction refused (a dust amount).
    pub fn fund(
        &mut self,
        script_pubkey: ScriptBuf,
        amount: Amount,
    ) -> Result<OutPoint, NodeError> {
        let txid = self.fund_many(vec![(script_pubkey, amount)])?;
        Ok(OutPoint::new(txid, 0))
    }

    /// Pays several outputs in one transaction (output `i` pays `payees[i]`),
    /// as [`Self::fund`] does for one.
    ///
    /// # Errors
    /// No payee, too few matured coins, or the transaction refused.
    pub fn fund_many(&mut self, payees: Vec<(ScriptBuf, Amount)>) -> Result<Txid, NodeError> {
        if payees.is_empty() {
            return Err(NodeError::Invalid("fund needs at least one output".into()));
        }
        let amount = payees
            .iter()
            .try_fold(Amount::ZERO, |s, p| s.checked_add(p.1))
            .ok_or_else(|| NodeError::Invalid("amounts overflow".into()))?;
        let outputs_count = payees.len() + 1;
        let own = self.wallet.script_pubkey();
        let spend_height = self.chain.tip_height() + 1;
        let mut coins: Vec<(OutPoint, Amount)> = self
            .chain
            .utxos()
            .iter()
            .filter(|(op, coin)| {
                coin.output.script_pubkey == own
                    && self.mempool.spender(op).is_none()
                    && (!coin.is_coinbase || spend_height - coin.height >= COINBASE_MATURITY)
            })
            .map(|(op, coin)| (*op, coin.output.value))
            .collect();
        for (txid, entry) in self.mempool.iter() {
            for (vout, out) in (0u32..).zip(&entry.tx.output) {
                let op = OutPoint::new(*txid, vout);
                if out.script_pubkey == own && self.mempool.spender(&op).is_none() {
                    coins.push((op, out.value));
                }
            }
        }
        // Largest first, outpoint as tie-break so the choice is deterministic.
        coins.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let available = coins
            .iter()
            .try_fold(Amount::ZERO, |s, c| s.checked_add(c.1))
            .unwrap_or(Amount::MAX);
        let mut selected = Vec::new();
        let mut total = Amount::ZERO;
        let mut fee = Amount::ZERO;
        for coin in coins {
            selected.push(coin);
            total = total.checked_add(coin.1).unwrap_or(Amount::MAX);
            fee = fund_fee(selected.len(), outputs_count);
            if total >= amount.checked_add(fee).unwrap_or(Amount::MAX) {
                break;
            }
        }
        let needed = amount.checked_add(fee).unwrap_or(Amount::MAX);
        if selected.is_empty() || total < needed {
            return Err(NodeError::InsufficientFunds {
                available,
                needed: amount
                    .checked_add(fund_fee(1, outputs_count))
                    .unwrap_or(Amount::MAX),
            });
        }
        let mut outputs: Vec<TxOut> = payees
            .into_iter()
            .map(|(script_pubkey, value)| TxOut {
                value,
                script_pubkey,
            })
            .collect();
        let change = total.checked_sub(needed).unwrap_or(Amount::ZERO);
        if change >= own.minimal_non_dust() {
            outputs.push(TxOut {
                value: change,
                script_pubkey: own,
            });
        }
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: selected
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        let values: Vec<Amount> = selected.iter().map(|c| c.1).collect();
        self.wallet
            .sign(&mut tx, &values)
            .map_err(NodeError::Invalid)?;
        let txid = self.submit(tx)?;
        tracing::info!(target: "regtest_standin", %txid, amount = amount.to_sat(), "funded from the stand-in wallet");
        Ok(txid)
    }

    /// Takes the last `n` blocks off the chain. Their non-coinbase
    /// transactions, then the former mempool, are checked again against the
    /// shorter chain and return to the mempool where still valid. The next
    /// `mine` builds the new branch.
    ///
    /// # Errors
    /// If `n` would remove the genesis block.
    pub fn invalidate(&mut self, n: u32) -> Result<Invalidated, NodeError> {
        if n > self.chain.tip_height() {
            return Err(NodeError::Invalid(format!(
                "cannot invalidate {n} blocks: the tip is at height {} and the genesis block stays",
                self.chain.tip_height()
            )));
        }
        let removed = self.chain.disconnect(n);
        let former_mempool = self.mempool.drain();
        let candidates: Vec<Transaction> = removed
            .iter()
            .flat_map(|b| b.txdata.iter().skip(1).cloned())
            .chain(former_mempool)
            .collect();
        let mut returned = Vec::new();
        let mut dropped = Vec::new();
        for tx in candidates {
            let txid = tx.compute_txid();
            match self.submit(tx) {
                Ok(_) => returned.push(txid),
                Err(_) => dropped.push(txid),
            }
        }
        let removed: Vec<BlockHash> = removed.iter().rev().map(|b| b.block_hash()).collect();
        tracing::info!(
            target: "regtest_standin",
            blocks = n,
            tip = self.chain.tip_height(),
            returned = returned.len(),
            dropped = dropped.len(),
            "blocks invalidated"
        );
        Ok(Invalidated {
            removed,
            returned_to_mempool: returned,
            dropped,
        })
    }

    /// A transaction from the chain or the mempool.
    pub fn tx(&self, txid: &Txid) -> Option<&Transaction> {
        self.chain
            .tx(txid)
            .or_else(|| self.mempool.get(txid).map(|e| &e.tx))
    }

    /// The output at `outpoint`, spent or not, if its transaction is known.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.tx(&outpoint.txid)?
            .output
            .get(usize::try_from(outpoint.vout).ok()?)
    }

    /// The fee `txid` paid, confirmed or not.
    pub fn fee(&self, txid: &Txid) -> Option<Amount> {
        self.chain
            .fee(txid)
            .or_else(|| self.mempool.get(txid).map(|e| e.fee))
    }

    /// Where a transaction is confirmed: height, block hash, block time.
    pub fn confirmation(&self, txid: &Txid) -> Option<(u32, BlockHash, u32)> {
        let at = self.chain.locate(txid)?;
        let block = self.chain.block_at(at.height)?;
        Some((at.height, block.block_hash(), block.header.time))
    }

    /// Who spends `outpoint`: the chain's spender first, then the mempool's.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<(Txid, u32)> {
        self.chain
            .spender(outpoint)
            .or_else(|| self.mempool.spender(outpoint))
    }

    /// The fee rate for `target` blocks.
    pub fn fee_rate(&self, target: u16) -> Option<FeeRate> {
        self.fee_estimate(target)
            .map(|(_, sat_per_kvb)| FeeRate::from_sat_per_kwu(sat_per_kvb / 4))
    }
}

/// Fee of a funding transaction with `inputs` P2WPKH inputs and `outputs`
/// outputs (sizes rounded up: 11 vB overhead, 68 vB an input, 43 vB an output).
fn fund_fee(inputs: usize, outputs: usize) -> Amount {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX / 1000);
    let vsize = 11 + 68 * count(inputs) + 43 * count(outputs);
    Amount::from_sat(vsize * FUND_FEE_SAT_PER_VB)
}

/// The node shared by the HTTP faces. Handlers hold the lock only for the
/// work of one request (mining grinds a handful of nonces at regtest difficulty).
pub type SharedNode = std::sync::Arc<std::sync::Mutex<Node>>;

/// Locks the node; a handler that panicked leaves the state consistent
/// enough for a test tool, so a poisoned lock is taken over.
pub fn lock(node: &SharedNode) -> std::sync::MutexGuard<'_, Node> {
    node.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
