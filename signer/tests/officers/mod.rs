//! Shared by the officers' tests: a service over a private token with a cold
//! policy whose quorum grows with the amount, officers bootstrapped from a
//! ceremony, and helpers to approve requests and policy changes.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use crate::support::{COLD, ScratchDb, call, payment, runtime, settings};
use axum::Router;
use axum::http::StatusCode;
use bitcoin::secp256k1::ecdsa::Signature;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, Psbt};
use chrono::Utc;
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
use system_tests::custody::cold_policy;
use test_support::softhsm::TestToken;

pub const INSTANCE: &str = "signer-test";
pub const CLIENT: &str = "custodian";

/// An officer key in memory (the key file has its own tests).
pub struct Key(pub SecretKey);

impl OfficerKey for Key {
    fn public_key(&self) -> PublicKey {
        self.0.public_key(&Secp256k1::signing_only())
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Signature, ApprovalError> {
        Ok(Secp256k1::signing_only().sign_ecdsa(&Message::from_digest(*digest), &self.0))
    }
}

impl Key {
    pub fn new() -> Key {
        Key(SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng()))
    }

    pub fn id(&self) -> OfficerId {
        OfficerId(self.public_key())
    }
}

pub struct Setup {
    pub token: TestToken,
    pub db: ScratchDb,
    pub store: Store,
    pub hsm: Arc<HsmPool>,
    pub app: Router,
    pub cold: PolicyDocument,
    pub client: String,
    /// alice, bob, carol: officers; dave: an officer who is also the custodian client.
    pub alice: Key,
    pub bob: Key,
    pub carol: Key,
    pub dave: Key,
}

/// A cold 2-of-3 policy whose approvals grow with the amount: 2 officers up to
/// 1 BTC leaving, 3 above.
pub fn quorum_policy(token: &TestToken) -> PolicyDocument {
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

pub fn setup(test_name: &str, delay_secs: u64) -> Option<(Setup, tokio::runtime::Runtime)> {
    setup_with(test_name, delay_secs, Vec::new())
}

/// As [`setup`], with more officers registered by the ceremony.
pub fn setup_with(
    test_name: &str,
    delay_secs: u64,
    extra: Vec<Officer>,
) -> Option<(Setup, tokio::runtime::Runtime)> {
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
        let mut officers = vec![
            officer(&alice, "alice", None),
            officer(&bob, "bob", None),
            officer(&carol, "carol", None),
            officer(&dave, "dave", Some(CLIENT)),
        ];
        officers.extend(extra);
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
            token,
            db,
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
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
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
    pub async fn request(&self, funds: &[u64], pay: u64, key: &str) -> (Value, Psbt) {
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
    pub async fn binding(&self, request: &Value) -> Value {
        let id = request["id"].as_str().unwrap();
        let (status, view) = self
            .call("GET", &format!("/v1/signing-requests/{id}/approvals"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        view
    }

    pub async fn post_approval(&self, request: &Value, approval: &Value) -> (StatusCode, Value) {
        let id = request["id"].as_str().unwrap();
        self.call(
            "POST",
            &format!("/v1/signing-requests/{id}/approvals"),
            Some(approval.clone()),
        )
        .await
    }

    pub async fn approvals_stored(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM signer_approvals")
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

pub fn now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap()
}

/// `key`'s approval of what `binding` shows, expiring at `expires_at`.
pub fn approve(key: &Key, binding: &Value, expires_at: u64) -> Value {
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

pub fn approve_in_an_hour(key: &Key, binding: &Value) -> Value {
    approve(key, binding, now() + 3600)
}

impl Setup {
    pub async fn propose(&self, change: Value, key: &str) -> (StatusCode, Value) {
        self.call(
            "POST",
            "/v1/policy-changes",
            Some(json!({"change": change, "idempotency_key": key})),
        )
        .await
    }

    pub async fn approve_change(&self, key: &Key, change: &Value) -> (StatusCode, Value) {
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

    pub async fn change(&self, change: &Value) -> Value {
        let id = change["id"].as_str().unwrap();
        let (status, body) = self
            .call("GET", &format!("/v1/policy-changes/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn policy_state(&self, policy: &PolicyDocument) -> Option<String> {
        sqlx::query_scalar("SELECT state FROM signer_policies WHERE id = $1")
            .bind(policy.id.to_string())
            .fetch_optional(self.store.pool())
            .await
            .unwrap()
    }

    /// The policy with `max_per_tx` set (a new document version of the same policy).
    pub fn with_max_per_tx(&self, base: &PolicyDocument, sat: u64, version: u32) -> PolicyDocument {
        let mut doc = base.clone();
        doc.version = version;
        doc.rules.max_per_tx_sat = Some(Amount::from_sat(sat));
        doc.id = doc.compute_id().unwrap();
        doc.verify().unwrap();
        doc
    }
}

/// Posts `approval` to `request`, expects `status` and `code`, and checks that
/// nothing was stored and nothing signed.
pub async fn assert_refused(
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
