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

fn with_psbt(rules: Rules, pay: u64, feerate: u32) -> (PolicyDocument, bitcoin::Psbt) {
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

fn quorum_met() -> Context {
    let mut c = ctx();
    c.approvals = vec![OfficerId("alice".into()), OfficerId("bob".into())];
    c
}

fn run(policy: &PolicyDocument, psbt: &bitcoin::Psbt, c: &Context) -> policies::Evaluation {
    let a = analyze(policy, psbt);
    evaluate(&CompiledRules::new(policy).unwrap(), &a, c).unwrap()
}

fn status(e: &policies::Evaluation, rule: RuleId) -> Status {
    e.outcome(rule)
        .unwrap_or_else(|| panic!("no outcome for {rule}"))
        .status
}

fn quorum_rules() -> Rules {
    Rules {
        approvals: Some(two_of_three_then_three()),
        ..Rules::default()
    }
}

#[test]
fn allowlisted_address_passes_and_an_allowlisted_own_address_is_never_change() {
    let external = bitcoin::Address::from_script(&external_script(), Network::Regtest).unwrap();
    let (policy, psbt) = with_psbt(
        Rules {
            allowlist: Some(vec![AllowlistEntry::Address(external.to_string())]),
            ..quorum_rules()
        },
        30_000,
        2,
    );
    let e = run(&policy, &psbt, &quorum_met());
    assert_eq!(e.decision, Decision::Allow, "{:?}", e.outcomes);
    assert_eq!(status(&e, RuleId::Allowlist), Status::Pass);

    // The policy's own change address put on the allowlist: the change output then counts
    // as paid out (it leaves through the allowlist), so it cannot hide value from the limits.
    let a = analyze(&policy, &psbt);
    let change = a
        .outputs
        .iter()
        .find(|o| matches!(o.class, policies::OutputClass::Change { .. }))
        .unwrap();
    let own = bitcoin::Address::from_script(&change.script_pubkey, Network::Regtest).unwrap();
    let policy2 = with_rules(Rules {
        allowlist: Some(vec![
            AllowlistEntry::Address(external.to_string()),
            AllowlistEntry::Address(own.to_string()),
        ]),
        ..quorum_rules()
    });
    let a2 = analyze(&policy2, &psbt);
    let e2 = evaluate(&CompiledRules::new(&policy2).unwrap(), &a2, &quorum_met()).unwrap();
    assert_eq!(
        e2.leaving.unwrap(),
        Amount::from_sat(30_000) + change.value + a2.fee.unwrap()
    );
    assert_eq!(e2.fingerprint.payouts.len(), 2);
}

#[test]
fn attack_output_off_the_allowlist_is_refused_and_named() {
    let (policy, psbt) = with_psbt(
        Rules {
            allowlist: Some(vec![AllowlistEntry::Address(
                policies::PolicyDocument::address(&cold_policy(), policies::Keychain::Receive, 0)
                    .unwrap()
                    .to_string(),
            )]),
            ..quorum_rules()
        },
        30_000,
        2,
    );
    let e = run(&policy, &psbt, &quorum_met());
    assert_eq!(e.decision, Decision::Refuse);
    let o = e.outcome(RuleId::Allowlist).unwrap();
    assert_eq!(o.status, Status::Fail);
    assert!(o.reason.contains("30000 sat"), "{}", o.reason);
}

#[test]
fn attack_change_of_other_keys_or_threshold_counts_as_leaving() {
    // A change output to a policy with another threshold (1 of 3) and to one with other keys.
    let one_of_three = PolicyDocument::new(
        "other",
        1,
        Network::Regtest,
        &policies::Template::Cold {
            threshold: 1,
            hsm_keys: hsm_keys(),
            recovery: recovery(bitcoin::NetworkKind::Test),
            recovery_after: RECOVERY_AFTER,
        },
    )
    .unwrap();
    let other_keys = PolicyDocument::new(
        "other-keys",
        1,
        Network::Regtest,
        &policies::Template::Cold {
            threshold: 2,
            hsm_keys: vec![hsm("x", 11), hsm("y", 12), hsm("z", 13)],
            recovery: recovery(bitcoin::NetworkKind::Test),
            recovery_after: RECOVERY_AFTER,
        },
    )
    .unwrap();
    for foreign in [one_of_three, other_keys] {
        let (policy, mut psbt) = with_psbt(quorum_rules(), 30_000, 2);
        let a = analyze(&policy, &psbt);
        let c = a
            .outputs
            .iter()
            .position(|o| matches!(o.class, policies::OutputClass::Change { .. }))
            .unwrap();
        let policies::OutputClass::Change { index } = a.outputs[c].class else {
            unreachable!()
        };
        // The derivation claim stays (it names our recovery key at change/index); the script
        // is the other policy's at the same index.
        psbt.unsigned_tx.output[c].script_pubkey = foreign
            .address(policies::Keychain::Change, index)
            .unwrap()
            .script_pubkey();
        let e = run(&policy, &psbt, &quorum_met());
        assert_eq!(e.decision, Decision::Refuse);
        let o = e.outcome(RuleId::Analysis).unwrap();
        assert!(o.reason.contains("OUTPUT_CHANGE_UNPROVEN"), "{}", o.reason);
        // Without a claim at all it is simply external: counted as leaving.
        psbt.outputs[c].bip32_derivation.clear();
        let a = analyze(&policy, &psbt);
        assert!(a.is_clean(), "{a}");
        let e = evaluate(&CompiledRules::new(&policy).unwrap(), &a, &quorum_met()).unwrap();
        assert_eq!(e.leaving, a.total_out.unwrap().checked_add(a.fee.unwrap()));
    }
}

#[test]
fn attack_change_at_an_absurd_index() {
    let (policy, mut psbt) = with_psbt(quorum_rules(), 30_000, 2);
    let a = analyze(&policy, &psbt);
    let c = a
        .outputs
        .iter()
        .position(|o| matches!(o.class, policies::OutputClass::Change { .. }))
        .unwrap();
    let set_index = |psbt: &mut bitcoin::Psbt, index: u32| {
        let fp = policy.recovery.master_fingerprint();
        let source = psbt.outputs[c]
            .bip32_derivation
            .values_mut()
            .find(|s| s.0 == fp && s.1.len() == 6)
            .unwrap();
        source.1 = recovery_path().extend([
            bitcoin::bip32::ChildNumber::from_normal_idx(1).unwrap(),
            bitcoin::bip32::ChildNumber::from_normal_idx(index).unwrap(),
        ]);
        psbt.unsigned_tx.output[c].script_pubkey = policy
            .address(policies::Keychain::Change, index)
            .unwrap()
            .script_pubkey();
    };
    let mut c_ctx = quorum_met();
    c_ctx.highest_used.change = Some(10);
    set_index(&mut psbt, 1_010);
    let e = run(&policy, &psbt, &c_ctx);
    assert_eq!(status(&e, RuleId::ChangeDistance), Status::Pass);
    assert_eq!(e.decision, Decision::Allow);
    set_index(&mut psbt, 1_011);
    let e = run(&policy, &psbt, &c_ctx);
    let o = e.outcome(RuleId::ChangeDistance).unwrap();
    assert_eq!(o.status, Status::Fail);
    assert_eq!((o.value, o.limit), (Some(1_011), Some(1_010)));
    assert_eq!(e.decision, Decision::Refuse);
    // A configured distance.
    let tight = with_rules(Rules {
        change_max_distance: Some(5),
        ..quorum_rules()
    });
    assert_eq!(
        status(&run(&tight, &psbt, &c_ctx), RuleId::ChangeDistance),
        Status::Fail
    );
    // 2^31 and above: refused in the document, and unprovable in a PSBT.
    let err = cold_policy()
        .with_rules(Rules {
            change_max_distance: Some(0x8000_0000),
            ..Rules::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("2^31"), "{err}");
    let fp = policy.recovery.master_fingerprint();
    let source = psbt.outputs[c]
        .bip32_derivation
        .values_mut()
        .find(|s| s.0 == fp)
        .unwrap();
    source.1 = recovery_path().extend([
        bitcoin::bip32::ChildNumber::from_normal_idx(1).unwrap(),
        bitcoin::bip32::ChildNumber::from_hardened_idx(5).unwrap(),
    ]);
    let e = run(&policy, &psbt, &c_ctx);
    assert_eq!(status(&e, RuleId::Analysis), Status::Fail);
}

#[test]
fn attack_fee_feerate_and_share_over_cap() {
    let caps = |abs: u64, rate: u64, bps: u32| Rules {
        fee: policies::rules::FeeCaps {
            max_absolute_sat: Some(Amount::from_sat(abs)),
            max_rate_sat_vb: Some(rate),
            max_share_bps: Some(bps),
        },
        ..quorum_rules()
    };
    let (policy, psbt) = with_psbt(caps(100_000, 1_000, 10_000), 30_000, 40);
    let a = analyze(&policy, &psbt);
    let fee = a.fee.unwrap().to_sat();
    let vsize = a.signed_vsize.unwrap();
    let rate = fee.div_ceil(vsize);
    assert!(rate >= 40, "bdk paid {rate} sat/vB");
    // Exactly at each cap passes.
    let share = (fee * 10_000).div_ceil(30_000);
    let at = with_rules(caps(fee, rate, u32::try_from(share).unwrap()));
    let e = run(&at, &psbt, &quorum_met());
    assert_eq!(e.decision, Decision::Allow, "{:?}", e.outcomes);
    // One below each cap fails that rule, and only that one.
    for (rules, rule) in [
        (caps(fee - 1, rate, 10_000), RuleId::FeeAbsolute),
        (caps(fee, rate - 1, 10_000), RuleId::FeeRate),
        (
            caps(fee, rate, u32::try_from(share).unwrap() - 1),
            RuleId::FeeShare,
        ),
    ] {
        let p = with_rules(rules);
        let e = run(&p, &psbt, &quorum_met());
        assert_eq!(e.decision, Decision::Refuse);
        let failed: Vec<RuleId> = e.failures().map(|o| o.rule).collect();
        assert_eq!(failed, [rule]);
    }
}

#[test]
fn fee_rules_need_proven_amounts() {
    let (policy, mut psbt) = with_psbt(
        Rules {
            fee: policies::rules::FeeCaps {
                max_absolute_sat: Some(Amount::from_sat(1_000_000)),
                max_rate_sat_vb: Some(1_000),
                max_share_bps: Some(10_000),
            },
            ..quorum_rules()
        },
        30_000,
        2,
    );
    psbt.inputs[0].non_witness_utxo = None;
    let e = run(&policy, &psbt, &quorum_met());
    assert_eq!(e.decision, Decision::Refuse);
    for rule in [RuleId::FeeAbsolute, RuleId::FeeRate, RuleId::FeeShare] {
        let o = e.outcome(rule).unwrap();
        assert_eq!(o.status, Status::Fail);
        assert!(o.reason.contains("not proven"), "{}", o.reason);
    }
    assert_eq!(e.leaving, None);
}

#[test]
fn attack_velocity_exceeded_and_missing_window() {
    let windows = vec![
        VelocityWindow {
            window_secs: 3600,
            max_sat: Amount::from_sat(100_000),
        },
        VelocityWindow {
            window_secs: 86_400,
            max_sat: Amount::from_sat(200_000),
        },
    ];
    let (policy, psbt) = with_psbt(
        Rules {
            velocity: windows,
            ..quorum_rules()
        },
        30_000,
        2,
    );
    let a = analyze(&policy, &psbt);
    let leaving = 30_000 + a.fee.unwrap().to_sat();
    let mut c = quorum_met();
    c.spent = BTreeMap::from([
        (3600, Amount::from_sat(100_000 - leaving)),
        (86_400, Amount::from_sat(200_000 - leaving)),
    ]);
    let e = run(&policy, &psbt, &c);
    assert_eq!(e.decision, Decision::Allow, "{:?}", e.outcomes);
    c.spent
        .insert(86_400, Amount::from_sat(200_000 - leaving + 1));
    let e = run(&policy, &psbt, &c);
    assert_eq!(e.decision, Decision::Refuse);
    assert_eq!(
        status(&e, RuleId::Velocity { window_secs: 3600 }),
        Status::Pass
    );
    let o = e
        .outcome(RuleId::Velocity {
            window_secs: 86_400,
        })
        .unwrap();
    assert_eq!(o.rule.to_string(), "velocity_24h");
    assert_eq!(o.status, Status::Fail);
    assert_eq!((o.value, o.limit), (Some(200_001), Some(200_000)));
    // A window the caller did not supply fails rather than assuming nothing was spent.
    c.spent.remove(&3600);
    let e = run(&policy, &psbt, &c);
    assert_eq!(
        status(&e, RuleId::Velocity { window_secs: 3600 }),
        Status::Fail
    );
}

#[test]
fn attack_rbf_replay_is_counted_once_only_when_it_conflicts() {
    let policy = with_rules(Rules {
        velocity: vec![VelocityWindow {
            window_secs: 3600,
            max_sat: Amount::from_sat(40_000),
        }],
        ..quorum_rules()
    });
    let rules = CompiledRules::new(&policy).unwrap();
    let mut wallet = wallet_for(&policy);
    let coin = fund(&mut wallet, 100_000);
    let first = build_psbt(&mut wallet, 30_000);
    let a1 = analyze(&policy, &first);
    let mut c = quorum_met();
    c.spent = BTreeMap::from([(3600, Amount::ZERO)]);
    let e1 = evaluate(&rules, &a1, &c).unwrap();
    assert_eq!(e1.decision, Decision::Allow);
    // The service records e1: the window now holds its leaving value.
    c.spent.insert(3600, e1.velocity_delta.unwrap());

    // The replacement: same payee and amount, same coin, higher fee.
    let mut builder = wallet.build_tx();
    builder
        .add_utxo(coin)
        .unwrap()
        .manually_selected_only()
        .add_recipient(external_script(), Amount::from_sat(30_000))
        .set_condition(Default::default())
        .fee_rate(bitcoin::FeeRate::from_sat_per_vb_u32(20));
    let second = builder.finish().unwrap();
    let a2 = analyze(&policy, &second);
    assert!(a2.fee.unwrap() > a1.fee.unwrap());
    let e2_plain = evaluate(&rules, &a2, &c).unwrap();
    assert!(e2_plain.fingerprint.is_replacement_of(&e1.fingerprint));
    assert_eq!(
        e2_plain.fingerprint.payout_digest(),
        e1.fingerprint.payout_digest()
    );
    // Counted as new it would exceed the window...
    assert_eq!(e2_plain.decision, Decision::Refuse);
    // ...counted as a replacement only the fee difference is added.
    c.already_counted = e1.leaving.unwrap();
    let e2 = evaluate(&rules, &a2, &c).unwrap();
    assert_eq!(e2.decision, Decision::Allow, "{:?}", e2.outcomes);
    assert_eq!(
        e2.velocity_delta.unwrap(),
        a2.fee.unwrap() - a1.fee.unwrap()
    );

    // The same payouts from another coin do not conflict: both could confirm.
    let other_coin = fund(&mut wallet, 100_000);
    let mut builder = wallet.build_tx();
    builder
        .add_utxo(other_coin)
        .unwrap()
        .manually_selected_only()
        .add_recipient(external_script(), Amount::from_sat(30_000))
        .set_condition(Default::default());
    let third = builder.finish().unwrap();
    let e3 = evaluate(&rules, &analyze(&policy, &third), &quorum_met()).unwrap();
    assert_eq!(
        e3.fingerprint.payout_digest(),
        e1.fingerprint.payout_digest()
    );
    assert!(!e3.fingerprint.is_replacement_of(&e1.fingerprint));
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

#[test]
fn attack_far_future_locktime() {
    let (policy, mut psbt) = with_psbt(quorum_rules(), 30_000, 2);
    // bdk sets nSequence enabling the locktime (RBF).
    assert!(
        psbt.unsigned_tx.input[0]
            .sequence
            .enables_absolute_lock_time()
    );
    for (lock, ok) in [
        (TIP + 6, true),
        (TIP + 7, false),
        (u32::try_from(NOW).unwrap() + 3_600, true),
        (u32::try_from(NOW).unwrap() + 3_601, false),
    ] {
        psbt.unsigned_tx.lock_time = bitcoin::absolute::LockTime::from_consensus(lock);
        let e = run(&policy, &psbt, &quorum_met());
        assert_eq!(
            status(&e, RuleId::Locktime) == Status::Pass,
            ok,
            "locktime {lock}: {:?}",
            e.outcome(RuleId::Locktime)
        );
        assert_eq!(e.decision == Decision::Allow, ok);
    }
    // Final sequences disable the locktime.
    for input in &mut psbt.unsigned_tx.input {
        input.sequence = bitcoin::Sequence::MAX;
    }
    assert_eq!(
        status(&run(&policy, &psbt, &quorum_met()), RuleId::Locktime),
        Status::Pass
    );
}

#[test]
fn attack_non_standard_version_and_dust() {
    let (policy, mut psbt) = with_psbt(quorum_rules(), 30_000, 2);
    psbt.unsigned_tx.version = bitcoin::transaction::Version(3);
    let a = analyze(&policy, &psbt);
    assert_eq!(a.codes(), ["TX_VERSION_NONSTANDARD"]);
    let e = run(&policy, &psbt, &quorum_met());
    assert_eq!(e.decision, Decision::Refuse);

    let (policy, mut psbt) = with_psbt(quorum_rules(), 30_000, 2);
    let i = output_index(&psbt, &external_script());
    // p2wpkh dust is 294 sat at 3 sat/vB.
    psbt.unsigned_tx.output[i].value = Amount::from_sat(293);
    let a = analyze(&policy, &psbt);
    assert_eq!(a.codes(), ["OUTPUT_DUST"]);
    psbt.unsigned_tx.output[i].value = Amount::from_sat(294);
    assert!(analyze(&policy, &psbt).is_clean());
}

#[test]
fn evaluate_refuses_another_network_or_policy() {
    let (policy, psbt) = with_psbt(quorum_rules(), 30_000, 2);
    let a = analyze(&policy, &psbt);
    let rules = CompiledRules::new(&policy).unwrap();
    let mut c = quorum_met();
    c.network = Network::Testnet;
    assert!(matches!(
        evaluate(&rules, &a, &c),
        Err(policies::RulesError::NetworkMismatch { .. })
    ));
    let other = CompiledRules::new(&cold_policy()).unwrap();
    assert!(matches!(
        evaluate(&other, &a, &quorum_met()),
        Err(policies::RulesError::PolicyMismatch { .. })
    ));
}

/// The feerate cap divides by the size with 72-byte signatures on the cheapest HSM path: a
/// real signed transaction (low-S signatures of 71 or 72 bytes) is never larger, and at most
/// a byte per signature smaller.
#[test]
fn signed_vsize_bounds_the_real_signed_size() {
    use bitcoin::secp256k1::{Message, Secp256k1};
    use bitcoin::sighash::SighashCache;
    use miniscript::psbt::PsbtExt;

    let policy = cold_policy();
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 60_000);
    fund(&mut wallet, 70_000);
    let mut psbt = build_psbt(&mut wallet, 100_000);
    let a = analyze(&policy, &psbt);
    assert!(a.is_clean(), "{a}");
    let targets = policies::hsm_signing_targets(&policy, &psbt, &a).unwrap();
    let secp = Secp256k1::new();
    let mut cache = SighashCache::new(psbt.unsigned_tx.clone());
    let mut sigs = Vec::new();
    for t in &targets {
        let sighash = cache
            .p2wsh_signature_hash(t.input_index, &t.witness_script, t.amount, t.sighash_type)
            .unwrap();
        for (key, seed) in [(&t.hsm_keys[0], 1u8), (&t.hsm_keys[2], 3u8)] {
            let signature = secp.sign_ecdsa(&Message::from(sighash), &secret(seed));
            sigs.push((t.input_index, key.public_key, signature));
        }
    }
    for (i, pk, signature) in sigs {
        psbt.inputs[i].partial_sigs.insert(
            bitcoin::PublicKey::new(pk),
            bitcoin::ecdsa::Signature {
                signature,
                sighash_type: bitcoin::EcdsaSighashType::All,
            },
        );
    }
    psbt.finalize_mut(&secp).unwrap();
    let real = psbt.extract_tx().unwrap().weight();
    let signed_wu = a
        .inputs
        .iter()
        .map(|i| i.signing_weight.unwrap().to_wu())
        .sum::<u64>()
        + a.estimated_weight.unwrap().to_wu()
        - a.inputs
            .iter()
            .map(|i| i.max_satisfaction_weight.unwrap().to_wu() + 1)
            .sum::<u64>();
    assert!(real.to_wu() <= signed_wu, "real {real} above {signed_wu}");
    // Four signatures of 71 or 72 bytes.
    assert!(signed_wu - real.to_wu() <= 4, "{signed_wu} vs real {real}");
    assert_eq!(a.signed_vsize.unwrap(), signed_wu.div_ceil(4));
    assert!(a.signed_vsize.unwrap() <= a.estimated_vsize.unwrap());
}

/// An input of another policy slipped in with only a witness_utxo (a lie about its amount
/// would move the fee): its previous transaction is required as for our own inputs, so the
/// amounts, the fee and every amount rule are unproven, and the request is refused.
#[test]
fn attack_foreign_input_without_previous_transaction() {
    let (policy, mut psbt) = with_psbt(
        Rules {
            fee: policies::rules::FeeCaps {
                max_absolute_sat: Some(Amount::from_sat(1_000_000)),
                max_rate_sat_vb: None,
                max_share_bps: None,
            },
            max_per_tx_sat: Some(Amount::ONE_BTC),
            ..quorum_rules()
        },
        30_000,
        2,
    );
    let other = PolicyDocument::new(
        "other",
        1,
        Network::Regtest,
        &policies::Template::Cold {
            threshold: 1,
            hsm_keys: hsm_keys(),
            recovery: recovery(bitcoin::NetworkKind::Test),
            recovery_after: RECOVERY_AFTER,
        },
    )
    .unwrap();
    let script = other
        .address(policies::Keychain::Receive, 0)
        .unwrap()
        .script_pubkey();
    psbt.unsigned_tx.input.push(bitcoin::TxIn {
        previous_output: bitcoin::OutPoint {
            txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()),
            vout: 3,
        },
        sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
        ..Default::default()
    });
    psbt.inputs.push(bitcoin::psbt::Input {
        witness_utxo: Some(bitcoin::TxOut {
            value: Amount::from_sat(1),
            script_pubkey: script,
        }),
        ..Default::default()
    });
    let a = analyze(&policy, &psbt);
    let codes = a.codes();
    assert!(codes.contains(&"INPUT_PREVIOUS_TX_MISSING"), "{a}");
    assert!(codes.contains(&"INPUT_NOT_OURS"), "{a}");
    assert_eq!(a.fee, None);
    let e = run(&policy, &psbt, &quorum_met());
    assert_eq!(e.decision, Decision::Refuse);
    for rule in [RuleId::Analysis, RuleId::FeeAbsolute, RuleId::MaxPerTx] {
        assert_eq!(status(&e, rule), Status::Fail, "{rule}");
    }
}
