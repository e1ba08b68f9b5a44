//! The signing flow: claim the idempotency key, decide, sign, and commit the
//! decision, the velocity update and the audit records before the signed PSBT
//! leaves the service (sign, commit, anchor, then answer; a replay answers the
//! stored signature).

use std::sync::Arc;
use std::time::Instant;

use bitcoin::hashes::Hash as _;
use bitcoin::hex::DisplayHex as _;
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, Psbt};
use chrono::Utc;
use policies::PolicyDocument;
use policies::analysis::{OutputClass, PsbtAnalysis, analyze};
use policies::rules::{HighestUsed, OfficerId, PayoutFingerprint};
use serde_json::json;

use super::decide::{Known, Verdict, decide};
use super::views::SubmitSigningRequest;
use super::{ApiError, AppState};
use crate::audit::{self, Kind, canonical_json};
use crate::hsm::pool::PoolSign;
use crate::psbt_io;
use crate::store::requests::{Decision as StoredDecision, NewRequest};
use crate::store::velocity::Payment;
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
    let psbt = psbt_io::decode(body.psbt.trim().as_bytes())
        .map(|(psbt, _)| psbt)
        .map_err(|e| ApiError::PsbtMalformed(e.to_string()))?;
    let analysis = analyze(&policy, &psbt);

    let mut tx = state.store().begin().await?;
    let claimed = Store::claim_request_in_tx(
        &mut tx,
        &NewRequest {
            client_id: client.id,
            idempotency_key: &body.idempotency_key,
            body_sha256: hash,
            policy_id: &body.policy_id,
            purpose: &body.purpose,
            psbt_in: body.psbt.trim(),
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
    let record = decide_and_commit(
        state,
        tx,
        id,
        &policy,
        Arc::new(psbt),
        &analysis,
        &mut audit,
        Vec::new(),
        &client.name,
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

/// The analysis as stored: plain words and structure, and the hash approvals bind to.
fn stored_analysis(analysis: &PsbtAnalysis) -> Result<(serde_json::Value, [u8; 32]), ApiError> {
    let detail = serde_json::to_value(analysis).map_err(|e| ApiError::Internal(e.to_string()))?;
    let hash = sha256(canonical_json(&detail).as_bytes());
    Ok((
        json!({"text": analysis.to_string(), "detail": detail}),
        hash,
    ))
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
/// caller wrote in it (an officer's approval and its audit record) commit with
/// the decision and its signature, or, on any error, not at all.
///
/// # Errors
/// As [`try_complete`]; `tx` is rolled back.
pub async fn try_complete_in_tx(
    state: &AppState,
    mut tx: Tx,
    request_id: RequestId,
) -> Result<SigningRequestRecord, ApiError> {
    let started = Instant::now();
    let record = Store::lock_request_in_tx(&mut tx, request_id)
        .await?
        .ok_or_else(|| ApiError::UnknownRequest(request_id.to_string()))?;
    if record.status != RequestStatus::PendingApproval {
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        if record.status == RequestStatus::Signed {
            state.anchor_current_head().await?;
        }
        return Ok(record);
    }
    let policy = state.active_policy(&record.policy_id).await?;
    let psbt = psbt_io::decode(record.psbt_in.as_bytes())
        .map(|(psbt, _)| psbt)
        .map_err(|e| ApiError::Internal(format!("stored psbt does not decode: {e}")))?;
    let analysis = analyze(&policy, &psbt);
    let (_, analysis_hash) = stored_analysis(&analysis)?;
    if Some(analysis_hash) != record.analysis_sha256 {
        return Err(ApiError::Internal(
            "the analysis changed since the request was made".into(),
        ));
    }
    if !state
        .quorum()
        .quorum_met(&mut tx, &record, &policy, &analysis)
        .await?
    {
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        return Ok(record);
    }
    let approvals: Vec<OfficerId> = super::approvals::verified_approvers_in_tx(
        &mut tx,
        &record,
        u64::try_from(Utc::now().timestamp()).unwrap_or(0),
    )
    .await?
    .into_iter()
    .map(|o| OfficerId(o.to_string()))
    .collect();
    tracing::debug!(
        request = %request_id,
        prepare_ms = ms(started.elapsed()),
        "quorum met: analysis and approvals checked again"
    );
    let initiator = super::approvals::client_name_in_tx(&mut tx, &record).await?;
    let mut audit = Vec::new();
    decide_and_commit(
        state,
        tx,
        request_id,
        &policy,
        Arc::new(psbt),
        &analysis,
        &mut audit,
        approvals,
        &initiator,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn decide_and_commit(
    state: &AppState,
    mut tx: Tx,
    id: RequestId,
    policy: &Arc<PolicyDocument>,
    psbt: Arc<Psbt>,
    analysis: &PsbtAnalysis,
    audit: &mut Vec<(Kind, serde_json::Value)>,
    approvals: Vec<OfficerId>,
    initiator: &str,
) -> Result<SigningRequestRecord, ApiError> {
    let started = Instant::now();
    let policy_id = policy.id.to_string();
    let rules = state.compiled_rules(policy)?;
    let (receive, change) = Store::lock_policy_in_tx(&mut tx, &policy_id).await?;
    let now = Utc::now();
    let fingerprint = PayoutFingerprint::of(&rules, analysis);
    let digest = fingerprint.payout_digest();
    // Officers acting as the submitting client are not eligible for its quorum
    // (every one of them, should several be tied to it).
    let officers = crate::store::approvals::officers_in_tx(&mut tx).await?;
    let inputs: Vec<String> = fingerprint.inputs.iter().map(ToString::to_string).collect();
    let mut known = Known {
        already_counted: Store::replaced_value_in_tx(&mut tx, &policy_id, &digest, &inputs)
            .await?
            .unwrap_or(Amount::ZERO),
        highest_used: HighestUsed { receive, change },
        officers: officers
            .iter()
            .filter(|o| !o.revoked && o.client.as_deref() != Some(initiator))
            .map(|o| OfficerId(o.id.to_string()))
            .collect(),
        approvals,
        initiator: officers
            .iter()
            .find(|o| o.client.as_deref() == Some(initiator))
            .map(|o| OfficerId(o.id.to_string())),
        tip_height: state.tip_height(),
        now: u64::try_from(now.timestamp()).unwrap_or(0),
        ..Known::default()
    };
    for window in &policy.rules.velocity {
        let since = now - chrono::Duration::seconds(i64::from(window.window_secs));
        let spent = Store::spent_since_in_tx(&mut tx, &policy_id, since).await?;
        known.spent.insert(window.window_secs, spent);
    }
    let decision = decide(&rules, analysis, &known, policy.network)?;
    let decided_at = Instant::now();
    let (analysis_json, analysis_hash) = stored_analysis(analysis)?;
    let txid = analysis.txid.to_string();
    audit.push((
        Kind::Analysis,
        json!({
            "request_id": id.to_string(),
            "unsigned_txid": txid,
            "analysis_sha256": analysis_hash.to_lower_hex_string(),
            "findings": analysis.codes(),
            "text": analysis.to_string(),
        }),
    ));
    for outcome in &decision.outcomes {
        audit.push((
            Kind::RuleOutcome,
            json!({"request_id": id.to_string(), "rule_id": outcome.rule_id,
                   "outcome": outcome.outcome, "message": outcome.message}),
        ));
    }
    let outcomes_json =
        serde_json::to_value(&decision.outcomes).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut stored = StoredDecision {
        unsigned_txid: Some(txid.clone()),
        analysis: Some(analysis_json),
        analysis_sha256: Some(analysis_hash),
        status: RequestStatus::PendingApproval,
        refusal_code: None,
        refusal_message: None,
        rule_outcomes: outcomes_json,
        signed_psbt: None,
    };
    let sign = match decision.verdict {
        Verdict::Refuse { code, message } => {
            refuse(&mut stored, audit, id, code, message);
            false
        }
        Verdict::NeedsQuorum => {
            audit.push((
                Kind::Decision,
                json!({"request_id": id.to_string(), "status": "pending_approval"}),
            ));
            false
        }
        Verdict::Sign => true,
    };
    let mut hsm_done = decided_at;
    if sign {
        let signing = state
            .hsm()
            .sign_analyzed(Arc::clone(policy), Arc::clone(&psbt), analysis.clone())
            .await?;
        hsm_done = Instant::now();
        match signing {
            PoolSign::Refused(refusal) => {
                refuse(
                    &mut stored,
                    audit,
                    id,
                    refusal.code().to_owned(),
                    refusal.to_string(),
                );
            }
            PoolSign::Signed(signed) => {
                signature_records(state, policy, &psbt, analysis, id, audit)?;
                let value_out = decision.evaluation.leaving.ok_or_else(|| {
                    ApiError::Internal("a signed psbt has no proven value".into())
                })?;
                let payment = Payment {
                    policy_id: &policy_id,
                    payout_fingerprint: digest,
                    inputs,
                    value_out,
                    request_id: id,
                };
                Store::record_payment_in_tx(&mut tx, &payment, now).await?;
                let (receive, change) = highest_indexes(analysis);
                Store::raise_indexes_in_tx(&mut tx, &policy_id, receive, change).await?;
                audit.push((
                    Kind::Decision,
                    json!({"request_id": id.to_string(), "status": "signed",
                           "signatures": signed.signatures, "finalized": signed.finalized,
                           "value_out_sat": payment.value_out.to_sat()}),
                ));
                stored.status = RequestStatus::Signed;
                stored.signed_psbt = Some(signed.psbt.to_string());
            }
        }
    }
    let signed_at = Instant::now();
    Store::complete_request_in_tx(&mut tx, id, &stored).await?;
    let head = audit::append_all_in_tx(&mut tx, audit).await?;
    audit.clear();
    let written_at = Instant::now();
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    let committed_at = Instant::now();
    if stored.status == RequestStatus::Signed
        && let Some(head) = head
    {
        state.anchor(head).await?;
    }
    // Where a decision's time went, for operators and the service bench.
    tracing::debug!(
        request = %id,
        status = stored.status.as_str(),
        decide_ms = ms(decided_at - started),
        hsm_ms = ms(hsm_done - decided_at),
        records_ms = ms(signed_at - hsm_done),
        write_ms = ms(written_at - signed_at),
        commit_ms = ms(committed_at - written_at),
        anchor_ms = ms(committed_at.elapsed()),
        "decision committed"
    );
    state
        .store()
        .request(id)
        .await?
        .ok_or_else(|| ApiError::Internal("committed request not found".into()))
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn refuse(
    stored: &mut StoredDecision,
    audit: &mut Vec<(Kind, serde_json::Value)>,
    id: RequestId,
    code: String,
    message: String,
) {
    audit.push((
        Kind::Refusal,
        json!({"request_id": id.to_string(), "code": code, "message": message}),
    ));
    stored.status = RequestStatus::Refused;
    stored.refusal_code = Some(code);
    stored.refusal_message = Some(message);
}

/// One audit record per signature: key label, input and sighash.
fn signature_records(
    state: &AppState,
    policy: &PolicyDocument,
    psbt: &Psbt,
    analysis: &PsbtAnalysis,
    id: RequestId,
    audit: &mut Vec<(Kind, serde_json::Value)>,
) -> Result<(), ApiError> {
    let held = &state.hsm().settings().key_labels;
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    for (i, input) in analysis.inputs.iter().enumerate() {
        let (Some(script), Some(amount)) = (&input.witness_script, input.amount) else {
            return Err(ApiError::Internal(format!(
                "signed input {i} is not proven"
            )));
        };
        let sighash = cache
            .p2wsh_signature_hash(i, script, amount, EcdsaSighashType::All)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        for label in input
            .hsm_keys
            .iter()
            .filter(|l| held.contains(l) && policy.hsm_keys.iter().any(|k| &k.label == *l))
        {
            audit.push((
                Kind::Signature,
                json!({"request_id": id.to_string(), "key_label": label, "input": i,
                       "sighash_type": "ALL",
                       "sighash": sighash.to_byte_array().to_lower_hex_string()}),
            ));
        }
    }
    Ok(())
}

/// The highest receive and change indexes among the outputs.
fn highest_indexes(analysis: &PsbtAnalysis) -> (Option<u32>, Option<u32>) {
    let mut receive = None;
    let mut change = None;
    for output in &analysis.outputs {
        match output.class {
            OutputClass::Receive { index } => receive = receive.max(Some(index)),
            OutputClass::Change { index } => change = change.max(Some(index)),
            _ => {}
        }
    }
    (receive, change)
}
