//! Officers' approvals and policy changes through the HTTP API, as attacks, on
//! real PostgreSQL and a real SoftHSM token: every refused approval answers its
//! code, stores nothing, and `C_Sign` is never called; the quorum grows with
//! the amount; loosening waits for its delay and quorum, tightening does not.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use bitcoin::secp256k1::ecdsa::Signature;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, Psbt};
use chrono::Utc;
use hsm_config::softhsm::TestToken;
use policies::PolicyDocument;
use policies::rules::{Quorum, QuorumTier};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use signer::approvals::{
    ApprovalError, ApprovalMessage, ChangeMessage, Officer, OfficerId, OfficerKey,
};
use signer::hsm::pool::HsmPool;
use signer::service::approvals::OfficerQuorum;
use signer::service::{AppState, check_anchor, router};
use signer::store::Store;
use signer::store::policy_changes::{Governance, bootstrap_in_tx};
use support::{COLD, ScratchDb, call, payment, runtime, settings};
use system_tests::custody::cold_policy;

const INSTANCE: &str = "signer-test";
const CLIENT: &str = "custodian";

/// An officer key in memory (the key file has its own tests).
struct Key(SecretKey);

impl OfficerKey for Key {
    fn public_key(&self) -> PublicKey {
        self.0.public_key(&Secp256k1::signing_only())
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Signature, ApprovalError> {
        Ok(Secp256k1::signing_only().sign_ecdsa(&Message::from_digest(*digest), &self.0))
    }
}

impl Key {
    fn new() -> Key {
        Key(SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng()))
    }

    fn id(&self) -> OfficerId {
        OfficerId(self.public_key())
    }
}

struct Setup {
    _token: TestToken,
    _db: ScratchDb,
    store: Store,
    hsm: Arc<HsmPool>,
    app: Router,
    cold: PolicyDocument,
    client: String,
    /// alice, bob, carol: officers; dave: an officer who is also the custodian client.
    alice: Key,
    bob: Key,
    carol: Key,
    dave: Key,
}

/// A cold 2-of-3 policy whose approvals grow with the amount: 2 officers up to
/// 1 BTC leaving, 3 above.
fn quorum_policy(token: &TestToken) -> PolicyDocument {
    let mut cold = cold_policy("vault", 2, token.keys());
    cold.rules.approvals = Some(Quorum {
        tiers: vec![
            QuorumTier {
                up_to_sat: Some(Amount::ONE_BTC),
                required: 2,
            },
            QuorumTier {
                up_to_sat: None,
                required: 3,
            },
        ],
    });
    cold.id = cold.compute_id().unwrap();
    cold.verify().unwrap();
    cold
}

fn setup(test_name: &str, delay_secs: u64) -> Option<(Setup, tokio::runtime::Runtime)> {
    let token = TestToken::isolated(test_name, &COLD).unwrap()?;
    let rt = runtime();
    let setup = rt.block_on(async move {
        let cold = quorum_policy(&token);
        let db = ScratchDb::create("signer_officers").await;
        let store = db.store(8).await;
        store.register_policy(&cold).await.unwrap();
        let client = store
            .add_client(CLIENT, &[cold.id.to_string()])
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        let (alice, bob, carol, dave) = (Key::new(), Key::new(), Key::new(), Key::new());
        let officer = |key: &Key, name: &str, client: Option<&str>| Officer {
            id: key.id(),
            name: name.into(),
            client: client.map(Into::into),
            revoked: false,
        };
        let officers = [
            officer(&alice, "alice", None),
            officer(&bob, "bob", None),
            officer(&carol, "carol", None),
            officer(&dave, "dave", Some(CLIENT)),
        ];
        let governance = Governance {
            instance: INSTANCE.into(),
            change_quorum: 2,
            loosening_delay_secs: delay_secs,
        };
        let mut tx = store.begin().await.unwrap();
        assert!(
            bootstrap_in_tx(&mut tx, &governance, &officers, Utc::now())
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        // A second start changes nothing.
        let mut tx = store.begin().await.unwrap();
        assert!(
            !bootstrap_in_tx(&mut tx, &governance, &officers[..2], Utc::now())
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        let hsm = Arc::new(HsmPool::new(settings(&token, &COLD)));
        let anchored = check_anchor(&store, &hsm).await.unwrap();
        let state = AppState::new(
            store.clone(),
            Arc::clone(&hsm),
            Arc::new(OfficerQuorum),
            anchored,
        );
        Setup {
            _token: token,
            _db: db,
            store,
            hsm,
            app: router(state),
            cold,
            client,
            alice,
            bob,
            carol,
            dave,
        }
    });
    Some((setup, rt))
}

impl Setup {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        call(
            &self.app,
            method,
            uri,
            Some(&self.client),
            body.map(|b| b.to_string()),
        )
        .await
    }

    /// Submits a payment of `pay` sats from a wallet funded with `funds`; answers the request.
    async fn request(&self, funds: &[u64], pay: u64, key: &str) -> (Value, Psbt) {
        let (_wallet, psbt) = payment(&self.cold, funds, pay);
        let body = json!({
            "policy_id": self.cold.id.to_string(),
            "psbt": psbt.to_string(),
            "purpose": "treasury payout",
            "idempotency_key": key,
        });
        let (status, view) = self.call("POST", "/v1/signing-requests", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{view}");
        assert_eq!(view["status"], "pending_approval", "{view}");
        (view, psbt)
    }

    /// What an officer must sign for `request` (from the service's approvals view).
    async fn binding(&self, request: &Value) -> Value {
        let id = request["id"].as_str().unwrap();
        let (status, view) = self
            .call("GET", &format!("/v1/signing-requests/{id}/approvals"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        view
    }

    async fn post_approval(&self, request: &Value, approval: &Value) -> (StatusCode, Value) {
        let id = request["id"].as_str().unwrap();
        self.call(
            "POST",
            &format!("/v1/signing-requests/{id}/approvals"),
            Some(approval.clone()),
        )
        .await
    }

    async fn approvals_stored(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM signer_approvals")
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

fn now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap()
}

/// `key`'s approval of what `binding` shows, expiring at `expires_at`.
fn approve(key: &Key, binding: &Value, expires_at: u64) -> Value {
    let message = ApprovalMessage {
        instance: binding["instance"].as_str().unwrap().into(),
        policy_id: binding["policy_id"].as_str().unwrap().parse().unwrap(),
        request_id: binding["request_id"].as_str().unwrap().parse().unwrap(),
        txid: binding["unsigned_txid"].as_str().unwrap().parse().unwrap(),
        analysis_hash: binding["analysis_sha256"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        expires_at,
        officer: key.id(),
    };
    serde_json::to_value(message.sign(key).unwrap()).unwrap()
}

fn approve_in_an_hour(key: &Key, binding: &Value) -> Value {
    approve(key, binding, now() + 3600)
}

#[test]
fn two_of_three_under_one_btc_distinct_officers_and_a_duplicate_counts_once() {
    let Some((s, rt)) = setup(
        "two_of_three_under_one_btc_distinct_officers_and_a_duplicate_counts_once",
        60,
    ) else {
        return;
    };
    rt.block_on(async {
        let (request, _) = s
            .request(&[30_000_000, 20_000_000], 40_000_000, "k-1")
            .await;
        let binding = s.binding(&request).await;
        assert_eq!(binding["required"], 2, "{binding}");
        assert_eq!(binding["counted"], 0);

        let alice = approve_in_an_hour(&s.alice, &binding);
        let (status, first) = s.post_approval(&request, &alice).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["request"]["status"], "pending_approval");
        assert_eq!(first["approvals"]["counted"], 1);
        assert_eq!(s.hsm.sign_calls(), 0, "one approval must not sign");

        // The same approval again: accepted, counted once.
        let (status, again) = s.post_approval(&request, &alice).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["new"], false);
        assert_eq!(again["approvals"]["counted"], 1);
        // Another approval by the same officer: refused, still one.
        let other = approve(&s.alice, &binding, now() + 1800);
        let (status, dup) = s.post_approval(&request, &other).await;
        assert_eq!(status, StatusCode::CONFLICT, "{dup}");
        assert_eq!(dup["code"], "APPROVAL_DUPLICATE_OFFICER");
        assert_eq!(s.approvals_stored().await, 1);
        assert_eq!(s.hsm.sign_calls(), 0, "a duplicate must not sign");

        // A second, distinct officer reaches 2 of 3: signed.
        let bob = approve_in_an_hour(&s.bob, &binding);
        let (status, signed) = s.post_approval(&request, &bob).await;
        assert_eq!(status, StatusCode::CREATED, "{signed}");
        assert_eq!(signed["request"]["status"], "signed", "{signed}");
        assert!(signed["request"]["signed_psbt"].is_string());
        let calls = s.hsm.sign_calls();
        assert!(calls > 0);
        // Bob's approval replayed: the same answer, no new signature.
        let (status, replay) = s.post_approval(&request, &bob).await;
        assert_eq!(status, StatusCode::OK, "{replay}");
        assert_eq!(
            replay["request"]["signed_psbt"],
            signed["request"]["signed_psbt"]
        );
        assert_eq!(s.hsm.sign_calls(), calls);
        // Carol, after the decision: not pending any more.
        let carol = approve_in_an_hour(&s.carol, &binding);
        let (status, late) = s.post_approval(&request, &carol).await;
        assert_eq!(status, StatusCode::CONFLICT, "{late}");
        assert_eq!(late["code"], "APPROVAL_NOT_PENDING");
        // The approvals are in the audit log.
        let audited: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signer_audit WHERE kind = 'approval'")
                .fetch_one(s.store.pool())
                .await
                .unwrap();
        assert_eq!(audited, 2);
    });
}

#[test]
fn above_one_btc_the_quorum_grows_to_three_of_three() {
    let Some((s, rt)) = setup("above_one_btc_the_quorum_grows_to_three_of_three", 60) else {
        return;
    };
    rt.block_on(async {
        let (request, _) = s
            .request(&[100_000_000, 80_000_000], 150_000_000, "big-1")
            .await;
        let binding = s.binding(&request).await;
        assert_eq!(binding["required"], 3, "{binding}");
        for key in [&s.alice, &s.bob] {
            let (status, body) = s
                .post_approval(&request, &approve_in_an_hour(key, &binding))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["request"]["status"], "pending_approval", "{body}");
        }
        assert_eq!(s.hsm.sign_calls(), 0, "2 of 3 must not sign above 1 BTC");
        let (status, body) = s
            .post_approval(&request, &approve_in_an_hour(&s.carol, &binding))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["request"]["status"], "signed", "{body}");
        assert!(s.hsm.sign_calls() > 0);
    });
}

/// Posts `approval` to `request`, expects `status` and `code`, and checks that
/// nothing was stored and nothing signed.
async fn assert_refused(
    s: &Setup,
    request: &Value,
    approval: &Value,
    status: StatusCode,
    code: &str,
) {
    let (got, body) = s.post_approval(request, approval).await;
    assert_eq!(got, status, "{code}: {body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(
        s.approvals_stored().await,
        0,
        "{code}: a refused approval is stored"
    );
    assert_eq!(s.hsm.sign_calls(), 0, "{code}: C_Sign was called");
    let view = s.binding(request).await;
    assert_eq!(view["status"], "pending_approval");
    assert_eq!(view["counted"], 0);
}

#[test]
fn approvals_replayed_forged_expired_or_by_the_wrong_officer_are_refused() {
    let Some((s, rt)) = setup(
        "approvals_replayed_forged_expired_or_by_the_wrong_officer_are_refused",
        60,
    ) else {
        return;
    };
    rt.block_on(async {
        let (a, _) = s.request(&[30_000_000], 10_000_000, "a").await;
        let (b, _) = s.request(&[40_000_000], 20_000_000, "b").await;
        let binding_a = s.binding(&a).await;
        let binding_b = s.binding(&b).await;

        // Replayed from another request.
        let for_a = approve_in_an_hour(&s.alice, &binding_a);
        assert_refused(
            &s,
            &b,
            &for_a,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_REQUEST",
        )
        .await;
        // Fields rewritten to name the other request: the signature no longer holds.
        let mut rewritten = for_a.clone();
        for field in ["request_id", "unsigned_txid", "analysis_hash"] {
            let source = match field {
                "request_id" => "request_id",
                "unsigned_txid" => "unsigned_txid",
                _ => "analysis_sha256",
            };
            let target = if field == "unsigned_txid" {
                "txid"
            } else {
                field
            };
            rewritten[target] = binding_b[source].clone();
        }
        assert_refused(
            &s,
            &b,
            &rewritten,
            StatusCode::FORBIDDEN,
            "APPROVAL_SIGNATURE_INVALID",
        )
        .await;
        // Another transaction or another analysis than the one reviewed (the PSBT changed).
        let mut other_tx = binding_b.clone();
        other_tx["unsigned_txid"] = binding_a["unsigned_txid"].clone();
        let approval = approve_in_an_hour(&s.alice, &other_tx);
        assert_refused(
            &s,
            &b,
            &approval,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_TXID",
        )
        .await;
        let mut other_analysis = binding_b.clone();
        other_analysis["analysis_sha256"] = binding_a["analysis_sha256"].clone();
        let approval = approve_in_an_hour(&s.alice, &other_analysis);
        assert_refused(
            &s,
            &b,
            &approval,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_ANALYSIS",
        )
        .await;
        let mut other_instance = binding_b.clone();
        other_instance["instance"] = json!("another-signer");
        let approval = approve_in_an_hour(&s.alice, &other_instance);
        assert_refused(
            &s,
            &b,
            &approval,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_POLICY",
        )
        .await;

        // Expired, and valid for longer than allowed.
        let expired = approve(&s.alice, &binding_b, now() - 1);
        assert_refused(
            &s,
            &b,
            &expired,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_EXPIRED",
        )
        .await;
        let too_long = approve(&s.alice, &binding_b, now() + 25 * 3600);
        assert_refused(
            &s,
            &b,
            &too_long,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_EXPIRY_TOO_FAR",
        )
        .await;

        // Self-approval: dave also acts as the client that submitted the request.
        let by_initiator = approve_in_an_hour(&s.dave, &binding_b);
        assert_refused(
            &s,
            &b,
            &by_initiator,
            StatusCode::FORBIDDEN,
            "APPROVAL_SELF",
        )
        .await;

        // Unknown officer.
        let stranger = approve_in_an_hour(&Key::new(), &binding_b);
        assert_refused(
            &s,
            &b,
            &stranger,
            StatusCode::FORBIDDEN,
            "APPROVAL_OFFICER_UNKNOWN",
        )
        .await;

        // Not an approval at all.
        let (status, body) = s
            .call(
                "POST",
                &format!(
                    "/v1/signing-requests/{}/approvals",
                    b["id"].as_str().unwrap()
                ),
                Some(json!({"officer": "nope"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "BODY_NOT_JSON");
        assert_eq!(s.hsm.sign_calls(), 0);

        // Control: the genuine approvals of b still sign it.
        for key in [&s.alice, &s.bob] {
            s.post_approval(&b, &approve_in_an_hour(key, &binding_b))
                .await;
        }
        assert_eq!(s.binding(&b).await["status"], "signed");
    });
}

impl Setup {
    async fn propose(&self, change: Value, key: &str) -> (StatusCode, Value) {
        self.call(
            "POST",
            "/v1/policy-changes",
            Some(json!({"change": change, "idempotency_key": key})),
        )
        .await
    }

    async fn approve_change(&self, key: &Key, change: &Value) -> (StatusCode, Value) {
        let message = ChangeMessage {
            instance: change["instance"].as_str().unwrap().into(),
            change_id: change["id"].as_str().unwrap().parse().unwrap(),
            document_hash: change["document_sha256"].as_str().unwrap().parse().unwrap(),
            expires_at: now() + 3600,
            officer: key.id(),
        };
        let approval = serde_json::to_value(message.sign(key).unwrap()).unwrap();
        let id = change["id"].as_str().unwrap();
        self.call(
            "POST",
            &format!("/v1/policy-changes/{id}/approvals"),
            Some(approval),
        )
        .await
    }

    async fn change(&self, change: &Value) -> Value {
        let id = change["id"].as_str().unwrap();
        let (status, body) = self
            .call("GET", &format!("/v1/policy-changes/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn policy_state(&self, policy: &PolicyDocument) -> Option<String> {
        sqlx::query_scalar("SELECT state FROM signer_policies WHERE id = $1")
            .bind(policy.id.to_string())
            .fetch_optional(self.store.pool())
            .await
            .unwrap()
    }

    /// The policy with `max_per_tx` set (a new document version of the same policy).
    fn with_max_per_tx(&self, base: &PolicyDocument, sat: u64, version: u32) -> PolicyDocument {
        let mut doc = base.clone();
        doc.version = version;
        doc.rules.max_per_tx_sat = Some(Amount::from_sat(sat));
        doc.id = doc.compute_id().unwrap();
        doc.verify().unwrap();
        doc
    }
}

#[test]
fn tightening_is_immediate_loosening_waits_for_its_delay_and_quorum() {
    let Some((s, rt)) = setup(
        "tightening_is_immediate_loosening_waits_for_its_delay_and_quorum",
        3,
    ) else {
        return;
    };
    rt.block_on(async {
        // Tightening: a per-transaction maximum where there was none. In force at once.
        let tight = s.with_max_per_tx(&s.cold, 50_000_000, 2);
        let (status, change) = s
            .propose(
                json!({"kind": "policy", "document": tight, "replaces": s.cold.id.to_string()}),
                "tighten-1",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{change}");
        assert_eq!(change["direction"], "tightening");
        assert_eq!(change["status"], "effective", "{change}");
        assert_eq!(s.policy_state(&s.cold).await.as_deref(), Some("retired"));
        assert_eq!(s.policy_state(&tight).await.as_deref(), Some("active"));
        // The same proposal again answers the same change; another body under its key is a conflict.
        let (status, again) = s
            .propose(
                json!({"kind": "policy", "document": tight, "replaces": s.cold.id.to_string()}),
                "tighten-1",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["id"], change["id"]);
        let (status, conflict) = s
            .propose(
                json!({"kind": "revoke_officer", "officer": s.carol.id()}),
                "tighten-1",
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
        assert_eq!(conflict["code"], "IDEMPOTENCY_CONFLICT");

        // Loosening: the maximum raised. Pending until the delay and the quorum.
        let loose = s.with_max_per_tx(&tight, 200_000_000, 3);
        let (status, change) = s
            .propose(
                json!({"kind": "policy", "document": loose, "replaces": tight.id.to_string()}),
                "loosen-1",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{change}");
        assert_eq!(change["direction"], "loosening");
        assert_eq!(change["status"], "pending");
        assert_eq!(change["quorum"], 2);
        assert_eq!(s.policy_state(&loose).await, None);
        // Dave proposed it through the custodian client: he may not approve it.
        let (status, body) = s.approve_change(&s.dave, &change).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_SELF");
        // The quorum before the delay: still not in force.
        for key in [&s.alice, &s.bob] {
            let (status, body) = s.approve_change(key, &change).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["status"], "pending", "{body}");
        }
        assert_eq!(s.change(&change).await["status"], "pending");
        assert_eq!(
            s.policy_state(&loose).await,
            None,
            "a loosening before its delay"
        );
        assert_eq!(s.policy_state(&tight).await.as_deref(), Some("active"));

        // After the delay it takes effect (the next look at it applies it).
        let not_before: chrono::DateTime<Utc> =
            change["not_before"].as_str().unwrap().parse().unwrap();
        let wait = (not_before - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + std::time::Duration::from_millis(300)).await;
        let after = s.change(&change).await;
        assert_eq!(after["status"], "effective", "{after}");
        assert_eq!(s.policy_state(&loose).await.as_deref(), Some("active"));
        assert_eq!(s.policy_state(&tight).await.as_deref(), Some("retired"));
        // The client may now use the new document.
        let (_, policies) = s.call("GET", "/v1/policies", None).await;
        assert!(
            policies.to_string().contains(&loose.id.to_string()),
            "{policies}"
        );
        assert_eq!(s.hsm.sign_calls(), 0);
    });
}

#[test]
fn a_loosening_without_its_quorum_never_takes_effect_and_revocation_needs_the_quorum() {
    let Some((s, rt)) = setup(
        "a_loosening_without_its_quorum_never_takes_effect_and_revocation_needs_the_quorum",
        0,
    ) else {
        return;
    };
    rt.block_on(async {
        // A new officer is a loosening: no delay here, but one approval is not the quorum.
        let erin = Key::new();
        let (status, add) = s
            .propose(
                json!({"kind": "add_officer", "officer": erin.id(), "name": "erin"}),
                "add-erin",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{add}");
        assert_eq!(add["direction"], "loosening");
        let (status, body) = s.approve_change(&s.alice, &add).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(s.change(&add).await["status"], "pending");
        let (_, officers) = s.call("GET", "/v1/officers", None).await;
        assert!(!officers.to_string().contains(&erin.id().to_string()));
        // Erin cannot approve her own admission.
        let (status, body) = s.approve_change(&erin, &add).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_OFFICER_UNKNOWN");

        // Revoking carol: a tightening, but only once the quorum signs it.
        let (status, revoke) = s
            .propose(
                json!({"kind": "revoke_officer", "officer": s.carol.id()}),
                "revoke-carol",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{revoke}");
        assert_eq!(revoke["direction"], "tightening");
        assert_eq!(revoke["status"], "pending");
        // Carol may not approve her own revocation.
        let (status, body) = s.approve_change(&s.carol, &revoke).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_SELF");
        for key in [&s.alice, &s.bob] {
            s.approve_change(key, &revoke).await;
        }
        assert_eq!(s.change(&revoke).await["status"], "effective");
        let (_, officers) = s.call("GET", "/v1/officers", None).await;
        let carol = officers["officers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "carol")
            .unwrap()
            .clone();
        assert_eq!(carol["revoked"], true, "{officers}");

        // A revoked officer's approval is refused, and nothing is signed.
        let (request, _) = s.request(&[30_000_000], 10_000_000, "after-revoke").await;
        let binding = s.binding(&request).await;
        let by_carol = approve_in_an_hour(&s.carol, &binding);
        assert_refused(
            &s,
            &request,
            &by_carol,
            StatusCode::FORBIDDEN,
            "APPROVAL_OFFICER_REVOKED",
        )
        .await;
        // Nor does a revoked officer approve a change.
        let (status, body) = s.approve_change(&s.carol, &add).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_OFFICER_REVOKED");
        // The second approval completes erin's admission.
        let (status, body) = s.approve_change(&s.bob, &add).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "effective", "{body}");
    });
}
