//! The signing service through its HTTP API, on real PostgreSQL and a real
//! SoftHSM token: signing, idempotency, concurrency, authentication, and every
//! bad input refused with its code, nothing signed and `C_Sign` never called.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use bitcoin::psbt::PsbtSighashType;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{Amount, Psbt, TxOut};
use policies::Keychain;
use secrecy::ExposeSecret as _;
use signer::audit::{self, Verification};
use signer::store::{RequestId, RequestStatus};
use support::{Service, payment};
use system_tests::custody::external_destination;
use system_tests::wallet::{PolicyWallet, SpendPath};

/// Submits `tampered` under the hot policy and expects a stored refusal with
/// `code`, no signature and no C_Sign call; then the untampered PSBT signs.
async fn assert_refused(service: &Service, good: &Psbt, tampered: &Psbt, code: &str) {
    let (status, body) = service.submit(&service.hot, tampered, "bad-1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "refused", "{body}");
    assert_eq!(body["refusal"]["code"], code, "{body}");
    assert!(body["signed_psbt"].is_null());
    assert_eq!(
        service.hsm.sign_calls(),
        0,
        "a refused psbt must not reach C_Sign"
    );
    assert_eq!(service.count("signer_velocity").await, 0);
    // The refusal is in the audit log, with its code.
    let refusals: Vec<String> =
        sqlx::query_scalar("SELECT body FROM signer_audit WHERE kind = 'refusal'")
            .fetch_all(service.store.pool())
            .await
            .unwrap();
    assert_eq!(refusals.len(), 1);
    assert!(refusals[0].contains(code));
    // Control: the same service signs the untampered PSBT.
    let (status, body) = service.submit(&service.hot, good, "good-1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "signed", "{body}");
}

fn hot_case(name: &str) -> Option<(Service, tokio::runtime::Runtime, PolicyWallet, Psbt)> {
    let (service, rt) = Service::isolated(name)?;
    let (wallet, psbt) = payment(&service.hot, &[300_000, 200_000], 400_000);
    assert_eq!(psbt.inputs.len(), 2);
    Some((service, rt, wallet, psbt))
}

#[test]
fn hot_policy_signs_and_an_identical_replay_returns_the_same_signature() {
    let Some((service, rt, _wallet, psbt)) =
        hot_case("hot_policy_signs_and_an_identical_replay_returns_the_same_signature")
    else {
        return;
    };
    rt.block_on(async {
        let (status, first) = service.submit(&service.hot, &psbt, "k-1").await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["status"], "signed");
        assert!(
            first["analysis_text"]
                .as_str()
                .unwrap()
                .contains("external")
        );
        let signed: Psbt = first["signed_psbt"].as_str().unwrap().parse().unwrap();
        let tx = signer::finalize_and_extract(&signed)
            .or_else(|_| signed.clone().extract_tx().map_err(|e| vec![e.to_string()]))
            .unwrap();
        assert_eq!(tx.compute_txid(), psbt.unsigned_tx.compute_txid());
        let calls = service.hsm.sign_calls();
        assert_eq!(calls, 2, "one signature per input");

        let (status, replay) = service.submit(&service.hot, &psbt, "k-1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(replay["id"], first["id"]);
        assert_eq!(replay["signed_psbt"], first["signed_psbt"]);
        assert_eq!(service.hsm.sign_calls(), calls, "a replay signs nothing");
        assert_eq!(service.count("signer_velocity").await, 1, "counted once");

        // Same key, other body: 409, nothing stored.
        let (_, other) = payment(&service.hot, &[90_000], 50_000);
        let (status, conflict) = service.submit(&service.hot, &other, "k-1").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(conflict["code"], "IDEMPOTENCY_CONFLICT");
        assert_eq!(service.count("signer_requests").await, 1);
        assert_eq!(service.hsm.sign_calls(), calls);

        // GET by id and list by status.
        let id = first["id"].as_str().unwrap();
        let (status, got) = service
            .call(
                "GET",
                &format!("/v1/signing-requests/{id}"),
                Some(&service.client),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["signed_psbt"], first["signed_psbt"]);
        let (status, page) = service
            .call(
                "GET",
                "/v1/signing-requests?status=signed&limit=10",
                Some(&service.client),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["requests"].as_array().unwrap().len(), 1);

        // Every decision is in an intact audit chain, anchored in the HSM.
        let Verification::Intact { head } = audit::verify(&service.store).await.unwrap() else {
            panic!("audit chain broken");
        };
        let anchor = service.hsm.read_anchor().await.unwrap().unwrap();
        assert_eq!(anchor, head);
        let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM signer_audit ORDER BY seq")
            .fetch_all(service.store.pool())
            .await
            .unwrap();
        let outcomes = first["rule_outcomes"].as_array().unwrap().len();
        assert!(outcomes >= 4, "every rule reported: {first}");
        let mut expected = vec!["request", "analysis"];
        expected.extend(std::iter::repeat_n("rule_outcome", outcomes));
        expected.extend(["signature", "signature", "decision"]);
        assert_eq!(kinds, expected);
    });
}

#[test]
fn two_identical_requests_at_once_sign_once() {
    let Some((service, rt, _wallet, psbt)) = hot_case("two_identical_requests_at_once_sign_once")
    else {
        return;
    };
    rt.block_on(async {
        let (a, b) = tokio::join!(
            service.submit(&service.hot, &psbt, "same"),
            service.submit(&service.hot, &psbt, "same")
        );
        assert!(a.0.is_success() && b.0.is_success(), "{a:?} {b:?}");
        assert_eq!(a.1["id"], b.1["id"]);
        assert_eq!(a.1["signed_psbt"], b.1["signed_psbt"]);
        assert_eq!(service.hsm.sign_calls(), 2, "signed once");
        assert_eq!(service.count("signer_velocity").await, 1);
        assert_eq!(service.count("signer_requests").await, 1);
    });
}

#[test]
fn a_cold_policy_without_a_quorum_is_refused_without_signing() {
    let Some((service, rt)) =
        Service::isolated("a_cold_policy_without_a_quorum_is_refused_without_signing")
    else {
        return;
    };
    let (_wallet, psbt) = payment(&service.cold, &[300_000], 100_000);
    rt.block_on(async {
        let (status, body) = service.submit(&service.cold, &psbt, "cold-1").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "refused");
        assert_eq!(body["refusal"]["code"], "RULE_APPROVAL_QUORUM", "{body}");
        assert!(body["signed_psbt"].is_null());
        assert_eq!(service.hsm.sign_calls(), 0);
        // Completing it changes nothing.
        let id = RequestId(body["id"].as_str().unwrap().parse().unwrap());
        let record = signer::service::signing::try_complete(&service.state, id)
            .await
            .unwrap();
        assert_eq!(record.status, RequestStatus::Refused);
        assert_eq!(service.hsm.sign_calls(), 0);
    });
}

/// Submits under the limited policy and expects the rule's refusal.
async fn assert_rule_refused(service: &Service, psbt: &Psbt, key: &str, code: &str, rule: &str) {
    let calls = service.hsm.sign_calls();
    let (status, body) = service.submit(&service.limited, psbt, key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "refused", "{body}");
    assert_eq!(body["refusal"]["code"], code, "{body}");
    assert!(body["signed_psbt"].is_null());
    let outcome = body["rule_outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["rule_id"] == rule)
        .unwrap_or_else(|| panic!("no outcome for {rule}: {body}"));
    assert_eq!(outcome["outcome"], "fail");
    assert_eq!(
        service.hsm.sign_calls(),
        calls,
        "a refusal must not reach C_Sign"
    );
}

#[test]
fn rules_refuse_over_the_per_transaction_cap_off_the_allowlist_and_far_locktimes() {
    let Some((service, rt)) = Service::isolated(
        "rules_refuse_over_the_per_transaction_cap_off_the_allowlist_and_far_locktimes",
    ) else {
        return;
    };
    let (_w1, over_cap) = support::payment_to(&service.limited, &[500_000], 310_000, 4);
    let (_w2, off_list) = support::payment_to(&service.limited, &[500_000], 100_000, 5);
    let (_w3, good) = support::payment_to(&service.limited, &[500_000], 100_000, 6);
    let mut far = good.clone();
    far.unsigned_tx.lock_time =
        bitcoin::absolute::LockTime::from_height(support::TIP_HEIGHT + 7).unwrap();
    rt.block_on(async {
        assert_rule_refused(&service, &over_cap, "cap", "RULE_MAX_PER_TX", "max_per_tx").await;
        assert_rule_refused(&service, &off_list, "list", "RULE_ALLOWLIST", "allowlist").await;
        assert_rule_refused(&service, &far, "far", "RULE_LOCKTIME", "locktime").await;
        assert_eq!(service.hsm.sign_calls(), 0);
        let (_, body) = service.submit(&service.limited, &good, "good").await;
        assert_eq!(body["status"], "signed", "{body}");
    });
}

#[test]
fn velocity_is_counted_in_the_store_and_refuses_past_the_window_cap() {
    let Some((service, rt)) =
        Service::isolated("velocity_is_counted_in_the_store_and_refuses_past_the_window_cap")
    else {
        return;
    };
    let (_w1, first) = support::payment_to(&service.limited, &[300_000], 200_000, 4);
    let (_w2, second) = support::payment_to(&service.limited, &[310_000], 210_000, 6);
    let (_w3, third) = support::payment_to(&service.limited, &[320_000], 50_000, 4);
    rt.block_on(async {
        let (_, a) = service.submit(&service.limited, &first, "v1").await;
        assert_eq!(a["status"], "signed", "{a}");
        let (_, b) = service.submit(&service.limited, &second, "v2").await;
        assert_eq!(b["status"], "signed", "{b}");
        // 200,000 + 210,000 + fees are counted; 50,000 more passes 450,000.
        assert_rule_refused(&service, &third, "v3", "RULE_VELOCITY_24H", "velocity_24h").await;
        assert_eq!(service.count("signer_velocity").await, 2);
    });
}

macro_rules! refusal {
    ($name:ident, $code:literal, |$service:ident, $wallet:ident, $psbt:ident| $tamper:block) => {
        #[test]
        fn $name() {
            let Some(($service, rt, mut $wallet, good)) = hot_case(stringify!($name)) else {
                return;
            };
            let mut $psbt = good.clone();
            let _ = &mut $wallet;
            $tamper
            rt.block_on(assert_refused(&$service, &good, &$psbt, $code));
        }
    };
}

refusal!(
    refuses_segwit_v0_input_without_previous_transaction,
    "INPUT_PREVIOUS_TX_MISSING",
    |service, wallet, psbt| {
        psbt.inputs[1].non_witness_utxo = None;
    }
);

refusal!(
    refuses_previous_transaction_of_another_txid,
    "INPUT_PREVIOUS_TX_MISMATCH",
    |service, wallet, psbt| {
        psbt.inputs[0].non_witness_utxo = psbt.inputs[1].non_witness_utxo.clone();
    }
);

refusal!(
    refuses_witness_script_not_the_policys,
    "INPUT_WITNESS_SCRIPT_MISMATCH",
    |service, wallet, psbt| {
        let other = service.hot.derive(Keychain::Receive, 17).unwrap();
        psbt.inputs[0].witness_script = Some(other.explicit_script().unwrap());
    }
);

refusal!(
    refuses_sighash_other_than_all,
    "INPUT_SIGHASH_NOT_ALL",
    |service, wallet, psbt| {
        psbt.inputs[1].sighash_type = Some(PsbtSighashType::from(
            EcdsaSighashType::SinglePlusAnyoneCanPay,
        ));
    }
);

refusal!(
    refuses_non_standard_version,
    "TX_VERSION_NONSTANDARD",
    |service, wallet, psbt| {
        psbt.unsigned_tx.version = bitcoin::transaction::Version(3);
    }
);

refusal!(
    refuses_dust_output,
    "OUTPUT_DUST",
    |service, wallet, psbt| {
        let value = psbt.unsigned_tx.output[0].value;
        psbt.unsigned_tx.output[0].value = value.checked_sub(Amount::from_sat(100)).unwrap();
        psbt.unsigned_tx.output.push(TxOut {
            value: Amount::from_sat(100),
            script_pubkey: external_destination(9),
        });
        psbt.outputs.push(Default::default());
    }
);

#[test]
fn refuses_an_input_of_another_policy_slipped_in() {
    let Some((service, rt, _wallet, good)) =
        hot_case("refuses_an_input_of_another_policy_slipped_in")
    else {
        return;
    };
    // A PSBT of the cold policy (same recovery key) submitted under the hot one.
    let (_other, foreign) = payment(&service.cold, &[300_000], 100_000);
    let mut psbt = good.clone();
    psbt.unsigned_tx
        .input
        .push(foreign.unsigned_tx.input[0].clone());
    psbt.inputs.push(foreign.inputs[0].clone());
    rt.block_on(assert_refused(&service, &good, &psbt, "INPUT_NOT_OURS"));
}

#[test]
fn malformed_and_truncated_psbts_are_refused_before_anything_is_stored() {
    let Some((service, rt, _wallet, good)) =
        hot_case("malformed_and_truncated_psbts_are_refused_before_anything_is_stored")
    else {
        return;
    };
    rt.block_on(async {
        let encoded = good.to_string();
        let id = service.hot.id.to_string();
        for bad in [
            "not a psbt".to_owned(),
            encoded[..encoded.len() / 2].to_owned(),
            "cHNidP8=".to_owned(),
        ] {
            let (status, body) = service.submit_raw(&id, &bad, "bad").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["code"], "PSBT_MALFORMED");
        }
        assert_eq!(service.count("signer_requests").await, 0);
        assert_eq!(service.count("signer_audit").await, 0);
        assert_eq!(service.hsm.sign_calls(), 0);
    });
}

#[test]
fn a_body_that_is_not_json_is_refused() {
    let Some((service, rt)) = Service::isolated("a_body_that_is_not_json_is_refused") else {
        return;
    };
    rt.block_on(async {
        for body in ["{not json", "[]", "{\"policy_id\": 1}", ""] {
            let (status, answer) = service
                .call(
                    "POST",
                    "/v1/signing-requests",
                    Some(&service.client),
                    Some(body.into()),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert_eq!(answer["code"], "BODY_NOT_JSON");
        }
        assert_eq!(service.count("signer_requests").await, 0);
        assert_eq!(service.hsm.sign_calls(), 0);
    });
}

#[test]
fn tokens_and_policy_grants_are_enforced() {
    let Some((service, rt, _wallet, psbt)) = hot_case("tokens_and_policy_grants_are_enforced")
    else {
        return;
    };
    rt.block_on(async {
        // No token, a wrong token.
        let body = serde_json::json!({"policy_id": service.hot.id.to_string(),
            "psbt": psbt.to_string(), "purpose": "p", "idempotency_key": "k"})
        .to_string();
        for token in [None, Some("sgn_00"), Some("")] {
            let (status, answer) = service
                .call("POST", "/v1/signing-requests", token, Some(body.clone()))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(answer["code"], "UNAUTHENTICATED");
        }
        // Another client, allowed only the cold policy.
        let other = service
            .store
            .add_client("other", &[service.cold.id.to_string()])
            .await
            .unwrap();
        let other_token = other.token.expose_secret().to_owned();
        let (status, answer) = service
            .call(
                "POST",
                "/v1/signing-requests",
                Some(&other_token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(answer["code"], "POLICY_FORBIDDEN");
        assert_eq!(service.count("signer_requests").await, 0);
        assert_eq!(service.hsm.sign_calls(), 0);
        // The first client's request is invisible to the other.
        let (_, mine) = service.submit(&service.hot, &psbt, "mine").await;
        let id = mine["id"].as_str().unwrap();
        let (status, answer) = service
            .call(
                "GET",
                &format!("/v1/signing-requests/{id}"),
                Some(&other_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(answer["code"], "UNKNOWN_REQUEST");
        let (_, page) = service
            .call("GET", "/v1/signing-requests", Some(&other_token), None)
            .await;
        assert_eq!(page["requests"].as_array().unwrap().len(), 0);
        // Policies listed are the client's only.
        let (_, policies) = service
            .call("GET", "/v1/policies", Some(&other_token), None)
            .await;
        let listed = policies["policies"].as_array().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], service.cold.id.to_string());
        assert_eq!(listed[0]["needs_quorum"], true);
    });
}

#[test]
fn a_hot_policy_replacement_counts_once_in_velocity() {
    let Some((service, rt)) = Service::isolated("a_hot_policy_replacement_counts_once_in_velocity")
    else {
        return;
    };
    let mut wallet = PolicyWallet::new(&service.hot).unwrap();
    wallet.fund(&[Amount::from_sat(500_000)]).unwrap();
    let first = wallet
        .pay(
            external_destination(4),
            Amount::from_sat(100_000),
            SpendPath::Hsm,
        )
        .unwrap();
    // The replacement: same payee and amount, same input, 1,000 sat more fee.
    let mut bump = first.clone();
    let change = bump
        .unsigned_tx
        .output
        .iter()
        .position(|o| o.script_pubkey != external_destination(4))
        .unwrap();
    let value = bump.unsigned_tx.output[change].value;
    bump.unsigned_tx.output[change].value = value.checked_sub(Amount::from_sat(1_000)).unwrap();
    rt.block_on(async {
        let (_, a) = service.submit(&service.hot, &first, "pay-1").await;
        assert_eq!(a["status"], "signed", "{a}");
        let (_, b) = service.submit(&service.hot, &bump, "pay-1-bump").await;
        assert_eq!(b["status"], "signed", "{b}");
        assert_eq!(service.count("signer_velocity").await, 1);
        let counted: i64 = sqlx::query_scalar("SELECT value_out_sat FROM signer_velocity")
            .fetch_one(service.store.pool())
            .await
            .unwrap();
        let fee_a = a["analysis"]["fee"].as_u64().unwrap() as i64;
        assert_eq!(counted, 100_000 + fee_a + 1_000, "the higher value, once");
    });
}
