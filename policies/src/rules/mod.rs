//! Rules: what the signer allows on top of the policy's script, as pure functions.
//!
//! [`evaluate`] takes a [`PsbtAnalysis`] (what the PSBT proves), the policy's compiled
//! rules ([`CompiledRules`]) and a [`Context`] the caller supplies (network, now, tip
//! height, velocity spent so far, highest used indexes, registered officers and verified
//! approvals)
//! and returns one [`RuleOutcome`] per rule with a stable [`RuleId`], and a [`Decision`].
//! Nothing here reads a clock, a database or an HSM.
//!
//! Always evaluated, whatever the document configures:
//! - `analysis`: the analysis has no finding (never warn-only);
//! - `locktime`: the locktime is not far in the future (never warn-only);
//! - `change_distance`: change and receive outputs sit within a distance of the highest
//!   used index (1,000 by default);
//! - `approval_quorum`: a cold or custom policy needs its officers' quorum and refuses
//!   outright when none is configured; a hot policy without a quorum signs automatically.
//!
//! Evaluated when configured: `allowlist`, `max_per_tx`, `velocity_<window>` (e.g.
//! `velocity_1h`, `velocity_24h`), `fee_absolute`, `fee_rate`, `fee_share`.
//!
//! Amounts are those the analysis proves: the value leaving the policy is the external
//! outputs (allowlisted outputs always count as external, even when they are ours) plus the
//! fee, and the fee is known only when every input's previous transaction is present.

mod compare;
pub mod config;
mod evaluate;
mod fingerprint;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bitcoin::{Amount, Network, ScriptBuf, Txid};
use serde::{Serialize, Serializer};

#[cfg(doc)]
use crate::analysis::PsbtAnalysis;
use crate::document::{PolicyDocument, PolicyId};

pub use compare::{Change, ChangeKind, Comparison, compare_documents, compare_rules};
pub use config::{
    AllowlistEntry, FeeCaps, LocktimeHorizon, Quorum, QuorumTier, Rules, VelocityWindow,
};
pub use evaluate::evaluate;
pub use fingerprint::PayoutFingerprint;

/// Errors of the rules area.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The rules section is not valid for its policy.
    #[error("invalid rules: {0}")]
    Invalid(String),
    /// An amount rule is set warn-only on mainnet.
    #[error("rule {rule} limits amounts and cannot be warn-only on mainnet")]
    WarnOnlyOnMainnet {
        /// The rule id.
        rule: String,
    },
    /// The context is for another network than the policy.
    #[error("context is for {context} but the policy is for {policy}")]
    NetworkMismatch {
        /// The policy's network.
        policy: Network,
        /// The context's network.
        context: Network,
    },
    /// The analysis was made under another policy.
    #[error("analysis was made under policy {analysis}, the rules are policy {policy}'s")]
    PolicyMismatch {
        /// Policy of the analysis.
        analysis: PolicyId,
        /// Policy of the rules.
        policy: PolicyId,
    },
}

/// A stable rule id, shown as lower snake case (`allowlist`, `velocity_24h`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RuleId {
    /// The analysis has no finding.
    Analysis,
    /// The locktime is not far in the future.
    Locktime,
    /// Every external output is allowlisted.
    Allowlist,
    /// The value leaving in one transaction.
    MaxPerTx,
    /// The value leaving within a rolling window.
    Velocity {
        /// The window in seconds.
        window_secs: u32,
    },
    /// The fee.
    FeeAbsolute,
    /// The feerate.
    FeeRate,
    /// The fee as a share of the amount paid out.
    FeeShare,
    /// Change and receive indexes near the highest used.
    ChangeDistance,
    /// The officers' approvals.
    ApprovalQuorum,
}

impl RuleId {
    /// The stable id.
    pub fn as_str(&self) -> String {
        match self {
            RuleId::Analysis => "analysis".into(),
            RuleId::Locktime => "locktime".into(),
            RuleId::Allowlist => "allowlist".into(),
            RuleId::MaxPerTx => "max_per_tx".into(),
            RuleId::Velocity { window_secs } => format!("velocity_{}", window_name(*window_secs)),
            RuleId::FeeAbsolute => "fee_absolute".into(),
            RuleId::FeeRate => "fee_rate".into(),
            RuleId::FeeShare => "fee_share".into(),
            RuleId::ChangeDistance => "change_distance".into(),
            RuleId::ApprovalQuorum => "approval_quorum".into(),
        }
    }
}

/// `3600` is `1h`, `86400` is `24h`, `1800` is `30m`, `90` is `90s`.
fn window_name(secs: u32) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What one rule concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within the rule.
    Pass,
    /// Outside the rule: the request is refused (or, for `approval_quorum`, waits).
    Fail,
    /// Outside a warn-only rule: reported, not enforced.
    Warn,
}

/// The unit of a [`RuleOutcome`]'s value and limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Satoshis.
    Sat,
    /// Satoshis per virtual byte.
    SatPerVb,
    /// Basis points (1/100 of a percent).
    Bps,
    /// A derivation index or a distance between indexes.
    Index,
    /// A block height.
    Height,
    /// Unix seconds.
    UnixTime,
    /// Officers' approvals.
    Approvals,
}

/// One rule's outcome: status, a plain-word reason, and the value compared with the limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    /// Which rule.
    pub rule: RuleId,
    /// Pass, fail or warn.
    pub status: Status,
    /// Plain words, with the values.
    pub reason: String,
    /// The value measured, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// The limit it was compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Unit of `value` and `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
}

/// What the signer may do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Every rule passes (or only warns): sign.
    Allow,
    /// Only the quorum is missing, and enough officers are registered to reach it.
    NeedsApproval {
        /// Approvals needed.
        required: u32,
        /// Valid approvals so far.
        approved: u32,
    },
    /// A rule fails: refuse.
    Refuse,
}

/// An officer's id as registered with the signer (the approvals module owns the keys).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct OfficerId(pub String);

impl fmt::Display for OfficerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Highest derivation indexes already used, per keychain (`None`: none used yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HighestUsed {
    /// Receive keychain.
    pub receive: Option<u32>,
    /// Change keychain.
    pub change: Option<u32>,
}

/// What the caller knows and the analysis cannot: the state of the world and of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Network the service runs on (must be the policy's).
    pub network: Network,
    /// Now, in Unix seconds.
    pub now: u64,
    /// Height of the chain tip.
    pub tip_height: u32,
    /// Value already counted in each velocity window, by window length in seconds. A
    /// configured window missing here fails (nothing is assumed spent-free).
    pub spent: BTreeMap<u32, Amount>,
    /// Value leaving already counted for a signed transaction this one replaces (same
    /// payouts, conflicting inputs: see [`PayoutFingerprint::is_replacement_of`]); only the
    /// excess is counted again. Zero when it replaces nothing.
    pub already_counted: Amount,
    /// Highest used indexes.
    pub highest_used: HighestUsed,
    /// The officers registered for this policy and not revoked.
    pub officers: BTreeSet<OfficerId>,
    /// Officers whose approval of this request was verified (signature, binding, expiry);
    /// repeats, unknown officers and the initiator are ignored here.
    pub approvals: Vec<OfficerId>,
    /// The officer who initiated the request, if it was an officer.
    pub initiator: Option<OfficerId>,
}

impl Context {
    /// A context with nothing spent, nothing used and no officer.
    pub fn new(network: Network, now: u64, tip_height: u32) -> Context {
        Context {
            network,
            now,
            tip_height,
            spent: BTreeMap::new(),
            already_counted: Amount::ZERO,
            highest_used: HighestUsed::default(),
            officers: BTreeSet::new(),
            approvals: Vec::new(),
            initiator: None,
        }
    }
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Policy evaluated against.
    pub policy_id: PolicyId,
    /// Unsigned txid.
    pub txid: Txid,
    /// One outcome per rule, in a fixed order.
    pub outcomes: Vec<RuleOutcome>,
    /// Sign, wait for approvals or refuse.
    pub decision: Decision,
    /// Value leaving the policy: external outputs plus fee (`None` when unproven).
    #[serde(with = "bitcoin::amount::serde::as_sat::opt")]
    pub leaving: Option<Amount>,
    /// What the velocity windows count for this transaction: `leaving` less what a replaced
    /// transaction already counted. Add it to every window when the signature is recorded.
    #[serde(with = "bitcoin::amount::serde::as_sat::opt")]
    pub velocity_delta: Option<Amount>,
    /// The payouts, for recognising replacements.
    pub fingerprint: PayoutFingerprint,
}

impl Evaluation {
    /// The outcome of one rule, if it was evaluated.
    pub fn outcome(&self, rule: RuleId) -> Option<&RuleOutcome> {
        self.outcomes.iter().find(|o| o.rule == rule)
    }

    /// Outcomes that fail.
    pub fn failures(&self) -> impl Iterator<Item = &RuleOutcome> {
        self.outcomes.iter().filter(|o| o.status == Status::Fail)
    }
}

/// A policy's rules made ready to evaluate: allowlist scripts derived once.
#[derive(Debug, Clone)]
pub struct CompiledRules {
    policy_id: PolicyId,
    network: Network,
    template: String,
    rules: Rules,
    allowlist: Option<BTreeSet<ScriptBuf>>,
}

impl CompiledRules {
    /// Compiles the rules of a (verified) policy document.
    ///
    /// # Errors
    /// Any [`Rules::check`] failure.
    pub fn new(policy: &PolicyDocument) -> Result<CompiledRules, RulesError> {
        policy.rules.check(policy.network, &policy.template)?;
        let allowlist = match &policy.rules.allowlist {
            None => None,
            Some(entries) => {
                let mut scripts = BTreeSet::new();
                for entry in entries {
                    scripts.extend(config::allowlist_scripts(entry, policy.network)?);
                }
                Some(scripts)
            }
        };
        Ok(CompiledRules {
            policy_id: policy.id,
            network: policy.network,
            template: policy.template.clone(),
            rules: policy.rules.clone(),
            allowlist,
        })
    }

    /// The rules as configured.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The policy these rules belong to.
    pub fn policy_id(&self) -> PolicyId {
        self.policy_id
    }

    /// Whether an output script is allowlisted (false when there is no allowlist).
    pub fn is_allowlisted(&self, script: &ScriptBuf) -> bool {
        self.allowlist.as_ref().is_some_and(|a| a.contains(script))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_stable_snake_case() {
        let ids = [
            (RuleId::Analysis, "analysis"),
            (RuleId::Locktime, "locktime"),
            (RuleId::Allowlist, "allowlist"),
            (RuleId::MaxPerTx, "max_per_tx"),
            (RuleId::Velocity { window_secs: 3600 }, "velocity_1h"),
            (
                RuleId::Velocity {
                    window_secs: 86_400,
                },
                "velocity_24h",
            ),
            (RuleId::Velocity { window_secs: 1_800 }, "velocity_30m"),
            (RuleId::Velocity { window_secs: 90 }, "velocity_90s"),
            (RuleId::FeeAbsolute, "fee_absolute"),
            (RuleId::FeeRate, "fee_rate"),
            (RuleId::FeeShare, "fee_share"),
            (RuleId::ChangeDistance, "change_distance"),
            (RuleId::ApprovalQuorum, "approval_quorum"),
        ];
        for (id, text) in ids {
            assert_eq!(id.to_string(), text);
            assert_eq!(serde_json::to_string(&id).ok(), Some(format!("\"{text}\"")));
        }
    }
}
