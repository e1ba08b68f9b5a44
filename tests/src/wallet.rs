//! A watch-only bdk wallet over a policy's descriptors, funded on the
//! stand-in chain, that builds the PSBTs the signer is asked to sign: the
//! same way the coordinator builds them.

use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use bdk_wallet::chain::{BlockId, ConfirmationBlockTime, TxUpdate};
use bdk_wallet::descriptor::Condition;
use bdk_wallet::{KeychainKind, Update, Wallet};
use bitcoin::{Amount, FeeRate, OutPoint, Psbt, ScriptBuf, Sequence, Transaction};
use policies::PolicyDocument;

use crate::chain::{Utxos, block_hash};

/// Which branch of a policy a spend is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendPath {
    /// The HSM keys' path: no timelock.
    Hsm,
    /// The recovery key's path: nSequence set to the relative timelock.
    Recovery {
        /// The policy's `older(n)` in blocks.
        after: u16,
    },
}

/// A bdk wallet for one policy on the stand-in chain.
#[derive(Debug)]
pub struct PolicyWallet {
    /// The bdk wallet (watch-only: it knows no private key).
    pub wallet: Wallet,
    /// Every output created on the stand-in chain.
    pub utxos: Utxos,
    height: u32,
}

impl PolicyWallet {
    /// A watch-only wallet over the policy's receive and change descriptors.
    ///
    /// # Errors
    /// If bdk refuses the descriptors.
    pub fn new(policy: &PolicyDocument) -> anyhow::Result<Self> {
        let wallet = Wallet::create(
            policy.descriptors.receive.to_string(),
            policy.descriptors.change.to_string(),
        )
        .network(policy.network)
        .create_wallet_no_persist()
        .map_err(|e| anyhow!("bdk refused the policy descriptors: {e}"))?;
        Ok(Self {
            wallet,
            utxos: Utxos::default(),
            height: 0,
        })
    }

    /// The stand-in chain's tip height.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Funds the wallet with one confirmed output per amount, each to a fresh
    /// receive address, all confirmed in one new block.
    ///
    /// # Errors
    /// If bdk refuses the update.
    pub fn fund(&mut self, amounts: &[Amount]) -> anyhow::Result<Vec<OutPoint>> {
        let txs: Vec<Transaction> = amounts
            .iter()
            .map(|amount| {
                let address = self
                    .wallet
                    .reveal_next_address(KeychainKind::External)
                    .address;
                self.utxos.funding_tx(address.script_pubkey(), *amount)
            })
            .collect();
        let outpoints = txs
            .iter()
            .map(|tx| OutPoint::new(tx.compute_txid(), 0))
            .collect();
        self.confirm(txs)?;
        Ok(outpoints)
    }

    /// Confirms `tx` in a new stand-in block if the chain accepts it (see
    /// [`Utxos::accept`]), and lets the wallet see it.
    ///
    /// # Errors
    /// The rule the transaction breaks; the chain is then unchanged.
    pub fn broadcast_and_mine(&mut self, tx: &Transaction) -> anyhow::Result<()> {
        self.utxos
            .accept(tx, self.height + 1)
            .map_err(|e| anyhow!("stand-in chain refused {}: {e}", tx.compute_txid()))?;
        self.confirm(vec![tx.clone()])
    }

    /// Mines `blocks` empty stand-in blocks.
    ///
    /// # Errors
    /// If bdk refuses the update.
    pub fn mine(&mut self, blocks: u32) -> anyhow::Result<()> {
        for _ in 0..blocks {
            self.confirm(Vec::new())?;
        }
        Ok(())
    }

    fn confirm(&mut self, txs: Vec<Transaction>) -> anyhow::Result<()> {
        self.height += 1;
        let block_id = BlockId {
            height: self.height,
            hash: block_hash(self.height),
        };
        let anchor = ConfirmationBlockTime {
            block_id,
            confirmation_time: 1_700_000_000 + u64::from(self.height) * 600,
        };
        for tx in &txs {
            self.utxos.confirm(tx.compute_txid(), self.height);
        }
        let mut tx_update = TxUpdate::default();
        tx_update.anchors = txs.iter().map(|tx| (anchor, tx.compute_txid())).collect();
        tx_update.txs = txs.into_iter().map(Arc::new).collect();
        self.wallet
            .apply_update(Update {
                chain: Some(self.wallet.latest_checkpoint().insert(block_id)),
                tx_update,
                ..Default::default()
            })
            .context("applying a stand-in block")
    }

    /// Builds a PSBT that pays `amount` to `to` (with change back to the
    /// policy), through the given path.
    ///
    /// # Errors
    /// If bdk cannot build it (for example, not enough funds).
    pub fn pay(&mut self, to: ScriptBuf, amount: Amount, path: SpendPath) -> anyhow::Result<Psbt> {
        let mut builder = self.wallet.build_tx();
        builder
            .add_recipient(to, amount)
            .fee_rate(FeeRate::from_sat_per_vb_u32(2))
            .set_condition(condition(path));
        builder.finish().context("bdk could not build the psbt")
    }

    /// Builds a PSBT that spends every UTXO of the wallet to `to`.
    ///
    /// # Errors
    /// If bdk cannot build it.
    pub fn drain(&mut self, to: ScriptBuf, path: SpendPath) -> anyhow::Result<Psbt> {
        let mut builder = self.wallet.build_tx();
        builder
            .drain_wallet()
            .drain_to(to)
            .fee_rate(FeeRate::from_sat_per_vb_u32(2))
            .set_condition(condition(path));
        builder.finish().context("bdk could not build the psbt")
    }
}

fn condition(path: SpendPath) -> Condition {
    match path {
        SpendPath::Hsm => Condition::default(),
        SpendPath::Recovery { after } => Condition {
            csv: Some(Sequence::from_height(after)),
            timelock: None,
        },
    }
}
