//! The decision on an analysed PSBT, before any HSM call: refuse, wait for the
//! officers' quorum, or sign.
//!
//! The policy-level rules (allowlist, caps, velocity, change distance, quorum
//! size) come from `policies::rules` once its evaluator is wired in here; until
//! then the decision is: refuse on any analysis finding, sign a hot policy's
//! clean PSBT, and hold every other policy for the officers' quorum.

use bitcoin::Amount;
use policies::PolicyDocument;
use policies::analysis::PsbtAnalysis;

use super::views::RuleOutcomeView;

/// What the service knows besides the PSBT when it decides.
#[derive(Debug, Clone, Copy)]
pub struct DecisionContext {
    /// Value that left the policy in the last hour (velocity ledger).
    pub spent_last_hour: Amount,
    /// Value that left the policy in the last 24 hours.
    pub spent_last_day: Amount,
    /// Highest derivation index used so far (-1 if none).
    pub highest_used_index: i64,
}

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

/// The decision: each rule's outcome and the verdict.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Each rule's outcome, in evaluation order.
    pub outcomes: Vec<RuleOutcomeView>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Whether requests under `policy` need the officers' quorum.
pub fn needs_quorum(policy: &PolicyDocument) -> bool {
    policy.template != "hot"
}

/// Decides on `analysis` under `policy`.
pub fn decide(
    policy: &PolicyDocument,
    analysis: &PsbtAnalysis,
    _context: &DecisionContext,
) -> Decision {
    if let Some(first) = analysis.findings().first() {
        return Decision {
            outcomes: Vec::new(),
            verdict: Verdict::Refuse {
                code: first.code.code().to_owned(),
                message: analysis
                    .findings()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        };
    }
    let verdict = if needs_quorum(policy) {
        Verdict::NeedsQuorum
    } else {
        Verdict::Sign
    };
    Decision {
        outcomes: Vec::new(),
        verdict,
    }
}
