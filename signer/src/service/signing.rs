//! The signing flow: claim the idempotency key, decide, sign, and commit the
//! decision, the velocity update and the audit records before the signed PSBT
//! leaves the service (sign, re-check, commit, anchor, then answer; a replay
//! answers the stored signature). The decision itself is in [`super::commit`].

use std::sync::Arc;
use std::time::Instant;

use bitcoin::hex::DisplayHex as _;
use chrono::Utc;
use policies::rules::OfficerId;
use serde_json::json;

use super::analysed::Analysed;
use super::commit::{Subject, decide_and_commit, ms};
use super::views::SubmitSigningRequest;
use super::{ApiError, AppState, QuorumStatus};
use crate::audit::{self, Kind, canonical_json};
use crate::store::requests::NewRequest;
use crate::store::{Client, RequestId, RequestStatus, SigningRequestRecord, Store, Tx, sha256};

/// The longest idempotency key and purpose accepted.
const MAX_KEY_LEN: usize = 128;
const MAX_PURPOSE_LEN: usize = 1_000;

/// The answer to a submission: whether it made a new request, and the request.
#[derive(Debug)]
pub struct Submitted {
    /// False when this was a replay of an earlier identical submission.
    pub created: bool,
    /// The request.
    pub record: SigningRequestRecord,
}

fn body_hash(body: &SubmitSigningRequest) -> [u8; 32] {
    sha256(
        canonical_json(&json!({
            "policy_id": body.policy_id,
            "psbt": body.psbt,
            "purpose": body.purpose,
            "idempotency_key": body.idempotency_key,
        }))
        .as_bytes(),
    )
}

/// Submits a signing request for `client` (see the module documentation).
///
/// # Errors
/// An [`ApiError`]; on any error nothing was stored and nothing signed.
pub async fn submit(
    state: &AppState,
    client: &Client,
    body: SubmitSigningRequest,
) -> Result<Submitted, ApiError> {
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > MAX_KEY_LEN {
        return Err(ApiError::InvalidField {
            field: "idempotency_key",
            reason: format!("1 to {MAX_KEY_LEN} bytes"),
        });
    }
    if body.purpose.trim().is_empty() || body.purpose.len() > MAX_PURPOSE_LEN {
        return Err(ApiError::InvalidField {
            field: "purpose",
            reason: format!("1 to {MAX_PURPOSE_LEN} bytes, not blank"),
        });
    }
    if !client.may_use(&body.policy_id) {
        return Err(ApiError::PolicyForbidden(body.policy_id.clone()));
    }
    let hash = body_hash(&body);
    if let Some(existing) = state
        .store()
        .request_by_key(client.id, &body.idempotency_key)
        .await?
    {
        return replay(state, existing, hash).await;
    }
    let policy = state.active_policy(&body.policy_id).await?;
    let psbt_in = body.psbt.trim();
    let (analysed, stored_analysis) = Analysed::new(&policy, psbt_in)?;

    let mut tx = state.store().begin().await?;
    let claimed = Store::claim_request_in_tx(
        &mut tx,
        &NewRequest {
            client_id: client.id,
            idempotency_key: &body.idempotency_key,
            body_sha256: hash,
            policy_id: &body.policy_id,
            purpose: &body.purpose,
            psbt_in,
        },
    )
    .await?;
    let Some(id) = claimed else {
        // Another submission with this key committed while we worked: answer as it did.
        drop(tx);
        let existing = state
            .store()
            .request_by_key(client.id, &body.idempotency_key)
            .await?
            .ok_or_else(|| ApiError::Internal("claimed key has no request".into()))?;
        return replay(state, existing, hash).await;
    };
    let mut audit = vec![(
        Kind::Request,
        json!({
            "request_id": id.to_string(),
            "client": client.name,
            "policy_id": body.policy_id,
            "purpose": body.purpose,
            "idempotency_key": body.idempotency_key,
            "body_sha256": hash.to_lower_hex_string(),
        }),
    )];
    let now = Utc::now();
    let base = SigningRequestRecord {
        id,
        client_id: client.id,
        idempotency_key: body.idempotency_key.clone(),
        body_sha256: hash,
        policy_id: body.policy_id.clone(),
        purpose: body.purpose.clone(),
        psbt_in: psbt_in.to_owned(),
        unsigned_txid: None,
        analysis: None,
        analysis_sha256: None,
        status: RequestStatus::PendingApproval,
        refusal_code: None,
        refusal_message: None,
        rule_outcomes: json!([]),
        signed_psbt: None,
        created_at: now,
        updated_at: now,
    };
    let record = decide_and_commit(
        state,
        tx,
        Subject {
            policy: &policy,
            analysed: &Arc::new(analysed),
            stored_analysis: Some(stored_analysis),
            approvals: Vec::new(),
            initiator: &client.name,
            base,
        },
        &mut audit,
    )
    .await?;
    Ok(Submitted {
        created: true,
        record,
    })
}

async fn replay(
    state: &AppState,
    existing: SigningRequestRecord,
    hash: [u8; 32],
) -> Result<Submitted, ApiError> {
    if existing.body_sha256 != hash {
        return Err(ApiError::IdempotencyConflict(existing.idempotency_key));
    }
    if existing.status == RequestStatus::Signed {
        // The signature may have been committed by an attempt whose anchor
        // update failed: anchor before releasing it now.
        state.anchor_current_head().await?;
    }
    Ok(Submitted {
        created: false,
        record: existing,
    })
}

/// What [`try_complete_locked`] found: the request as it now stands and,
/// when it was pending, the quorum as the decision saw it.
#[derive(Debug)]
pub(crate) struct Completed {
    /// The request.
    pub record: SigningRequestRecord,
    /// The quorum, when the request was pending.
    pub quorum: Option<QuorumStatus>,
}

/// Re-evaluates a `pending_approval` request and signs it if the policy, its
/// rules and the officers' quorum now allow it; answers the request as it then stands.
///
/// The quorum is asked of [`AppState::quorum`] inside the same transaction,
/// with the request row locked, so two approvals arriving at once sign once.
///
/// # Errors
/// An [`ApiError`]; on any error nothing was stored and nothing signed.
pub async fn try_complete(
    state: &AppState,
    request_id: RequestId,
) -> Result<SigningRequestRecord, ApiError> {
    let tx = state.store().begin().await?;
    try_complete_in_tx(state, tx, request_id).await
}

/// As [`try_complete`], in the caller's open `tx`, which this commits: rows the
/// caller wrote in it commit with the decision and its signature, or, on any
/// error, not at all.
///
/// # Errors
/// As [`try_complete`]; `tx` is rolled back.
pub async fn try_complete_in_tx(
    state: &AppState,
    mut tx: Tx,
    request_id: RequestId,
) -> Result<SigningRequestRecord, ApiError> {
    let record = Store::lock_request_in_tx(&mut tx, request_id)
        .await?
        .ok_or_else(|| ApiError::UnknownRequest(request_id.to_string()))?;
    Ok(try_complete_locked(state, tx, record, Vec::new())
        .await?
        .record)
}

/// As [`try_complete_in_tx`], for a `record` the caller has locked in `tx`;
/// `audit` (the caller's records, such as an officer's approval) is appended
/// with the decision's records just before the commit, so the audit head's
/// lock is never held across the HSM call.
///
/// # Errors
/// As [`try_complete`]; `tx` is rolled back.
pub(crate) async fn try_complete_locked(
    state: &AppState,
    mut tx: Tx,
    record: SigningRequestRecord,
    mut audit: Vec<(Kind, serde_json::Value)>,
) -> Result<Completed, ApiError> {
    let started = Instant::now();
    if record.status != RequestStatus::PendingApproval {
        audit::append_all_in_tx(&mut tx, &audit).await?;
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        if record.status == RequestStatus::Signed {
            state.anchor_current_head().await?;
        }
        return Ok(Completed {
            record,
            quorum: None,
        });
    }
    let policy = state.active_policy(&record.policy_id).await?;
    let analysed = state.analyses().get(&record, &policy)?;
    let rules = state.compiled_rules(&policy)?;
    let quorum = state
        .quorum()
        .quorum(&mut tx, &record, &policy, &analysed.analysis, &rules)
        .await?;
    if !quorum.met() {
        audit::append_all_in_tx(&mut tx, &audit).await?;
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        return Ok(Completed {
            record,
            quorum: Some(quorum),
        });
    }
    let approvals: Vec<OfficerId> = quorum
        .approvers
        .iter()
        .map(|o| OfficerId(o.to_string()))
        .collect();
    tracing::debug!(
        request = %record.id,
        prepare_ms = ms(started.elapsed()),
        "quorum met: analysis and approvals checked again"
    );
    let initiator = super::approvals::client_name_in_tx(&mut tx, &record).await?;
    let record = decide_and_commit(
        state,
        tx,
        Subject {
            policy: &policy,
            analysed: &analysed,
            stored_analysis: None,
            approvals,
            initiator: &initiator,
            base: record,
        },
        &mut audit,
    )
    .await?;
    Ok(Completed {
        record,
        quorum: Some(quorum),
    })
}
