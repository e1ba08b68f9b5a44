//! End to end custody: keys generated in a real SoftHSM2 token, policies
//! compiled from them, PSBTs built by bdk, signed by the signer and accepted by
//! the stand-in chain only when Bitcoin Core's script interpreter verifies them.
//!
//! Each test runs in its own process with its own token directory
//! (`TestToken::isolated`).
#![allow(clippy::unwrap_used)]

use bitcoin::{Amount, Sequence};
use signer::{Hsm, Pkcs11Hsm, finalize_and_extract, sign_psbt};
use system_tests::custody::{RECOVERY_AFTER, cold_policy, external_destination, hot_policy};
use system_tests::custody::{open_hsm, recovery_key};
use system_tests::wallet::{PolicyWallet, SpendPath};
use test_support::softhsm::TestToken;

const COLD: [&str; 3] = ["cold-a", "cold-b", "cold-c"];

#[test]
fn cold_two_of_three_across_two_tokens_is_accepted_by_consensus() -> anyhow::Result<()> {
    let Some(token) = TestToken::isolated(
        "cold_two_of_three_across_two_tokens_is_accepted_by_consensus",
        &["cold-a", "cold-c"],
    )?
    else {
        return Ok(());
    };
    // A second officer's token in the same module holds cold-b.
    let module = token.module().clone();
    module.init_token("officer-b", &TestToken::so_pin(), &TestToken::user_pin())?;
    let officer_b = module.open_session("officer-b", &TestToken::user_pin())?;
    let key_b = officer_b.generate_key("cold-b")?;
    let keys = vec![token.keys()[0].clone(), key_b, token.keys()[1].clone()];
    let policy = cold_policy("treasury", 2, &keys);
    assert_eq!(
        policy
            .hsm_keys
            .iter()
            .map(|k| k.label.as_str())
            .collect::<Vec<_>>(),
        COLD
    );

    let mut wallet = PolicyWallet::new(&policy)?;
    wallet.fund(&[Amount::from_sat(600_000), Amount::from_sat(250_000)])?;
    let psbt = wallet.pay(
        external_destination(7),
        Amount::from_sat(700_000),
        SpendPath::Hsm,
    )?;

    let signer_a = open_hsm(&token, &["cold-a"], 1)?;
    let first = sign_psbt(&policy, &psbt, &signer_a)?;
    assert_eq!(first.signatures, psbt.inputs.len());
    assert!(!first.finalized, "one of two signatures must not finalize");
    assert_eq!(signer_a.signatures_made(), psbt.inputs.len() as u64);
    let external: Vec<_> = first
        .analysis
        .outputs
        .iter()
        .filter(|o| matches!(o.class, policies::analysis::OutputClass::External))
        .collect();
    assert_eq!(external.len(), 1, "the payment is reported as external");
    assert_eq!(external[0].value, Amount::from_sat(700_000));

    let signer_b = Pkcs11Hsm::open(
        &module,
        "officer-b",
        &TestToken::user_pin(),
        &["cold-b".to_string()],
        2,
    )?;
    let second = sign_psbt(&policy, &first.psbt, &signer_b)?;
    assert!(second.finalized, "{:?}", second.not_finalized_because);
    let tx = second.psbt.extract_tx()?;

    // A flipped signature byte must be refused by the interpreter: proves the check is real.
    let mut forged = tx.clone();
    let witness = forged.input[0].witness.to_vec();
    let mut items = witness.clone();
    let sig = items.iter_mut().find(|w| w.len() > 60).unwrap();
    sig[10] ^= 0x01;
    forged.input[0].witness = bitcoin::Witness::from_slice(&items);
    assert!(wallet.utxos.verify(&forged).is_err());

    wallet.broadcast_and_mine(&tx)?;
    Ok(())
}

#[test]
fn a_signer_holding_two_keys_finalizes_alone() -> anyhow::Result<()> {
    let Some(token) = TestToken::isolated("a_signer_holding_two_keys_finalizes_alone", &COLD)?
    else {
        return Ok(());
    };
    let policy = cold_policy("vault", 2, token.keys());
    let mut wallet = PolicyWallet::new(&policy)?;
    wallet.fund(&[Amount::from_sat(100_000); 5])?;
    let psbt = wallet.drain(external_destination(3), SpendPath::Hsm)?;
    let hsm = open_hsm(&token, &["cold-a", "cold-b"], 2)?;
    let signed = sign_psbt(&policy, &psbt, &hsm)?;
    assert_eq!(signed.signatures, 2 * 5);
    assert!(signed.finalized);
    wallet.broadcast_and_mine(&signed.psbt.extract_tx()?)?;
    Ok(())
}

#[test]
fn hot_spend_with_change_is_accepted_by_consensus() -> anyhow::Result<()> {
    let Some(token) =
        TestToken::isolated("hot_spend_with_change_is_accepted_by_consensus", &["hot-a"])?
    else {
        return Ok(());
    };
    let policy = hot_policy("hot", &token.keys()[0]);
    let mut wallet = PolicyWallet::new(&policy)?;
    wallet.fund(&[Amount::from_sat(1_000_000)])?;
    let psbt = wallet.pay(
        external_destination(9),
        Amount::from_sat(30_000),
        SpendPath::Hsm,
    )?;
    let hsm = open_hsm(&token, &["hot-a"], 1)?;
    let signed = sign_psbt(&policy, &psbt, &hsm)?;
    assert!(signed.finalized);
    assert_eq!(signed.signatures, 1);
    // The change went back to the policy, proven by re-derivation.
    assert!(signed.analysis.change_total.unwrap() > Amount::from_sat(960_000));
    let tx = signed.psbt.extract_tx()?;
    wallet.broadcast_and_mine(&tx)?;

    // The change is spendable in turn.
    let again = wallet.pay(
        external_destination(10),
        Amount::from_sat(20_000),
        SpendPath::Hsm,
    )?;
    let signed = sign_psbt(&policy, &again, &hsm)?;
    wallet.broadcast_and_mine(&signed.psbt.extract_tx()?)?;
    Ok(())
}

#[test]
fn recovery_path_spends_after_its_timelock_and_not_before() -> anyhow::Result<()> {
    let Some(token) = TestToken::isolated(
        "recovery_path_spends_after_its_timelock_and_not_before",
        &COLD,
    )?
    else {
        return Ok(());
    };
    let policy = cold_policy("vault", 2, token.keys());
    let recovery = recovery_key();
    let mut wallet = PolicyWallet::new(&policy)?;
    wallet.fund(&[Amount::from_sat(500_000)])?;
    let after = RECOVERY_AFTER;

    // The recovery path: nSequence = older(n), version 2, signed by the offline key only.
    let mut psbt = wallet.drain(external_destination(5), SpendPath::Recovery { after })?;
    assert_eq!(
        psbt.unsigned_tx.input[0].sequence,
        Sequence::from_height(after)
    );
    let analysis = policies::analysis::analyze(&policy, &psbt);
    let recovery_path = analysis.inputs[0]
        .spending_paths
        .iter()
        .find(|p| p.keys.iter().any(|k| k == "recovery"))
        .unwrap();
    assert!(recovery_path.satisfiable_now);
    assert_eq!(recovery.sign(&mut psbt).map_err(anyhow::Error::msg)?, 1);
    let tx = finalize_and_extract(&psbt).map_err(|e| anyhow::anyhow!("{e:?}"))?;

    // Too early for the chain: the output is 1 block old, the lock is 144 (BIP68).
    let early = wallet.broadcast_and_mine(&tx).unwrap_err().to_string();
    assert!(early.contains("non-BIP68-final"), "{early}");
    wallet.mine(u32::from(after) - 2)?;
    assert!(wallet.broadcast_and_mine(&tx).is_err(), "one block short");
    wallet.mine(1)?;
    wallet.broadcast_and_mine(&tx)?;

    // A recovery spend whose nSequence is one below the lock cannot be finalized.
    let mut wallet = PolicyWallet::new(&policy)?;
    wallet.fund(&[Amount::from_sat(500_000)])?;
    let mut short = wallet.drain(
        external_destination(5),
        SpendPath::Recovery { after: after - 1 },
    )?;
    let analysis = policies::analysis::analyze(&policy, &short);
    assert!(
        analysis.inputs[0]
            .spending_paths
            .iter()
            .filter(|p| p.keys.iter().any(|k| k == "recovery"))
            .all(|p| !p.satisfiable_now)
    );
    recovery.sign(&mut short).map_err(anyhow::Error::msg)?;
    assert!(finalize_and_extract(&short).is_err());
    Ok(())
}

#[test]
fn signing_fifty_inputs_splits_across_sessions() -> anyhow::Result<()> {
    let Some(token) = TestToken::isolated("signing_fifty_inputs_splits_across_sessions", &COLD)?
    else {
        return Ok(());
    };
    let policy = cold_policy("vault", 2, token.keys());
    let mut wallet = PolicyWallet::new(&policy)?;
    wallet.fund(&[Amount::from_sat(20_000); 50])?;
    let psbt = wallet.drain(external_destination(1), SpendPath::Hsm)?;
    assert_eq!(psbt.inputs.len(), 50);
    let hsm = open_hsm(&token, &COLD, 2)?;
    assert_eq!(hsm.keys().len(), 3);
    let signed = sign_psbt(&policy, &psbt, &hsm)?;
    assert_eq!(
        signed.signatures, 100,
        "two of the three held keys sign every input: what the 2-of-3 needs"
    );
    assert!(signed.finalized);
    wallet.broadcast_and_mine(&signed.psbt.extract_tx()?)?;
    Ok(())
}

#[test]
fn custom_policy_spends_with_hsm_keys() -> anyhow::Result<()> {
    let Some(token) =
        TestToken::isolated("custom_policy_spends_with_hsm_keys", &["ops-a", "ops-b"])?
    else {
        return Ok(());
    };
    // Two of: ops-a, ops-b, and the recovery key once 1000 blocks have passed.
    let template = policies::Template::Custom {
        policy: "thresh(2,pk(ops-a),pk(ops-b),and(pk(recovery),older(1000)))".into(),
        hsm_keys: token
            .keys()
            .iter()
            .map(system_tests::custody::hsm_key)
            .collect(),
        recovery: recovery_key().public,
    };
    let policy =
        policies::PolicyDocument::new("ops", 1, system_tests::custody::NETWORK, &template)?;
    assert_eq!(policy.template, "custom");
    let mut wallet = PolicyWallet::new(&policy)?;
    wallet.fund(&[Amount::from_sat(90_000), Amount::from_sat(60_000)])?;
    let psbt = wallet.pay(
        external_destination(12),
        Amount::from_sat(120_000),
        SpendPath::Hsm,
    )?;
    let hsm = open_hsm(&token, &["ops-a", "ops-b"], 2)?;
    let signed = sign_psbt(&policy, &psbt, &hsm)?;
    assert!(signed.finalized, "{:?}", signed.not_finalized_because);
    wallet.broadcast_and_mine(&signed.psbt.extract_tx()?)?;
    Ok(())
}
