//! The service bench's setup: a token with the hot key and three cold keys, a
//! hot policy and a cold 2-of-3 policy whose quorum is two officers, three
//! officers bootstrapped, one client, and the real officers' quorum check.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use bitcoin::Amount;
use chrono::Utc;
use policies::PolicyDocument;
use policies::rules::{Quorum, QuorumTier};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use signer::approvals::Officer;
use signer::hsm::pool::HsmPool;
use signer::service::approvals::OfficerQuorum;
use signer::service::{AppState, check_anchor, router};
use signer::store::Store;
use signer::store::policy_changes::{Governance, bootstrap_in_tx};
use system_tests::custody::{cold_policy, hot_policy};
use test_support::softhsm::TestToken;

use crate::officers::{Key, approve_in_an_hour};
use crate::support::{COLD, HOT, ScratchDb, call, settings};

pub struct Bench {
    pub db: ScratchDb,
    pub store: Store,
    pub hsm: Arc<HsmPool>,
    pub app: Router,
    pub hot: PolicyDocument,
    pub cold: PolicyDocument,
    pub client: String,
    pub alice: Key,
    pub bob: Key,
}

impl Bench {
    pub async fn start(token: &TestToken, sessions: usize) -> Bench {
        let hot = hot_policy("hot", &token.keys()[0]);
        let mut cold = cold_policy("vault", 2, &token.keys()[1..]);
        cold.rules.approvals = Some(Quorum {
            tiers: vec![QuorumTier {
                up_to_sat: None,
                required: 2,
            }],
        });
        cold.id = cold.compute_id().unwrap();
        cold.verify().unwrap();
        let db = ScratchDb::create("signer_bench").await;
        let store = db.store(24).await;
        store.register_policy(&hot).await.unwrap();
        store.register_policy(&cold).await.unwrap();
        let client = store
            .add_client("custodian", &[hot.id.to_string(), cold.id.to_string()])
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        let (alice, bob, carol) = (Key::new(), Key::new(), Key::new());
        let officers: Vec<Officer> = [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")]
            .into_iter()
            .map(|(key, name)| Officer {
                id: key.id(),
                name: name.into(),
                client: None,
                revoked: false,
            })
            .collect();
        let governance = Governance {
            instance: "signer-bench".into(),
            change_quorum: 2,
            loosening_delay_secs: 0,
        };
        let mut tx = store.begin().await.unwrap();
        bootstrap_in_tx(&mut tx, &governance, &officers, Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut labels = vec![HOT];
        labels.extend(COLD);
        let mut s = settings(token, &labels);
        s.sessions = sessions;
        let hsm = Arc::new(HsmPool::new(s));
        let anchored = check_anchor(&store, &hsm).await.unwrap();
        let state = AppState::new(
            store.clone(),
            Arc::clone(&hsm),
            Arc::new(OfficerQuorum),
            anchored,
        );
        state.set_tip_height(crate::support::TIP_HEIGHT);
        Bench {
            db,
            store,
            hsm,
            app: router(state),
            hot,
            cold,
            client,
            alice,
            bob,
        }
    }

    pub async fn post(&self, uri: &str, body: Value) -> (axum::http::StatusCode, Value) {
        call(
            &self.app,
            "POST",
            uri,
            Some(&self.client),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn submit(&self, policy: &PolicyDocument, psbt: &str, key: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/signing-requests",
                json!({"policy_id": policy.id.to_string(), "psbt": psbt,
                       "purpose": "bench", "idempotency_key": key}),
            )
            .await;
        assert!(status.is_success(), "{body}");
        body
    }

    /// A cold request submitted and approved by alice: bob's approval, which
    /// completes the quorum and signs, is returned ready to post.
    pub async fn pending(&self, psbt: &str, key: &str) -> (String, Value) {
        let request = self.submit(&self.cold, psbt, key).await;
        assert_eq!(request["status"], "pending_approval", "{request}");
        let id = request["id"].as_str().unwrap().to_owned();
        let uri = format!("/v1/signing-requests/{id}/approvals");
        let (status, binding) = call(&self.app, "GET", &uri, Some(&self.client), None).await;
        assert!(status.is_success(), "{binding}");
        let (status, body) = self
            .post(&uri, approve_in_an_hour(&self.alice, &binding))
            .await;
        assert!(status.is_success(), "{body}");
        assert_eq!(body["request"]["status"], "pending_approval", "{body}");
        (uri, approve_in_an_hour(&self.bob, &binding))
    }
}

/// Sats per funding output: enough that 50 inputs stay well above dust.
pub const FUNDING: Amount = Amount::from_sat(60_000);
