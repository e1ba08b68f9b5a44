//! Officers and their approvals of signing requests:
//! `GET /v1/officers`, `GET|POST /v1/signing-requests/{id}/approvals`.
//!
//! An approval is verified against the request it is posted to (instance,
//! policy, request id, unsigned txid, analysis hash, expiry, officer registered
//! and not revoked, not the initiator) and stored with its audit record in one
//! transaction with the re-evaluation of the request
//! ([`signing::try_complete_in_tx`]), which signs it once [`OfficerQuorum`] is
//! met. A refused approval stores nothing.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bitcoin::Txid;
use bitcoin::hashes::{Hash as _, sha256};
use chrono::Utc;
use policies::PolicyDocument;
use policies::analysis::PsbtAnalysis;
use policies::rules::{CompiledRules, Context, Quorum, evaluate};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::signing;
use super::views::SigningRequestView;
use super::{
    ApiError, ApiJson, AppState, AuthClient, ErrorBody, QuorumCheck, QuorumFuture, QuorumStatus,
};
use crate::approvals::{
    Approval, ApprovalError, Officer, OfficerId, RequestBinding, verify_approval,
};
use crate::audit::Kind;
use crate::store::approvals::{
    Stored, counting_approvals_in_tx, officers_in_tx, store_approval_in_tx,
};
use crate::store::policy_changes::governance_in_tx;
use crate::store::{RequestId, RequestStatus, SigningRequestRecord, StoreError, Tx};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/officers", get(list_officers)).route(
        "/signing-requests/{id}/approvals",
        get(get_approvals).post(post_approval),
    )
}

/// The OpenAPI paths of this file.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_officers, get_approvals, post_approval))]
pub(crate) struct ApprovalsDoc;

/// Unix seconds now.
pub(crate) fn now_secs() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// An error of the officers' endpoints: the service's, or a refused approval.
#[derive(Debug)]
pub(crate) enum OfficersError {
    /// As the rest of the API.
    Api(ApiError),
    /// The approval was refused; nothing was stored or signed.
    Refused(ApprovalError),
    /// No policy change has this id.
    UnknownChange(String),
}

impl From<ApiError> for OfficersError {
    fn from(e: ApiError) -> Self {
        OfficersError::Api(e)
    }
}

impl From<StoreError> for OfficersError {
    fn from(e: StoreError) -> Self {
        OfficersError::Api(e.into())
    }
}

impl From<ApprovalError> for OfficersError {
    fn from(e: ApprovalError) -> Self {
        OfficersError::Refused(e)
    }
}

/// The HTTP status of a refused approval.
pub(crate) fn refusal_status(e: &ApprovalError) -> StatusCode {
    match e {
        ApprovalError::Malformed(_) => StatusCode::BAD_REQUEST,
        ApprovalError::SignatureInvalid { .. }
        | ApprovalError::UnknownOfficer { .. }
        | ApprovalError::RevokedOfficer { .. }
        | ApprovalError::SelfApproval { .. } => StatusCode::FORBIDDEN,
        ApprovalError::Duplicate { .. } | ApprovalError::NotPending { .. } => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for OfficersError {
    fn into_response(self) -> Response {
        match self {
            OfficersError::Api(e) => e.into_response(),
            OfficersError::UnknownChange(id) => (
                StatusCode::NOT_FOUND,
                Json(ErrorBody {
                    code: "UNKNOWN_CHANGE".to_owned(),
                    message: format!("no policy change {id}"),
                }),
            )
                .into_response(),
            OfficersError::Refused(e) => {
                tracing::info!(code = e.code(), error = %e, "approval refused");
                (
                    refusal_status(&e),
                    Json(ErrorBody {
                        code: e.code().to_owned(),
                        message: e.to_string(),
                    }),
                )
                    .into_response()
            }
        }
    }
}

/// A registered officer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfficerView {
    /// The officer's public key (compressed, hex): their id.
    pub id: String,
    /// Their name.
    pub name: String,
    /// The API client they also act as, if any.
    pub client: Option<String>,
    /// Whether they were revoked.
    pub revoked: bool,
    /// When they were registered.
    pub created_at: chrono::DateTime<Utc>,
    /// When they were revoked.
    pub revoked_at: Option<chrono::DateTime<Utc>>,
}

/// The registered officers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfficerList {
    /// Every officer, oldest first.
    pub officers: Vec<OfficerView>,
}

/// The registered officers, revoked ones included.
#[utoipa::path(
    get,
    path = "/v1/officers",
    tag = "officers",
    security(("bearer" = [])),
    responses(
        (status = 200, body = OfficerList),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn list_officers(
    State(state): State<AppState>,
    AuthClient(_client): AuthClient,
) -> Result<Json<OfficerList>, ApiError> {
    let officers = state
        .store()
        .officers()
        .await?
        .into_iter()
        .map(|r| OfficerView {
            id: r.officer.id.to_string(),
            name: r.officer.name,
            client: r.officer.client,
            revoked: r.officer.revoked,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
        .collect();
    Ok(Json(OfficerList { officers }))
}

/// What an officer signs for a request, and the approvals so far.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalsView {
    /// This signer instance's name.
    pub instance: String,
    /// The request.
    pub request_id: String,
    /// Its policy.
    pub policy_id: String,
    /// Its unsigned txid.
    pub unsigned_txid: Option<String>,
    /// The analysis hash an approval binds.
    pub analysis_sha256: Option<String>,
    /// The request's status.
    pub status: RequestStatus,
    /// Approvals that count now (unexpired, officer not revoked).
    pub counted: usize,
    /// Approvals the quorum needs for this request (none: the policy does not sign it).
    pub required: Option<u32>,
    /// Every approval stored, as submitted.
    #[schema(value_type = Vec<Object>)]
    pub approvals: Vec<serde_json::Value>,
}

/// The answer to a posted approval.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalResult {
    /// False when this exact approval had been stored before (it counts once).
    pub new: bool,
    /// The approvals as they now stand.
    pub approvals: ApprovalsView,
    /// The request as it now stands (signed once the quorum is met).
    pub request: SigningRequestView,
}

/// The name of the client that submitted `record`.
pub(crate) async fn client_name_in_tx(
    tx: &mut Tx,
    record: &SigningRequestRecord,
) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM signer_clients WHERE id = $1")
            .bind(record.client_id.0)
            .fetch_one(&mut **tx)
            .await?,
    )
}

async fn instance_in_tx(tx: &mut Tx) -> Result<String, ApiError> {
    governance_in_tx(tx)
        .await?
        .map(|g| g.instance)
        .ok_or_else(|| ApiError::Conflict("no officers are configured on this signer".into()))
}

/// The binding an approval of `record` must carry.
async fn binding_in_tx(
    tx: &mut Tx,
    record: &SigningRequestRecord,
) -> Result<RequestBinding, ApiError> {
    let instance = instance_in_tx(tx).await?;
    let internal = |what: &str| ApiError::Internal(format!("request {}: {what}", record.id));
    let txid: Txid = record
        .unsigned_txid
        .as_deref()
        .ok_or_else(|| internal("no unsigned txid"))?
        .parse()
        .map_err(|_| internal("unsigned txid does not parse"))?;
    let analysis_hash = sha256::Hash::from_byte_array(
        record
            .analysis_sha256
            .ok_or_else(|| internal("no analysis hash"))?,
    );
    Ok(RequestBinding {
        instance,
        policy_id: record
            .policy_id
            .parse()
            .map_err(|_| internal("policy id does not parse"))?,
        request_id: record.id.0,
        txid,
        analysis_hash,
        initiator: client_name_in_tx(tx, record).await?,
    })
}

fn lookup(officers: &[Officer]) -> impl Fn(&OfficerId) -> Option<Officer> + '_ {
    move |id| officers.iter().find(|o| o.id == *id).cloned()
}

/// The distinct officers whose stored approvals of `record` verify now.
///
/// Every stored approval is verified again (an officer may have been revoked,
/// an approval may have expired since it was stored).
///
/// # Errors
/// A store failure.
pub async fn verified_approvers_in_tx(
    tx: &mut Tx,
    record: &SigningRequestRecord,
    now: u64,
) -> Result<BTreeSet<OfficerId>, ApiError> {
    let binding = binding_in_tx(tx, record).await?;
    let officers = officers_in_tx(tx).await?;
    let approvals = counting_approvals_in_tx(tx, record.id, now).await?;
    Ok(approvals
        .iter()
        .filter_map(|a| verify_approval(a, &binding, lookup(&officers), now).ok())
        .map(|o| o.id)
        .collect())
}

async fn policy_in_tx(tx: &mut Tx, policy_id: &str) -> Result<PolicyDocument, ApiError> {
    let text: String = sqlx::query_scalar("SELECT document FROM signer_policies WHERE id = $1")
        .bind(policy_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::from)?;
    PolicyDocument::from_json(&text).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Approvals the policy's quorum needs for `record` (`None`: no quorum can allow it).
async fn required_in_tx(
    state: &AppState,
    tx: &mut Tx,
    record: &SigningRequestRecord,
    now: u64,
) -> Result<Option<u32>, ApiError> {
    let policy = policy_in_tx(tx, &record.policy_id).await?;
    let Some(quorum) = &policy.rules.approvals else {
        // Without a quorum a hot policy signs on its own; the others never sign.
        return Ok((policy.template == "hot").then_some(0));
    };
    // The analysis made at submission when it is still kept (see `analysed`).
    let analysed = state.analyses().get(record, &policy)?;
    let rules = state.compiled_rules(&policy)?;
    required_for(&policy, quorum, &analysed.analysis, &rules, now)
}

/// Approvals `quorum` needs for what `analysis` shows leaving `policy`.
fn required_for(
    policy: &PolicyDocument,
    quorum: &Quorum,
    analysis: &PsbtAnalysis,
    rules: &CompiledRules,
    now: u64,
) -> Result<Option<u32>, ApiError> {
    // Only the value leaving the policy is taken from the evaluation here.
    let evaluation = evaluate(rules, analysis, &Context::new(policy.network, now, 0))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(evaluation
        .leaving
        .map(|leaving| quorum.required_for(leaving)))
}

/// The officers' quorum over stored, re-verified approvals; the number needed
/// grows with the value leaving the policy (`rules.approvals` tiers).
#[derive(Debug, Clone, Copy, Default)]
pub struct OfficerQuorum;

impl QuorumCheck for OfficerQuorum {
    fn quorum<'a>(
        &'a self,
        tx: &'a mut Tx,
        request: &'a SigningRequestRecord,
        policy: &'a PolicyDocument,
        analysis: &'a PsbtAnalysis,
        rules: &'a CompiledRules,
    ) -> QuorumFuture<'a> {
        Box::pin(async move {
            let now = now_secs();
            let required = match &policy.rules.approvals {
                Some(quorum) => required_for(policy, quorum, analysis, rules, now)?,
                // Without a quorum a hot policy signs on its own; the others never sign.
                None => (policy.template == "hot").then_some(0),
            };
            if required.is_none() {
                return Ok(QuorumStatus::default());
            }
            Ok(QuorumStatus {
                required,
                approvers: verified_approvers_in_tx(tx, request, now).await?,
            })
        })
    }
}

async fn approvals_view_in_tx(
    state: &AppState,
    tx: &mut Tx,
    record: &SigningRequestRecord,
) -> Result<ApprovalsView, ApiError> {
    let now = now_secs();
    let instance = instance_in_tx(tx).await?;
    let (counted, required) = if record.status == RequestStatus::PendingApproval
        || record.status == RequestStatus::Signed
    {
        (
            verified_approvers_in_tx(tx, record, now).await?.len(),
            required_in_tx(state, tx, record, now).await?,
        )
    } else {
        (0, None)
    };
    approvals_view(&mut **tx, record, instance, counted, required).await
}

/// The view of `record`'s approvals with the quorum as counted.
async fn approvals_view<'c>(
    db: impl sqlx::PgExecutor<'c>,
    record: &SigningRequestRecord,
    instance: String,
    counted: usize,
    required: Option<u32>,
) -> Result<ApprovalsView, ApiError> {
    let approvals: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT approval FROM signer_approvals WHERE request_id = $1 ORDER BY created_at, officer_id",
    )
    .bind(record.id.0)
    .fetch_all(db)
    .await
    .map_err(StoreError::from)?;
    Ok(ApprovalsView {
        instance,
        request_id: record.id.to_string(),
        policy_id: record.policy_id.clone(),
        unsigned_txid: record.unsigned_txid.clone(),
        analysis_sha256: record
            .analysis_sha256
            .map(|h| sha256::Hash::from_byte_array(h).to_string()),
        status: record.status,
        counted,
        required,
        approvals,
    })
}

fn parse_request_id(id: &str) -> Result<RequestId, ApiError> {
    Uuid::parse_str(id)
        .map(RequestId)
        .map_err(|_| ApiError::UnknownRequest(id.to_owned()))
}

/// What an officer signs for a request, and the approvals it has.
#[utoipa::path(
    get,
    path = "/v1/signing-requests/{id}/approvals",
    tag = "approvals",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the request id")),
    responses(
        (status = 200, body = ApprovalsView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "UNKNOWN_REQUEST", body = ErrorBody),
    )
)]
pub(crate) async fn get_approvals(
    State(state): State<AppState>,
    AuthClient(client): AuthClient,
    Path(id): Path<String>,
) -> Result<Json<ApprovalsView>, ApiError> {
    let request_id = parse_request_id(&id)?;
    // A read: the request is not locked, so a signing in progress is not held up.
    let record = state
        .store()
        .request(request_id)
        .await?
        .filter(|r| client.may_use(&r.policy_id))
        .ok_or_else(|| ApiError::UnknownRequest(id.clone()))?;
    let mut tx = state.store().begin().await?;
    let view = approvals_view_in_tx(&state, &mut tx, &record).await?;
    drop(tx);
    Ok(Json(view))
}

/// Submits an officer's signed approval of a request.
///
/// Idempotent: the same approval again counts once and answers `200` with
/// `new: false`. When the quorum is met the request is re-evaluated and signed.
#[utoipa::path(
    post,
    path = "/v1/signing-requests/{id}/approvals",
    tag = "approvals",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the request id")),
    request_body(content = Object, description = "an approval: the message fields and `signature` (docs/adr/0007)"),
    responses(
        (status = 201, description = "stored (and signed if the quorum is now met)", body = ApprovalResult),
        (status = 200, description = "this exact approval was stored before", body = ApprovalResult),
        (status = 400, description = "BODY_NOT_JSON, APPROVAL_MALFORMED", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "APPROVAL_SIGNATURE_INVALID, APPROVAL_OFFICER_UNKNOWN, APPROVAL_OFFICER_REVOKED, APPROVAL_SELF", body = ErrorBody),
        (status = 404, description = "UNKNOWN_REQUEST", body = ErrorBody),
        (status = 409, description = "APPROVAL_DUPLICATE_OFFICER, APPROVAL_NOT_PENDING", body = ErrorBody),
        (status = 422, description = "APPROVAL_WRONG_POLICY, APPROVAL_WRONG_REQUEST, APPROVAL_WRONG_TXID, APPROVAL_WRONG_ANALYSIS, APPROVAL_EXPIRED, APPROVAL_EXPIRY_TOO_FAR", body = ErrorBody),
        (status = 503, description = "HSM_* or DATABASE_UNAVAILABLE", body = ErrorBody),
    )
)]
pub(crate) async fn post_approval(
    State(state): State<AppState>,
    AuthClient(client): AuthClient,
    Path(id): Path<String>,
    ApiJson(approval): ApiJson<Approval>,
) -> Result<(StatusCode, Json<ApprovalResult>), OfficersError> {
    let request_id = parse_request_id(&id)?;
    let now = now_secs();
    let mut tx = state.store().begin().await?;
    let record = crate::store::Store::lock_request_in_tx(&mut tx, request_id)
        .await?
        .filter(|r| client.may_use(&r.policy_id))
        .ok_or_else(|| ApiError::UnknownRequest(id.clone()))?;
    let officer = approval.message.officer;
    if record.status != RequestStatus::PendingApproval {
        // The very same approval, replayed after the request was decided, answers as before.
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT signature FROM signer_approvals WHERE request_id = $1 AND officer_id = $2",
        )
        .bind(record.id.0)
        .bind(officer.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if stored.as_deref() == Some(&approval.signature.0.serialize_compact()[..]) {
            let approvals = approvals_view_in_tx(&state, &mut tx, &record).await?;
            drop(tx);
            if record.status == RequestStatus::Signed {
                state.anchor_current_head().await?;
            }
            return Ok((
                StatusCode::OK,
                Json(ApprovalResult {
                    new: false,
                    approvals,
                    request: SigningRequestView::from(&record),
                }),
            ));
        }
        return Err(ApprovalError::NotPending {
            what: "request",
            id: record.id.to_string(),
            status: record.status.as_str().to_owned(),
        }
        .into());
    }
    let binding = binding_in_tx(&mut tx, &record).await?;
    let officers = officers_in_tx(&mut tx).await?;
    verify_approval(&approval, &binding, lookup(&officers), now)?;
    // The approval's audit record is appended with the decision's, at the
    // commit: the audit head's lock is then never held across an HSM call.
    let mut audit = Vec::new();
    let new = match store_approval_in_tx(&mut tx, record.id, &approval).await? {
        Stored::New => {
            audit.push((
                Kind::Approval,
                json!({
                    "request_id": record.id.to_string(),
                    "officer": officer.to_string(),
                    "unsigned_txid": binding.txid.to_string(),
                    "analysis_sha256": binding.analysis_hash.to_string(),
                    "expires_at": approval.message.expires_at,
                    "signature": serde_json::to_value(approval.signature).map_err(|e| ApiError::Internal(e.to_string()))?,
                }),
            ));
            true
        }
        Stored::Replay => false,
        Stored::OtherApprovalExists => {
            return Err(ApprovalError::Duplicate {
                officer: officer.to_string(),
            }
            .into());
        }
    };
    tracing::info!(request = %record.id, officer = %officer, new, "approval verified");
    // Re-evaluates and signs when the quorum is met, with the request still locked;
    // the approval, its audit record, the decision and the signature commit together.
    let completed = signing::try_complete_locked(&state, tx, record, audit).await?;
    let record = completed.record;
    // The quorum as the decision counted it: no second analysis for the view.
    let approvals = match completed.quorum {
        Some(quorum) => {
            approvals_view(
                state.store().pool(),
                &record,
                binding.instance.clone(),
                quorum.approvers.len(),
                quorum.required,
            )
            .await?
        }
        None => {
            let mut tx = state.store().begin().await?;
            approvals_view_in_tx(&state, &mut tx, &record).await?
        }
    };
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ApprovalResult {
            new,
            approvals,
            request: SigningRequestView::from(&record),
        }),
    ))
}
