//! [`evaluate`]: every rule over one analysed PSBT.

use std::collections::BTreeSet;

use bitcoin::{Amount, absolute};

use super::config::{DEFAULT_CHANGE_DISTANCE, LocktimeHorizon};
use super::{
    CompiledRules, Context, Decision, Evaluation, OfficerId, PayoutFingerprint, RuleId,
    RuleOutcome, RulesError, Status, Unit,
};
use crate::analysis::{OutputClass, PsbtAnalysis};
use crate::keys::Keychain;

/// Evaluates every rule of a policy against an analysed PSBT.
///
/// Pure: the same inputs always give the same evaluation. Rules that fail in warn-only mode
/// come back as [`Status::Warn`] and do not refuse.
///
/// # Errors
/// [`RulesError::NetworkMismatch`] if the context is for another network than the policy,
/// [`RulesError::PolicyMismatch`] if the analysis was made under another policy.
pub fn evaluate(
    rules: &CompiledRules,
    analysis: &PsbtAnalysis,
    ctx: &Context,
) -> Result<Evaluation, RulesError> {
    if ctx.network != rules.network {
        return Err(RulesError::NetworkMismatch {
            policy: rules.network,
            context: ctx.network,
        });
    }
    if analysis.policy_id != rules.policy_id {
        return Err(RulesError::PolicyMismatch {
            analysis: analysis.policy_id,
            policy: rules.policy_id,
        });
    }
    let facts = Facts::of(rules, analysis, ctx);
    let config = &rules.rules;

    let mut outcomes = vec![
        analysis_rule(analysis),
        locktime_rule(analysis, ctx, config.locktime),
    ];
    if config.allowlist.is_some() {
        outcomes.push(allowlist_rule(rules, analysis));
    }
    if let Some(max) = config.max_per_tx_sat {
        outcomes.push(amount_limit(
            RuleId::MaxPerTx,
            "value leaving the policy in this transaction",
            facts.leaving,
            max,
        ));
    }
    for window in &config.velocity {
        outcomes.push(velocity_rule(
            window.window_secs,
            window.max_sat,
            &facts,
            ctx,
        ));
    }
    if let Some(max) = config.fee.max_absolute_sat {
        outcomes.push(amount_limit(RuleId::FeeAbsolute, "fee", analysis.fee, max));
    }
    if let Some(max) = config.fee.max_rate_sat_vb {
        outcomes.push(fee_rate_rule(analysis, max));
    }
    if let Some(bps) = config.fee.max_share_bps {
        outcomes.push(fee_share_rule(analysis, &facts, bps));
    }
    outcomes.push(change_distance_rule(rules, analysis, ctx));
    let (quorum, pending) = quorum_rule(rules, &facts, ctx);
    outcomes.push(quorum);

    for outcome in &mut outcomes {
        if outcome.status == Status::Fail && config.is_warn_only(&outcome.rule) {
            outcome.status = Status::Warn;
            outcome.reason = format!("warn-only: {}", outcome.reason);
        }
    }
    let other_failure = outcomes
        .iter()
        .any(|o| o.status == Status::Fail && o.rule != RuleId::ApprovalQuorum);
    let quorum_failed = outcomes
        .iter()
        .any(|o| o.status == Status::Fail && o.rule == RuleId::ApprovalQuorum);
    let decision = match (other_failure, quorum_failed, pending) {
        (true, _, _) => Decision::Refuse,
        (false, true, Some((required, approved))) => Decision::NeedsApproval { required, approved },
        (false, true, None) => Decision::Refuse,
        (false, false, _) => Decision::Allow,
    };
    Ok(Evaluation {
        policy_id: analysis.policy_id,
        txid: analysis.txid,
        outcomes,
        decision,
        leaving: facts.leaving,
        velocity_delta: facts.velocity_delta,
        fingerprint: facts.fingerprint,
    })
}

/// Amounts every rule shares.
struct Facts {
    /// External (and allowlisted) outputs.
    payout: Option<Amount>,
    /// Payout plus fee.
    leaving: Option<Amount>,
    /// Leaving less what a replaced transaction already counted.
    velocity_delta: Option<Amount>,
    fingerprint: PayoutFingerprint,
}

impl Facts {
    fn of(rules: &CompiledRules, analysis: &PsbtAnalysis, ctx: &Context) -> Facts {
        let payout = analysis
            .outputs
            .iter()
            .filter(|o| counts_as_payout(rules, o))
            .try_fold(Amount::ZERO, |acc, o| acc.checked_add(o.value));
        let leaving = payout
            .zip(analysis.fee)
            .and_then(|(p, f)| p.checked_add(f))
            .filter(|l| *l <= Amount::MAX_MONEY);
        let velocity_delta =
            leaving.map(|l| l.checked_sub(ctx.already_counted).unwrap_or(Amount::ZERO));
        Facts {
            payout,
            leaving,
            velocity_delta,
            fingerprint: PayoutFingerprint::of(rules, analysis),
        }
    }
}

/// External and unproven outputs are paid out; so is any allowlisted output, even one the
/// analysis proves ours, so that an allowlisted destination never hides as change.
pub(super) fn counts_as_payout(
    rules: &CompiledRules,
    output: &crate::analysis::OutputAnalysis,
) -> bool {
    matches!(output.class, OutputClass::External | OutputClass::Unproven)
        || rules.is_allowlisted(&output.script_pubkey)
}

fn outcome(rule: RuleId, pass: bool, reason: String) -> RuleOutcome {
    RuleOutcome {
        rule,
        status: if pass { Status::Pass } else { Status::Fail },
        reason,
        value: None,
        limit: None,
        unit: None,
    }
}

fn measured(mut o: RuleOutcome, value: u64, limit: u64, unit: Unit) -> RuleOutcome {
    o.value = Some(value);
    o.limit = Some(limit);
    o.unit = Some(unit);
    o
}

fn analysis_rule(analysis: &PsbtAnalysis) -> RuleOutcome {
    if analysis.is_clean() {
        outcome(
            RuleId::Analysis,
            true,
            "the psbt proves everything the rules need".into(),
        )
    } else {
        outcome(
            RuleId::Analysis,
            false,
            format!("the psbt has findings: {}", analysis.codes().join(", ")),
        )
    }
}

fn locktime_rule(
    analysis: &PsbtAnalysis,
    ctx: &Context,
    horizon: Option<LocktimeHorizon>,
) -> RuleOutcome {
    let horizon = horizon.unwrap_or_default();
    let enabled = analysis
        .inputs
        .iter()
        .any(|i| i.sequence.enables_absolute_lock_time());
    if !enabled {
        return outcome(
            RuleId::Locktime,
            true,
            "every input's nSequence is final, so the locktime has no effect".into(),
        );
    }
    match analysis.lock_time {
        absolute::LockTime::Blocks(h) => {
            let limit = ctx.tip_height.saturating_add(horizon.blocks_ahead);
            let h = h.to_consensus_u32();
            measured(
                outcome(
                    RuleId::Locktime,
                    h <= limit,
                    format!(
                        "locktime height {h}; the tip is {} and at most {} blocks ahead are signed",
                        ctx.tip_height, horizon.blocks_ahead
                    ),
                ),
                u64::from(h),
                u64::from(limit),
                Unit::Height,
            )
        }
        absolute::LockTime::Seconds(t) => {
            let limit = ctx.now.saturating_add(u64::from(horizon.seconds_ahead));
            let t = u64::from(t.to_consensus_u32());
            measured(
                outcome(
                    RuleId::Locktime,
                    t <= limit,
                    format!(
                        "locktime time {t}; now is {} and at most {} seconds ahead are signed",
                        ctx.now, horizon.seconds_ahead
                    ),
                ),
                t,
                limit,
                Unit::UnixTime,
            )
        }
    }
}

fn allowlist_rule(rules: &CompiledRules, analysis: &PsbtAnalysis) -> RuleOutcome {
    let off: Vec<String> = analysis
        .outputs
        .iter()
        .filter(|o| matches!(o.class, OutputClass::External | OutputClass::Unproven))
        .filter(|o| !rules.is_allowlisted(&o.script_pubkey))
        .map(|o| {
            format!(
                "output {} ({} sat to {})",
                o.index,
                o.value.to_sat(),
                o.address
                    .clone()
                    .unwrap_or_else(|| o.script_pubkey.to_string())
            )
        })
        .collect();
    if off.is_empty() {
        outcome(
            RuleId::Allowlist,
            true,
            "every external output pays an allowlisted destination".into(),
        )
    } else {
        outcome(
            RuleId::Allowlist,
            false,
            format!("not on the allowlist: {}", off.join(", ")),
        )
    }
}

fn amount_limit(rule: RuleId, what: &str, value: Option<Amount>, max: Amount) -> RuleOutcome {
    match value {
        None => outcome(rule, false, format!("{what} is not proven")),
        Some(v) => measured(
            outcome(
                rule,
                v <= max,
                format!(
                    "{what} is {} sat; the limit is {} sat",
                    v.to_sat(),
                    max.to_sat()
                ),
            ),
            v.to_sat(),
            max.to_sat(),
            Unit::Sat,
        ),
    }
}

fn velocity_rule(window_secs: u32, max: Amount, facts: &Facts, ctx: &Context) -> RuleOutcome {
    let rule = RuleId::Velocity { window_secs };
    let Some(spent) = ctx.spent.get(&window_secs) else {
        return outcome(
            rule,
            false,
            format!("the value already spent in the {window_secs} s window was not supplied"),
        );
    };
    let Some(delta) = facts.velocity_delta else {
        return outcome(rule, false, "value leaving the policy is not proven".into());
    };
    let Some(total) = spent.checked_add(delta) else {
        return outcome(rule, false, "spent plus this transaction overflows".into());
    };
    let replaced = if ctx.already_counted > Amount::ZERO {
        format!(
            " (it replaces payouts already counted at {} sat)",
            ctx.already_counted.to_sat()
        )
    } else {
        String::new()
    };
    measured(
        outcome(
            rule,
            total <= max,
            format!(
                "{} sat already left in the last {window_secs} s and this adds {} sat{replaced}: {} sat; the limit is {} sat",
                spent.to_sat(),
                delta.to_sat(),
                total.to_sat(),
                max.to_sat()
            ),
        ),
        total.to_sat(),
        max.to_sat(),
        Unit::Sat,
    )
}

fn fee_rate_rule(analysis: &PsbtAnalysis, max_sat_vb: u64) -> RuleOutcome {
    let (Some(fee), Some(vsize)) = (analysis.fee, analysis.signed_vsize) else {
        return outcome(
            RuleId::FeeRate,
            false,
            "fee or signed size is not proven".into(),
        );
    };
    let fee = u128::from(fee.to_sat());
    let vsize = u128::from(vsize.max(1));
    let pass = fee <= u128::from(max_sat_vb) * vsize;
    // Rounded up, so that a rate shown at the limit is really within it.
    let rate = u64::try_from(fee.div_ceil(vsize)).unwrap_or(u64::MAX);
    measured(
        outcome(
            RuleId::FeeRate,
            pass,
            format!(
                "feerate is {rate} sat/vB ({fee} sat over {vsize} vB with 72-byte signatures); the limit is {max_sat_vb} sat/vB"
            ),
        ),
        rate,
        max_sat_vb,
        Unit::SatPerVb,
    )
}

fn fee_share_rule(analysis: &PsbtAnalysis, facts: &Facts, max_bps: u32) -> RuleOutcome {
    let (Some(fee), Some(payout)) = (analysis.fee, facts.payout) else {
        return outcome(
            RuleId::FeeShare,
            false,
            "fee or payout is not proven".into(),
        );
    };
    // A transfer to ourselves pays nothing out: the fee is then a share of what it moves.
    let (base, what) = if payout > Amount::ZERO {
        (Some(payout), "paid out")
    } else {
        (analysis.total_in, "moved")
    };
    let Some(base) = base.filter(|b| *b > Amount::ZERO) else {
        return outcome(
            RuleId::FeeShare,
            false,
            "nothing is moved to share the fee against".into(),
        );
    };
    let fee_u = u128::from(fee.to_sat());
    let base_u = u128::from(base.to_sat());
    let pass = fee_u * 10_000 <= u128::from(max_bps) * base_u;
    let bps = u64::try_from((fee_u * 10_000).div_ceil(base_u)).unwrap_or(u64::MAX);
    measured(
        outcome(
            RuleId::FeeShare,
            pass,
            format!(
                "fee of {} sat is {bps} bps of the {} sat {what}; the limit is {max_bps} bps",
                fee.to_sat(),
                base.to_sat()
            ),
        ),
        bps,
        u64::from(max_bps),
        Unit::Bps,
    )
}

fn change_distance_rule(
    rules: &CompiledRules,
    analysis: &PsbtAnalysis,
    ctx: &Context,
) -> RuleOutcome {
    let distance = rules
        .rules
        .change_max_distance
        .unwrap_or(DEFAULT_CHANGE_DISTANCE);
    let mut far = Vec::new();
    let mut worst: Option<(u64, u64)> = None;
    for o in analysis
        .outputs
        .iter()
        .filter(|o| !rules.is_allowlisted(&o.script_pubkey))
    {
        let (keychain, index, highest) = match o.class {
            OutputClass::Change { index } => (Keychain::Change, index, ctx.highest_used.change),
            OutputClass::Receive { index } => (Keychain::Receive, index, ctx.highest_used.receive),
            OutputClass::External | OutputClass::Unproven => continue,
        };
        let limit = highest
            .unwrap_or(0)
            .saturating_add(distance)
            .min(0x7fff_ffff);
        if worst.is_none_or(|(v, _)| u64::from(index) > v) {
            worst = Some((u64::from(index), u64::from(limit)));
        }
        if index > limit {
            far.push(format!(
                "output {} at {keychain}/{index} (highest used {}, at most {limit})",
                o.index,
                highest.map_or("none".to_owned(), |h| h.to_string())
            ));
        }
    }
    let o = if far.is_empty() {
        outcome(
            RuleId::ChangeDistance,
            true,
            format!(
                "every change and receive output is within {distance} of the highest used index"
            ),
        )
    } else {
        outcome(
            RuleId::ChangeDistance,
            false,
            format!(
                "more than {distance} above the highest used index: {}",
                far.join(", ")
            ),
        )
    };
    match worst {
        Some((v, l)) => measured(o, v, l, Unit::Index),
        None => o,
    }
}

/// The quorum outcome, and `(required, approved)` when more approvals could satisfy it.
fn quorum_rule(
    rules: &CompiledRules,
    facts: &Facts,
    ctx: &Context,
) -> (RuleOutcome, Option<(u32, u32)>) {
    let rule = RuleId::ApprovalQuorum;
    let Some(quorum) = &rules.rules.approvals else {
        if rules.template == "hot" {
            return (
                outcome(
                    rule,
                    true,
                    "hot policy: signs automatically within its limits".into(),
                ),
                None,
            );
        }
        return (
            outcome(
                rule,
                false,
                format!(
                    "a {} policy needs its officers' approval and has no quorum configured",
                    rules.template
                ),
            ),
            None,
        );
    };
    // Unproven amounts take the highest tier.
    let required = quorum.required_for(facts.leaving.unwrap_or(Amount::MAX));
    if required == 0 {
        return (
            outcome(
                rule,
                true,
                "within the amount a hot policy signs automatically".into(),
            ),
            None,
        );
    }
    let eligible: BTreeSet<&OfficerId> = ctx
        .officers
        .iter()
        .filter(|o| Some(*o) != ctx.initiator.as_ref())
        .collect();
    let mut counted: BTreeSet<&OfficerId> = BTreeSet::new();
    let mut ignored = Vec::new();
    for officer in &ctx.approvals {
        if Some(officer) == ctx.initiator.as_ref() {
            ignored.push(format!("{officer} (the initiator)"));
        } else if !eligible.contains(officer) {
            ignored.push(format!("{officer} (not a registered officer)"));
        } else if !counted.insert(officer) {
            ignored.push(format!("{officer} (repeated)"));
        }
    }
    let approved = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    let eligible_n = u32::try_from(eligible.len()).unwrap_or(u32::MAX);
    let ignored = if ignored.is_empty() {
        String::new()
    } else {
        format!("; not counted: {}", ignored.join(", "))
    };
    let names: Vec<&str> = counted.iter().map(|o| o.0.as_str()).collect();
    let reason = format!(
        "{approved} of {required} approvals from {eligible_n} eligible officers{}{ignored}",
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    );
    if approved >= required {
        return (
            measured(
                outcome(rule, true, reason),
                u64::from(approved),
                u64::from(required),
                Unit::Approvals,
            ),
            None,
        );
    }
    let pending = (eligible_n >= required).then_some((required, approved));
    let reason = if pending.is_none() {
        format!("{reason}: too few officers are registered to ever reach the quorum")
    } else {
        reason
    };
    (
        measured(
            outcome(rule, false, reason),
            u64::from(approved),
            u64::from(required),
            Unit::Approvals,
        ),
        pending,
    )
}
