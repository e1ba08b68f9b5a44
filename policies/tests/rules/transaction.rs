//! The transaction itself: locktime, standardness, foreign inputs, sizes, mismatches.

use bitcoin::{Amount, Network};
use policies::rules::{Decision, RuleId, Rules, Status};
use policies::{CompiledRules, PolicyDocument, analyze, evaluate};

use crate::common::*;
use crate::support::*;

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
