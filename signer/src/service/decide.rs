//! The decision on an analysed PSBT, before any HSM call: the policy's rules
//! (`policies::rules::evaluate`) over what the store knows (velocity spent so
//! far, a replaced payment's value, highest used indexes, registered officers,
//! verified approvals).

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::Amount;
use policies::PolicyDocument;
use policies::analysis::PsbtAnalysis;
use policies::rules::{
    CompiledRules, Context, Decision as RulesDecision, Evaluation, HighestUsed, OfficerId, RuleId,
    Status, evaluate,
};

use super::ApiError;
use super::views::RuleOutcomeView;

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Sign now.
    Sign,
    /// Hold for the officers' quorum.
    NeedsQuorum,
    /// Refuse with this code.
    Refuse {
        /// Stable code.
        code: String,
        /// In words.
        message: String,
    },
}

/// What the store knows when deciding.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Value counted per velocity window (by length in seconds).
    pub spent: BTreeMap<u32, Amount>,
    /// Value already counted for a payment this one replaces.
    pub already_counted: Amount,
    /// Highest used indexes.
    pub highest_used: HighestUsed,
    /// Registered, unrevoked officers.
    pub officers: BTreeSet<OfficerId>,
    /// Officers whose approvals of this request verify.
    pub approvals: Vec<OfficerId>,
    /// The officer acting as the client that submitted the request, if any:
    /// never eligible, its approval never counted.
    pub initiator: Option<OfficerId>,
    /// The chain tip height the service was given.
    pub tip_height: u32,
    /// Now, Unix seconds.
    pub now: u64,
}

/// The decision: each rule's outcome, the verdict, and the evaluation.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Each rule's outcome, in evaluation order.
    pub outcomes: Vec<RuleOutcomeView>,
    /// The verdict.
    pub verdict: Verdict,
    /// The rules engine's evaluation (value leaving, velocity delta, fingerprint).
    pub evaluation: Evaluation,
}

/// Whether requests under `policy` need the officers' quorum.
pub fn needs_quorum(policy: &PolicyDocument) -> bool {
    policy.template != "hot" || policy.rules.approvals.is_some()
}

/// The code of a failing rule: an analysis failure keeps the analysis' own
/// finding code (`INPUT_NOT_OURS`…); other rules are `RULE_<ID>` (`RULE_MAX_PER_TX`).
fn refusal_code(rule: &RuleId, analysis: &PsbtAnalysis) -> String {
    match rule {
        RuleId::Analysis => analysis
            .findings()
            .first()
            .map(|f| f.code.code().to_owned())
            .unwrap_or_else(|| "PSBT_REFUSED".to_owned()),
        other => format!("RULE_{}", other.as_str().to_uppercase()),
    }
}

/// Decides on `analysis` under `policy` and its compiled `rules`.
///
/// # Errors
/// [`ApiError::Internal`] when the rules cannot be evaluated (a network or
/// policy mismatch: a bug, since both come from the same document).
pub fn decide(
    rules: &CompiledRules,
    analysis: &PsbtAnalysis,
    known: &Known,
    network: bitcoin::Network,
) -> Result<Decision, ApiError> {
    let mut context = Context::new(network, known.now, known.tip_height);
    context.spent = known.spent.clone();
    context.already_counted = known.already_counted;
    context.highest_used = known.highest_used;
    context.officers = known.officers.clone();
    context.approvals = known.approvals.clone();
    context.initiator = known.initiator.clone();
    let evaluation =
        evaluate(rules, analysis, &context).map_err(|e| ApiError::Internal(e.to_string()))?;
    let outcomes = evaluation
        .outcomes
        .iter()
        .map(|o| RuleOutcomeView {
            rule_id: o.rule.as_str(),
            outcome: match o.status {
                Status::Pass => "pass",
                Status::Fail => "fail",
                Status::Warn => "warn",
            }
            .to_owned(),
            message: o.reason.clone(),
        })
        .collect();
    let verdict = match evaluation.decision {
        RulesDecision::Allow => Verdict::Sign,
        RulesDecision::NeedsApproval { .. } => Verdict::NeedsQuorum,
        RulesDecision::Refuse => {
            let failures: Vec<_> = evaluation
                .failures()
                .filter(|o| o.rule != RuleId::ApprovalQuorum || evaluation.failures().count() == 1)
                .collect();
            let first = failures
                .first()
                .map(|o| refusal_code(&o.rule, analysis))
                .unwrap_or_else(|| "PSBT_REFUSED".to_owned());
            let message = failures
                .iter()
                .map(|o| format!("{}: {}", o.rule, o.reason))
                .collect::<Vec<_>>()
                .join("; ");
            Verdict::Refuse {
                code: first,
                message,
            }
        }
    };
    Ok(Decision {
        outcomes,
        verdict,
        evaluation,
    })
}
