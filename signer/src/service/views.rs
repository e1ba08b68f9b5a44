//! What the API answers: request and response bodies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::policies::PolicyState;
use crate::store::{RequestStatus, SigningRequestRecord};

/// `POST /v1/signing-requests`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitSigningRequest {
    /// The registered policy to spend from (64 hex digits).
    pub policy_id: String,
    /// The PSBT, base64.
    pub psbt: String,
    /// Why this spend is made (kept with the request and in the audit log).
    pub purpose: String,
    /// The client's key for this request: the same key and body give the same answer.
    pub idempotency_key: String,
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleOutcomeView {
    /// The rule's stable id.
    pub rule_id: String,
    /// `pass`, `fail` or `warn` (a failing rule in warn-only mode).
    pub outcome: String,
    /// What the rule found, in words.
    pub message: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefusalView {
    /// Stable machine code (docs/signer-api.md and the signer README).
    pub code: String,
    /// In words.
    pub message: String,
}

/// A signing request as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SigningRequestView {
    /// Its id.
    pub id: String,
    /// The policy.
    pub policy_id: String,
    /// The stated purpose.
    pub purpose: String,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// `pending_approval`, `signed` or `refused`.
    pub status: RequestStatus,
    /// The unsigned transaction's id.
    pub unsigned_txid: Option<String>,
    /// What the PSBT does, in plain words.
    pub analysis_text: Option<String>,
    /// The same, structured (amounts in satoshis).
    #[schema(value_type = Option<Object>)]
    pub analysis: Option<serde_json::Value>,
    /// SHA-256 (hex) of the analysis' canonical JSON: what approvals bind to.
    pub analysis_sha256: Option<String>,
    /// Each rule's outcome.
    pub rule_outcomes: Vec<RuleOutcomeView>,
    /// Why it was refused, when it was.
    pub refusal: Option<RefusalView>,
    /// The signed PSBT (base64), when signed.
    pub signed_psbt: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&SigningRequestRecord> for SigningRequestView {
    fn from(r: &SigningRequestRecord) -> Self {
        use bitcoin::hex::DisplayHex as _;
        let analysis_text = r
            .analysis
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        let analysis = r.analysis.as_ref().and_then(|a| a.get("detail")).cloned();
        SigningRequestView {
            id: r.id.to_string(),
            policy_id: r.policy_id.clone(),
            purpose: r.purpose.clone(),
            idempotency_key: r.idempotency_key.clone(),
            status: r.status,
            unsigned_txid: r.unsigned_txid.clone(),
            analysis_text,
            analysis,
            analysis_sha256: r.analysis_sha256.map(|h| h.to_lower_hex_string()),
            rule_outcomes: serde_json::from_value(r.rule_outcomes.clone()).unwrap_or_default(),
            refusal: r.refusal_code.as_ref().map(|code| RefusalView {
                code: code.clone(),
                message: r.refusal_message.clone().unwrap_or_default(),
            }),
            signed_psbt: r.signed_psbt.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A page of signing requests.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SigningRequestPage {
    /// Newest first.
    pub requests: Vec<SigningRequestView>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// A registered policy with its rules.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    /// The policy id (the hash of its document).
    pub id: String,
    /// Its name.
    pub name: String,
    /// `active` or `retired`.
    pub state: PolicyState,
    /// `cold`, `hot` or `custom`.
    pub template: String,
    /// Whether requests need the officers' quorum before signing.
    pub needs_quorum: bool,
    /// The whole policy document: descriptors, keys and rules.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

/// `GET /v1/policies`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyList {
    /// The policies this client may submit to.
    pub policies: Vec<PolicyView>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// `ok`, or why the HSM cannot be used.
    pub hsm: String,
    /// `ok`, or why the database cannot be used.
    pub database: String,
    /// The machine code of the first problem, when there is one.
    pub code: Option<String>,
}
