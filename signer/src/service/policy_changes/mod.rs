//! Policy changes: `POST|GET /v1/policy-changes`, `GET /v1/policy-changes/{id}`,
//! `POST /v1/policy-changes/{id}/approvals`.
//!
//! A tightening takes effect in the transaction that records it. A loosening
//! (a new policy, rules that allow more, a new officer) takes effect only once
//! its delay has passed since the proposal and the officers' quorum has signed
//! its canonical document; a revocation needs the quorum but no delay. A change
//! that becomes due is applied by the next approval or listing that sees it.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::hashes::{Hash as _, sha256};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

mod apply;

pub use apply::settle_due_changes;
use apply::{apply_in_tx, ready_in_tx, registered_in_tx};

use super::approvals::{OfficersError, now_secs};
use super::{ApiError, ApiJson, AppState, AuthClient, ErrorBody};
use crate::approvals::{
    ApprovalError, ChangeApproval, ChangeDocument, OfficerId, verify_change_approval,
};
use crate::audit::{self, Kind};
use crate::store::approvals::{Stored, officers_in_tx};
use crate::store::policy_changes::{
    ChangeRecord, ChangeStatus, NewChange, change_by_key_in_tx, counting_change_approvers_in_tx,
    governance_in_tx, insert_change_in_tx, lock_change_in_tx, store_change_approval_in_tx,
};
use crate::store::{StoreError, Tx};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/policy-changes", get(list_changes).post(propose_change))
        .route("/policy-changes/{id}", get(get_change))
        .route("/policy-changes/{id}/approvals", post(approve_change))
}

/// The OpenAPI paths of this file.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_changes, propose_change, get_change, approve_change))]
pub(crate) struct PolicyChangesDoc;

/// A proposed change.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeChange {
    /// The change: `{"kind": "policy", "document": {...}, "replaces": "<id>"}`,
    /// `{"kind": "add_officer", "officer": "<pubkey>", "name": "...", "client": "..."}`
    /// or `{"kind": "revoke_officer", "officer": "<pubkey>"}`.
    #[schema(value_type = Object)]
    pub change: ChangeDocument,
    /// The proposer's idempotency key.
    pub idempotency_key: String,
}

/// A policy change as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeView {
    /// Its id.
    pub id: String,
    /// The proposing client.
    pub proposed_by: String,
    /// `policy`, `add_officer` or `revoke_officer`.
    pub kind: String,
    /// `tightening` or `loosening`.
    pub direction: String,
    /// The canonical document officers sign the hash of.
    pub document: String,
    /// Its SHA-256 (hex): what an approval binds.
    pub document_sha256: String,
    /// Officers needed (0: none).
    pub quorum: u32,
    /// Approvals that count now.
    pub approvals: usize,
    /// Earliest time it may take effect.
    pub not_before: DateTime<Utc>,
    /// Where it stands.
    pub status: ChangeStatus,
    /// Why it failed.
    pub failure: Option<String>,
    /// The signer instance an approval must name.
    pub instance: String,
    /// When it was proposed.
    pub created_at: DateTime<Utc>,
    /// When it took effect.
    pub effective_at: Option<DateTime<Utc>>,
}

/// A page of changes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangePage {
    /// Newest first.
    pub changes: Vec<ChangeView>,
    /// Pass as `before` for the next page.
    pub next_before: Option<String>,
}

/// Filters of `GET /v1/policy-changes`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangeQuery {
    /// `pending`, `effective` or `failed`.
    status: Option<String>,
    /// Page size (default 50, at most 500).
    limit: Option<i64>,
    /// The `next_before` of the previous page.
    before: Option<String>,
}

fn refused(detail: impl Into<String>) -> OfficersError {
    OfficersError::Refused(ApprovalError::Malformed(detail.into()))
}

async fn view_in_tx(tx: &mut Tx, record: &ChangeRecord) -> Result<ChangeView, ApiError> {
    let instance = governance_in_tx(tx)
        .await?
        .map(|g| g.instance)
        .unwrap_or_default();
    let approvals = counting_change_approvers_in_tx(tx, record.id, now_secs())
        .await?
        .len();
    Ok(ChangeView {
        id: record.id.to_string(),
        proposed_by: record.proposed_by.clone(),
        kind: record.kind.clone(),
        direction: record.direction.as_str().to_owned(),
        document: record.document.clone(),
        document_sha256: sha256::Hash::from_byte_array(record.document_sha256).to_string(),
        quorum: record.quorum,
        approvals,
        not_before: record.not_before,
        status: record.status,
        failure: record.failure.clone(),
        instance,
        created_at: record.created_at,
        effective_at: record.effective_at,
    })
}

/// Proposes a policy change.
///
/// A tightening that needs no quorum takes effect at once (`status: effective`);
/// anything else is `pending` until its quorum (and, for a loosening, its delay).
#[utoipa::path(
    post,
    path = "/v1/policy-changes",
    tag = "policy-changes",
    security(("bearer" = [])),
    request_body = ProposeChange,
    responses(
        (status = 201, description = "recorded (effective at once for a tightening)", body = ChangeView),
        (status = 200, description = "replay of an identical proposal", body = ChangeView),
        (status = 400, description = "BODY_NOT_JSON, APPROVAL_MALFORMED", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 409, description = "IDEMPOTENCY_CONFLICT, CONFLICT", body = ErrorBody),
    )
)]
pub(crate) async fn propose_change(
    State(state): State<AppState>,
    AuthClient(client): AuthClient,
    ApiJson(body): ApiJson<ProposeChange>,
) -> Result<(StatusCode, Json<ChangeView>), OfficersError> {
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > 128 {
        return Err(ApiError::InvalidField {
            field: "idempotency_key",
            reason: "1 to 128 bytes".into(),
        }
        .into());
    }
    let canonical = body.change.canonical_json()?;
    let hash = body.change.hash()?;
    let mut tx = state.store().begin().await?;
    // A replay answers the change as it stands, whatever has changed since.
    if let Some(existing) =
        change_by_key_in_tx(&mut tx, &client.name, &body.idempotency_key).await?
    {
        if existing.document != canonical {
            return Err(ApiError::IdempotencyConflict(body.idempotency_key).into());
        }
        let view = view_in_tx(&mut tx, &existing).await?;
        return Ok((StatusCode::OK, Json(view)));
    }
    let governance = governance_in_tx(&mut tx)
        .await?
        .ok_or_else(|| ApiError::Conflict("no officers are configured on this signer".into()))?;
    let replaced = match &body.change {
        ChangeDocument::Policy {
            document,
            replaces: Some(old),
        } => {
            if !client.may_use(&old.to_string()) {
                return Err(ApiError::PolicyForbidden(old.to_string()).into());
            }
            let (old_doc, old_state) = registered_in_tx(&mut tx, old)
                .await?
                .ok_or_else(|| ApiError::UnknownPolicy(old.to_string()))?;
            if old_state != "active" {
                return Err(ApiError::PolicyRetired(old.to_string()).into());
            }
            if old_doc.name != document.name {
                return Err(refused("a replacing document must keep the policy's name"));
            }
            Some(old_doc)
        }
        ChangeDocument::Policy { .. } => None,
        ChangeDocument::AddOfficer { name, .. } if name.is_empty() || name.len() > 64 => {
            return Err(refused("officer name must be 1 to 64 bytes"));
        }
        ChangeDocument::RevokeOfficer { officer } => {
            let known = officers_in_tx(&mut tx).await?;
            if !known.iter().any(|o| o.id == *officer && !o.revoked) {
                return Err(ApprovalError::UnknownOfficer {
                    officer: officer.to_string(),
                }
                .into());
            }
            None
        }
        ChangeDocument::AddOfficer { .. } => None,
    };
    if let ChangeDocument::Policy { document, .. } = &body.change {
        document
            .rules
            .check(document.network, &document.template)
            .map_err(|e| refused(e.to_string()))?;
    }
    let class = body.change.classify(replaced.as_ref());
    let now = Utc::now();
    let delay = if class.delayed {
        chrono::Duration::seconds(
            i64::try_from(governance.loosening_delay_secs).unwrap_or(i64::MAX),
        )
    } else {
        chrono::Duration::zero()
    };
    let (record, created) = insert_change_in_tx(
        &mut tx,
        &NewChange {
            proposed_by: &client.name,
            idempotency_key: &body.idempotency_key,
            kind: body.change.kind(),
            direction: class.direction,
            document: &canonical,
            document_sha256: hash.to_byte_array(),
            quorum: if class.needs_quorum {
                governance.change_quorum
            } else {
                0
            },
            not_before: now + delay,
            now,
        },
    )
    .await?;
    if !created {
        if record.document != canonical {
            return Err(ApiError::IdempotencyConflict(body.idempotency_key).into());
        }
        let view = view_in_tx(&mut tx, &record).await?;
        return Ok((StatusCode::OK, Json(view)));
    }
    audit::append_in_tx(
        &mut tx,
        Kind::Policy,
        &json!({
            "event": "change_proposed",
            "change_id": record.id.to_string(),
            "proposed_by": client.name,
            "kind": record.kind,
            "direction": class.direction.as_str(),
            "differences": class.differences,
            "document_sha256": hash.to_string(),
            "quorum": record.quorum,
            "not_before": record.not_before.to_rfc3339(),
        }),
    )
    .await?;
    let record = if ready_in_tx(&mut tx, &record).await? {
        apply_in_tx(&mut tx, &record).await?;
        lock_change_in_tx(&mut tx, record.id)
            .await?
            .ok_or_else(|| ApiError::Internal("change vanished".into()))?
    } else {
        record
    };
    let view = view_in_tx(&mut tx, &record).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Submits an officer's signed approval of a policy change; applies the change
/// when its quorum is met and its delay has passed.
#[utoipa::path(
    post,
    path = "/v1/policy-changes/{id}/approvals",
    tag = "policy-changes",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the change id")),
    request_body(content = Object, description = "a change approval: the message fields and `signature`"),
    responses(
        (status = 201, description = "stored (applied if now due)", body = ChangeView),
        (status = 200, description = "this exact approval was stored before", body = ChangeView),
        (status = 403, description = "APPROVAL_SIGNATURE_INVALID, APPROVAL_OFFICER_UNKNOWN, APPROVAL_OFFICER_REVOKED, APPROVAL_SELF", body = ErrorBody),
        (status = 404, description = "UNKNOWN_CHANGE", body = ErrorBody),
        (status = 409, description = "APPROVAL_DUPLICATE_OFFICER, APPROVAL_NOT_PENDING", body = ErrorBody),
        (status = 422, description = "APPROVAL_WRONG_REQUEST, APPROVAL_WRONG_DOCUMENT, APPROVAL_EXPIRED, APPROVAL_EXPIRY_TOO_FAR", body = ErrorBody),
    )
)]
pub(crate) async fn approve_change(
    State(state): State<AppState>,
    AuthClient(_client): AuthClient,
    Path(id): Path<String>,
    ApiJson(approval): ApiJson<ChangeApproval>,
) -> Result<(StatusCode, Json<ChangeView>), OfficersError> {
    let unknown = || OfficersError::UnknownChange(id.clone());
    let change_id = Uuid::parse_str(&id).map_err(|_| unknown())?;
    let mut tx = state.store().begin().await?;
    let record = lock_change_in_tx(&mut tx, change_id)
        .await?
        .ok_or_else(unknown)?;
    let governance = governance_in_tx(&mut tx)
        .await?
        .ok_or_else(|| ApiError::Conflict("no officers are configured on this signer".into()))?;
    let officers = officers_in_tx(&mut tx).await?;
    let now = now_secs();
    if record.status != ChangeStatus::Pending {
        return Err(ApprovalError::NotPending {
            what: "change",
            id: record.id.to_string(),
            status: record.status.as_str().to_owned(),
        }
        .into());
    }
    let document = ChangeDocument::from_canonical(&record.document)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let officer = verify_change_approval(
        &approval,
        &governance.instance,
        record.id,
        sha256::Hash::from_byte_array(record.document_sha256),
        Some(&record.proposed_by),
        |id: &OfficerId| officers.iter().find(|o| o.id == *id).cloned(),
        now,
    )?;
    if document.subject_officer() == Some(&officer.id) {
        // An officer neither approves their own admission nor their own revocation.
        return Err(ApprovalError::SelfApproval {
            officer: officer.id.to_string(),
        }
        .into());
    }
    let new = match store_change_approval_in_tx(&mut tx, record.id, &approval).await? {
        Stored::New => {
            audit::append_in_tx(
                &mut tx,
                Kind::Approval,
                &json!({
                    "change_id": record.id.to_string(),
                    "officer": officer.id.to_string(),
                    "document_sha256": sha256::Hash::from_byte_array(record.document_sha256).to_string(),
                    "expires_at": approval.message.expires_at,
                }),
            )
            .await?;
            true
        }
        Stored::Replay => false,
        Stored::OtherApprovalExists => {
            return Err(ApprovalError::Duplicate {
                officer: officer.id.to_string(),
            }
            .into());
        }
    };
    let record = if ready_in_tx(&mut tx, &record).await? {
        apply_in_tx(&mut tx, &record).await?;
        lock_change_in_tx(&mut tx, record.id)
            .await?
            .ok_or_else(|| ApiError::Internal("change vanished".into()))?
    } else {
        record
    };
    let view = view_in_tx(&mut tx, &record).await?;
    tx.commit().await.map_err(StoreError::from)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Policy changes, newest first, paged; due changes are applied first.
#[utoipa::path(
    get,
    path = "/v1/policy-changes",
    tag = "policy-changes",
    security(("bearer" = [])),
    params(ChangeQuery),
    responses(
        (status = 200, body = ChangePage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn list_changes(
    State(state): State<AppState>,
    AuthClient(_client): AuthClient,
    Query(query): Query<ChangeQuery>,
) -> Result<Json<ChangePage>, ApiError> {
    settle_due_changes(state.store()).await?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            ChangeStatus::parse(s).ok_or(ApiError::InvalidField {
                field: "status",
                reason: "pending, effective or failed".into(),
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit",
            reason: "1 to 500".into(),
        });
    }
    let before = query
        .before
        .as_deref()
        .map(|b| {
            Uuid::parse_str(b).map_err(|_| ApiError::InvalidField {
                field: "before",
                reason: "a change id".into(),
            })
        })
        .transpose()?;
    let records = state.store().policy_changes(status, before, limit).await?;
    let mut tx = state.store().begin().await?;
    let mut changes = Vec::with_capacity(records.len());
    for record in &records {
        changes.push(view_in_tx(&mut tx, record).await?);
    }
    drop(tx);
    let next_before = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(ChangePage {
        changes,
        next_before,
    }))
}

/// One policy change (a due change is applied first).
#[utoipa::path(
    get,
    path = "/v1/policy-changes/{id}",
    tag = "policy-changes",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the change id")),
    responses(
        (status = 200, body = ChangeView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "UNKNOWN_CHANGE", body = ErrorBody),
    )
)]
pub(crate) async fn get_change(
    State(state): State<AppState>,
    AuthClient(_client): AuthClient,
    Path(id): Path<String>,
) -> Result<Json<ChangeView>, OfficersError> {
    settle_due_changes(state.store()).await?;
    let change_id = Uuid::parse_str(&id).map_err(|_| OfficersError::UnknownChange(id.clone()))?;
    let record = state
        .store()
        .policy_change(change_id)
        .await?
        .ok_or_else(|| OfficersError::UnknownChange(id.clone()))?;
    let mut tx = state.store().begin().await?;
    let view = view_in_tx(&mut tx, &record).await?;
    drop(tx);
    Ok(Json(view))
}
