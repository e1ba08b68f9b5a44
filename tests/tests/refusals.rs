//! The signer refuses every PSBT it cannot fully verify, with a stable code,
//! and the HSM signs nothing for it.
//!
//! Each case starts from a PSBT the signer does sign (checked at the end of
//! the case, so a refusal can only come from the one tampering), changes one
//! thing, and asserts the code and that the token produced no signature.
#![allow(clippy::unwrap_used)]

use bitcoin::psbt::PsbtSighashType;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{Amount, Psbt, Witness};
use policies::analysis::OutputClass;
use policies::{Keychain, PolicyDocument};
use signer::{Pkcs11Hsm, SignError, sign_psbt};
use system_tests::custody::{cold_policy, external_destination, hot_policy, open_hsm};
use system_tests::wallet::{PolicyWallet, SpendPath};
use test_support::softhsm::TestToken;

const COLD: [&str; 3] = ["cold-a", "cold-b", "cold-c"];

struct Case {
    token: TestToken,
    policy: PolicyDocument,
    wallet: PolicyWallet,
    psbt: Psbt,
}

/// A cold policy over a private token, two funded inputs and a PSBT paying an
/// external address with change. `None` in the parent process.
fn case(name: &str) -> Option<Case> {
    let token = TestToken::isolated(name, &COLD).unwrap()?;
    let policy = cold_policy("vault", 2, token.keys());
    let mut wallet = PolicyWallet::new(&policy).unwrap();
    wallet
        .fund(&[Amount::from_sat(300_000), Amount::from_sat(200_000)])
        .unwrap();
    let psbt = wallet
        .pay(
            external_destination(4),
            Amount::from_sat(400_000),
            SpendPath::Hsm,
        )
        .unwrap();
    assert_eq!(psbt.inputs.len(), 2);
    Some(Case {
        token,
        policy,
        wallet,
        psbt,
    })
}

fn hsm(token: &TestToken, labels: &[&str]) -> Pkcs11Hsm {
    open_hsm(token, labels, 2).unwrap()
}

/// Signs `tampered`, expects `code`, checks the HSM made no signature, then
/// checks the untampered PSBT signs.
fn assert_refused(case: &Case, tampered: &Psbt, code: &str) -> SignError {
    let hsm = hsm(&case.token, &COLD);
    let err = sign_psbt(&case.policy, tampered, &hsm).unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert!(err.is_refusal());
    assert_eq!(
        hsm.signatures_made(),
        0,
        "a refused psbt must not reach the hsm"
    );
    let good = sign_psbt(&case.policy, &case.psbt, &hsm).unwrap();
    assert!(good.finalized);
    err
}

fn change_output(case: &Case) -> usize {
    let analysis = policies::analysis::analyze(&case.policy, &case.psbt);
    analysis
        .outputs
        .iter()
        .position(|o| matches!(o.class, OutputClass::Change { .. }))
        .expect("the fixture pays with change")
}

#[test]
fn refuses_input_without_previous_transaction() {
    let Some(case) = case("refuses_input_without_previous_transaction") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    psbt.inputs[1].non_witness_utxo = None;
    assert_refused(&case, &psbt, "INPUT_PREVIOUS_TX_MISSING");
}

#[test]
fn refuses_previous_transaction_of_another_txid() {
    let Some(case) = case("refuses_previous_transaction_of_another_txid") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    psbt.inputs[0].non_witness_utxo = psbt.inputs[1].non_witness_utxo.clone();
    assert_refused(&case, &psbt, "INPUT_PREVIOUS_TX_MISMATCH");
}

#[test]
fn refuses_witness_utxo_that_understates_the_amount() {
    // The segwit v0 fee attack: a lower amount in witness_utxo than the real prevout.
    let Some(case) = case("refuses_witness_utxo_that_understates_the_amount") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    let utxo = psbt.inputs[0].witness_utxo.as_mut().unwrap();
    utxo.value = utxo.value.checked_sub(Amount::from_sat(50_000)).unwrap();
    assert_refused(&case, &psbt, "INPUT_WITNESS_UTXO_MISMATCH");
}

#[test]
fn refuses_witness_script_of_another_index() {
    let Some(case) = case("refuses_witness_script_of_another_index") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    let other = case.policy.derive(Keychain::Receive, 17).unwrap();
    psbt.inputs[0].witness_script = Some(other.explicit_script().unwrap());
    assert_refused(&case, &psbt, "INPUT_WITNESS_SCRIPT_MISMATCH");
}

#[test]
fn refuses_input_of_another_policy() {
    let Some(case) = case("refuses_input_of_another_policy") else {
        return;
    };
    // Same recovery key, same derivation claims: only the scripts differ.
    let other = hot_policy("hot", &case.token.keys()[2]);
    let mut wallet = PolicyWallet::new(&other).unwrap();
    wallet.fund(&[Amount::from_sat(300_000)]).unwrap();
    let foreign = wallet
        .pay(
            external_destination(4),
            Amount::from_sat(100_000),
            SpendPath::Hsm,
        )
        .unwrap();
    let err = assert_refused(&case, &foreign, "INPUT_NOT_OURS");
    let SignError::Refused { findings } = err else {
        panic!("not a refusal");
    };
    assert_eq!(findings[0].input, Some(0));
}

#[test]
fn refuses_sighash_none() {
    let Some(case) = case("refuses_sighash_none") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    psbt.inputs[1].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::None));
    assert_refused(&case, &psbt, "INPUT_SIGHASH_NOT_ALL");
    let mut psbt = case.psbt.clone();
    psbt.inputs[0].sighash_type =
        Some(PsbtSighashType::from(EcdsaSighashType::AllPlusAnyoneCanPay));
    assert_refused(&case, &psbt, "INPUT_SIGHASH_NOT_ALL");
}

#[test]
fn refuses_change_that_does_not_rederive() {
    let Some(case) = case("refuses_change_that_does_not_rederive") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    let change = change_output(&case);
    // Claim the next change index for the same script (HSM keys have empty paths).
    let recovery = case.policy.recovery.master_fingerprint();
    for (_, (fingerprint, path)) in psbt.outputs[change].bip32_derivation.iter_mut() {
        if *fingerprint != recovery {
            continue;
        }
        let mut steps: Vec<_> = path.into_iter().copied().collect();
        let last = steps.pop().unwrap();
        let next = bitcoin::bip32::ChildNumber::from_normal_idx(u32::from(last) + 1).unwrap();
        steps.push(next);
        *path = steps.into();
    }
    assert_refused(&case, &psbt, "OUTPUT_CHANGE_UNPROVEN");
}

#[test]
fn refuses_change_redirected_to_an_attacker() {
    let Some(case) = case("refuses_change_redirected_to_an_attacker") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    let change = change_output(&case);
    // The coordinator keeps the change metadata but swaps the script.
    psbt.unsigned_tx.output[change].script_pubkey = external_destination(66);
    assert_refused(&case, &psbt, "OUTPUT_CHANGE_UNPROVEN");
}

#[test]
fn refuses_outputs_exceeding_inputs() {
    let Some(case) = case("refuses_outputs_exceeding_inputs") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    let change = change_output(&case);
    psbt.unsigned_tx.output[change].value = Amount::from_sat(200_000);
    assert_refused(&case, &psbt, "FEE_NEGATIVE");
}

#[test]
fn refuses_input_without_recovery_derivation() {
    let Some(case) = case("refuses_input_without_recovery_derivation") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    let recovery = case.policy.recovery.master_fingerprint();
    psbt.inputs[0]
        .bip32_derivation
        .retain(|_, (fingerprint, _)| *fingerprint != recovery);
    assert_refused(&case, &psbt, "INPUT_DERIVATION_MISSING");
}

#[test]
fn refuses_duplicate_inputs() {
    let Some(case) = case("refuses_duplicate_inputs") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    let first = psbt.unsigned_tx.input[0].clone();
    psbt.unsigned_tx.input.push(first);
    let map = psbt.inputs[0].clone();
    psbt.inputs.push(map);
    assert_refused(&case, &psbt, "INPUT_DUPLICATE");
}

#[test]
fn refuses_already_finalized_input() {
    let Some(case) = case("refuses_already_finalized_input") else {
        return;
    };
    let mut psbt = case.psbt.clone();
    psbt.inputs[0].final_script_witness = Some(Witness::from_slice(&[vec![1u8; 72]]));
    assert_refused(&case, &psbt, "INPUT_ALREADY_FINAL");
}

#[test]
fn refuses_token_key_that_is_not_the_policy_key() {
    let Some(case) = case("refuses_token_key_that_is_not_the_policy_key") else {
        return;
    };
    // A second token holds a different key under the policy's label "cold-a".
    let module = case.token.module();
    module
        .init_token("impostor", &TestToken::so_pin(), &TestToken::user_pin())
        .unwrap();
    let session = module
        .open_session("impostor", &TestToken::user_pin())
        .unwrap();
    session.generate_key("cold-a").unwrap();
    let impostor = Pkcs11Hsm::open(
        module,
        "impostor",
        &TestToken::user_pin(),
        &["cold-a".to_string()],
        1,
    )
    .unwrap();
    let err = sign_psbt(&case.policy, &case.psbt, &impostor).unwrap_err();
    assert_eq!(err.code(), "HSM_KEY_MISMATCH", "{err}");
    assert_eq!(impostor.signatures_made(), 0);
}

#[test]
fn refuses_when_no_policy_key_is_held() {
    let Some(case) = case("refuses_when_no_policy_key_is_held") else {
        return;
    };
    let session = case.token.open_session().unwrap();
    session.generate_key("hot-a").unwrap();
    let unrelated = hsm(&case.token, &["hot-a"]);
    let err = sign_psbt(&case.policy, &case.psbt, &unrelated).unwrap_err();
    assert_eq!(err.code(), "NO_POLICY_KEYS_HELD", "{err}");
    assert_eq!(unrelated.signatures_made(), 0);
    // The wallet is still usable: nothing was spent.
    assert_eq!(case.wallet.height(), 1);
}
