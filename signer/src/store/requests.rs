//! Signing requests: one row per (client, idempotency key), claimed first and
//! completed in the same transaction, so that two identical requests at once
//! produce one decision (the second waits on the unique index, then replays).

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{ClientId, Store, StoreError, Tx};

/// A signing request's id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RequestId(pub Uuid);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a signing request stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Allowed by the policy and its rules; waiting for the officers' quorum.
    PendingApproval,
    /// Signed: the signed PSBT is stored and returned.
    Signed,
    /// Refused, with a code.
    Refused,
}

impl RequestStatus {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::PendingApproval => "pending_approval",
            RequestStatus::Signed => "signed",
            RequestStatus::Refused => "refused",
        }
    }

    /// Parses a stored or query-string name.
    pub fn parse(s: &str) -> Option<RequestStatus> {
        match s {
            "pending_approval" => Some(RequestStatus::PendingApproval),
            "signed" => Some(RequestStatus::Signed),
            "refused" => Some(RequestStatus::Refused),
            _ => None,
        }
    }
}

/// A signing request as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningRequestRecord {
    /// Its id.
    pub id: RequestId,
    /// The client that submitted it.
    pub client_id: ClientId,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// SHA-256 of the canonical request body.
    pub body_sha256: [u8; 32],
    /// The policy it spends from.
    pub policy_id: String,
    /// The client's stated purpose.
    pub purpose: String,
    /// The PSBT as submitted (base64).
    pub psbt_in: String,
    /// The unsigned transaction's id.
    pub unsigned_txid: Option<String>,
    /// The analysis (JSON) the decision was made on.
    pub analysis: Option<serde_json::Value>,
    /// SHA-256 of the analysis' canonical JSON: what officers' approvals bind to.
    pub analysis_sha256: Option<[u8; 32]>,
    /// Where it stands.
    pub status: RequestStatus,
    /// Why it was refused.
    pub refusal_code: Option<String>,
    /// The refusal in words.
    pub refusal_message: Option<String>,
    /// Each rule's outcome (JSON array).
    pub rule_outcomes: serde_json::Value,
    /// The signed PSBT (base64), once signed.
    pub signed_psbt: Option<String>,
    /// When it was first submitted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What [`Store::claim_request_in_tx`] inserts.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// The client.
    pub client_id: ClientId,
    /// Its idempotency key.
    pub idempotency_key: &'a str,
    /// SHA-256 of the canonical body.
    pub body_sha256: [u8; 32],
    /// The policy.
    pub policy_id: &'a str,
    /// The stated purpose.
    pub purpose: &'a str,
    /// The PSBT (base64).
    pub psbt_in: &'a str,
}

/// The decision written by [`Store::complete_request_in_tx`].
#[derive(Debug, Clone)]
pub struct Decision {
    /// The unsigned txid.
    pub unsigned_txid: Option<String>,
    /// The analysis JSON.
    pub analysis: Option<serde_json::Value>,
    /// SHA-256 of its canonical text.
    pub analysis_sha256: Option<[u8; 32]>,
    /// The resulting status.
    pub status: RequestStatus,
    /// The refusal code, when refused.
    pub refusal_code: Option<String>,
    /// The refusal in words, when refused.
    pub refusal_message: Option<String>,
    /// Rule outcomes (JSON array).
    pub rule_outcomes: serde_json::Value,
    /// The signed PSBT (base64), when signed.
    pub signed_psbt: Option<String>,
}

const COLUMNS: &str = "id, client_id, idempotency_key, body_sha256, policy_id, purpose, psbt_in, \
    unsigned_txid, analysis, analysis_sha256, status, refusal_code, refusal_message, \
    rule_outcomes, signed_psbt, created_at, updated_at";

fn hash32(row: &PgRow, column: &'static str) -> Result<Option<[u8; 32]>, StoreError> {
    let bytes: Option<Vec<u8>> = row.try_get(column)?;
    bytes
        .map(|b| {
            b.try_into().map_err(|_| StoreError::Corrupt {
                what: column,
                detail: "not 32 bytes".into(),
            })
        })
        .transpose()
}

fn record(row: &PgRow) -> Result<SigningRequestRecord, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(SigningRequestRecord {
        id: RequestId(row.try_get("id")?),
        client_id: ClientId(row.try_get("client_id")?),
        idempotency_key: row.try_get("idempotency_key")?,
        body_sha256: hash32(row, "body_sha256")?.ok_or(StoreError::Corrupt {
            what: "body_sha256",
            detail: "missing".into(),
        })?,
        policy_id: row.try_get("policy_id")?,
        purpose: row.try_get("purpose")?,
        psbt_in: row.try_get("psbt_in")?,
        unsigned_txid: row.try_get("unsigned_txid")?,
        analysis: row.try_get("analysis")?,
        analysis_sha256: hash32(row, "analysis_sha256")?,
        status: RequestStatus::parse(&status).ok_or(StoreError::Corrupt {
            what: "request status",
            detail: status.clone(),
        })?,
        refusal_code: row.try_get("refusal_code")?,
        refusal_message: row.try_get("refusal_message")?,
        rule_outcomes: row.try_get("rule_outcomes")?,
        signed_psbt: row.try_get("signed_psbt")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Claims (client, idempotency key) for a new request in `tx`.
    ///
    /// Returns `None` when the key is already taken: if another transaction holds
    /// it uncommitted, this waits for that transaction to end first, so the caller
    /// can then read the committed answer and replay it.
    ///
    /// The row is inserted as `pending_approval` and must be completed with
    /// [`Store::complete_request_in_tx`] before `tx` commits.
    ///
    /// # Errors
    /// A database failure.
    pub async fn claim_request_in_tx(
        tx: &mut Tx,
        new: &NewRequest<'_>,
    ) -> Result<Option<RequestId>, StoreError> {
        let id = RequestId(Uuid::now_v7());
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO signer_requests
               (id, client_id, idempotency_key, body_sha256, policy_id, purpose, psbt_in, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending_approval')
             ON CONFLICT (client_id, idempotency_key) DO NOTHING
             RETURNING id",
        )
        .bind(id.0)
        .bind(new.client_id.0)
        .bind(new.idempotency_key)
        .bind(new.body_sha256.as_slice())
        .bind(new.policy_id)
        .bind(new.purpose)
        .bind(new.psbt_in)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(inserted.map(RequestId))
    }

    /// Writes the decision on a request, in `tx`; returns its `created_at`
    /// and `updated_at`. An absent txid, analysis or analysis hash keeps the
    /// stored one (a 50-input analysis is sent once, at submission).
    ///
    /// # Errors
    /// A database failure, an unknown request, or a decision the table's checks refuse.
    pub async fn complete_request_in_tx(
        tx: &mut Tx,
        id: RequestId,
        decision: &Decision,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), StoreError> {
        Ok(sqlx::query_as(
            "UPDATE signer_requests SET unsigned_txid = COALESCE($2, unsigned_txid),
               analysis = COALESCE($3, analysis), analysis_sha256 = COALESCE($4, analysis_sha256),
               status = $5, refusal_code = $6, refusal_message = $7, rule_outcomes = $8,
               signed_psbt = $9, updated_at = now()
             WHERE id = $1
             RETURNING created_at, updated_at",
        )
        .bind(id.0)
        .bind(&decision.unsigned_txid)
        .bind(&decision.analysis)
        .bind(decision.analysis_sha256.as_ref().map(|h| h.as_slice()))
        .bind(decision.status.as_str())
        .bind(&decision.refusal_code)
        .bind(&decision.refusal_message)
        .bind(&decision.rule_outcomes)
        .bind(&decision.signed_psbt)
        .fetch_one(&mut **tx)
        .await?)
    }

    /// The request with this id, locked for update in `tx`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn lock_request_in_tx(
        tx: &mut Tx,
        id: RequestId,
    ) -> Result<Option<SigningRequestRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signer_requests WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// The request with this id.
    ///
    /// # Errors
    /// A database failure.
    pub async fn request(&self, id: RequestId) -> Result<Option<SigningRequestRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signer_requests WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// The request a client made under this idempotency key.
    ///
    /// # Errors
    /// A database failure.
    pub async fn request_by_key(
        &self,
        client: ClientId,
        idempotency_key: &str,
    ) -> Result<Option<SigningRequestRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signer_requests WHERE client_id = $1 AND idempotency_key = $2"
        ))
        .bind(client.0)
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// A page of requests, newest first, optionally of one status and of the
    /// given policies only; `before` is the last id of the previous page.
    ///
    /// # Errors
    /// A database failure.
    pub async fn list_requests(
        &self,
        status: Option<RequestStatus>,
        policies: Option<&[String]>,
        before: Option<RequestId>,
        limit: i64,
    ) -> Result<Vec<SigningRequestRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signer_requests
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text[] IS NULL OR policy_id = ANY($2))
               AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(status.map(RequestStatus::as_str))
        .bind(policies)
        .bind(before.map(|b| b.0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }
}
