//! PSBT analysis on PSBTs built by bdk_wallet from the policy descriptors, and each finding
//! produced by tampering with a good PSBT.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{ChildNumber, DerivationPath};
use bitcoin::psbt::{self, PsbtSighashType};
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::SighashCache;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, EcdsaSighashType, Network, OutPoint, Psbt, Sequence, Transaction, TxIn, TxOut,
};
use miniscript::psbt::PsbtExt;
use policies::{
    FindingCode, Keychain, OutputClass, Ownership, PolicyDocument, Template, analyze,
    hsm_signing_targets,
};

use common::*;

fn recovery_source_mut(
    policy: &PolicyDocument,
    map: &mut BTreeMap<bitcoin::secp256k1::PublicKey, bitcoin::bip32::KeySource>,
) -> bitcoin::secp256k1::PublicKey {
    *map.iter()
        .find(|(pk, s)| {
            policy.hsm_key_by_pubkey(pk).is_none() && s.0 == policy.recovery.master_fingerprint()
        })
        .unwrap()
        .0
}

fn recovery_path_for(keychain: u32, index: ChildNumber) -> DerivationPath {
    recovery_path().extend([ChildNumber::from_normal_idx(keychain).unwrap(), index])
}

/// The output bdk made as change: the one not paying the external script.
fn change_index(psbt: &Psbt) -> usize {
    psbt.unsigned_tx
        .output
        .iter()
        .position(|o| o.script_pubkey != external_script())
        .unwrap()
}

fn only_codes(a: &policies::PsbtAnalysis) -> Vec<&'static str> {
    let mut c = a.codes();
    c.dedup();
    c
}

#[test]
fn good_psbt_is_clean_and_everything_is_proven() {
    let (policy, _wallet, psbt) = cold_setup();
    let a = analyze(&policy, &psbt);
    assert!(a.is_clean(), "{a}");

    assert_eq!(a.inputs.len(), 1);
    let input = &a.inputs[0];
    assert_eq!(
        input.ownership,
        Some(Ownership {
            keychain: Keychain::Receive,
            derivation_index: 0
        })
    );
    assert_eq!(input.amount, Some(Amount::from_sat(100_000)));
    assert_eq!(
        input.previous_output,
        psbt.unsigned_tx.input[0].previous_output
    );
    assert_eq!(
        input.witness_script,
        Some(
            policy
                .derive(Keychain::Receive, 0)
                .unwrap()
                .explicit_script()
                .unwrap()
        )
    );
    assert_eq!(input.hsm_keys, ["ops-a", "ops-b", "ops-c"]);
    assert!(input.max_satisfaction_weight.is_some());

    assert_eq!(input.spending_paths.len(), 2, "{a}");
    let hsm_path = &input.spending_paths[0];
    assert_eq!(hsm_path.keys, ["ops-a", "ops-b", "ops-c"]);
    assert_eq!(hsm_path.signatures_needed, Some(2));
    assert_eq!(
        (hsm_path.relative_timelock, hsm_path.absolute_timelock),
        (None, None)
    );
    assert!(hsm_path.satisfiable_now);
    let recovery_path = &input.spending_paths[1];
    assert_eq!(recovery_path.keys, ["recovery"]);
    assert_eq!(recovery_path.signatures_needed, Some(1));
    assert_eq!(
        recovery_path.relative_timelock,
        Some(u32::from(RECOVERY_AFTER))
    );
    assert!(
        !recovery_path.satisfiable_now,
        "default nSequence {} must not satisfy older",
        input.sequence
    );

    assert_eq!(a.outputs.len(), 2);
    let ext = output_index(&psbt, &external_script());
    assert_eq!(a.outputs[ext].class, OutputClass::External);
    assert_eq!(a.outputs[ext].value, Amount::from_sat(30_000));
    assert!(
        a.outputs[ext]
            .address
            .as_deref()
            .unwrap()
            .starts_with("bcrt1q")
    );
    let change = change_index(&psbt);
    assert_eq!(a.outputs[change].class, OutputClass::Change { index: 0 });
    assert_eq!(
        a.outputs[change].script_pubkey,
        policy.address(Keychain::Change, 0).unwrap().script_pubkey()
    );

    let fee = psbt.fee().unwrap();
    assert_eq!(a.total_in, Some(Amount::from_sat(100_000)));
    assert_eq!(a.fee, Some(fee));
    assert_eq!(a.external_total, Some(Amount::from_sat(30_000)));
    assert_eq!(a.change_total, Some(a.outputs[change].value));
    assert_eq!(a.receive_total, Some(Amount::ZERO));
    assert_eq!(a.total_out.unwrap() + fee, a.total_in.unwrap());
    // bdk aimed at 2 sat/vB with its own upper-bound weight; ours is an upper bound as well.
    let rate = a.estimated_feerate.unwrap().to_sat_per_vb_floor();
    assert!((1..=2).contains(&rate), "feerate {rate} sat/vB\n{a}");
    assert_eq!(a.version, 2);

    let text = a.to_string();
    if std::env::var_os("SHOW_ANALYSIS").is_some() {
        eprintln!("{text}");
    }
    assert!(text.contains("ours receive/0"), "{text}");
    assert!(text.contains("change/0"), "{text}");
    assert!(text.contains("100000 sat"), "{text}");
    assert!(text.contains("not satisfiable now"), "{text}");
    assert!(text.ends_with("findings: none"), "{text}");

    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["inputs"][0]["ownership"]["keychain"], "receive");
    assert_eq!(json["inputs"][0]["amount"], 100_000);
    assert_eq!(json["outputs"][change]["class"]["kind"], "change");
    assert_eq!(json["findings"], serde_json::json!([]));
}

#[test]
fn signing_targets_produce_valid_signatures() {
    let policy = cold_policy();
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 60_000);
    fund(&mut wallet, 70_000);
    let mut psbt = build_psbt(&mut wallet, 100_000);
    let a = analyze(&policy, &psbt);
    assert!(a.is_clean(), "{a}");
    assert_eq!(a.inputs.len(), 2);
    let mut indexes: Vec<u32> = a
        .inputs
        .iter()
        .map(|i| i.ownership.unwrap().derivation_index)
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1]);

    let targets = hsm_signing_targets(&policy, &psbt, &a).unwrap();
    assert_eq!(targets.len(), 2);
    let secp = Secp256k1::new();
    let mut cache = SighashCache::new(psbt.unsigned_tx.clone());
    let mut sigs = Vec::new();
    for t in &targets {
        assert_eq!(t.hsm_keys.len(), 3);
        let sighash = cache
            .p2wsh_signature_hash(t.input_index, &t.witness_script, t.amount, t.sighash_type)
            .unwrap();
        // Two of the three HSM keys (seeds 1 and 3).
        for (key, seed) in [(&t.hsm_keys[0], 1u8), (&t.hsm_keys[2], 3u8)] {
            let signature = secp.sign_ecdsa(&Message::from(sighash), &secret(seed));
            sigs.push((
                t.input_index,
                key.public_key,
                bitcoin::ecdsa::Signature {
                    signature,
                    sighash_type: EcdsaSighashType::All,
                },
            ));
        }
    }
    for (i, pk, sig) in sigs {
        psbt.inputs[i]
            .partial_sigs
            .insert(bitcoin::PublicKey::new(pk), sig);
    }
    psbt.finalize_mut(&secp).unwrap();
    let prevouts: BTreeMap<OutPoint, TxOut> = psbt
        .unsigned_tx
        .input
        .iter()
        .zip(&psbt.inputs)
        .map(|(txin, input)| (txin.previous_output, input.witness_utxo.clone().unwrap()))
        .collect();
    let tx = psbt.extract_tx().unwrap();
    tx.verify(|op| prevouts.get(op).cloned()).unwrap();
    let real = tx.weight();
    let estimated = a.estimated_weight.unwrap();
    assert!(real <= estimated, "real {real} above estimate {estimated}");
    assert!(
        estimated.to_wu() - real.to_wu() <= 16,
        "estimate {estimated} too far above real {real}"
    );
}

#[test]
fn recovery_path_needs_sequence_and_version_2() {
    let (policy, _wallet, psbt) = cold_setup();
    let older = u32::from(RECOVERY_AFTER);
    let with = |sequence: Sequence, version: i32| {
        let mut p = psbt.clone();
        p.unsigned_tx.input[0].sequence = sequence;
        p.unsigned_tx.version = Version(version);
        let a = analyze(&policy, &p);
        assert!(a.is_clean(), "{a}"); // the HSM path stays available
        assert!(a.inputs[0].spending_paths[0].satisfiable_now);
        a.inputs[0].spending_paths[1].satisfiable_now
    };
    assert!(with(Sequence::from_height(RECOVERY_AFTER), 2));
    assert!(with(Sequence::from_height(RECOVERY_AFTER + 1), 2));
    assert!(!with(Sequence::from_height(RECOVERY_AFTER - 1), 2));
    assert!(
        !with(Sequence::from_height(RECOVERY_AFTER), 1),
        "csv needs version 2"
    );
    assert!(
        !with(Sequence::from_512_second_intervals(RECOVERY_AFTER), 2),
        "time lock is not a height lock"
    );
    assert!(!with(Sequence::MAX, 2));
    assert!(!with(Sequence(older | (1 << 31)), 2), "disable flag set");
}

#[test]
fn bdk_recovery_condition_sets_a_satisfying_sequence() {
    let policy = cold_policy();
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 100_000);
    let mut builder = wallet.build_tx();
    builder
        .add_recipient(external_script(), Amount::from_sat(30_000))
        .set_condition(bdk_wallet::descriptor::policy::Condition {
            csv: Some(Sequence::from_height(RECOVERY_AFTER)),
            timelock: None,
        });
    let psbt = builder.finish().unwrap();
    let a = analyze(&policy, &psbt);
    assert!(a.is_clean(), "{a}");
    assert_eq!(a.inputs[0].sequence, Sequence::from_height(RECOVERY_AFTER));
    assert!(a.inputs[0].spending_paths[1].satisfiable_now, "{a}");
}

#[test]
fn no_satisfiable_path_and_absolute_locktimes() {
    // Every path is timelocked: one by height, one relative.
    let template = Template::Custom {
        policy: "or(1@and(pk(ops-a),after(500)),1@and(pk(recovery),older(10)))".into(),
        hsm_keys: vec![hsm("ops-a", 1)],
        recovery: recovery(bitcoin::NetworkKind::Test),
    };
    let policy = PolicyDocument::new("locked", 1, Network::Regtest, &template).unwrap();
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 50_000);
    let psbt = build_psbt(&mut wallet, 10_000);
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["INPUT_NO_SATISFIABLE_PATH"], "{a}");
    assert_eq!(a.findings()[0].input, Some(0));
    let hsm = a.inputs[0]
        .spending_paths
        .iter()
        .find(|p| p.keys == ["ops-a"])
        .unwrap();
    assert_eq!(hsm.absolute_timelock, Some(500));

    let mut later = psbt.clone();
    later.unsigned_tx.lock_time = LockTime::from_height(500).unwrap();
    let a = analyze(&policy, &later);
    assert!(a.is_clean(), "{a}");

    // A final nSequence disables the locktime for this input.
    later.unsigned_tx.input[0].sequence = Sequence::MAX;
    assert_eq!(
        only_codes(&analyze(&policy, &later)),
        ["INPUT_NO_SATISFIABLE_PATH"]
    );
}

#[test]
fn previous_tx_missing() {
    let (policy, _w, mut psbt) = cold_setup();
    psbt.inputs[0].non_witness_utxo = None;
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["INPUT_PREVIOUS_TX_MISSING"], "{a}");
    assert_eq!(a.inputs[0].amount, None);
    assert_eq!(a.total_in, None);
    assert_eq!(a.fee, None);
    // The script in witness_utxo still shows whose the coin is.
    assert!(a.inputs[0].ownership.is_some());
    assert!(hsm_signing_targets(&policy, &psbt, &a).is_err());
}

#[test]
fn previous_tx_with_another_txid() {
    let (policy, _w, mut psbt) = cold_setup();
    let prev = psbt.inputs[0].non_witness_utxo.as_mut().unwrap();
    prev.lock_time = LockTime::from_height(1).unwrap();
    let a = analyze(&policy, &psbt);
    assert!(a.has(FindingCode::InputPreviousTxMismatch), "{a}");
    assert_eq!(a.inputs[0].amount, None);
    assert_eq!(a.fee, None);

    // Right txid but the outpoint's vout is not in it.
    let (policy, _w, mut psbt) = cold_setup();
    psbt.unsigned_tx.input[0].previous_output.vout = 7;
    let a = analyze(&policy, &psbt);
    assert!(a.has(FindingCode::InputPreviousTxMismatch), "{a}");
    assert_eq!(a.inputs[0].amount, None);
}

#[test]
fn witness_utxo_differs_from_previous_tx() {
    let (policy, _w, mut psbt) = cold_setup();
    let wu = psbt.inputs[0].witness_utxo.as_mut().unwrap();
    wu.value += Amount::from_sat(1);
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["INPUT_WITNESS_UTXO_MISMATCH"], "{a}");
    // The amount reported is the previous transaction's, never witness_utxo's.
    assert_eq!(a.inputs[0].amount, Some(Amount::from_sat(100_000)));
}

#[test]
fn wrong_or_missing_witness_script() {
    let (policy, _w, mut psbt) = cold_setup();
    psbt.inputs[0].witness_script = Some(
        policy
            .derive(Keychain::Receive, 1)
            .unwrap()
            .explicit_script()
            .unwrap(),
    );
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["INPUT_WITNESS_SCRIPT_MISMATCH"], "{a}");
    // The script to sign with is always the policy's, not the PSBT's.
    assert_eq!(
        a.inputs[0].witness_script,
        Some(
            policy
                .derive(Keychain::Receive, 0)
                .unwrap()
                .explicit_script()
                .unwrap()
        )
    );

    psbt.inputs[0].witness_script = None;
    assert_eq!(
        only_codes(&analyze(&policy, &psbt)),
        ["INPUT_WITNESS_SCRIPT_MISSING"]
    );
}

#[test]
fn foreign_input_is_not_ours() {
    let (policy, _w, mut psbt) = cold_setup();
    let foreign_prev = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![],
        output: vec![TxOut {
            value: Amount::from_sat(5_000),
            script_pubkey: external_script(),
        }],
    };
    let outpoint = OutPoint {
        txid: foreign_prev.compute_txid(),
        vout: 0,
    };
    psbt.unsigned_tx.input.push(TxIn {
        previous_output: outpoint,
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        ..Default::default()
    });
    psbt.inputs.push(psbt::Input {
        witness_utxo: Some(foreign_prev.output[0].clone()),
        non_witness_utxo: Some(foreign_prev),
        ..Default::default()
    });
    let a = analyze(&policy, &psbt);
    assert!(a.has(FindingCode::InputNotOurs), "{a}");
    assert!(a.has(FindingCode::InputNotSegwitV0), "{a}");
    assert!(a.findings().iter().all(|f| f.input == Some(1)), "{a}");
    assert_eq!(a.inputs[1].ownership, None);
    assert_eq!(a.inputs[1].amount, Some(Amount::from_sat(5_000)));
    assert_eq!(a.estimated_weight, None);
}

#[test]
fn derivation_claims_that_do_not_hold() {
    // Claims receive/1 while spending receive/0.
    let (policy, _w, mut psbt) = cold_setup();
    let pk = recovery_source_mut(&policy, &mut psbt.inputs[0].bip32_derivation);
    psbt.inputs[0].bip32_derivation.get_mut(&pk).unwrap().1 =
        recovery_path_for(0, ChildNumber::from_normal_idx(1).unwrap());
    let a = analyze(&policy, &psbt);
    assert!(a.has(FindingCode::InputNotOurs), "{a}");
    assert_eq!(a.inputs[0].ownership, None);
    assert_eq!(a.inputs[0].witness_script, None);

    // Hardened index.
    let (policy, _w, mut psbt) = cold_setup();
    let pk = recovery_source_mut(&policy, &mut psbt.inputs[0].bip32_derivation);
    psbt.inputs[0].bip32_derivation.get_mut(&pk).unwrap().1 =
        recovery_path_for(0, ChildNumber::from_hardened_idx(0).unwrap());
    assert_eq!(
        only_codes(&analyze(&policy, &psbt)),
        ["INPUT_DERIVATION_INVALID"]
    );

    // Recovery derivation removed; the HSM keys' entries remain.
    let (policy, _w, mut psbt) = cold_setup();
    let pk = recovery_source_mut(&policy, &mut psbt.inputs[0].bip32_derivation);
    psbt.inputs[0].bip32_derivation.remove(&pk);
    assert_eq!(
        psbt.inputs[0].bip32_derivation.len(),
        3,
        "bdk lists the three hsm keys"
    );
    assert_eq!(
        only_codes(&analyze(&policy, &psbt)),
        ["INPUT_DERIVATION_MISSING"]
    );

    // Nothing at all.
    psbt.inputs[0].bip32_derivation.clear();
    assert_eq!(only_codes(&analyze(&policy, &psbt)), ["INPUT_NOT_OURS"]);
}

#[test]
fn sighash_other_than_all() {
    let (policy, _w, mut psbt) = cold_setup();
    psbt.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::None));
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["INPUT_SIGHASH_NOT_ALL"], "{a}");
    assert_eq!(a.inputs[0].sighash_type.as_deref(), Some("SIGHASH_NONE"));
    psbt.inputs[0].sighash_type =
        Some(PsbtSighashType::from(EcdsaSighashType::AllPlusAnyoneCanPay));
    assert_eq!(
        only_codes(&analyze(&policy, &psbt)),
        ["INPUT_SIGHASH_NOT_ALL"]
    );
    psbt.inputs[0].sighash_type = Some(PsbtSighashType::from_u32(0x41));
    assert_eq!(
        only_codes(&analyze(&policy, &psbt)),
        ["INPUT_SIGHASH_NOT_ALL"]
    );
    psbt.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::All));
    assert!(analyze(&policy, &psbt).is_clean());
}

#[test]
fn change_claiming_index_5_with_the_script_of_6_is_unproven() {
    let (policy, _w, mut psbt) = cold_setup();
    let c = change_index(&psbt);
    let pk = recovery_source_mut(&policy, &mut psbt.outputs[c].bip32_derivation);
    psbt.outputs[c].bip32_derivation.get_mut(&pk).unwrap().1 =
        recovery_path_for(1, ChildNumber::from_normal_idx(5).unwrap());
    psbt.unsigned_tx.output[c].script_pubkey =
        policy.address(Keychain::Change, 6).unwrap().script_pubkey();
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["OUTPUT_CHANGE_UNPROVEN"], "{a}");
    assert_eq!(a.findings()[0].output, Some(c));
    assert_eq!(a.outputs[c].class, OutputClass::Unproven);
    assert_eq!(a.change_total, Some(Amount::ZERO));
    assert_eq!(
        a.external_total, a.total_out,
        "unproven change counts as leaving"
    );

    // Claiming 6 for the script of 6 is proven change at 6.
    psbt.outputs[c].bip32_derivation.get_mut(&pk).unwrap().1 =
        recovery_path_for(1, ChildNumber::from_normal_idx(6).unwrap());
    let a = analyze(&policy, &psbt);
    assert!(a.is_clean(), "{a}");
    assert_eq!(a.outputs[c].class, OutputClass::Change { index: 6 });
}

#[test]
fn payment_to_our_own_receive_address() {
    let policy = cold_policy();
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 100_000);
    let own = policy
        .address(Keychain::Receive, 3)
        .unwrap()
        .script_pubkey();
    let mut builder = wallet.build_tx();
    builder
        .add_recipient(own.clone(), Amount::from_sat(40_000))
        .set_condition(Default::default());
    let psbt = builder.finish().unwrap();
    let a = analyze(&policy, &psbt);
    assert!(a.is_clean(), "{a}");
    let i = output_index(&psbt, &own);
    assert_eq!(a.outputs[i].class, OutputClass::Receive { index: 3 });
    assert_eq!(a.receive_total, Some(Amount::from_sat(40_000)));
    assert_eq!(a.external_total, Some(Amount::ZERO));
    assert!(a.to_string().contains("ours receive/3"));
}

#[test]
fn outputs_exceeding_inputs_and_overflow() {
    let (policy, _w, mut psbt) = cold_setup();
    let ext = output_index(&psbt, &external_script());
    psbt.unsigned_tx.output[ext].value = Amount::from_sat(200_000);
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["FEE_NEGATIVE"], "{a}");
    assert_eq!(a.fee, None);

    psbt.unsigned_tx.output[ext].value = Amount::MAX_MONEY;
    let c = change_index(&psbt);
    psbt.unsigned_tx.output[c].value = Amount::MAX_MONEY;
    let a = analyze(&policy, &psbt);
    assert!(a.has(FindingCode::AmountOverflow), "{a}");
    assert_eq!(a.total_out, None);
    assert_eq!(a.fee, None);

    psbt.unsigned_tx.output[ext].value = Amount::MAX;
    let a = analyze(&policy, &psbt);
    assert!(a.has(FindingCode::AmountOverflow), "{a}");
}

#[test]
fn duplicate_inputs_and_structural_problems_do_not_panic() {
    let (policy, _w, mut psbt) = cold_setup();
    psbt.unsigned_tx
        .input
        .push(psbt.unsigned_tx.input[0].clone());
    psbt.inputs.push(psbt.inputs[0].clone());
    let a = analyze(&policy, &psbt);
    assert_eq!(only_codes(&a), ["INPUT_DUPLICATE"], "{a}");
    assert_eq!(a.total_in, None);

    // Maps that do not match the transaction.
    psbt.inputs.pop();
    psbt.inputs.pop();
    psbt.outputs.clear();
    let a = analyze(&policy, &psbt);
    assert!(a.has(FindingCode::PsbtMalformed), "{a}");

    let empty = Psbt::from_unsigned_tx(Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![],
        output: vec![],
    })
    .unwrap();
    let a = analyze(&policy, &empty);
    assert_eq!(a.codes(), ["PSBT_NO_INPUTS", "PSBT_NO_OUTPUTS"]);
    assert_eq!(a.total_in, Some(Amount::ZERO));
    assert_eq!(a.estimated_weight, None, "{a}");
}

#[test]
fn signing_targets_refuse_mismatches() {
    let (policy, _w, psbt) = cold_setup();
    let a = analyze(&policy, &psbt);
    let mut other = psbt.clone();
    other.unsigned_tx.lock_time = LockTime::ZERO;
    assert!(matches!(
        hsm_signing_targets(&policy, &other, &a),
        Err(policies::AnalysisError::PsbtMismatch { .. })
    ));
    let other_policy = PolicyDocument::new("other", 1, Network::Regtest, &cold_template()).unwrap();
    assert!(matches!(
        hsm_signing_targets(&other_policy, &psbt, &a),
        Err(policies::AnalysisError::PolicyMismatch { .. })
    ));
    let mut bad = psbt.clone();
    bad.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::Single));
    let a = analyze(&policy, &bad);
    let err = hsm_signing_targets(&policy, &bad, &a).unwrap_err();
    assert_eq!(err.to_string(), "psbt has findings: INPUT_SIGHASH_NOT_ALL");
}

#[test]
fn finding_codes_are_stable_upper_snake_and_unique() {
    let codes: Vec<&str> = FindingCode::ALL.iter().map(FindingCode::code).collect();
    for required in [
        "INPUT_NOT_OURS",
        "INPUT_PREVIOUS_TX_MISSING",
        "INPUT_PREVIOUS_TX_MISMATCH",
        "INPUT_WITNESS_UTXO_MISMATCH",
        "INPUT_WITNESS_SCRIPT_MISMATCH",
        "INPUT_DERIVATION_MISSING",
        "INPUT_NOT_SEGWIT_V0",
        "INPUT_SIGHASH_NOT_ALL",
        "INPUT_NO_SATISFIABLE_PATH",
        "OUTPUT_CHANGE_UNPROVEN",
        "FEE_NEGATIVE",
        "PSBT_NO_INPUTS",
        "AMOUNT_OVERFLOW",
    ] {
        assert!(codes.contains(&required), "{required}");
    }
    let unique: std::collections::BTreeSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len());
    assert!(codes.iter().all(|c| {
        c.chars()
            .all(|ch| ch.is_ascii_uppercase() || ch == '_' || ch.is_ascii_digit())
    }));
    assert_eq!(
        serde_json::to_string(&FindingCode::FeeNegative).unwrap(),
        "\"FEE_NEGATIVE\""
    );
}
