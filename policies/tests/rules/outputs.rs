//! Outputs: allowlist, change of other policies, change at absurd indexes.

use std::collections::BTreeMap;

use bitcoin::{Amount, Network};
use policies::rules::{AllowlistEntry, Decision, RuleId, Rules, Status, VelocityWindow};
use policies::{CompiledRules, PolicyDocument, analyze, evaluate};

use crate::common::*;
use crate::support::*;

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
fn allowlisted_ranged_descriptor_matches_its_first_thousand_indexes() {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let payee_key = |kind| {
        bitcoin::bip32::Xpub::from_priv(
            &secp,
            &bitcoin::bip32::Xpriv::new_master(kind, &[5; 32]).unwrap(),
        )
    };
    let descriptor = format!("wpkh({}/0/*)", payee_key(bitcoin::NetworkKind::Test));
    let parsed: miniscript::Descriptor<miniscript::DescriptorPublicKey> =
        descriptor.parse().unwrap();
    let at = |i: u32| {
        parsed
            .at_derivation_index(i)
            .unwrap()
            .address(Network::Regtest)
            .unwrap()
            .script_pubkey()
    };
    let policy = with_rules(Rules {
        allowlist: Some(vec![AllowlistEntry::Descriptor(descriptor)]),
        ..quorum_rules()
    });
    for (index, allowed) in [(0, true), (999, true), (1_000, false)] {
        let mut wallet = wallet_for(&policy);
        fund(&mut wallet, 100_000);
        let mut builder = wallet.build_tx();
        builder
            .add_recipient(at(index), Amount::from_sat(30_000))
            .set_condition(Default::default());
        let psbt = builder.finish().unwrap();
        let e = run(&policy, &psbt, &quorum_met());
        assert_eq!(
            status(&e, RuleId::Allowlist) == Status::Pass,
            allowed,
            "index {index}: {:?}",
            e.outcome(RuleId::Allowlist)
        );
    }
    // A mainnet xpub on a regtest policy's allowlist is refused when the document is read.
    let err = cold_policy()
        .with_rules(Rules {
            allowlist: Some(vec![AllowlistEntry::Descriptor(format!(
                "wpkh({}/0/*)",
                payee_key(bitcoin::NetworkKind::Main)
            ))]),
            ..Rules::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("another network"), "{err}");
}
