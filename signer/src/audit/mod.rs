//! The append-only, hash-chained audit log and its anchor in the HSM.
//!
//! Each record is `{seq, prev_hash, kind, body, hash}` with
//! `hash = SHA-256(prev_hash || canonical JSON of {"body", "kind", "seq"})`, so
//! a changed, removed or re-ordered record breaks every hash after it. The
//! head (seq and hash) is also written to the HSM ([`anchor`]) with each
//! signing, so a database restored from an older backup is detected at start.

pub mod anchor;
mod canonical;

use std::io::Write;

use bitcoin::hex::DisplayHex as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;

pub use canonical::canonical_json;

use crate::store::{Store, StoreError, Tx, sha256};

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// The chain's last record: its sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the last record (0 before the first).
    pub seq: i64,
    /// Its hash ([`GENESIS`] before the first).
    pub hash: [u8; 32],
}

impl Head {
    /// The head of an empty log.
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: GENESIS,
    };
}

/// The kinds of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A signing request as received.
    Request,
    /// What the PSBT does, as analysed.
    Analysis,
    /// One rule's outcome.
    RuleOutcome,
    /// A refusal, with its code.
    Refusal,
    /// One signature: key label, input, sighash.
    Signature,
    /// The final decision on a request.
    Decision,
    /// An officer's approval.
    Approval,
    /// A policy registered or changed.
    Policy,
    /// A client added.
    Client,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Analysis => "analysis",
            Kind::RuleOutcome => "rule_outcome",
            Kind::Refusal => "refusal",
            Kind::Signature => "signature",
            Kind::Decision => "decision",
            Kind::Approval => "approval",
            Kind::Policy => "policy",
            Kind::Client => "client",
        }
    }
}

/// The hash of the record `seq` of `kind` with `body` (canonical JSON text) after `prev_hash`.
pub fn record_hash(prev_hash: &[u8; 32], seq: i64, kind: &str, body: &str) -> [u8; 32] {
    // `body` is already canonical; embedding it keeps the whole text canonical
    // (keys "body" < "kind" < "seq").
    let content = format!(
        "{{\"body\":{body},\"kind\":{},\"seq\":{seq}}}",
        serde_json::Value::String(kind.to_owned())
    );
    let mut bytes = Vec::with_capacity(32 + content.len());
    bytes.extend_from_slice(prev_hash);
    bytes.extend_from_slice(content.as_bytes());
    sha256(&bytes)
}

/// Appends one record in `tx` and returns the new head.
///
/// Takes the head row's lock until `tx` ends, so appends never race.
///
/// # Errors
/// A database failure.
pub async fn append_in_tx(
    tx: &mut Tx,
    kind: Kind,
    body: &serde_json::Value,
) -> Result<Head, StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM signer_audit_head FOR UPDATE")
        .fetch_one(&mut **tx)
        .await?;
    let prev = Head {
        seq: row.try_get("seq")?,
        hash: to_hash(row.try_get("hash")?, "audit head")?,
    };
    let seq = prev.seq + 1;
    let body = canonical_json(body);
    let hash = record_hash(&prev.hash, seq, kind.as_str(), &body);
    sqlx::query(
        "INSERT INTO signer_audit (seq, prev_hash, kind, body, hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(seq)
    .bind(prev.hash.as_slice())
    .bind(kind.as_str())
    .bind(&body)
    .bind(hash.as_slice())
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE signer_audit_head SET seq = $1, hash = $2")
        .bind(seq)
        .bind(hash.as_slice())
        .execute(&mut **tx)
        .await?;
    Ok(Head { seq, hash })
}

/// Appends `records` in order in `tx`, as [`append_in_tx`] would one by one,
/// in three statements (the head locked, one multi-row insert, the head moved):
/// a 50-input signing writes about 160 records. Returns the new head, or
/// `None` when `records` is empty.
///
/// # Errors
/// A database failure.
pub async fn append_all_in_tx(
    tx: &mut Tx,
    records: &[(Kind, serde_json::Value)],
) -> Result<Option<Head>, StoreError> {
    if records.is_empty() {
        return Ok(None);
    }
    let row = sqlx::query("SELECT seq, hash FROM signer_audit_head FOR UPDATE")
        .fetch_one(&mut **tx)
        .await?;
    let mut head = Head {
        seq: row.try_get("seq")?,
        hash: to_hash(row.try_get("hash")?, "audit head")?,
    };
    let n = records.len();
    let (mut seqs, mut prevs, mut kinds, mut bodies, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (kind, body) in records {
        let seq = head.seq + 1;
        let body = canonical_json(body);
        let hash = record_hash(&head.hash, seq, kind.as_str(), &body);
        seqs.push(seq);
        prevs.push(head.hash.to_vec());
        kinds.push(kind.as_str());
        bodies.push(body);
        hashes.push(hash.to_vec());
        head = Head { seq, hash };
    }
    sqlx::query(
        "INSERT INTO signer_audit (seq, prev_hash, kind, body, hash)
         SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::TEXT[], $4::TEXT[], $5::BYTEA[])",
    )
    .bind(&seqs)
    .bind(&prevs)
    .bind(&kinds)
    .bind(&bodies)
    .bind(&hashes)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE signer_audit_head SET seq = $1, hash = $2")
        .bind(head.seq)
        .bind(head.hash.as_slice())
        .execute(&mut **tx)
        .await?;
    Ok(Some(head))
}

fn to_hash(bytes: Vec<u8>, what: &'static str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        what,
        detail: "hash is not 32 bytes".into(),
    })
}

/// The database's head of the chain.
///
/// # Errors
/// A database failure.
pub async fn head(store: &Store) -> Result<Head, StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM signer_audit_head")
        .fetch_one(store.pool())
        .await?;
    Ok(Head {
        seq: row.try_get("seq")?,
        hash: to_hash(row.try_get("hash")?, "audit head")?,
    })
}

/// The stored hash of record `seq`, if it exists.
///
/// # Errors
/// A database failure.
pub async fn hash_at(store: &Store, seq: i64) -> Result<Option<[u8; 32]>, StoreError> {
    let hash: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM signer_audit WHERE seq = $1")
        .bind(seq)
        .fetch_optional(store.pool())
        .await?;
    hash.map(|h| to_hash(h, "audit record")).transpose()
}

/// One record as exported.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedRecord {
    /// Sequence number, from 1.
    pub seq: i64,
    /// Hash of the previous record (hex).
    pub prev_hash: String,
    /// Kind of record.
    pub kind: String,
    /// The body.
    pub body: serde_json::Value,
    /// This record's hash (hex).
    pub hash: String,
    /// When it was written.
    pub recorded_at: DateTime<Utc>,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record chains; the head row matches the last record.
    Intact {
        /// The last record.
        head: Head,
    },
    /// The first record that does not chain, and why.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

const PAGE: i64 = 1_000;

/// Checks every record's hash and link, in order, and the head row.
///
/// # Errors
/// A database failure.
pub async fn verify(store: &Store) -> Result<Verification, StoreError> {
    let mut expected = Head::EMPTY;
    loop {
        let rows = sqlx::query(
            "SELECT seq, prev_hash, kind, body, hash FROM signer_audit
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(expected.seq)
        .bind(PAGE)
        .fetch_all(store.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let prev: Vec<u8> = row.try_get("prev_hash")?;
            let kind: String = row.try_get("kind")?;
            let body: String = row.try_get("body")?;
            let hash: Vec<u8> = row.try_get("hash")?;
            let broken = |reason: String| Ok(Verification::Broken { seq, reason });
            if seq != expected.seq + 1 {
                return broken(format!(
                    "expected record {} next, found {seq}",
                    expected.seq + 1
                ));
            }
            if prev != expected.hash {
                return broken("prev_hash is not the previous record's hash".into());
            }
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) else {
                return broken("body is not JSON".into());
            };
            if canonical_json(&value) != body {
                return broken("body is not in canonical form".into());
            }
            let computed = record_hash(&expected.hash, seq, &kind, &body);
            if hash != computed {
                return broken(format!(
                    "hash {} does not match the content (computed {})",
                    hash.to_lower_hex_string(),
                    computed.to_lower_hex_string()
                ));
            }
            expected = Head {
                seq,
                hash: computed,
            };
        }
    }
    let stored = head(store).await?;
    if stored != expected {
        return Ok(Verification::Broken {
            seq: stored.seq.max(expected.seq + 1),
            reason: format!(
                "the head row says record {} but the last record is {}",
                stored.seq, expected.seq
            ),
        });
    }
    Ok(Verification::Intact { head: expected })
}

/// Writes every record as one JSON line, in order; returns how many.
///
/// # Errors
/// A database or write failure.
pub async fn export(store: &Store, out: &mut dyn Write) -> Result<u64, ExportError> {
    let mut after = 0i64;
    let mut count = 0;
    loop {
        let rows = sqlx::query(
            "SELECT seq, prev_hash, kind, body, hash, recorded_at FROM signer_audit
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(store.pool())
        .await
        .map_err(StoreError::from)?;
        if rows.is_empty() {
            return Ok(count);
        }
        for row in &rows {
            let body: String = row.try_get("body").map_err(StoreError::from)?;
            let record = ExportedRecord {
                seq: row.try_get("seq").map_err(StoreError::from)?,
                prev_hash: row
                    .try_get::<Vec<u8>, _>("prev_hash")
                    .map_err(StoreError::from)?
                    .to_lower_hex_string(),
                kind: row.try_get("kind").map_err(StoreError::from)?,
                body: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                    what: "audit body",
                    detail: e.to_string(),
                })?,
                hash: row
                    .try_get::<Vec<u8>, _>("hash")
                    .map_err(StoreError::from)?
                    .to_lower_hex_string(),
                recorded_at: row.try_get("recorded_at").map_err(StoreError::from)?,
            };
            serde_json::to_writer(&mut *out, &record)?;
            out.write_all(b"\n")?;
            after = record.seq;
            count += 1;
        }
    }
}

/// Why an [`export`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("audit export: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising failed.
    #[error("audit export: {0}")]
    Json(#[from] serde_json::Error),
}
