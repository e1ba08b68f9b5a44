//! Approval quorum, hot policies, warn-only.

use bitcoin::{Amount, Network};
use policies::rules::{Context, Decision, OfficerId, Quorum, QuorumTier, RuleId, Rules, Status};
use policies::{CompiledRules, PolicyDocument, analyze, evaluate};

use crate::common::*;
use crate::support::*;

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
fn attack_quorum_with_self_unknown_and_repeated_officers() {
    let (policy, psbt) = with_psbt(quorum_rules(), 30_000, 2);
    let mut c = ctx();
    c.initiator = Some(OfficerId("alice".into()));
    c.approvals = vec![
        OfficerId("alice".into()),
        OfficerId("mallory".into()),
        OfficerId("bob".into()),
        OfficerId("bob".into()),
    ];
    let e = run(&policy, &psbt, &c);
    assert_eq!(
        e.decision,
        Decision::NeedsApproval {
            required: 2,
            approved: 1
        }
    );
    let o = e.outcome(RuleId::ApprovalQuorum).unwrap();
    for why in [
        "alice (the initiator)",
        "mallory (not a registered officer)",
        "bob (repeated)",
    ] {
        assert!(o.reason.contains(why), "{}", o.reason);
    }
    c.approvals.push(OfficerId("carol".into()));
    assert_eq!(run(&policy, &psbt, &c).decision, Decision::Allow);

    // Above 1 BTC three are needed; with the initiator excluded only two remain: never.
    let big = with_rules(quorum_rules());
    let mut wallet = wallet_for(&big);
    fund(&mut wallet, 300_000_000);
    let psbt = build_psbt(&mut wallet, 150_000_000);
    let e = run(&big, &psbt, &c);
    assert_eq!(e.decision, Decision::Refuse);
    assert!(
        e.outcome(RuleId::ApprovalQuorum)
            .unwrap()
            .reason
            .contains("too few officers")
    );
    c.initiator = None;
    c.approvals = vec![OfficerId("alice".into()), OfficerId("bob".into())];
    assert_eq!(
        run(&big, &psbt, &c).decision,
        Decision::NeedsApproval {
            required: 3,
            approved: 2
        }
    );
}

#[test]
fn hot_policy_signs_automatically_within_its_limits() {
    let hot = PolicyDocument::new(
        "hot",
        1,
        Network::Regtest,
        &policies::Template::Hot {
            hsm_key: hsm("hot-a", 21),
            recovery: recovery(bitcoin::NetworkKind::Test),
            recovery_after: RECOVERY_AFTER,
        },
    )
    .unwrap()
    .with_rules(Rules {
        max_per_tx_sat: Some(Amount::from_sat(50_000)),
        approvals: Some(Quorum {
            tiers: vec![
                QuorumTier {
                    up_to_sat: Some(Amount::from_sat(40_000)),
                    required: 0,
                },
                QuorumTier {
                    up_to_sat: None,
                    required: 1,
                },
            ],
        }),
        ..Rules::default()
    })
    .unwrap();
    let mut wallet = wallet_for(&hot);
    fund(&mut wallet, 100_000);
    let small = build_psbt(&mut wallet, 30_000);
    let e = run(&hot, &small, &Context::new(Network::Regtest, NOW, TIP));
    assert_eq!(e.decision, Decision::Allow, "{:?}", e.outcomes);
    let mid = build_psbt(&mut wallet, 45_000);
    let e = run(&hot, &mid, &ctx());
    assert_eq!(
        e.decision,
        Decision::NeedsApproval {
            required: 1,
            approved: 0
        }
    );
    let big = build_psbt(&mut wallet, 60_000);
    assert_eq!(run(&hot, &big, &ctx()).decision, Decision::Refuse);
    // A zero tier is refused for a cold policy.
    let err = cold_policy()
        .with_rules(hot.rules.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("only for hot"), "{err}");
}

#[test]
fn warn_only_rules_warn_on_test_networks_and_are_refused_on_mainnet() {
    let rules = Rules {
        max_per_tx_sat: Some(Amount::from_sat(1_000)),
        warn_only: vec!["max_per_tx".into()],
        ..quorum_rules()
    };
    let (policy, psbt) = with_psbt(rules.clone(), 30_000, 2);
    let e = run(&policy, &psbt, &quorum_met());
    assert_eq!(e.decision, Decision::Allow);
    let o = e.outcome(RuleId::MaxPerTx).unwrap();
    assert_eq!(o.status, Status::Warn);
    assert!(o.reason.starts_with("warn-only"));

    let mainnet = PolicyDocument::new(
        "treasury",
        1,
        Network::Bitcoin,
        &policies::Template::Cold {
            threshold: 2,
            hsm_keys: hsm_keys(),
            recovery: recovery(bitcoin::NetworkKind::Main),
            recovery_after: RECOVERY_AFTER,
        },
    )
    .unwrap();
    let err = mainnet.clone().with_rules(rules).unwrap_err();
    assert!(
        matches!(
            err,
            policies::PolicyError::Rules(policies::RulesError::WarnOnlyOnMainnet { ref rule })
                if rule == "max_per_tx"
        ),
        "{err}"
    );
    // Not an amount rule: allowed on mainnet; the quorum never.
    let allow = Rules {
        allowlist: Some(vec![]),
        warn_only: vec!["allowlist".into()],
        ..quorum_rules()
    };
    mainnet.clone().with_rules(allow).unwrap();
    let quorum = Rules {
        warn_only: vec!["approval_quorum".into()],
        ..quorum_rules()
    };
    assert!(policy.clone().with_rules(quorum).is_err());
    let unknown = Rules {
        warn_only: vec!["velocity_1h".into()],
        ..quorum_rules()
    };
    assert!(policy.with_rules(unknown).is_err());
}
