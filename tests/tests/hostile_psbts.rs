//! Property tests: the analysis the signer relies on never states a false
//! fact about a hostile PSBT, and never panics on one.
//!
//! Ground truth comes from the stand-in chain (what each outpoint really pays
//! to whom) and from the policy (what each index really derives to). Whatever
//! a mutation does, a clean analysis must agree with that truth.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use bitcoin::bip32::ChildNumber;
use bitcoin::psbt::PsbtSighashType;
use bitcoin::{Amount, Psbt};
use policies::analysis::{OutputClass, analyze};
use policies::{HsmKey, Keychain, PolicyDocument, Template};
use proptest::prelude::*;
use system_tests::chain::Utxos;
use system_tests::custody::{NETWORK, RECOVERY_AFTER, external_destination, recovery_key};
use system_tests::wallet::{PolicyWallet, SpendPath};

struct Fixture {
    policy: PolicyDocument,
    utxos: Utxos,
    psbt: Psbt,
}

/// A cold policy over software stand-ins for HSM keys (no token is needed to
/// analyse), three funded inputs and a PSBT with change.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let keys = (1u8..=3)
            .map(|i| {
                let secret = bitcoin::secp256k1::SecretKey::from_slice(&[i; 32]).unwrap();
                HsmKey::new(format!("cold-{i}"), secret.public_key(&secp))
            })
            .collect();
        let template = Template::Cold {
            threshold: 2,
            hsm_keys: keys,
            recovery: recovery_key().public,
            recovery_after: RECOVERY_AFTER,
        };
        let policy = PolicyDocument::new("fuzz", 1, NETWORK, &template).unwrap();
        let mut wallet = PolicyWallet::new(&policy).unwrap();
        wallet
            .fund(&[
                Amount::from_sat(120_000),
                Amount::from_sat(80_000),
                Amount::from_sat(50_000),
            ])
            .unwrap();
        let psbt = wallet
            .pay(
                external_destination(3),
                Amount::from_sat(230_000),
                SpendPath::Hsm,
            )
            .unwrap();
        assert!(analyze(&policy, &psbt).is_clean());
        Fixture {
            policy,
            utxos: wallet.utxos.clone(),
            psbt,
        }
    })
}

/// Everything a clean analysis asserts must be true of the real chain and policy.
fn assert_sound(f: &Fixture, psbt: &Psbt) {
    let analysis = analyze(&f.policy, psbt);
    if !analysis.is_clean() {
        return;
    }
    let mut total_in = Amount::ZERO;
    for (input, report) in psbt.unsigned_tx.input.iter().zip(&analysis.inputs) {
        let truth = f
            .utxos
            .get(&input.previous_output)
            .expect("a clean input spends an output that exists");
        assert_eq!(
            report.amount,
            Some(truth.value),
            "amount must be the real one"
        );
        let ownership = report.ownership.expect("clean inputs are ours");
        let derived = f
            .policy
            .derive(ownership.keychain, ownership.derivation_index)
            .unwrap();
        assert_eq!(derived.script_pubkey(), truth.script_pubkey, "really ours");
        assert_eq!(
            report.witness_script,
            Some(derived.explicit_script().unwrap()),
            "the script signed is the real one"
        );
        total_in = total_in.checked_add(truth.value).unwrap();
    }
    for (output, report) in psbt.unsigned_tx.output.iter().zip(&analysis.outputs) {
        if let OutputClass::Change { index } = report.class {
            let derived = f.policy.derive(Keychain::Change, index).unwrap();
            assert_eq!(
                derived.script_pubkey(),
                output.script_pubkey,
                "really change"
            );
        }
    }
    let total_out = psbt
        .unsigned_tx
        .output
        .iter()
        .try_fold(Amount::ZERO, |a, o| a.checked_add(o.value))
        .unwrap();
    assert_eq!(analysis.fee, Some(total_in.checked_sub(total_out).unwrap()));
}

#[derive(Debug, Clone)]
enum Mutation {
    InputAmount(usize, u64),
    DropPreviousTx(usize),
    SwapPreviousTx(usize, usize),
    DerivationIndex(usize, u32),
    OutputScript(usize, u8),
    OutputValue(usize, u64),
    ChangeIndex(usize, u32),
    Sighash(usize, u32),
    WitnessScriptFrom(usize, u32),
    DuplicateInput(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..3usize, 1..1_000_000u64).prop_map(|(i, v)| Mutation::InputAmount(i, v)),
        (0..3usize).prop_map(Mutation::DropPreviousTx),
        (0..3usize, 0..3usize).prop_map(|(a, b)| Mutation::SwapPreviousTx(a, b)),
        (0..3usize, 0..20u32).prop_map(|(i, n)| Mutation::DerivationIndex(i, n)),
        (0..2usize, any::<u8>()).prop_map(|(o, s)| Mutation::OutputScript(o, s)),
        (0..2usize, 0..400_000u64).prop_map(|(o, v)| Mutation::OutputValue(o, v)),
        (0..2usize, 0..20u32).prop_map(|(o, n)| Mutation::ChangeIndex(o, n)),
        (0..3usize, 0..0x90u32).prop_map(|(i, s)| Mutation::Sighash(i, s)),
        (0..3usize, 0..20u32).prop_map(|(i, n)| Mutation::WitnessScriptFrom(i, n)),
        (0..3usize).prop_map(Mutation::DuplicateInput),
    ]
}

fn set_last_step(path: &mut bitcoin::bip32::DerivationPath, index: u32) {
    let mut steps: Vec<ChildNumber> = path.into_iter().copied().collect();
    if let Some(last) = steps.last_mut() {
        *last = ChildNumber::from_normal_idx(index).unwrap();
    }
    *path = steps.into();
}

fn apply(f: &Fixture, psbt: &mut Psbt, m: &Mutation) {
    let recovery = f.policy.recovery.master_fingerprint();
    match *m {
        Mutation::InputAmount(i, v) => {
            if let Some(utxo) = psbt.inputs[i].witness_utxo.as_mut() {
                utxo.value = Amount::from_sat(v);
            }
        }
        Mutation::DropPreviousTx(i) => psbt.inputs[i].non_witness_utxo = None,
        Mutation::SwapPreviousTx(a, b) => {
            let tx = psbt.inputs[b].non_witness_utxo.clone();
            psbt.inputs[a].non_witness_utxo = tx;
        }
        Mutation::DerivationIndex(i, n) => {
            for (fingerprint, path) in psbt.inputs[i].bip32_derivation.values_mut() {
                if *fingerprint == recovery {
                    set_last_step(path, n);
                }
            }
        }
        Mutation::OutputScript(o, seed) => {
            psbt.unsigned_tx.output[o].script_pubkey = external_destination(seed);
        }
        Mutation::OutputValue(o, v) => psbt.unsigned_tx.output[o].value = Amount::from_sat(v),
        Mutation::ChangeIndex(o, n) => {
            for (fingerprint, path) in psbt.outputs[o].bip32_derivation.values_mut() {
                if *fingerprint == recovery {
                    set_last_step(path, n);
                }
            }
        }
        Mutation::Sighash(i, s) => {
            psbt.inputs[i].sighash_type = Some(PsbtSighashType::from_u32(s));
        }
        Mutation::WitnessScriptFrom(i, n) => {
            let other = f.policy.derive(Keychain::Receive, n).unwrap();
            psbt.inputs[i].witness_script = Some(other.explicit_script().unwrap());
        }
        Mutation::DuplicateInput(i) => {
            let txin = psbt.unsigned_tx.input[i].clone();
            psbt.unsigned_tx.input.push(txin);
            let map = psbt.inputs[i].clone();
            psbt.inputs.push(map);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any combination of up to four lies: a clean analysis is still true.
    #[test]
    fn a_clean_analysis_is_always_true(mutations in prop::collection::vec(mutation(), 1..5)) {
        let f = fixture();
        let mut psbt = f.psbt.clone();
        for m in &mutations {
            apply(f, &mut psbt, m);
        }
        assert_sound(f, &psbt);
    }

    /// Random bytes flipped in the serialised PSBT: parse or not, never panic,
    /// and a clean analysis is still true.
    #[test]
    fn flipped_bytes_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4)) {
        let f = fixture();
        let mut bytes = f.psbt.serialize();
        for (at, xor) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Ok(psbt) = Psbt::deserialize(&bytes) {
            assert_sound(f, &psbt);
        }
    }
}

/// The property test's oracle is not vacuous: the untouched PSBT is clean and
/// a real lie is caught.
#[test]
fn the_oracle_sees_real_lies() {
    let f = fixture();
    assert!(analyze(&f.policy, &f.psbt).is_clean());
    let mut psbt = f.psbt.clone();
    apply(f, &mut psbt, &Mutation::InputAmount(0, 1));
    assert!(!analyze(&f.policy, &psbt).is_clean());
}
