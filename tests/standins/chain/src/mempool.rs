//! Unconfirmed transactions, in the order they were accepted (parents always
//! before their children), and which outpoints they spend.

use std::collections::HashMap;

use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid};

/// A transaction waiting for a block.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The transaction.
    pub tx: Transaction,
    /// Inputs minus outputs.
    pub fee: Amount,
    /// Unix time it was accepted.
    pub time: u64,
    /// Tip height when it was accepted.
    pub height: u32,
}

/// The mempool.
#[derive(Debug, Default)]
pub struct Mempool {
    order: Vec<Txid>,
    entries: HashMap<Txid, Entry>,
    spends: HashMap<OutPoint, (Txid, u32)>,
}

impl Mempool {
    /// Adds an accepted transaction.
    pub fn insert(&mut self, txid: Txid, entry: Entry) {
        for (vin, input) in (0u32..).zip(&entry.tx.input) {
            self.spends.insert(input.previous_output, (txid, vin));
        }
        self.order.push(txid);
        self.entries.insert(txid, entry);
    }

    /// Removes a transaction (mined or evicted); its descendants stay and
    /// are the caller's concern.
    pub fn remove(&mut self, txid: &Txid) -> Option<Entry> {
        let entry = self.entries.remove(txid)?;
        for input in &entry.tx.input {
            if self.spends.get(&input.previous_output).map(|s| &s.0) == Some(txid) {
                self.spends.remove(&input.previous_output);
            }
        }
        self.order.retain(|t| t != txid);
        Some(entry)
    }

    /// Empties the mempool, returning its transactions in acceptance order.
    pub fn drain(&mut self) -> Vec<Transaction> {
        let order = std::mem::take(&mut self.order);
        self.spends.clear();
        let mut entries = std::mem::take(&mut self.entries);
        order
            .into_iter()
            .filter_map(|t| entries.remove(&t))
            .map(|e| e.tx)
            .collect()
    }

    /// A mempool transaction.
    pub fn get(&self, txid: &Txid) -> Option<&Entry> {
        self.entries.get(txid)
    }

    /// Whether `txid` waits in the mempool.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    /// The mempool transaction and input spending `outpoint`.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<(Txid, u32)> {
        self.spends.get(outpoint).copied()
    }

    /// An output created by a mempool transaction.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        let entry = self.entries.get(&outpoint.txid)?;
        entry.tx.output.get(usize::try_from(outpoint.vout).ok()?)
    }

    /// Transactions in acceptance order.
    pub fn iter(&self) -> impl Iterator<Item = (&Txid, &Entry)> {
        self.order
            .iter()
            .filter_map(|t| self.entries.get(t).map(|e| (t, e)))
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the mempool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
