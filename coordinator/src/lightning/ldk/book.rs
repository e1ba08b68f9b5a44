//! The invoice book: every invoice the bank made on the embedded node, with its preimage
//! and state, and the log of settlements that gives each its cursor. It lives in LDK Node's
//! own store (SQLite in the node's directory), in a namespace of ours, so that the node's
//! channel state and the bank's record of what it was paid are backed up and restored
//! together.
//!
//! LDK Node knows an invoice registered by hash only until it is paid; cancellation,
//! the settlement order and the preimage are ours. Each change is written before the event
//! that caused it is acknowledged to LDK, so a crash replays the event instead of losing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::hex::{DisplayHex, FromHex};
use ldk_node::DynStore;
use ldk_node::lightning::util::persist::KVStoreSync;
use serde::{Deserialize, Serialize};

use crate::amount::Msats;
use crate::lightning::{
    LightningError, PaymentFailure, PaymentHash, Preimage, SettleCursor, SettledInvoice,
};

const NAMESPACE: &str = "bastion";
const INVOICES: &str = "invoices";
const SETTLED: &str = "settled";
const FAILURES: &str = "failures";

/// Where an invoice stands, short of settled (the settlement log says that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Stage {
    /// Payable.
    Open,
    /// A payment arrived and is being claimed: it can no longer be cancelled.
    Claiming,
    /// Cancelled: payments to it are failed back.
    Cancelled,
}

/// One invoice.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    /// Hex; a secret until the invoice is paid (then the payer holds it too).
    preimage: String,
    /// `None`: any amount.
    pub amount_msat: Option<u64>,
    /// Seconds since the epoch.
    pub expires_at: i64,
    pub stage: Stage,
}

impl Drop for Entry {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.preimage);
    }
}

impl Entry {
    pub fn new(preimage: &Preimage, amount: Option<Msats>, expires_at: i64) -> Self {
        Self {
            preimage: preimage.0.to_lower_hex_string(),
            amount_msat: amount.map(Msats::to_msat),
            expires_at,
            stage: Stage::Open,
        }
    }

    fn preimage(&self) -> Result<Preimage, LightningError> {
        <[u8; 32]>::from_hex(&self.preimage)
            .map(Preimage)
            .map_err(|_| LightningError::Protocol("unreadable preimage in the book".into()))
    }
}

/// One line of the settlement log.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Settlement {
    #[serde(with = "hex32")]
    hash: [u8; 32],
    amount_msat: u64,
}

mod hex32 {
    use bitcoin::hex::{DisplayHex, FromHex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_lower_hex_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        <[u8; 32]>::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// What to do with a payment that arrived.
pub(super) enum Claim {
    /// Claim it with this preimage.
    Claim(Preimage),
    /// Fail it back (unknown, cancelled, expired or short invoice).
    Fail(&'static str),
}

/// How a cancellation went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Cancelled {
    /// It was open (or cancelled already): now it is cancelled.
    Done,
    /// Paid, or being claimed: too late.
    AlreadySettled,
    /// Not an invoice of this node.
    Unknown,
}

/// The settlement log in memory (cursor i + 1 at index i) and its index by hash.
#[derive(Default)]
struct Log {
    lines: Vec<Settlement>,
    by_hash: HashMap<[u8; 32], u64>,
}

pub(super) struct Book {
    store: Arc<DynStore>,
    /// Also serialises every read-modify-write of an entry.
    log: Mutex<Log>,
}

fn storage(e: bitcoin::io::Error) -> LightningError {
    LightningError::Unavailable(format!("the node's store: {e}"))
}

fn corrupt(what: &str) -> LightningError {
    LightningError::Protocol(format!("the invoice book: unreadable {what}"))
}

/// Keys sort in cursor order (the store lists them unordered).
fn cursor_key(cursor: u64) -> String {
    format!("{cursor:020}")
}

impl Book {
    /// Reads the settlement log.
    pub fn open(store: Arc<DynStore>) -> Result<Self, LightningError> {
        let mut keys: Vec<u64> = KVStoreSync::list(&*store, NAMESPACE, SETTLED)
            .map_err(storage)?
            .iter()
            .map(|k| k.parse().map_err(|_| corrupt("settlement key")))
            .collect::<Result<_, _>>()?;
        keys.sort_unstable();
        let mut log = Log::default();
        for (i, cursor) in keys.iter().enumerate() {
            // A gap would give two settlements one cursor.
            if *cursor != i as u64 + 1 {
                return Err(corrupt("settlement log (a cursor is missing)"));
            }
            let bytes = KVStoreSync::read(&*store, NAMESPACE, SETTLED, &cursor_key(*cursor))
                .map_err(storage)?;
            let line: Settlement =
                serde_json::from_slice(&bytes).map_err(|_| corrupt("settlement"))?;
            log.by_hash.insert(line.hash, *cursor);
            log.lines.push(line);
        }
        Ok(Self {
            store,
            log: Mutex::new(log),
        })
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        // A panic while holding it cannot leave the log half-written (writes go to the
        // store first): go on.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, hash: &[u8; 32]) -> Result<Option<Entry>, LightningError> {
        match KVStoreSync::read(
            &*self.store,
            NAMESPACE,
            INVOICES,
            &hash.to_lower_hex_string(),
        ) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| corrupt("invoice")),
            Err(e) if e.kind() == bitcoin::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    fn write(&self, hash: &[u8; 32], entry: &Entry) -> Result<(), LightningError> {
        let bytes = serde_json::to_vec(entry).map_err(|_| corrupt("invoice"))?;
        KVStoreSync::write(
            &*self.store,
            NAMESPACE,
            INVOICES,
            &hash.to_lower_hex_string(),
            bytes,
        )
        .map_err(storage)
    }

    /// Records a new invoice before it is handed out.
    pub fn add(&self, hash: &PaymentHash, entry: &Entry) -> Result<(), LightningError> {
        let _log = self.log();
        if self.read(&hash.0)?.is_some() {
            return Err(LightningError::Invalid(
                "an invoice for this payment hash exists".into(),
            ));
        }
        self.write(&hash.0, entry)
    }

    /// The invoice and, if paid, its settlement.
    pub fn get(
        &self,
        hash: &PaymentHash,
    ) -> Result<Option<(Entry, Option<SettledInvoice>)>, LightningError> {
        let log = self.log();
        let Some(entry) = self.read(&hash.0)? else {
            return Ok(None);
        };
        let settled = match log.by_hash.get(&hash.0) {
            Some(cursor) => Some(self.settled_line(&log, *cursor, &entry)?),
            None => None,
        };
        Ok(Some((entry, settled)))
    }

    fn settled_line(
        &self,
        log: &Log,
        cursor: u64,
        entry: &Entry,
    ) -> Result<SettledInvoice, LightningError> {
        let index = usize::try_from(cursor - 1).map_err(|_| corrupt("cursor"))?;
        let line = log.lines.get(index).ok_or_else(|| corrupt("cursor"))?;
        Ok(SettledInvoice {
            cursor: SettleCursor(cursor),
            payment_hash: PaymentHash(line.hash),
            amount: Msats::new(line.amount_msat).map_err(|_| corrupt("amount"))?,
            preimage: entry.preimage()?,
        })
    }

    /// Decides on a payment of `amount_msat` that arrived at `now`; an invoice it claims
    /// turns [`Stage::Claiming`] first, so that a cancellation can no longer win.
    pub fn claim(
        &self,
        hash: &PaymentHash,
        amount_msat: u64,
        now: i64,
    ) -> Result<Claim, LightningError> {
        let log = self.log();
        let Some(mut entry) = self.read(&hash.0)? else {
            return Ok(Claim::Fail("not an invoice of the bank"));
        };
        if log.by_hash.contains_key(&hash.0) {
            // Paid once already; LDK refuses a second payment itself, this is a backstop.
            return Ok(Claim::Fail("paid already"));
        }
        match entry.stage {
            Stage::Cancelled => return Ok(Claim::Fail("cancelled")),
            // A replayed event after a crash: claim again (LDK claims once).
            Stage::Claiming => return Ok(Claim::Claim(entry.preimage()?)),
            Stage::Open => {}
        }
        if now >= entry.expires_at {
            return Ok(Claim::Fail("expired"));
        }
        if entry.amount_msat.is_some_and(|a| amount_msat < a) {
            return Ok(Claim::Fail("less than the invoice's amount"));
        }
        entry.stage = Stage::Claiming;
        self.write(&hash.0, &entry)?;
        Ok(Claim::Claim(entry.preimage()?))
    }

    /// Cancels an open invoice.
    pub fn cancel(&self, hash: &PaymentHash) -> Result<Cancelled, LightningError> {
        let log = self.log();
        let Some(mut entry) = self.read(&hash.0)? else {
            return Ok(Cancelled::Unknown);
        };
        if log.by_hash.contains_key(&hash.0) {
            return Ok(Cancelled::AlreadySettled);
        }
        match entry.stage {
            Stage::Claiming => Ok(Cancelled::AlreadySettled),
            Stage::Cancelled => Ok(Cancelled::Done),
            Stage::Open => {
                entry.stage = Stage::Cancelled;
                self.write(&hash.0, &entry)?;
                Ok(Cancelled::Done)
            }
        }
    }

    /// Logs a settlement with the next cursor, once: a second call for the same hash (a
    /// replayed event) answers the first. `None` if the hash is not an invoice of ours.
    pub fn settle(
        &self,
        hash: &PaymentHash,
        amount_msat: u64,
    ) -> Result<Option<SettledInvoice>, LightningError> {
        let mut log = self.log();
        let Some(entry) = self.read(&hash.0)? else {
            return Ok(None);
        };
        if let Some(cursor) = log.by_hash.get(&hash.0) {
            return self.settled_line(&log, *cursor, &entry).map(Some);
        }
        let cursor = log.lines.len() as u64 + 1;
        let line = Settlement {
            hash: hash.0,
            amount_msat,
        };
        let bytes = serde_json::to_vec(&line).map_err(|_| corrupt("settlement"))?;
        KVStoreSync::write(&*self.store, NAMESPACE, SETTLED, &cursor_key(cursor), bytes)
            .map_err(storage)?;
        log.lines.push(line);
        log.by_hash.insert(hash.0, cursor);
        self.settled_line(&log, cursor, &entry).map(Some)
    }

    /// Settlements after `after`, in order.
    pub fn settled_after(
        &self,
        after: SettleCursor,
    ) -> Result<Vec<SettledInvoice>, LightningError> {
        let log = self.log();
        let from = usize::try_from(after.0).unwrap_or(usize::MAX);
        let lines: Vec<(u64, [u8; 32])> = log
            .lines
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, l)| (i as u64 + 1, l.hash))
            .collect();
        lines
            .into_iter()
            .map(|(cursor, hash)| {
                let entry = self
                    .read(&hash)?
                    .ok_or_else(|| corrupt("settled invoice (missing)"))?;
                self.settled_line(&log, cursor, &entry)
            })
            .collect()
    }

    /// Why an outgoing payment failed, kept until it is tried again.
    pub fn record_failure(
        &self,
        hash: &PaymentHash,
        reason: PaymentFailure,
    ) -> Result<(), LightningError> {
        KVStoreSync::write(
            &*self.store,
            NAMESPACE,
            FAILURES,
            &hash.0.to_lower_hex_string(),
            reason.as_str().as_bytes().to_vec(),
        )
        .map_err(storage)
    }

    /// The recorded failure of an outgoing payment.
    pub fn failure(&self, hash: &PaymentHash) -> Result<Option<PaymentFailure>, LightningError> {
        match KVStoreSync::read(
            &*self.store,
            NAMESPACE,
            FAILURES,
            &hash.0.to_lower_hex_string(),
        ) {
            Ok(bytes) => Ok(Some(
                [
                    PaymentFailure::NoRoute,
                    PaymentFailure::RecipientRejected,
                    PaymentFailure::Timeout,
                    PaymentFailure::Other,
                ]
                .into_iter()
                .find(|f| f.as_str().as_bytes() == bytes.as_slice())
                .unwrap_or(PaymentFailure::Other),
            )),
            Err(e) if e.kind() == bitcoin::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    /// A new attempt forgets the last failure.
    pub fn clear_failure(&self, hash: &PaymentHash) -> Result<(), LightningError> {
        KVStoreSync::remove(
            &*self.store,
            NAMESPACE,
            FAILURES,
            &hash.0.to_lower_hex_string(),
            false,
        )
        .map_err(storage)
    }
}
