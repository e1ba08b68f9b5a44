//! The rules engine on PSBTs built by bdk_wallet: each rule passing, and each rule attacked.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::{Amount, Network};
use policies::rules::{
    AllowlistEntry, Context, Decision, OfficerId, Quorum, QuorumTier, RuleId, Rules, Status,
    VelocityWindow,
};
use policies::{CompiledRules, PolicyDocument, analyze, evaluate};

use common::*;

const NOW: u64 = 1_800_000_000;
const TIP: u32 = 1_000;

fn officers(names: &[&str]) -> BTreeSet<OfficerId> {
    names.iter().map(|n| OfficerId((*n).to_owned())).collect()
}

fn ctx() -> Context {
    let mut c = Context::new(Network::Regtest, NOW, TIP);
    c.officers = officers(&["alice", "bob", "carol"]);
    c
}

fn two_of_three_then_three() -> Quorum {
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

fn with_rules(rules: Rules) -> PolicyDocument {
    cold_policy().with_rules(rules).unwrap()
}

#[test]
fn cold_policy_without_quorum_refuses_whatever_the_approvals() {
    let (policy, _w, psbt) = cold_setup();
    assert!(policy.rules.is_empty());
    let a = analyze(&policy, &psbt);
    let mut c = ctx();
    c.approvals = vec![OfficerId("alice".into()), OfficerId("bob".into())];
    let e = evaluate(&CompiledRules::new(&policy).unwrap(), &a, &c).unwrap();
    assert_eq!(e.decision, Decision::Refuse);
    let q = e.outcome(RuleId::ApprovalQuorum).unwrap();
    assert_eq!(q.status, Status::Fail);
    assert!(q.reason.contains("no quorum configured"), "{}", q.reason);
}

#[test]
fn cold_policy_waits_for_two_distinct_officers_then_allows() {
    let policy = with_rules(Rules {
        approvals: Some(two_of_three_then_three()),
        ..Rules::default()
    });
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 100_000);
    let psbt = build_psbt(&mut wallet, 30_000);
    let a = analyze(&policy, &psbt);
    assert!(a.is_clean(), "{a}");
    let rules = CompiledRules::new(&policy).unwrap();
    let mut c = ctx();
    let e = evaluate(&rules, &a, &c).unwrap();
    assert_eq!(
        e.decision,
        Decision::NeedsApproval {
            required: 2,
            approved: 0
        }
    );
    // A repeated approval counts once.
    c.approvals = vec![OfficerId("alice".into()), OfficerId("alice".into())];
    let e = evaluate(&rules, &a, &c).unwrap();
    assert_eq!(
        e.decision,
        Decision::NeedsApproval {
            required: 2,
            approved: 1
        }
    );
    c.approvals.push(OfficerId("bob".into()));
    let e = evaluate(&rules, &a, &c).unwrap();
    assert_eq!(e.decision, Decision::Allow, "{:?}", e.outcomes);
    assert!(e.outcomes.iter().all(|o| o.status == Status::Pass));
    // Paid out 30_000 plus the fee.
    assert_eq!(
        e.leaving.unwrap(),
        Amount::from_sat(30_000) + a.fee.unwrap()
    );
}

#[test]
fn allowlist_and_limits_in_a_first_pass() {
    let policy = with_rules(Rules {
        allowlist: Some(vec![AllowlistEntry::Descriptor(format!(
            "wpkh({})",
            public(9)
        ))]),
        max_per_tx_sat: Some(Amount::from_sat(10_000)),
        velocity: vec![VelocityWindow {
            window_secs: 3600,
            max_sat: Amount::from_sat(50_000),
        }],
        approvals: Some(two_of_three_then_three()),
        ..Rules::default()
    });
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 100_000);
    let psbt = build_psbt(&mut wallet, 30_000);
    let a = analyze(&policy, &psbt);
    let mut c = ctx();
    c.spent = BTreeMap::from([(3600, Amount::ZERO)]);
    let e = evaluate(&CompiledRules::new(&policy).unwrap(), &a, &c).unwrap();
    assert_eq!(e.decision, Decision::Refuse);
    assert_eq!(e.outcome(RuleId::Allowlist).unwrap().status, Status::Fail);
    assert_eq!(e.outcome(RuleId::MaxPerTx).unwrap().status, Status::Fail);
    assert_eq!(
        e.outcome(RuleId::Velocity { window_secs: 3600 })
            .unwrap()
            .status,
        Status::Pass
    );
    assert!(a.signed_vsize.unwrap() <= a.estimated_vsize.unwrap());
}
