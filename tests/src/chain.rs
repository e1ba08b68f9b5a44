//! A stand-in for a regtest chain, just enough for custody tests: it makes
//! funding transactions, confirms them in a bdk wallet at chosen heights, and
//! checks spends with Bitcoin Core's script interpreter (`bitcoinconsensus`).
//!
//! It is not a node: there is no proof of work and no mempool. What it does
//! enforce is the part the signer is responsible for: that a finalized
//! transaction's scripts and signatures verify against the outputs it spends.

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{
    Amount, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
    absolute, transaction,
};

/// Every output the stand-in chain has created, for verifying spends.
#[derive(Debug, Default, Clone)]
pub struct Utxos {
    outputs: HashMap<OutPoint, TxOut>,
    confirmed_at: HashMap<Txid, u32>,
    spent: HashSet<OutPoint>,
    funding_count: u64,
}

impl Utxos {
    /// A transaction paying `value` to `script_pubkey`, spending a unique
    /// made-up outpoint (a real transaction needs at least one input, and a
    /// zero-input one would not even survive a PSBT round trip).
    pub fn funding_tx(&mut self, script_pubkey: ScriptBuf, value: Amount) -> Transaction {
        self.funding_count += 1;
        let seed = format!("stand-in funding source {}", self.funding_count);
        let source = Txid::from_raw_hash(sha256d::Hash::hash(seed.as_bytes()));
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(source, 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value,
                script_pubkey,
            }],
        };
        self.record(&tx);
        tx
    }

    /// Remembers the outputs of `tx`.
    pub fn record(&mut self, tx: &Transaction) {
        let txid = tx.compute_txid();
        for (vout, out) in tx.output.iter().enumerate() {
            let vout = u32::try_from(vout).expect("a transaction has fewer than 2^32 outputs");
            self.outputs.insert(OutPoint::new(txid, vout), out.clone());
        }
    }

    /// The output at `outpoint`, if the stand-in created it.
    pub fn get(&self, outpoint: &OutPoint) -> Option<TxOut> {
        self.outputs.get(outpoint).cloned()
    }

    /// Records that `txid` was confirmed in the block at `height`.
    pub fn confirm(&mut self, txid: Txid, height: u32) {
        self.confirmed_at.insert(txid, height);
    }

    /// Accepts `tx` into a block at `height` the way a node would as far as
    /// the custody path is concerned: every input spends a known, confirmed,
    /// unspent output; the outputs do not exceed the inputs; BIP68 relative
    /// height locks are met; and every script verifies with
    /// libbitcoinconsensus. On success the inputs are marked spent and the
    /// outputs recorded as confirmed at `height`.
    ///
    /// # Errors
    /// The first rule `tx` breaks.
    pub fn accept(&mut self, tx: &Transaction, height: u32) -> Result<(), String> {
        let mut total_in = Amount::ZERO;
        for (i, input) in tx.input.iter().enumerate() {
            let prevout = &input.previous_output;
            let spent = self
                .get(prevout)
                .ok_or_else(|| format!("input {i}: unknown output {prevout}"))?;
            if self.spent.contains(prevout) {
                return Err(format!("input {i}: {prevout} is already spent"));
            }
            let confirmed = *self
                .confirmed_at
                .get(&prevout.txid)
                .ok_or_else(|| format!("input {i}: {prevout} is not confirmed"))?;
            total_in = total_in
                .checked_add(spent.value)
                .ok_or_else(|| "input total overflows".to_string())?;
            // BIP68: only for version 2+ and when the disable flag is clear.
            if tx.version.0 >= 2 && input.sequence.is_relative_lock_time() {
                match input.sequence.to_relative_lock_time() {
                    Some(bitcoin::relative::LockTime::Blocks(blocks)) => {
                        let age = height.saturating_sub(confirmed);
                        if age < u32::from(blocks.value()) {
                            return Err(format!(
                                "input {i}: non-BIP68-final: output is {age} blocks old, the input \
                                 requires {}",
                                blocks.value()
                            ));
                        }
                    }
                    Some(bitcoin::relative::LockTime::Time(_)) => {
                        return Err(format!(
                            "input {i}: time-based relative locks are not modelled by the stand-in"
                        ));
                    }
                    None => {}
                }
            }
        }
        let total_out = tx
            .output
            .iter()
            .try_fold(Amount::ZERO, |sum, out| sum.checked_add(out.value))
            .ok_or_else(|| "output total overflows".to_string())?;
        if total_out > total_in {
            return Err(format!("outputs {total_out} exceed inputs {total_in}"));
        }
        self.verify(tx)?;
        for input in &tx.input {
            self.spent.insert(input.previous_output);
        }
        self.record(tx);
        self.confirm(tx.compute_txid(), height);
        Ok(())
    }

    /// Verifies every input of `tx` with libbitcoinconsensus against the outputs it spends.
    ///
    /// # Errors
    /// The interpreter's reason, or a missing prevout.
    pub fn verify(&self, tx: &Transaction) -> Result<(), String> {
        tx.verify(|outpoint| self.get(outpoint))
            .map_err(|e| format!("consensus verification failed: {e}"))
    }
}

/// A deterministic block hash for a stand-in block at `height`.
pub fn block_hash(height: u32) -> BlockHash {
    let seed = format!("stand-in block {height}");
    BlockHash::from_raw_hash(sha256d::Hash::hash(seed.as_bytes()))
}
