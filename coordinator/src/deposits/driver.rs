//! The deposit driver: follows the chain source, records deposits, credits them.
//!
//! Every coordinator instance may run one; they share the work through a lease row
//! (`deposit_driver`): the holder renews it on each pass, another instance takes it over
//! only after it ran out, and every write checks it under a row lock (see
//! [`store::fenced`]). The credit itself is idempotent in the ledger, so even two drivers
//! believing they hold the lease could not credit a deposit twice.
//!
//! One pass ([`DepositDriver::tick`]): new blocks since the checkpoint (undoing
//! disconnected ones first), then the mempool, then the deposits that reached their
//! confirmations. A chain source that is down fails the pass; the driver waits for the next
//! one and nothing recorded is lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bdk_wallet::bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::store::{self, Seen};
use super::{DepositConfig, DepositError, DepositState, ScriptIndex};
use crate::amount::Sats;
use crate::chain::{BlockId, BlockLocator, ChainSource, TxStatus};
use crate::ledger::Ledger;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// False when another instance holds the lease (nothing was done).
    pub leader: bool,
    /// The best chain's tip as processed.
    pub tip: Option<BlockId>,
    /// Blocks processed.
    pub blocks_connected: usize,
    /// Blocks undone by a reorg.
    pub blocks_disconnected: usize,
    /// Deposits that became pending.
    pub pending: usize,
    /// Pending deposits that left the mempool and the chain.
    pub removed: usize,
    /// Deposits credited.
    pub settled: usize,
    /// Deposits held (closed account).
    pub held: usize,
    /// Compliance alerts raised (a settled deposit reorged out).
    pub alerts: usize,
}

/// The driver of one coordinator instance.
#[derive(Debug)]
pub struct DepositDriver {
    pool: PgPool,
    ledger: Ledger,
    chain: Arc<dyn ChainSource>,
    index: Arc<dyn ScriptIndex>,
    config: DepositConfig,
    /// This instance in the lease row.
    holder: Uuid,
    /// Mempool txids already looked at (those of the last snapshot).
    mempool_seen: HashSet<Txid>,
}

/// A running driver task.
#[derive(Debug)]
pub struct DriverHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    last: watch::Receiver<Option<Result<TickReport, String>>>,
}

impl DriverHandle {
    /// Stops after the current pass and gives the lease up.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once without giving the lease up, as a crash would (tests).
    pub fn abort(self) {
        self.task.abort();
    }

    /// The outcome of the last pass (an error's text if it failed).
    pub fn last(&self) -> Option<Result<TickReport, String>> {
        self.last.borrow().clone()
    }
}

impl DepositDriver {
    /// A driver over the coordinator's ledger (and its pool), a chain source and the
    /// wallets' script index.
    pub fn new(
        ledger: Ledger,
        chain: Arc<dyn ChainSource>,
        index: Arc<dyn ScriptIndex>,
        config: DepositConfig,
    ) -> DepositDriver {
        DepositDriver {
            pool: ledger.pool().clone(),
            ledger,
            chain,
            index,
            config,
            holder: Uuid::now_v7(),
            mempool_seen: HashSet::new(),
        }
    }

    /// Runs passes every `poll_interval` until stopped.
    pub fn spawn(mut self) -> DriverHandle {
        let (stop, mut stopped) = watch::channel(false);
        let (report, last) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let outcome = self.tick().await;
                let wait = match &outcome {
                    Ok(_) => {
                        failures = 0;
                        self.config.poll_interval
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        // Chain source or database down: deposits wait, the coordinator
                        // keeps serving. Back off up to 32 polls.
                        tracing::warn!(error = %e, failures, "deposit driver pass failed");
                        self.config.poll_interval * 2u32.pow(failures.min(5))
                    }
                };
                let _ = report.send(Some(outcome.map_err(|e| e.to_string())));
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if let Err(e) = store::release_lease(&self.pool, self.holder).await {
                tracing::warn!(error = %e, "deposit driver could not release its lease");
            }
        });
        DriverHandle { stop, task, last }
    }

    /// One pass: lease, blocks, mempool, settlement.
    ///
    /// # Errors
    /// [`DepositError::Chain`] when the chain source fails, [`DepositError::Database`],
    /// [`DepositError::LeaseLost`]; what was recorded before the failure stays recorded.
    pub async fn tick(&mut self) -> Result<TickReport, DepositError> {
        let mut report = TickReport::default();
        if !store::claim_lease(&self.pool, self.holder, self.config.lease_ttl).await? {
            // Another instance works; start from a clean mempool view if we take over.
            self.mempool_seen.clear();
            return Ok(report);
        }
        report.leader = true;
        self.follow_blocks(&mut report).await?;
        self.scan_mempool(&mut report).await?;
        self.settle(&mut report).await?;
        Ok(report)
    }

    async fn follow_blocks(&mut self, report: &mut TickReport) -> Result<(), DepositError> {
        loop {
            let (known, start_height) = store::checkpoint(&self.pool).await?;
            let locator = BlockLocator {
                known,
                start_height,
            };
            let batch = self
                .chain
                .blocks_since(&locator, self.config.max_blocks.max(1))
                .await?;
            report.tip = Some(batch.tip);
            if batch.disconnected.is_empty() && batch.connected.is_empty() {
                return Ok(());
            }
            let mut tx = store::fenced(&self.pool, self.holder).await?;
            if !batch.disconnected.is_empty() {
                // The fork: the highest block of the locator still in the best chain (the
                // source compared them highest first and stopped there).
                let gone: HashSet<u32> = batch.disconnected.iter().map(|b| b.height).collect();
                let fork = locator
                    .known
                    .iter()
                    .map(|b| b.height)
                    .filter(|h| !gone.contains(h))
                    .max()
                    .map_or(-1, i64::from);
                let unwound = store::disconnect_above(&mut tx, fork).await?;
                report.blocks_disconnected += batch.disconnected.len();
                report.alerts += unwound.alerts;
            }
            for block in &batch.connected {
                let seen = self.match_outputs(&block.block.txdata).await?;
                report.pending +=
                    store::record_seen(&mut tx, &seen, Some(block.id()), self.config.minimum)
                        .await?;
                store::add_block(&mut tx, block.id()).await?;
            }
            tx.commit().await?;
            report.blocks_connected += batch.connected.len();
            let reached = batch.connected.last().map(|b| b.height);
            if reached.is_none_or(|h| h >= batch.tip.height) {
                return Ok(());
            }
        }
    }

    async fn scan_mempool(&mut self, report: &mut TickReport) -> Result<(), DepositError> {
        let snapshot = self.chain.mempool_since(&self.mempool_seen).await?;
        let txs: Vec<Transaction> = snapshot.new.iter().map(|t| (**t).clone()).collect();
        let seen = self.match_outputs(&txs).await?;
        // Pending unconfirmed deposits no longer in the mempool: mined since the blocks were
        // read (left for the next pass), or gone (replaced, reorged out and not returned).
        let mut gone = Vec::new();
        for txid in store::unconfirmed_pending(&self.pool).await? {
            if snapshot.txids.contains(&txid) {
                continue;
            }
            if self.chain.tx_status(txid).await? == TxStatus::Unknown {
                gone.push(txid);
            }
        }
        if !seen.is_empty() || !gone.is_empty() {
            let mut tx = store::fenced(&self.pool, self.holder).await?;
            report.pending += store::record_seen(&mut tx, &seen, None, self.config.minimum).await?;
            report.removed += store::mark_removed(&mut tx, &gone).await?;
            tx.commit().await?;
        }
        self.mempool_seen = snapshot.txids;
        Ok(())
    }

    async fn settle(&mut self, report: &mut TickReport) -> Result<(), DepositError> {
        let (known, _) = store::checkpoint(&self.pool).await?;
        let Some(tip) = known.iter().map(|b| b.height).max() else {
            return Ok(());
        };
        let due = store::due(&self.pool, tip, self.config.confirmations).await?;
        // Post every credit at once: the ledger's writer commits them in a few batches.
        let mut posts = tokio::task::JoinSet::new();
        for d in due.iter().filter(|d| d.account_status != "CLOSED") {
            let posting = super::credit_posting(&d.deposit)?;
            let ledger = self.ledger.clone();
            let id = d.deposit.id;
            posts.spawn(async move { (id, ledger.post(posting).await) });
        }
        let mut credited = Vec::new();
        let mut failure = None;
        while let Some(joined) = posts.join_next().await {
            match joined {
                Ok((id, Ok(posted))) => credited.push((id, posted.id)),
                Ok((id, Err(e))) => {
                    tracing::warn!(deposit = %id, error = %e, "deposit credit failed; retried next pass");
                    failure = Some(DepositError::Ledger(e));
                }
                Err(e) => failure = Some(DepositError::Corrupt(format!("credit task: {e}"))),
            }
        }
        // Idempotent postings: after a crash between them and this, posting again returns
        // the original transactions.
        if !credited.is_empty() {
            let mut tx = store::fenced(&self.pool, self.holder).await?;
            report.settled += store::finish_settled(&mut tx, &credited).await?;
            tx.commit().await?;
        }
        for due in &due {
            let d = &due.deposit;
            if due.account_status == "CLOSED" {
                // A closed account receives nothing: held for operators (README, ADR 0010).
                let mut tx = store::fenced(&self.pool, self.holder).await?;
                if store::finish(&mut tx, d.id, DepositState::Held, None).await? {
                    report.held += 1;
                    tracing::warn!(deposit = %d.id, account = %d.account_id,
                        "deposit to a closed account held for operators");
                }
                tx.commit().await?;
            }
            // A locked account is credited above: locked accounts receive but cannot send.
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The outputs of `txs` that pay one of our scripts: one index lookup for all of them.
    async fn match_outputs(&self, txs: &[Transaction]) -> Result<Vec<Seen>, DepositError> {
        let mut scripts: Vec<ScriptBuf> = Vec::new();
        let mut unique: HashSet<&ScriptBuf> = HashSet::new();
        for tx in txs {
            for out in &tx.output {
                if out.value.to_sat() > 0
                    && !out.script_pubkey.is_op_return()
                    && unique.insert(&out.script_pubkey)
                {
                    scripts.push(out.script_pubkey.clone());
                }
            }
        }
        if scripts.is_empty() {
            return Ok(Vec::new());
        }
        let owners: HashMap<ScriptBuf, super::ScriptOwner> = self.index.owners(&scripts).await?;
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = Vec::new();
        for tx in txs {
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                let Some(owner) = owners.get(&out.script_pubkey) else {
                    continue;
                };
                let Ok(amount) = Sats::new(out.value.to_sat()) else {
                    continue; // above 21M BTC: not a valid output
                };
                if amount == Sats::ZERO {
                    continue;
                }
                seen.push(Seen {
                    outpoint: OutPoint {
                        txid,
                        vout: u32::try_from(vout).unwrap_or(u32::MAX),
                    },
                    owner: owner.clone(),
                    amount,
                });
            }
        }
        Ok(seen)
    }
}
