//! Governance (from the ceremony file), policy changes and their approvals.

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

mod governance;

pub use governance::{
    CeremonyOfficer, Governance, OfficerCeremony, bootstrap_in_tx, governance_in_tx,
};

use super::approvals::Stored;
use super::{Store, StoreError, Tx};
use crate::approvals::{ChangeApproval, Direction};

/// Where a policy change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// Waiting for its quorum or its delay.
    Pending,
    /// In force.
    Effective,
    /// Reached its quorum and delay but could not be applied (e.g. the policy
    /// it replaces was replaced meanwhile).
    Failed,
}

impl ChangeStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Pending => "pending",
            ChangeStatus::Effective => "effective",
            ChangeStatus::Failed => "failed",
        }
    }

    /// Parses a stored or query-string name.
    pub fn parse(s: &str) -> Option<ChangeStatus> {
        match s {
            "pending" => Some(ChangeStatus::Pending),
            "effective" => Some(ChangeStatus::Effective),
            "failed" => Some(ChangeStatus::Failed),
            _ => None,
        }
    }
}

/// A policy change as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Its id.
    pub id: Uuid,
    /// The client that proposed it.
    pub proposed_by: String,
    /// The proposer's idempotency key.
    pub idempotency_key: String,
    /// `policy`, `add_officer` or `revoke_officer`.
    pub kind: String,
    /// Tightening or loosening.
    pub direction: Direction,
    /// The canonical document.
    pub document: String,
    /// Its SHA-256.
    pub document_sha256: [u8; 32],
    /// Officers needed (0: none).
    pub quorum: u32,
    /// Earliest time it may take effect.
    pub not_before: DateTime<Utc>,
    /// Where it stands.
    pub status: ChangeStatus,
    /// Why it failed.
    pub failure: Option<String>,
    /// When it was proposed.
    pub created_at: DateTime<Utc>,
    /// When it took effect.
    pub effective_at: Option<DateTime<Utc>>,
}

/// What [`insert_change_in_tx`] stores.
#[derive(Debug, Clone)]
pub struct NewChange<'a> {
    /// The proposing client.
    pub proposed_by: &'a str,
    /// Its idempotency key.
    pub idempotency_key: &'a str,
    /// The kind.
    pub kind: &'a str,
    /// The direction.
    pub direction: Direction,
    /// The canonical document.
    pub document: &'a str,
    /// Its SHA-256.
    pub document_sha256: [u8; 32],
    /// Officers needed.
    pub quorum: u32,
    /// Earliest effect.
    pub not_before: DateTime<Utc>,
    /// Now.
    pub now: DateTime<Utc>,
}

const COLUMNS: &str = "id, proposed_by, idempotency_key, kind, direction, document, \
    document_sha256, quorum, not_before, status, failure, created_at, effective_at";

fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn record(row: &PgRow) -> Result<ChangeRecord, StoreError> {
    let direction = match row.try_get::<String, _>("direction")?.as_str() {
        "tightening" => Direction::Tightening,
        "loosening" => Direction::Loosening,
        other => return Err(corrupt("change direction", other)),
    };
    let status: String = row.try_get("status")?;
    let hash: Vec<u8> = row.try_get("document_sha256")?;
    let quorum: i32 = row.try_get("quorum")?;
    Ok(ChangeRecord {
        id: row.try_get("id")?,
        proposed_by: row.try_get("proposed_by")?,
        idempotency_key: row.try_get("idempotency_key")?,
        kind: row.try_get("kind")?,
        direction,
        document: row.try_get("document")?,
        document_sha256: hash
            .try_into()
            .map_err(|_| corrupt("document_sha256", "not 32 bytes"))?,
        quorum: u32::try_from(quorum).map_err(|_| corrupt("quorum", quorum))?,
        not_before: row.try_get("not_before")?,
        status: ChangeStatus::parse(&status).ok_or_else(|| corrupt("change status", &status))?,
        failure: row.try_get("failure")?,
        created_at: row.try_get("created_at")?,
        effective_at: row.try_get("effective_at")?,
    })
}

/// Inserts a change, or returns the one stored under the same (proposer, key).
/// The boolean is true when this call inserted it.
///
/// # Errors
/// A database failure.
pub async fn insert_change_in_tx(
    tx: &mut Tx,
    change: &NewChange<'_>,
) -> Result<(ChangeRecord, bool), StoreError> {
    let quorum = i32::try_from(change.quorum).map_err(|_| StoreError::Invalid {
        what: "quorum",
        detail: "too large".into(),
    })?;
    // Always pending here: a change that needs nothing is applied by the caller in this tx.
    let status = ChangeStatus::Pending;
    let inserted = sqlx::query(&format!(
        "INSERT INTO signer_policy_changes (id, proposed_by, idempotency_key, kind, direction, \
         document, document_sha256, quorum, not_before, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (proposed_by, idempotency_key) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(change.proposed_by)
    .bind(change.idempotency_key)
    .bind(change.kind)
    .bind(change.direction.as_str())
    .bind(change.document)
    .bind(&change.document_sha256[..])
    .bind(quorum)
    .bind(change.not_before)
    .bind(status.as_str())
    .bind(change.now)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = inserted {
        return Ok((record(&row)?, true));
    }
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM signer_policy_changes WHERE proposed_by = $1 AND idempotency_key = $2"
    ))
    .bind(change.proposed_by)
    .bind(change.idempotency_key)
    .fetch_one(&mut **tx)
    .await?;
    Ok((record(&row)?, false))
}

/// The change `proposed_by` made under `idempotency_key`, if any.
///
/// # Errors
/// A database failure.
pub async fn change_by_key_in_tx(
    tx: &mut Tx,
    proposed_by: &str,
    idempotency_key: &str,
) -> Result<Option<ChangeRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM signer_policy_changes WHERE proposed_by = $1 AND idempotency_key = $2"
    ))
    .bind(proposed_by)
    .bind(idempotency_key)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| record(&r)).transpose()
}

/// The change `id`, locked until `tx` ends.
///
/// # Errors
/// A database failure.
pub async fn lock_change_in_tx(tx: &mut Tx, id: Uuid) -> Result<Option<ChangeRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM signer_policy_changes WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| record(&r)).transpose()
}

/// Pending changes whose delay has passed, oldest first, locked (others skipped).
///
/// # Errors
/// A database failure.
pub async fn due_changes_in_tx(
    tx: &mut Tx,
    now: DateTime<Utc>,
) -> Result<Vec<ChangeRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM signer_policy_changes WHERE status = 'pending' AND not_before <= $1 \
         ORDER BY created_at, id FOR UPDATE SKIP LOCKED"
    ))
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(record).collect()
}

/// Marks a change effective (or failed, with `failure`), in `tx`.
///
/// # Errors
/// A database failure.
pub async fn finish_change_in_tx(
    tx: &mut Tx,
    id: Uuid,
    failure: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (status, effective_at) = match failure {
        None => (ChangeStatus::Effective, Some(now)),
        Some(_) => (ChangeStatus::Failed, None),
    };
    sqlx::query(
        "UPDATE signer_policy_changes SET status = $2, failure = $3, effective_at = $4 \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(failure)
    .bind(effective_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores a verified approval of change `id`, in `tx`.
///
/// # Errors
/// A database failure.
pub async fn store_change_approval_in_tx(
    tx: &mut Tx,
    id: Uuid,
    approval: &ChangeApproval,
) -> Result<Stored, StoreError> {
    let signature = approval.signature.0.serialize_compact();
    let json = serde_json::to_value(approval).map_err(|e| StoreError::Invalid {
        what: "approval",
        detail: e.to_string(),
    })?;
    let expires_at =
        i64::try_from(approval.message.expires_at).map_err(|_| StoreError::Invalid {
            what: "approval expiry",
            detail: "out of range".into(),
        })?;
    let officer = approval.message.officer.to_string();
    let inserted = sqlx::query(
        "INSERT INTO signer_change_approvals (change_id, officer_id, signature, expires_at, approval) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (change_id, officer_id) DO NOTHING",
    )
    .bind(id)
    .bind(&officer)
    .bind(&signature[..])
    .bind(expires_at)
    .bind(json)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        return Ok(Stored::New);
    }
    let existing: Vec<u8> = sqlx::query_scalar!(
        "SELECT signature FROM signer_change_approvals WHERE change_id = $1 AND officer_id = $2",
        id,
        &officer
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(if existing == signature {
        Stored::Replay
    } else {
        Stored::OtherApprovalExists
    })
}

/// Officers whose approval of change `id` still counts at `now` (unexpired, not revoked).
///
/// # Errors
/// A database failure.
pub async fn counting_change_approvers_in_tx(
    tx: &mut Tx,
    id: Uuid,
    now: u64,
) -> Result<Vec<String>, StoreError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    Ok(sqlx::query_scalar(
        "SELECT a.officer_id FROM signer_change_approvals a \
         JOIN signer_officers o ON o.id = a.officer_id \
         WHERE a.change_id = $1 AND a.expires_at > $2 AND o.revoked_at IS NULL \
         ORDER BY a.officer_id",
    )
    .bind(id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}

impl Store {
    /// The change `id`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn policy_change(&self, id: Uuid) -> Result<Option<ChangeRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signer_policy_changes WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// Changes, newest first, optionally of one status, `limit` after `before`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn policy_changes(
        &self,
        status: Option<ChangeStatus>,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signer_policy_changes \
             WHERE ($1::TEXT IS NULL OR status = $1) AND ($2::UUID IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(status.map(ChangeStatus::as_str))
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record).collect()
    }

    /// Every approval of change `id`, for views.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn change_approvals(&self, id: Uuid) -> Result<Vec<ChangeApproval>, StoreError> {
        let rows = sqlx::query(
            "SELECT approval FROM signer_change_approvals WHERE change_id = $1 \
             ORDER BY created_at, officer_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let value: serde_json::Value = r.try_get("approval")?;
                serde_json::from_value(value).map_err(|e| corrupt("change approval", e))
            })
            .collect()
    }
}
