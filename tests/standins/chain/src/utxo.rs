//! The set of unspent outputs of the active chain.

use std::collections::HashMap;

use bitcoin::{OutPoint, Transaction, TxOut};

/// An unspent output and where it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output.
    pub output: TxOut,
    /// Height of the block that created it (for mempool outputs: tip + 1, as
    /// Bitcoin Core counts them).
    pub height: u32,
    /// Coinbase outputs mature after 100 blocks.
    pub is_coinbase: bool,
}

/// Unspent outputs by outpoint.
#[derive(Debug, Default, Clone)]
pub struct UtxoSet {
    coins: HashMap<OutPoint, Coin>,
}

impl UtxoSet {
    /// The unspent output at `outpoint`.
    pub fn get(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.coins.get(outpoint)
    }

    /// Spends the inputs of `tx` and adds its spendable outputs, created at
    /// `height`. Returns the coins spent, in input order (a coinbase spends none).
    pub fn apply(&mut self, tx: &Transaction, height: u32) -> Vec<Coin> {
        let is_coinbase = tx.is_coinbase();
        let mut spent = Vec::new();
        if !is_coinbase {
            for input in &tx.input {
                if let Some(coin) = self.coins.remove(&input.previous_output) {
                    spent.push(coin);
                }
            }
        }
        let txid = tx.compute_txid();
        for (vout, output) in (0u32..).zip(&tx.output) {
            // As Bitcoin Core: provably unspendable outputs never enter the set.
            if output.script_pubkey.is_op_return() {
                continue;
            }
            self.coins.insert(
                OutPoint::new(txid, vout),
                Coin {
                    output: output.clone(),
                    height,
                    is_coinbase,
                },
            );
        }
        spent
    }

    /// Every unspent output, for the stand-in's own wallet.
    pub fn iter(&self) -> impl Iterator<Item = (&OutPoint, &Coin)> {
        self.coins.iter()
    }

    /// How many outputs are unspent.
    pub fn len(&self) -> usize {
        self.coins.len()
    }

    /// Whether no output is unspent.
    pub fn is_empty(&self) -> bool {
        self.coins.is_empty()
    }
}
