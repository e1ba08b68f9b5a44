//! Amounts: fee caps, velocity windows, RBF replacements.

use std::collections::BTreeMap;

use bitcoin::Amount;
use policies::rules::{Decision, RuleId, Rules, Status, VelocityWindow};
use policies::{CompiledRules, analyze, evaluate};

use crate::common::*;
use crate::support::*;

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
