//! The library in-process against a real SoftHSM2.
//!
//! Every test runs in its own child process with a private token directory
//! (`test_support::softhsm::isolate`), because SoftHSM2 reads `SOFTHSM2_CONF` once per
//! process. The name passed is the test's libtest name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use bitcoin::secp256k1::{Message, Secp256k1, ecdsa::Signature};
use cryptoki::mechanism::Mechanism;
use hsm_config::{Error, Module, SoPin, UserPin};
use secrecy::SecretString;
use test_support::softhsm::{TEST_TOKEN_LABEL, TestToken, isolate, module_path};

fn digest(i: u32) -> [u8; 32] {
    use bitcoin::hashes::{Hash, sha256};
    sha256::Hash::hash(&i.to_be_bytes()).to_byte_array()
}

#[test]
fn signatures_are_low_s_and_verify() {
    let Some(hsm) = TestToken::isolated("signatures_are_low_s_and_verify", &["cold-a"]).unwrap()
    else {
        return;
    };
    let session = hsm.session();
    let (handle, key) = session.signing_key("cold-a").unwrap();
    assert_eq!(key, hsm.keys()[0]);
    let secp = Secp256k1::verification_only();
    let mut high_s_from_token = 0;
    for i in 0..64 {
        let digest = digest(i);
        // What the token returns as is: about half of it is high-S.
        let raw = session
            .raw()
            .sign(&Mechanism::Ecdsa, handle, &digest)
            .unwrap();
        assert_eq!(raw.len(), 64);
        let as_returned = Signature::from_compact(&raw).unwrap();
        let mut low = as_returned;
        low.normalize_s();
        if low != as_returned {
            high_s_from_token += 1;
        }
        // What we hand out: low-S, verified.
        let sig = session
            .sign_digest(&handle, &key.public_key, &digest)
            .unwrap();
        let mut normalised = sig;
        normalised.normalize_s();
        assert_eq!(normalised, sig, "low-S");
        secp.verify_ecdsa(&Message::from_digest(digest), &sig, &key.public_key)
            .unwrap();
    }
    assert!(
        high_s_from_token > 0,
        "SoftHSM2 returned no high-S signature in 64: the normalisation went untested"
    );
}

#[test]
fn a_signature_for_another_public_key_is_refused() {
    let Some(hsm) =
        TestToken::isolated("a_signature_for_another_public_key_is_refused", &["a", "b"]).unwrap()
    else {
        return;
    };
    let session = hsm.session();
    let handle_a = session.private_key_handle("a").unwrap();
    let key_b = session.key("b").unwrap();
    let err = session
        .sign_digest(&handle_a, &key_b.public_key, &digest(1))
        .unwrap_err();
    assert!(matches!(err, Error::SignatureVerification { .. }), "{err}");
}

#[test]
fn keys_are_found_by_label_and_labels_are_unique() {
    let Some(hsm) = TestToken::isolated(
        "keys_are_found_by_label_and_labels_are_unique",
        &["cold-b", "cold-a"],
    )
    .unwrap() else {
        return;
    };
    let session = hsm.session();
    let listed = session.list_keys().unwrap();
    let labels: Vec<&str> = listed.iter().map(|k| k.label.as_str()).collect();
    assert_eq!(labels, ["cold-a", "cold-b"]);
    assert_eq!(session.key("cold-b").unwrap(), hsm.keys()[0]);
    assert_eq!(
        hsm.keys()[0].id,
        hsm_config::ecdsa::key_hash160(&hsm.keys()[0].public_key)
    );

    let err = session.generate_key("cold-a").unwrap_err();
    assert!(matches!(err, Error::KeyExists { .. }), "{err}");
    let err = session.key("missing").unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { .. }), "{err}");
    assert!(err.to_string().contains("missing"));
    let err = session.private_key_handle("missing").unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { .. }), "{err}");

    // PKCS#11 itself allows duplicate labels: make one behind our back and see it refused.
    use cryptoki::object::{Attribute, KeyType};
    let params = hsm_config::ecdsa::SECP256K1_EC_PARAMS.to_vec();
    session
        .raw()
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(params),
                Attribute::Label(b"cold-a".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::Sign(true),
                Attribute::Label(b"cold-a".to_vec()),
            ],
        )
        .unwrap();
    for err in [
        session.private_key_handle("cold-a").unwrap_err(),
        session.key("cold-a").unwrap_err(),
        session.list_keys().unwrap_err(),
    ] {
        assert!(matches!(err, Error::DuplicateKey { count: 2, .. }), "{err}");
    }
}

#[test]
fn attributes_read_back_as_generated_on_the_token() {
    let Some(hsm) = TestToken::isolated(
        "attributes_read_back_as_generated_on_the_token",
        &["cold-a"],
    )
    .unwrap() else {
        return;
    };
    let attrs = hsm.session().key_attributes("cold-a").unwrap();
    assert!(attrs.sensitive && attrs.always_sensitive);
    assert!(!attrs.extractable && attrs.never_extractable);
    assert!(attrs.local && attrs.token && attrs.private && attrs.sign);
    assert!(!attrs.decrypt && !attrs.unwrap && !attrs.derive);
    assert!(attrs.problems().is_empty(), "{:?}", attrs.problems());
}

#[test]
fn pins_and_logins() {
    if !isolate("pins_and_logins").unwrap() {
        return;
    }
    let module = Module::load(module_path().unwrap()).unwrap();
    let user_pin = UserPin::new(SecretString::from("right-pin"));
    module
        .init_token("t", &SoPin::new(SecretString::from("so-pin")), &user_pin)
        .unwrap();

    let wrong = UserPin::new(SecretString::from("not-the-pin"));
    let err = module.open_session("t", &wrong).unwrap_err();
    assert!(matches!(err, Error::WrongPin { .. }), "{err}");
    assert_eq!(err.rv(), Some(cryptoki::error::RvError::PinIncorrect));
    assert!(!format!("{err} {err:?}").contains("not-the-pin"));

    let first = module.open_session("t", &user_pin).unwrap();
    // Login is per application: the second session's C_Login answers
    // CKR_USER_ALREADY_LOGGED_IN, which is success...
    let second = module.clone().open_session("t", &user_pin).unwrap();
    second.list_keys().unwrap();
    // ...and SoftHSM2 answers it before checking the PIN: once the process is logged in,
    // the PIN is not checked again (documented on `Module::open_session`).
    assert!(module.open_session("t", &wrong).is_ok());
    drop((first, second));
}

#[test]
fn tokens_are_found_by_label_only() {
    let Some(hsm) = TestToken::isolated("tokens_are_found_by_label_only", &[]).unwrap() else {
        return;
    };
    let module = hsm.module();
    let err = module.find_slot("no-such-token").unwrap_err();
    assert!(matches!(err, Error::TokenNotFound { .. }), "{err}");
    assert!(err.to_string().contains(TEST_TOKEN_LABEL), "{err}");
    let err = module
        .init_token(
            TEST_TOKEN_LABEL,
            &TestToken::so_pin(),
            &TestToken::user_pin(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::TokenExists { .. }), "{err}");
    let other = module
        .init_token(
            "other",
            &SoPin::new(SecretString::from("so-2")),
            &TestToken::user_pin(),
        )
        .unwrap();
    assert_eq!(other.label, "other");
    assert_ne!(
        module.find_slot("other").unwrap(),
        module.find_slot(TEST_TOKEN_LABEL).unwrap()
    );
    assert_eq!(
        module
            .tokens()
            .unwrap()
            .iter()
            .filter(|t| t.initialized)
            .count(),
        2
    );
}

/// Token and keys made by the CLI in other processes, then used here in-process: the slot
/// number has changed since `C_InitToken`, the label has not.
#[test]
fn keys_made_in_other_processes_sign_here() {
    if !isolate("keys_made_in_other_processes_sign_here").unwrap() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"t\"\nmodule = {:?}\ntoken_label = \"custody-dev\"\nkeys = [\"hot-a\"]\n",
            module_path().unwrap()
        ),
    )
    .unwrap();
    for args in [&["init-token"][..], &["gen-key", "--label", "hot-a"]] {
        // SOFTHSM2_CONF is inherited from this (isolated) process.
        let out = Command::new(env!("CARGO_BIN_EXE_hsm-config"))
            .arg("--profile")
            .arg(&profile)
            .args(args)
            .env("HSM_SO_PIN", "so-pin-x")
            .env("HSM_USER_PIN", "user-pin-x")
            .env_remove("HSM_SO_PIN_FILE")
            .env_remove("HSM_USER_PIN_FILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let module = Module::load(module_path().unwrap()).unwrap();
    // The initialising process saw the token on slot 0; this one sees it elsewhere.
    let slot = module.find_slot("custody-dev").unwrap();
    assert_ne!(slot.id(), 0, "SoftHSM2 renumbers slots after C_InitToken");
    let session = module
        .open_session(
            "custody-dev",
            &UserPin::new(SecretString::from("user-pin-x")),
        )
        .unwrap();
    let (handle, key) = session.signing_key("hot-a").unwrap();
    session
        .sign_digest(&handle, &key.public_key, &digest(7))
        .unwrap();
}

#[test]
#[should_panic(expected = "ran no test of that name")]
fn isolate_detects_a_wrong_test_name() {
    let _ = isolate("tests::not_the_name_of_this_test");
}
