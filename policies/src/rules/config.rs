//! The `rules` section of a policy document: what the operators configured.
//!
//! Every field is optional and left out of the JSON when absent, so a document written before
//! rules existed (`"rules": {}`) reads the same and keeps its id. An absent limit means no
//! limit; what always applies regardless is listed in [`crate::rules`].

use bitcoin::{Address, Amount, Network, ScriptBuf};
use miniscript::Descriptor;
use miniscript::descriptor::DescriptorPublicKey;
use serde::{Deserialize, Serialize};

use super::{RuleId, RulesError};

/// The default largest distance between a change (or receive) index in a transaction and the
/// highest index already used.
pub const DEFAULT_CHANGE_DISTANCE: u32 = 1_000;
/// Indexes of an allowlisted ranged descriptor that match: `0..ALLOWLIST_DESCRIPTOR_RANGE`.
pub const ALLOWLIST_DESCRIPTOR_RANGE: u32 = 1_000;
/// The default largest number of blocks a height locktime may be above the tip.
pub const DEFAULT_LOCKTIME_BLOCKS_AHEAD: u32 = 6;
/// The default largest number of seconds a time locktime may be after now.
pub const DEFAULT_LOCKTIME_SECONDS_AHEAD: u32 = 3_600;

/// Signer rules applied on top of the policy's script (see [`crate::rules`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Destinations that may be paid; absent means any destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<Vec<AllowlistEntry>>,
    /// Largest value leaving the policy (external outputs plus fee) in one transaction.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bitcoin::amount::serde::as_sat::opt"
    )]
    pub max_per_tx_sat: Option<Amount>,
    /// Rolling windows on the value leaving the policy, fees included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub velocity: Vec<VelocityWindow>,
    /// Fee caps.
    #[serde(default, skip_serializing_if = "FeeCaps::is_empty")]
    pub fee: FeeCaps,
    /// Largest distance of a change or receive index above the highest used
    /// ([`DEFAULT_CHANGE_DISTANCE`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_max_distance: Option<u32>,
    /// How far ahead a locktime may be (the defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locktime: Option<LocktimeHorizon>,
    /// The officers' approval quorum, by amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Quorum>,
    /// Rules that only warn during a rollout (never amount rules on mainnet, never
    /// `approval_quorum`, `analysis` or `locktime`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warn_only: Vec<String>,
}

/// One allowlisted destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AllowlistEntry {
    /// An address on the policy's network.
    Address(String),
    /// A descriptor; ranged ones match at indexes `0..ALLOWLIST_DESCRIPTOR_RANGE`.
    Descriptor(String),
}

/// A rolling window on the value leaving the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityWindow {
    /// Length of the window in seconds (e.g. 3600, 86400); also names the rule
    /// (`velocity_1h`, `velocity_24h`).
    pub window_secs: u32,
    /// Most value that may leave within any such window.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub max_sat: Amount,
}

/// Fee caps, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeCaps {
    /// Largest fee.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bitcoin::amount::serde::as_sat::opt"
    )]
    pub max_absolute_sat: Option<Amount>,
    /// Largest feerate in sat/vB, over the size with 72-byte signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_sat_vb: Option<u64>,
    /// Largest fee as a share of the amount paid out, in basis points (100 = 1 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_share_bps: Option<u32>,
}

impl FeeCaps {
    /// True when no cap is set.
    pub fn is_empty(&self) -> bool {
        *self == FeeCaps::default()
    }
}

/// How far ahead of the chain a transaction's locktime may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocktimeHorizon {
    /// Blocks above the tip for a height locktime.
    pub blocks_ahead: u32,
    /// Seconds after now for a time locktime.
    pub seconds_ahead: u32,
}

impl Default for LocktimeHorizon {
    fn default() -> Self {
        LocktimeHorizon {
            blocks_ahead: DEFAULT_LOCKTIME_BLOCKS_AHEAD,
            seconds_ahead: DEFAULT_LOCKTIME_SECONDS_AHEAD,
        }
    }
}

/// Approvals needed, growing with the amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quorum {
    /// Tiers by increasing `up_to_sat`; the last has no `up_to_sat` and covers every amount
    /// above. A value leaving the policy falls in the first tier whose `up_to_sat` it does not
    /// exceed.
    pub tiers: Vec<QuorumTier>,
}

/// One tier of a [`Quorum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumTier {
    /// Upper bound (inclusive) of the value leaving the policy; absent on the last tier.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bitcoin::amount::serde::as_sat::opt"
    )]
    pub up_to_sat: Option<Amount>,
    /// Distinct officers' approvals needed, the initiator excluded. Zero (sign automatically)
    /// only for hot policies.
    pub required: u32,
}

impl Quorum {
    /// Approvals needed for a value leaving the policy.
    pub fn required_for(&self, leaving: Amount) -> u32 {
        self.tiers
            .iter()
            .find(|t| t.up_to_sat.is_none_or(|up| leaving <= up))
            .or(self.tiers.last())
            .map_or(0, |t| t.required)
    }
}

/// Rule ids that limit amounts: refused as warn-only on mainnet.
pub(crate) fn is_amount_rule(id: &str) -> bool {
    matches!(id, "max_per_tx" | "fee_absolute" | "fee_rate" | "fee_share")
        || id.starts_with("velocity_")
}

impl Rules {
    /// True when nothing is configured (`{}`).
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }

    /// Checks the section for a policy on `network` made from the template kind `template`.
    ///
    /// # Errors
    /// The [`RulesError`] of the first problem: an address or descriptor that does not parse
    /// or is for another network, a duplicate entry, a zero or repeated velocity window, a
    /// change distance at or above 2^31, quorum tiers out of order or without a final tier,
    /// a zero quorum on a policy that is not hot, an unknown or forbidden warn-only rule.
    pub fn check(&self, network: Network, template: &str) -> Result<(), RulesError> {
        if let Some(entries) = &self.allowlist {
            let mut seen = std::collections::BTreeSet::new();
            for entry in entries {
                allowlist_scripts(entry, network)?;
                if !seen.insert(entry) {
                    return Err(RulesError::Invalid(format!(
                        "allowlist entry {entry:?} is listed twice"
                    )));
                }
            }
        }
        let mut windows = std::collections::BTreeSet::new();
        for w in &self.velocity {
            if w.window_secs == 0 {
                return Err(RulesError::Invalid("velocity window of 0 seconds".into()));
            }
            if !windows.insert(w.window_secs) {
                return Err(RulesError::Invalid(format!(
                    "velocity window of {} seconds is listed twice",
                    w.window_secs
                )));
            }
        }
        if let Some(d) = self.change_max_distance
            && d >= 0x8000_0000
        {
            return Err(RulesError::Invalid(format!(
                "change_max_distance {d} is not below 2^31"
            )));
        }
        if let Some(q) = &self.approvals {
            check_quorum(q, template)?;
        }
        let known = self.rule_ids();
        for id in &self.warn_only {
            if matches!(id.as_str(), "approval_quorum" | "analysis" | "locktime") {
                return Err(RulesError::Invalid(format!("{id} cannot be warn-only")));
            }
            if !known.iter().any(|k| k.as_str() == *id) {
                return Err(RulesError::Invalid(format!(
                    "warn_only names {id:?}, which is not a configured rule"
                )));
            }
            if network == Network::Bitcoin && is_amount_rule(id) {
                return Err(RulesError::WarnOnlyOnMainnet { rule: id.clone() });
            }
        }
        Ok(())
    }

    /// The ids of the rules this section configures (those that may be warn-only).
    pub fn rule_ids(&self) -> Vec<RuleId> {
        let mut ids = Vec::new();
        if self.allowlist.is_some() {
            ids.push(RuleId::Allowlist);
        }
        if self.max_per_tx_sat.is_some() {
            ids.push(RuleId::MaxPerTx);
        }
        ids.extend(self.velocity.iter().map(|w| RuleId::Velocity {
            window_secs: w.window_secs,
        }));
        if self.fee.max_absolute_sat.is_some() {
            ids.push(RuleId::FeeAbsolute);
        }
        if self.fee.max_rate_sat_vb.is_some() {
            ids.push(RuleId::FeeRate);
        }
        if self.fee.max_share_bps.is_some() {
            ids.push(RuleId::FeeShare);
        }
        ids.push(RuleId::ChangeDistance);
        ids
    }

    /// Whether the rule only warns.
    pub fn is_warn_only(&self, rule: &RuleId) -> bool {
        self.warn_only.iter().any(|w| *w == rule.as_str())
    }
}

fn check_quorum(q: &Quorum, template: &str) -> Result<(), RulesError> {
    let Some((last, rest)) = q.tiers.split_last() else {
        return Err(RulesError::Invalid("approval quorum has no tier".into()));
    };
    if last.up_to_sat.is_some() {
        return Err(RulesError::Invalid(
            "the last approval tier must have no up_to_sat (it covers every larger amount)".into(),
        ));
    }
    let mut previous: Option<Amount> = None;
    for tier in rest {
        let Some(up) = tier.up_to_sat else {
            return Err(RulesError::Invalid(
                "only the last approval tier may omit up_to_sat".into(),
            ));
        };
        if previous.is_some_and(|p| up <= p) {
            return Err(RulesError::Invalid(
                "approval tiers must have increasing up_to_sat".into(),
            ));
        }
        previous = Some(up);
    }
    if template != "hot" && q.tiers.iter().any(|t| t.required == 0) {
        return Err(RulesError::Invalid(format!(
            "a {template} policy always needs approvals: a tier of 0 is only for hot policies"
        )));
    }
    Ok(())
}

/// The scripts an allowlist entry matches.
///
/// # Errors
/// [`RulesError::Invalid`] if the entry does not parse or is for another network.
pub fn allowlist_scripts(
    entry: &AllowlistEntry,
    network: Network,
) -> Result<Vec<ScriptBuf>, RulesError> {
    match entry {
        AllowlistEntry::Address(a) => {
            let address = a
                .parse::<Address<bitcoin::address::NetworkUnchecked>>()
                .map_err(|e| RulesError::Invalid(format!("allowlist address {a}: {e}")))?
                .require_network(network)
                .map_err(|e| RulesError::Invalid(format!("allowlist address {a}: {e}")))?;
            Ok(vec![address.script_pubkey()])
        }
        AllowlistEntry::Descriptor(d) => {
            let descriptor: Descriptor<DescriptorPublicKey> = d
                .parse()
                .map_err(|e| RulesError::Invalid(format!("allowlist descriptor {d}: {e}")))?;
            if descriptor.is_multipath() {
                return Err(RulesError::Invalid(format!(
                    "allowlist descriptor {d} is multipath; list each path"
                )));
            }
            let keys_fit = descriptor.for_each_key(|k| match k {
                DescriptorPublicKey::XPub(x) => {
                    bitcoin::NetworkKind::from(network) == x.xkey.network
                }
                _ => true,
            });
            if !keys_fit {
                return Err(RulesError::Invalid(format!(
                    "allowlist descriptor {d} has keys of another network"
                )));
            }
            let end = if descriptor.has_wildcard() {
                ALLOWLIST_DESCRIPTOR_RANGE
            } else {
                1
            };
            let secp = bitcoin::secp256k1::Secp256k1::verification_only();
            (0..end)
                .map(|i| {
                    descriptor
                        .at_derivation_index(i)
                        .map_err(|e| e.to_string())
                        .and_then(|d| d.derived_descriptor(&secp).map_err(|e| e.to_string()))
                        .map(|d| d.script_pubkey())
                        .map_err(|e| {
                            RulesError::Invalid(format!("allowlist descriptor {d} at {i}: {e}"))
                        })
                })
                .collect()
        }
    }
}

use miniscript::ForEachKey as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers() -> Quorum {
        Quorum {
            tiers: vec![
                QuorumTier {
                    up_to_sat: Some(Amount::ONE_BTC),
                    required: 2,
                },
                QuorumTier {
                    up_to_sat: None,
                    required: 3,
                },
            ],
        }
    }

    #[test]
    fn quorum_tiers_include_their_bound() {
        let q = tiers();
        assert_eq!(q.required_for(Amount::ZERO), 2);
        assert_eq!(q.required_for(Amount::ONE_BTC), 2);
        assert_eq!(q.required_for(Amount::ONE_BTC + Amount::ONE_SAT), 3);
        assert_eq!(q.required_for(Amount::MAX), 3);
    }

    #[test]
    fn amount_rules_are_the_limits() {
        for id in [
            "max_per_tx",
            "fee_absolute",
            "fee_rate",
            "fee_share",
            "velocity_1h",
        ] {
            assert!(is_amount_rule(id), "{id}");
        }
        for id in [
            "allowlist",
            "change_distance",
            "approval_quorum",
            "locktime",
        ] {
            assert!(!is_amount_rule(id), "{id}");
        }
    }

    #[test]
    fn empty_rules_serialise_as_an_empty_object() {
        assert_eq!(
            serde_json::to_string(&Rules::default()).ok().as_deref(),
            Some("{}")
        );
        let parsed: Result<Rules, _> = serde_json::from_str("{}");
        assert!(parsed.is_ok_and(|r| r.is_empty()));
        assert!(serde_json::from_str::<Rules>(r#"{"max_fee": 1}"#).is_err());
    }
}
