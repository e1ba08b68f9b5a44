//! Officers and their approvals of signing requests.
//!
//! An officer is known by their public key. Approvals are stored as verified;
//! the primary key (request, officer) makes one officer count once, and a
//! resubmission of the very same approval is recognised as a replay.

use bitcoin::secp256k1::PublicKey;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{RequestId, Store, StoreError, Tx};
use crate::approvals::{Approval, Officer, OfficerId};

/// A registered officer with the dates of their record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OfficerRecord {
    /// The officer.
    #[serde(flatten)]
    pub officer: Officer,
    /// The policy change that added them (none: the ceremony file).
    pub added_by: Option<Uuid>,
    /// When they were registered.
    pub created_at: DateTime<Utc>,
    /// When they were revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The change that revoked them.
    pub revoked_by: Option<Uuid>,
}

/// What storing an approval did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new approval.
    New,
    /// The very same approval was stored before: it counts once.
    Replay,
    /// The officer approved before with another signature.
    OtherApprovalExists,
}

fn officer_id(text: &str) -> Result<OfficerId, StoreError> {
    text.parse::<PublicKey>()
        .map(OfficerId)
        .map_err(|e| StoreError::Corrupt {
            what: "officer id",
            detail: e.to_string(),
        })
}

fn officer_record(row: &PgRow) -> Result<OfficerRecord, StoreError> {
    let revoked_at: Option<DateTime<Utc>> = row.try_get("revoked_at")?;
    Ok(OfficerRecord {
        officer: Officer {
            id: officer_id(row.try_get("id")?)?,
            name: row.try_get("name")?,
            client: row.try_get("client_name")?,
            revoked: revoked_at.is_some(),
        },
        added_by: row.try_get("added_by")?,
        created_at: row.try_get("created_at")?,
        revoked_at,
        revoked_by: row.try_get("revoked_by")?,
    })
}

const OFFICER_COLUMNS: &str = "id, name, client_name, added_by, created_at, revoked_at, revoked_by";

/// Adds an officer in `tx`. Adding the same officer again with the same
/// name and client changes nothing; a revoked officer is never re-added.
///
/// # Errors
/// [`StoreError::Invalid`] when the key is registered with other details or was
/// revoked; a database failure.
pub async fn add_officer_in_tx(
    tx: &mut Tx,
    officer: &Officer,
    added_by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if officer.name.is_empty() || officer.name.len() > 64 {
        return Err(StoreError::Invalid {
            what: "officer name",
            detail: "1 to 64 bytes".into(),
        });
    }
    let inserted = sqlx::query(
        "INSERT INTO signer_officers (id, name, client_name, added_by, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(officer.id.to_string())
    .bind(&officer.name)
    .bind(&officer.client)
    .bind(added_by)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        return Ok(true);
    }
    let existing = officer_in_tx(tx, &officer.id).await?;
    match existing {
        Some(e) if e.revoked => Err(StoreError::Invalid {
            what: "officer",
            detail: format!("officer {} was revoked and cannot return", officer.id),
        }),
        Some(e) if e.name == officer.name && e.client == officer.client => Ok(false),
        _ => Err(StoreError::Invalid {
            what: "officer",
            detail: format!("officer {} is registered with other details", officer.id),
        }),
    }
}

/// The officer with this id, in `tx`.
///
/// # Errors
/// A database failure or a corrupt row.
pub async fn officer_in_tx(tx: &mut Tx, id: &OfficerId) -> Result<Option<Officer>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {OFFICER_COLUMNS} FROM signer_officers WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| officer_record(&r).map(|r| r.officer))
        .transpose()
}

/// Every officer, in `tx` (the registry an approval is checked against).
///
/// # Errors
/// A database failure or a corrupt row.
pub async fn officers_in_tx(tx: &mut Tx) -> Result<Vec<Officer>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {OFFICER_COLUMNS} FROM signer_officers ORDER BY created_at, id"
    ))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| officer_record(r).map(|r| r.officer))
        .collect()
}

/// Marks an officer revoked by `change`, in `tx`.
///
/// # Errors
/// [`StoreError::Invalid`] for an unknown officer; a database failure.
pub async fn revoke_officer_in_tx(
    tx: &mut Tx,
    id: &OfficerId,
    change: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let updated = sqlx::query(
        "UPDATE signer_officers SET revoked_at = $2, revoked_by = $3 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id.to_string())
    .bind(now)
    .bind(change)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 && officer_in_tx(tx, id).await?.is_none() {
        return Err(StoreError::Invalid {
            what: "officer",
            detail: format!("officer {id} is not registered"),
        });
    }
    Ok(())
}

/// Stores a verified approval of `request`, in `tx`.
///
/// # Errors
/// A database failure.
pub async fn store_approval_in_tx(
    tx: &mut Tx,
    request: RequestId,
    approval: &Approval,
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
    let inserted = sqlx::query(
        "INSERT INTO signer_approvals (request_id, officer_id, signature, expires_at, approval) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, officer_id) DO NOTHING",
    )
    .bind(request.0)
    .bind(approval.message.officer.to_string())
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
        "SELECT signature FROM signer_approvals WHERE request_id = $1 AND officer_id = $2",
        request.0,
        approval.message.officer.to_string()
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(if existing == signature {
        Stored::Replay
    } else {
        Stored::OtherApprovalExists
    })
}

/// The approvals of `request` that still count at `now`: unexpired, by
/// officers not revoked since.
///
/// # Errors
/// A database failure or a corrupt row.
pub async fn counting_approvals_in_tx(
    tx: &mut Tx,
    request: RequestId,
    now: u64,
) -> Result<Vec<Approval>, StoreError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT a.approval FROM signer_approvals a \
         JOIN signer_officers o ON o.id = a.officer_id \
         WHERE a.request_id = $1 AND a.expires_at > $2 AND o.revoked_at IS NULL \
         ORDER BY a.created_at, a.officer_id",
    )
    .bind(request.0)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let value: serde_json::Value = r.try_get("approval")?;
            serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
                what: "approval",
                detail: e.to_string(),
            })
        })
        .collect()
}

impl Store {
    /// Every officer with the dates of their record, for listings.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn officers(&self) -> Result<Vec<OfficerRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OFFICER_COLUMNS} FROM signer_officers ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(officer_record).collect()
    }

    /// Every approval stored for `request` (expired ones included), for views.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn approvals(&self, request: RequestId) -> Result<Vec<Approval>, StoreError> {
        let rows = sqlx::query(
            "SELECT approval FROM signer_approvals WHERE request_id = $1 \
             ORDER BY created_at, officer_id",
        )
        .bind(request.0)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let value: serde_json::Value = r.try_get("approval")?;
                serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
                    what: "approval",
                    detail: e.to_string(),
                })
            })
            .collect()
    }
}
