//! One decision on an analysed request: the rules over what the store knows,
//! the HSM call, and the commit of the decision, the velocity row and the
//! audit records before anything leaves the service.
//!
//! Velocity is checked twice (ADR 0006): once without the policy's row lock,
//! so a request the committed history already refuses never reaches `C_Sign`
//! and the HSM call runs without the lock; then, after signing, under the
//! lock, in the transaction that records the payment, counting every signing
//! of the policy that committed meanwhile. A request the second check refuses
//! (or holds for approval) keeps no signature: its signatures are dropped,
//! never stored or answered, and its audit record says how many were made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::Amount;
use bitcoin::hex::DisplayHex as _;
use chrono::{DateTime, Utc};
use policies::PolicyDocument;
use policies::analysis::{OutputClass, PsbtAnalysis};
use policies::rules::{HighestUsed, OfficerId, PayoutFingerprint};
use serde_json::json;

use super::analysed::Analysed;
use super::decide::{Decision, Known, Verdict, decide};
use super::{ApiError, AppState};
use crate::audit::{self, Kind};
use crate::hsm::pool::PoolSign;
use crate::sign::Signed;
use crate::store::requests::Decision as StoredDecision;
use crate::store::velocity::Payment;
use crate::store::{RequestStatus, SigningRequestRecord, Store, Tx};

/// The request a decision is made on.
pub(super) struct Subject<'a> {
    /// Its active policy.
    pub policy: &'a Arc<PolicyDocument>,
    /// Its PSBT, analysed under the policy.
    pub analysed: &'a Arc<Analysed>,
    /// The analysis as stored, when it is not stored yet (a submission).
    pub stored_analysis: Option<serde_json::Value>,
    /// Officers whose approvals of it verify.
    pub approvals: Vec<OfficerId>,
    /// The submitting client's name.
    pub initiator: &'a str,
    /// The request as it stands before the decision (claimed or locked in the
    /// caller's transaction).
    pub base: SigningRequestRecord,
}

/// What the velocity and index facts are read for.
struct Facts<'a> {
    policy: &'a PolicyDocument,
    policy_id: &'a str,
    digest: [u8; 32],
    inputs: &'a [String],
    approvals: &'a [OfficerId],
    initiator: &'a str,
}

impl Facts<'_> {
    /// What the store knows now; with `lock`, under the policy's row lock
    /// (taken first, so every later read sees each signing committed before it).
    async fn read(
        &self,
        state: &AppState,
        tx: &mut Tx,
        lock: bool,
    ) -> Result<(Known, DateTime<Utc>), ApiError> {
        let (receive, change) = Store::policy_indexes_in_tx(tx, self.policy_id, lock).await?;
        let now = Utc::now();
        // Officers acting as the submitting client are not eligible for its quorum
        // (every one of them, should several be tied to it).
        let officers = crate::store::approvals::officers_in_tx(tx).await?;
        let mut known = Known {
            already_counted: Store::replaced_value_in_tx(
                tx,
                self.policy_id,
                &self.digest,
                self.inputs,
            )
            .await?
            .unwrap_or(Amount::ZERO),
            highest_used: HighestUsed { receive, change },
            officers: officers
                .iter()
                .filter(|o| !o.revoked && o.client.as_deref() != Some(self.initiator))
                .map(|o| OfficerId(o.id.to_string()))
                .collect(),
            approvals: self.approvals.to_vec(),
            initiator: officers
                .iter()
                .find(|o| o.client.as_deref() == Some(self.initiator))
                .map(|o| OfficerId(o.id.to_string())),
            tip_height: state.tip_height(),
            now: u64::try_from(now.timestamp()).unwrap_or(0),
            ..Known::default()
        };
        for window in &self.policy.rules.velocity {
            let since = now - chrono::Duration::seconds(i64::from(window.window_secs));
            let spent = Store::spent_since_in_tx(tx, self.policy_id, since).await?;
            known.spent.insert(window.window_secs, spent);
        }
        Ok((known, now))
    }
}

/// Decides on `subject`, signs when allowed, re-checks under the policy's
/// lock, writes the decision and its audit records (after `audit`, the
/// caller's), commits `tx`, anchors, and answers the request as stored.
///
/// # Errors
/// An [`ApiError`]; `tx` is then rolled back: nothing stored, nothing released.
pub(super) async fn decide_and_commit(
    state: &AppState,
    mut tx: Tx,
    subject: Subject<'_>,
    audit: &mut Vec<(Kind, serde_json::Value)>,
) -> Result<SigningRequestRecord, ApiError> {
    let started = Instant::now();
    let Subject {
        policy,
        analysed,
        stored_analysis,
        approvals,
        initiator,
        base,
    } = subject;
    let id = base.id;
    let analysis = &analysed.analysis;
    let policy_id = policy.id.to_string();
    let rules = state.compiled_rules(policy)?;
    let fingerprint = PayoutFingerprint::of(&rules, analysis);
    let inputs: Vec<String> = fingerprint.inputs.iter().map(ToString::to_string).collect();
    let facts = Facts {
        policy,
        policy_id: &policy_id,
        digest: fingerprint.payout_digest(),
        inputs: &inputs,
        approvals: &approvals,
        initiator,
    };
    let (known, mut now) = facts.read(state, &mut tx, false).await?;
    let mut decision = decide(&rules, analysis, &known, policy.network)?;
    let decided_at = Instant::now();
    let (mut hsm_done, mut rechecked_at) = (decided_at, decided_at);
    let mut signed: Option<Box<Signed>> = None;
    let mut hsm_refusal = None;
    let mut discarded = 0;
    if decision.verdict == Verdict::Sign {
        let signing = state
            .hsm()
            .sign_analyzed(
                Arc::clone(policy),
                Arc::clone(&analysed.psbt),
                analysis.clone(),
            )
            .await?;
        hsm_done = Instant::now();
        match signing {
            PoolSign::Refused(refusal) => hsm_refusal = Some(refusal),
            PoolSign::Signed(made) => {
                let (known, at) = facts.read(state, &mut tx, true).await?;
                let again = decide(&rules, analysis, &known, policy.network)?;
                if again.verdict == Verdict::Sign {
                    signed = Some(made);
                } else {
                    discarded = made.signatures;
                    tracing::info!(request = %id, discarded, "re-check under the policy lock: signatures dropped");
                }
                decision = again;
                now = at;
                rechecked_at = Instant::now();
            }
        }
    }
    let txid = analysis.txid.to_string();
    audit.push((
        Kind::Analysis,
        json!({
            "request_id": id.to_string(),
            "unsigned_txid": txid,
            "analysis_sha256": analysed.analysis_sha256.to_lower_hex_string(),
            "findings": analysis.codes(),
            "text": analysed.text,
        }),
    ));
    for outcome in &decision.outcomes {
        audit.push((
            Kind::RuleOutcome,
            json!({"request_id": id.to_string(), "rule_id": outcome.rule_id,
                   "outcome": outcome.outcome, "message": outcome.message}),
        ));
    }
    let mut stored = StoredDecision {
        unsigned_txid: Some(txid),
        analysis: stored_analysis.clone(),
        analysis_sha256: Some(analysed.analysis_sha256),
        status: RequestStatus::PendingApproval,
        refusal_code: None,
        refusal_message: None,
        rule_outcomes: serde_json::to_value(&decision.outcomes)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        signed_psbt: None,
    };
    let request_id = id.to_string();
    if let Some(refusal) = hsm_refusal {
        refuse(
            &mut stored,
            audit,
            &request_id,
            refusal.code().to_owned(),
            refusal.to_string(),
            0,
        );
    } else {
        match decision.verdict.clone() {
            Verdict::Refuse { code, message } => {
                refuse(&mut stored, audit, &request_id, code, message, discarded);
            }
            Verdict::NeedsQuorum => {
                let mut body = json!({"request_id": request_id, "status": "pending_approval"});
                if discarded > 0 {
                    body["discarded_signatures"] = json!(discarded);
                }
                audit.push((Kind::Decision, body));
            }
            Verdict::Sign => {
                let made = signed.ok_or_else(|| {
                    ApiError::Internal("a sign verdict without signatures".into())
                })?;
                record_signing(
                    &mut tx, &facts, &decision, analysis, &made, base.id, now, audit,
                )
                .await?;
                stored.status = RequestStatus::Signed;
                stored.signed_psbt = Some(made.psbt.to_string());
            }
        }
    }
    let signed_at = Instant::now();
    let (created_at, updated_at) = Store::complete_request_in_tx(&mut tx, id, &stored).await?;
    let head = audit::append_all_in_tx(&mut tx, audit).await?;
    audit.clear();
    let written_at = Instant::now();
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    let committed_at = Instant::now();
    // Only a pending request will be analysed again (by its approvals).
    if stored.status == RequestStatus::PendingApproval {
        state.analyses().insert(id, Arc::clone(analysed));
    } else {
        state.analyses().remove(id);
    }
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
        recheck_ms = ms(rechecked_at - hsm_done),
        records_ms = ms(signed_at - rechecked_at),
        write_ms = ms(written_at - signed_at),
        commit_ms = ms(committed_at - written_at),
        anchor_ms = ms(committed_at.elapsed()),
        "decision committed"
    );
    Ok(SigningRequestRecord {
        unsigned_txid: stored.unsigned_txid,
        analysis: stored_analysis.or(base.analysis),
        analysis_sha256: stored.analysis_sha256,
        status: stored.status,
        refusal_code: stored.refusal_code,
        refusal_message: stored.refusal_message,
        rule_outcomes: stored.rule_outcomes,
        signed_psbt: stored.signed_psbt,
        created_at,
        updated_at,
        ..base
    })
}

/// The payment, the highest indexes and the signature and decision records
/// of a signing, in `tx` (under the policy's lock).
#[allow(clippy::too_many_arguments)]
async fn record_signing(
    tx: &mut Tx,
    facts: &Facts<'_>,
    decision: &Decision,
    analysis: &PsbtAnalysis,
    made: &Signed,
    id: crate::store::RequestId,
    now: DateTime<Utc>,
    audit: &mut Vec<(Kind, serde_json::Value)>,
) -> Result<(), ApiError> {
    let request_id = id.to_string();
    for signature in &made.made {
        audit.push((
            Kind::Signature,
            json!({"request_id": request_id, "key_label": signature.key_label,
                   "input": signature.input, "sighash_type": "ALL",
                   "sighash": signature.sighash.to_lower_hex_string()}),
        ));
    }
    let value_out = decision
        .evaluation
        .leaving
        .ok_or_else(|| ApiError::Internal("a signed psbt has no proven value".into()))?;
    let payment = Payment {
        policy_id: facts.policy_id,
        payout_fingerprint: facts.digest,
        inputs: facts.inputs.to_vec(),
        value_out,
        request_id: id,
    };
    Store::record_payment_in_tx(tx, &payment, now).await?;
    let (receive, change) = highest_indexes(analysis);
    Store::raise_indexes_in_tx(tx, facts.policy_id, receive, change).await?;
    audit.push((
        Kind::Decision,
        json!({"request_id": request_id, "status": "signed",
               "signatures": made.signatures, "finalized": made.finalized,
               "value_out_sat": value_out.to_sat()}),
    ));
    Ok(())
}

/// Milliseconds, for the timing log.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn refuse(
    stored: &mut StoredDecision,
    audit: &mut Vec<(Kind, serde_json::Value)>,
    request_id: &str,
    code: String,
    message: String,
    discarded: usize,
) {
    let mut body = json!({"request_id": request_id, "code": code, "message": message});
    if discarded > 0 {
        body["discarded_signatures"] = json!(discarded);
    }
    audit.push((Kind::Refusal, body));
    stored.status = RequestStatus::Refused;
    stored.refusal_code = Some(code);
    stored.refusal_message = Some(message);
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
