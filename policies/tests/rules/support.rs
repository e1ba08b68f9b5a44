//! Shared setup: a cold policy with rules, a context, and shortcuts.

use std::collections::BTreeSet;

use bitcoin::{Amount, Network};
use policies::rules::{Context, OfficerId, Quorum, QuorumTier, RuleId, Rules, Status};
use policies::{CompiledRules, PolicyDocument, analyze, evaluate};

use crate::common::*;

pub const NOW: u64 = 1_800_000_000;
pub const TIP: u32 = 1_000;

pub fn officers(names: &[&str]) -> BTreeSet<OfficerId> {
    names.iter().map(|n| OfficerId((*n).to_owned())).collect()
}

pub fn ctx() -> Context {
    let mut c = Context::new(Network::Regtest, NOW, TIP);
    c.officers = officers(&["alice", "bob", "carol"]);
    c
}

pub fn two_of_three_then_three() -> Quorum {
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

pub fn with_rules(rules: Rules) -> PolicyDocument {
    cold_policy().with_rules(rules).unwrap()
}

pub fn with_psbt(rules: Rules, pay: u64, feerate: u32) -> (PolicyDocument, bitcoin::Psbt) {
    let policy = with_rules(rules);
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 100_000);
    let mut builder = wallet.build_tx();
    builder
        .add_recipient(external_script(), Amount::from_sat(pay))
        .set_condition(Default::default())
        .fee_rate(bitcoin::FeeRate::from_sat_per_vb_u32(feerate));
    let psbt = builder.finish().unwrap();
    (policy, psbt)
}

pub fn quorum_met() -> Context {
    let mut c = ctx();
    c.approvals = vec![OfficerId("alice".into()), OfficerId("bob".into())];
    c
}

pub fn run(policy: &PolicyDocument, psbt: &bitcoin::Psbt, c: &Context) -> policies::Evaluation {
    let a = analyze(policy, psbt);
    evaluate(&CompiledRules::new(policy).unwrap(), &a, c).unwrap()
}

pub fn status(e: &policies::Evaluation, rule: RuleId) -> Status {
    e.outcome(rule)
        .unwrap_or_else(|| panic!("no outcome for {rule}"))
        .status
}

pub fn quorum_rules() -> Rules {
    Rules {
        approvals: Some(two_of_three_then_three()),
        ..Rules::default()
    }
}
