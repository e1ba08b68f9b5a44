//! An officer key on the officer's own PKCS#11 token (SoftHSM): generated on
//! the token, signing approvals with CKM_ECDSA that verify as low-S.
#![allow(clippy::unwrap_used)]

use std::str::FromStr as _;

use bitcoin::Txid;
use bitcoin::hashes::{Hash as _, sha256};
use policies::PolicyId;
use signer::approvals::token::TokenKeyRef;
use signer::approvals::{
    ApprovalMessage, Officer, OfficerId, OfficerKey, RequestBinding, TokenKey, verify_approval,
};
use test_support::softhsm::TestToken;
use uuid::Uuid;

#[test]
fn a_token_officer_key_signs_approvals_that_verify() {
    let Some(token) = TestToken::isolated(
        "a_token_officer_key_signs_approvals_that_verify",
        &["unrelated"],
    )
    .unwrap() else {
        return;
    };
    let reference = TokenKeyRef {
        module: token.module().path().to_owned(),
        token_label: token.token_label().to_owned(),
        key_label: "officer-erin".into(),
    };
    let key = TokenKey::generate(&reference, &TestToken::user_pin()).unwrap();
    // The label is taken now: a second generation is refused.
    assert!(TokenKey::generate(&reference, &TestToken::user_pin()).is_err());
    let reopened = TokenKey::open(&reference, &TestToken::user_pin()).unwrap();
    assert_eq!(reopened.public_key(), key.public_key());
    let erin = Officer {
        id: OfficerId(key.public_key()),
        name: "erin".into(),
        client: None,
        revoked: false,
    };
    let now = 1_800_000_000;
    // SoftHSM returns high-S about half the time: every one of these must verify
    // (verification refuses high-S), so the normalisation is exercised.
    for n in 0..16u128 {
        let binding = RequestBinding {
            instance: "signer-1".into(),
            policy_id: PolicyId::from_str(&"cd".repeat(32)).unwrap(),
            request_id: Uuid::from_u128(n + 1),
            txid: Txid::from_byte_array([7; 32]),
            analysis_hash: sha256::Hash::hash(&n.to_be_bytes()),
            initiator: "custodian".into(),
        };
        let approval = ApprovalMessage {
            instance: binding.instance.clone(),
            policy_id: binding.policy_id,
            request_id: binding.request_id,
            txid: binding.txid,
            analysis_hash: binding.analysis_hash,
            expires_at: now + 60,
            officer: erin.id,
        }
        .sign(&reopened)
        .unwrap();
        let lookup = |id: &OfficerId| (*id == erin.id).then(|| erin.clone());
        verify_approval(&approval, &binding, lookup, now).unwrap();
    }
}
