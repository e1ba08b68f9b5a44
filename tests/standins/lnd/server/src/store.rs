//! The stand-in's invoices and outgoing-payment failure reasons, in one JSON file in the
//! data directory, rewritten whole (to a temporary file, then renamed) on every change.
//!
//! LDK keeps payments but not LND's invoice fields (memo, add and settle indexes,
//! cancellation, a hold invoice's acceptance), so they live here. The settle index is what
//! LND's `SubscribeInvoices` resumes from, and an accepted hold invoice must still be held
//! (and settle or cancel) after a restart: both survive one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An invoice's state, as LND names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Open,
    Settled,
    Canceled,
    /// A hold invoice whose payment arrived and is held until it is settled or cancelled.
    Accepted,
}

/// An invoice this node made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InvoiceRecord {
    /// Payment hash, hex.
    pub hash: String,
    /// Preimage, hex (the stand-in claims payments itself, as LND does). Empty for a hold
    /// invoice until `SettleInvoice` brings it.
    pub preimage: String,
    pub memo: String,
    /// Description hash, hex, empty when the invoice has a memo.
    pub description_hash: String,
    /// None for a no-amount invoice.
    pub value_msat: Option<u64>,
    pub creation_date: i64,
    pub expiry: i64,
    pub payment_request: String,
    pub add_index: u64,
    pub state: State,
    pub settle_index: u64,
    pub settle_date: i64,
    pub amt_paid_msat: u64,
    /// A hold invoice (`AddHoldInvoice`): its payment is accepted and held, not claimed.
    #[serde(default)]
    pub hold: bool,
}

impl InvoiceRecord {
    /// The state as LND reports it: an open invoice past its expiry is cancelled.
    pub fn effective_state(&self, now: i64) -> State {
        if self.state == State::Open && now >= self.creation_date.saturating_add(self.expiry) {
            State::Canceled
        } else {
            self.state
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    invoices: Vec<InvoiceRecord>,
    /// Outgoing payments that failed: payment hash hex to LND's `PaymentFailureReason`.
    payment_failures: BTreeMap<String, i32>,
}

/// The store, loaded in memory; callers hold it behind a mutex.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
}

impl Store {
    /// Loads `dir/standin-invoices.json`, or starts empty.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("standin-invoices.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(Self { path, file })
    }

    fn save(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.file)?)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    pub fn invoices(&self) -> &[InvoiceRecord] {
        &self.file.invoices
    }

    pub fn invoice(&self, hash: &str) -> Option<&InvoiceRecord> {
        self.file.invoices.iter().find(|i| i.hash == hash)
    }

    /// Adds an invoice, giving it the next add index.
    pub fn add(&mut self, mut record: InvoiceRecord) -> anyhow::Result<InvoiceRecord> {
        record.add_index = self.file.invoices.last().map_or(1, |i| i.add_index + 1);
        self.file.invoices.push(record.clone());
        self.save()?;
        Ok(record)
    }

    /// Marks an open or accepted invoice cancelled. Returns its state before.
    pub fn cancel(&mut self, hash: &str) -> anyhow::Result<Option<State>> {
        let Some(record) = self.file.invoices.iter_mut().find(|i| i.hash == hash) else {
            return Ok(None);
        };
        let before = record.state;
        if matches!(before, State::Open | State::Accepted) {
            record.state = State::Canceled;
            self.save()?;
        }
        Ok(Some(before))
    }

    /// Marks an open hold invoice accepted: a payment of `amount_msat` is held for it.
    /// Returns the record if it changed (a replayed event finds it accepted already).
    pub fn accept(
        &mut self,
        hash: &str,
        amount_msat: u64,
    ) -> anyhow::Result<Option<InvoiceRecord>> {
        let Some(record) = self.file.invoices.iter_mut().find(|i| i.hash == hash) else {
            return Ok(None);
        };
        if record.state != State::Open {
            return Ok(None);
        }
        record.state = State::Accepted;
        record.amt_paid_msat = amount_msat;
        let accepted = record.clone();
        self.save()?;
        Ok(Some(accepted))
    }

    /// Keeps the preimage `SettleInvoice` brought for an accepted hold invoice, before the
    /// held payment is claimed with it (so that a restart in between claims it again).
    pub fn set_preimage(&mut self, hash: &str, preimage: &str) -> anyhow::Result<()> {
        if let Some(record) = self.file.invoices.iter_mut().find(|i| i.hash == hash)
            && record.preimage != preimage
        {
            record.preimage = preimage.to_string();
            self.save()?;
        }
        Ok(())
    }

    /// Marks an invoice settled with the next settle index, once (a replayed event leaves
    /// it as it is). Persisted before it returns: only then may the event be acknowledged.
    pub fn settle(
        &mut self,
        hash: &str,
        amount_msat: u64,
        now: i64,
    ) -> anyhow::Result<Option<InvoiceRecord>> {
        let next = self
            .file
            .invoices
            .iter()
            .map(|i| i.settle_index)
            .max()
            .unwrap_or(0)
            + 1;
        let Some(record) = self.file.invoices.iter_mut().find(|i| i.hash == hash) else {
            return Ok(None);
        };
        if record.state == State::Settled {
            return Ok(Some(record.clone()));
        }
        record.state = State::Settled;
        record.settle_index = next;
        record.settle_date = now;
        record.amt_paid_msat = amount_msat;
        let settled = record.clone();
        self.save()?;
        Ok(Some(settled))
    }

    pub fn record_failure(&mut self, hash: &str, reason: i32) -> anyhow::Result<()> {
        self.file.payment_failures.insert(hash.to_string(), reason);
        self.save()
    }

    pub fn failure(&self, hash: &str) -> Option<i32> {
        self.file.payment_failures.get(hash).copied()
    }

    /// A new attempt to pay forgets an earlier failure.
    pub fn clear_failure(&mut self, hash: &str) -> anyhow::Result<()> {
        if self.file.payment_failures.remove(hash).is_some() {
            self.save()?;
        }
        Ok(())
    }
}
