//! Attacks on a timelocked path and on the quorum's initiator rule, through the
//! HTTP API on real PostgreSQL and a real SoftHSM token: each refusal answers
//! its code, nothing is signed and `C_Sign` is never called.
#![allow(clippy::unwrap_used)]

mod officers;
mod support;

use axum::http::StatusCode;
use bitcoin::{Amount, Sequence};
use officers::{Key, Setup, approve_in_an_hour, setup, setup_with};
use policies::PolicyDocument;
use policies::rules::{Quorum, QuorumTier};
use policies::template::Template;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use signer::approvals::Officer;
use system_tests::custody::{NETWORK, external_destination, hsm_key, recovery_key};
use system_tests::wallet::{PolicyWallet, SpendPath};

/// The HSM key's only path waits `DELAY` blocks; the recovery key's waits longer.
const DELAY: u16 = 144;

/// A custom policy whose HSM key signs only once the coin is `DELAY` blocks old,
/// as a recovery path held in the HSM would; two officers' approvals needed.
fn delayed_policy(s: &Setup) -> PolicyDocument {
    let template = Template::Custom {
        policy: format!("or(9@and(pk(cold-a),older({DELAY})),1@and(pk(recovery),older(1000)))"),
        hsm_keys: vec![hsm_key(&s.token.keys()[0])],
        recovery: recovery_key().public,
    };
    let mut doc = PolicyDocument::new("delayed", 1, NETWORK, &template).unwrap();
    doc.rules.approvals = Some(Quorum {
        tiers: vec![QuorumTier {
            up_to_sat: None,
            required: 2,
        }],
    });
    doc.id = doc.compute_id().unwrap();
    doc.verify().unwrap();
    doc
}

async fn post(s: &Setup, token: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    support::call(&s.app, "POST", uri, Some(token), Some(body.to_string())).await
}

#[test]
fn a_timelocked_path_is_refused_one_block_early_and_signed_at_its_timelock() {
    let Some((s, rt)) = setup(
        "a_timelocked_path_is_refused_one_block_early_and_signed_at_its_timelock",
        60,
    ) else {
        return;
    };
    rt.block_on(async {
        let policy = delayed_policy(&s);
        s.store.register_policy(&policy).await.unwrap();
        let token = s
            .store
            .add_client("delayed-custodian", &[policy.id.to_string()])
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        let mut wallet = PolicyWallet::new(&policy).unwrap();
        wallet.fund(&[Amount::from_sat(100_000)]).unwrap();
        let submit = |psbt: &bitcoin::Psbt, key: &str| {
            json!({"policy_id": policy.id.to_string(), "psbt": psbt.to_string(),
                   "purpose": "delayed payout", "idempotency_key": key})
        };

        // nSequence one block short of older(144) (BIP68 height lock, version 2).
        let early = wallet
            .pay(
                external_destination(4),
                Amount::from_sat(50_000),
                SpendPath::Recovery { after: DELAY - 1 },
            )
            .unwrap();
        assert_eq!(early.unsigned_tx.version.0, 2);
        assert_eq!(
            early.unsigned_tx.input[0].sequence,
            Sequence::from_height(DELAY - 1)
        );
        let (status, refused) =
            post(&s, &token, "/v1/signing-requests", submit(&early, "early")).await;
        assert_eq!(status, StatusCode::CREATED, "{refused}");
        assert_eq!(refused["status"], "refused", "{refused}");
        assert_eq!(
            refused["refusal"]["code"], "INPUT_NO_SATISFIABLE_PATH",
            "{refused}"
        );
        assert!(refused["signed_psbt"].is_null());
        assert_eq!(s.hsm.sign_calls(), 0, "C_Sign was called one block early");
        // Officers cannot approve it into signing: the request is decided.
        let id = refused["id"].as_str().unwrap();
        let uri = format!("/v1/signing-requests/{id}/approvals");
        let (status, body) = support::call(&s.app, "GET", &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "refused", "{body}");
        let (status, body) = post(&s, &token, &uri, approve_in_an_hour(&s.alice, &body)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "APPROVAL_NOT_PENDING", "{body}");
        assert_eq!(s.hsm.sign_calls(), 0);
        let velocity: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signer_velocity")
            .fetch_one(s.store.pool())
            .await
            .unwrap();
        assert_eq!(velocity, 0, "a refused request counted in velocity");

        // Exactly at the timelock: the quorum's approvals sign it.
        let ripe = wallet
            .pay(
                external_destination(4),
                Amount::from_sat(50_000),
                SpendPath::Recovery { after: DELAY },
            )
            .unwrap();
        assert_eq!(
            ripe.unsigned_tx.input[0].sequence,
            Sequence::from_height(DELAY)
        );
        let (status, pending) =
            post(&s, &token, "/v1/signing-requests", submit(&ripe, "ripe")).await;
        assert_eq!(status, StatusCode::CREATED, "{pending}");
        assert_eq!(pending["status"], "pending_approval", "{pending}");
        let id = pending["id"].as_str().unwrap();
        let uri = format!("/v1/signing-requests/{id}/approvals");
        let (_, binding) = support::call(&s.app, "GET", &uri, Some(&token), None).await;
        for officer in [&s.alice, &s.bob] {
            let (status, body) =
                post(&s, &token, &uri, approve_in_an_hour(officer, &binding)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (_, done) = support::call(
            &s.app,
            "GET",
            &format!("/v1/signing-requests/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(done["status"], "signed", "{done}");
        assert_eq!(s.hsm.sign_calls(), 1, "one input, one key");
        let signed: bitcoin::Psbt = done["signed_psbt"].as_str().unwrap().parse().unwrap();
        let tx = signed.extract_tx().unwrap();
        assert_eq!(tx.input[0].sequence, Sequence::from_height(DELAY));
        assert!(!tx.input[0].witness.is_empty(), "finalized");
    });
}

/// alice, bob, carol and erin are officers; erin is also the custodian client.
fn erin() -> (Key, Vec<Officer>) {
    let erin = Key::new();
    let officer = Officer {
        id: erin.id(),
        name: "erin".into(),
        client: Some(officers::CLIENT.into()),
        revoked: false,
    };
    (erin, vec![officer])
}

#[test]
fn an_officer_tied_to_the_submitting_client_never_counts_towards_its_quorum() {
    let (erin, extra) = erin();
    let Some((s, rt)) = setup_with(
        "an_officer_tied_to_the_submitting_client_never_counts_towards_its_quorum",
        60,
        extra,
    ) else {
        return;
    };
    rt.block_on(async {
        // Above 1 BTC: three approvals. Eligible are alice, bob and carol:
        // dave and erin act as the submitting client.
        let (request, _) = s
            .request(&[80_000_000, 70_000_000], 120_000_000, "k-1")
            .await;
        let quorum = request["rule_outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["rule_id"] == "approval_quorum")
            .unwrap()
            .clone();
        assert!(
            quorum["message"]
                .as_str()
                .unwrap()
                .contains("0 of 3 approvals from 3 eligible officers"),
            "{quorum}"
        );
        let binding = s.binding(&request).await;
        assert_eq!(binding["required"], 3, "{binding}");

        // The initiator's own officers are refused at the door.
        for key in [&s.dave, &erin] {
            officers::assert_refused(
                &s,
                &request,
                &approve_in_an_hour(key, &binding),
                StatusCode::FORBIDDEN,
                "APPROVAL_SELF",
            )
            .await;
        }

        // An approval erin stored before being tied to the client does not
        // count either: every stored approval is verified again, and the rules
        // exclude the initiator.
        sqlx::query("UPDATE signer_officers SET client_name = NULL WHERE name = 'erin'")
            .execute(s.store.pool())
            .await
            .unwrap();
        let (status, body) = s
            .post_approval(&request, &approve_in_an_hour(&erin, &binding))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["approvals"]["counted"], 1, "{body}");
        sqlx::query("UPDATE signer_officers SET client_name = $1 WHERE name = 'erin'")
            .bind(officers::CLIENT)
            .execute(s.store.pool())
            .await
            .unwrap();
        for key in [&s.alice, &s.bob] {
            let (status, body) = s
                .post_approval(&request, &approve_in_an_hour(key, &binding))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["request"]["status"], "pending_approval", "{body}");
        }
        assert_eq!(s.hsm.sign_calls(), 0, "erin's approval counted: C_Sign was called");
        let view = s.binding(&request).await;
        assert_eq!(view["counted"], 2, "{view}");

        // The third eligible officer completes the quorum.
        let (status, body) = s
            .post_approval(&request, &approve_in_an_hour(&s.carol, &binding))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["request"]["status"], "signed", "{body}");
        let decision: String = sqlx::query_scalar(
            "SELECT body FROM signer_audit WHERE kind = 'rule_outcome' AND body LIKE '%approval_quorum%'
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_one(s.store.pool())
        .await
        .unwrap();
        assert!(
            decision.contains("3 of 3 approvals from 3 eligible officers"),
            "{decision}"
        );
    });
}
