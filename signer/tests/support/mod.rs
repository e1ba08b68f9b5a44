//! Test support for the service (dev-only): scratch databases, a service over
//! a private SoftHSM token, and HTTP calls through the router.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bitcoin::{Amount, Psbt};
use policies::PolicyDocument;
use secrecy::ExposeSecret as _;
use signer::hsm::pool::{HsmPool, HsmSettings};
use signer::service::{AppState, NoQuorum, router};
use signer::store::Store;
use system_tests::custody::{cold_policy, external_destination, hot_policy};
use system_tests::wallet::{PolicyWallet, SpendPath};
use test_support::ScratchDatabase;
use test_support::db::database_url_from_env;
use test_support::softhsm::TestToken;
use tower::ServiceExt as _;

pub const COLD: [&str; 3] = ["cold-a", "cold-b", "cold-c"];
pub const HOT: &str = "hot-a";

/// A database made for one test, dropped with it.
#[derive(Debug)]
pub struct ScratchDb(ScratchDatabase);

impl ScratchDb {
    pub async fn create(prefix: &str) -> ScratchDb {
        ScratchDb(
            ScratchDatabase::create(&database_url_from_env(), prefix)
                .await
                .unwrap(),
        )
    }

    /// A copy of this database as it is now (a backup); every connection to this one is
    /// ended first.
    pub async fn copy(&self) -> ScratchDb {
        ScratchDb(self.0.copy().await.unwrap())
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub async fn store(&self, connections: u32) -> Store {
        Store::connect(&self.url(), connections).await.unwrap()
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn settings(token: &TestToken, labels: &[&str]) -> HsmSettings {
    HsmSettings {
        module_path: token.module().path().to_owned(),
        token_label: token.token_label().to_owned(),
        pin: TestToken::user_pin(),
        key_labels: labels.iter().map(ToString::to_string).collect(),
        sessions: 2,
        call_timeout: Duration::from_secs(10),
        max_pin_attempts: 3,
        retry_after: Duration::from_millis(0),
    }
}

/// A service over a private token (hot key and three cold keys), a scratch
/// database with a hot and a cold policy, and one client allowed both.
pub struct Service {
    /// `None` once a test dropped it (closing its session logs the token out).
    pub token: Option<TestToken>,
    pub db: ScratchDb,
    pub store: Store,
    pub hsm: Arc<HsmPool>,
    pub state: AppState,
    pub app: Router,
    pub hot: PolicyDocument,
    pub cold: PolicyDocument,
    /// A hot policy with rules: 300,000 sat per transaction, 450,000 sat per
    /// 24 h, and only `external_destination(4)` and `(6)` may be paid.
    pub limited: PolicyDocument,
    pub client: String,
}

impl Service {
    /// `None` in the parent process (the test ran in a child with its own token).
    pub fn isolated(test_name: &str) -> Option<(Service, tokio::runtime::Runtime)> {
        let mut labels = vec![HOT];
        labels.extend(COLD);
        let token = TestToken::isolated(test_name, &labels).unwrap()?;
        let rt = runtime();
        let service = rt.block_on(Service::start(token, settings_all));
        Some((service, rt))
    }

    pub async fn start(token: TestToken, settings: fn(&TestToken) -> HsmSettings) -> Service {
        let hot = hot_policy("hot", &token.keys()[0]);
        let cold = cold_policy("vault", 2, &token.keys()[1..]);
        let db = ScratchDb::create("signer_test").await;
        let store = db.store(8).await;
        let limited = limited_policy(&token);
        store.register_policy(&hot).await.unwrap();
        store.register_policy(&cold).await.unwrap();
        store.register_policy(&limited).await.unwrap();
        let client = store
            .add_client(
                "custodian",
                &[
                    hot.id.to_string(),
                    cold.id.to_string(),
                    limited.id.to_string(),
                ],
            )
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        // Opened lazily, by the first call: a fresh token has no anchor yet.
        let hsm = Arc::new(HsmPool::new(settings(&token)));
        let anchored = signer::audit::Head::EMPTY;
        let state = AppState::new(
            store.clone(),
            Arc::clone(&hsm),
            Arc::new(NoQuorum),
            anchored,
        );
        state.set_tip_height(TIP_HEIGHT);
        let app = router(state.clone());
        Service {
            token: Some(token),
            db,
            store,
            hsm,
            state,
            app,
            hot,
            cold,
            limited,
            client,
        }
    }

    pub fn token(&self) -> &TestToken {
        self.token.as_ref().unwrap()
    }

    /// Serves through `hsm` instead (the HSM of a fault test).
    pub fn with_hsm(&mut self, hsm: HsmPool) {
        self.hsm = Arc::new(hsm);
        self.state = AppState::new(
            self.store.clone(),
            Arc::clone(&self.hsm),
            Arc::new(NoQuorum),
            signer::audit::Head::EMPTY,
        );
        self.app = router(self.state.clone());
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, serde_json::Value) {
        call(&self.app, method, uri, token, body).await
    }

    /// Submits `psbt` under `policy` with `key`, as the test client.
    pub async fn submit(
        &self,
        policy: &PolicyDocument,
        psbt: &Psbt,
        key: &str,
    ) -> (StatusCode, serde_json::Value) {
        self.submit_raw(&policy.id.to_string(), &psbt.to_string(), key)
            .await
    }

    pub async fn submit_raw(
        &self,
        policy_id: &str,
        psbt: &str,
        key: &str,
    ) -> (StatusCode, serde_json::Value) {
        let body = serde_json::json!({
            "policy_id": policy_id,
            "psbt": psbt,
            "purpose": "withdrawal 42",
            "idempotency_key": key,
        });
        self.call(
            "POST",
            "/v1/signing-requests",
            Some(&self.client),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

/// The chain tip the service is told (the locktime rule's reference).
pub const TIP_HEIGHT: u32 = 200;

fn limited_policy(token: &TestToken) -> PolicyDocument {
    use policies::rules::{AllowlistEntry, Rules, VelocityWindow};
    let address = |seed| {
        bitcoin::Address::from_script(&external_destination(seed), bitcoin::Network::Regtest)
            .unwrap()
            .to_string()
    };
    let rules = Rules {
        allowlist: Some(vec![
            AllowlistEntry::Address(address(4)),
            AllowlistEntry::Address(address(6)),
        ]),
        max_per_tx_sat: Some(Amount::from_sat(300_000)),
        velocity: vec![VelocityWindow {
            window_secs: 86_400,
            max_sat: Amount::from_sat(450_000),
        }],
        ..Rules::default()
    };
    hot_policy("limited", &token.keys()[0])
        .with_rules(rules)
        .unwrap()
}

pub fn settings_all(token: &TestToken) -> HsmSettings {
    let mut labels = vec![HOT];
    labels.extend(COLD);
    settings(token, &labels)
}

pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// A funded wallet of `policy` and a PSBT paying `amount` out with change.
pub fn payment(policy: &PolicyDocument, amounts: &[u64], pay: u64) -> (PolicyWallet, Psbt) {
    payment_to(policy, amounts, pay, 4)
}

/// As [`payment`], to `external_destination(seed)`.
pub fn payment_to(
    policy: &PolicyDocument,
    amounts: &[u64],
    pay: u64,
    seed: u8,
) -> (PolicyWallet, Psbt) {
    let mut wallet = PolicyWallet::new(policy).unwrap();
    let amounts: Vec<Amount> = amounts.iter().map(|a| Amount::from_sat(*a)).collect();
    wallet.fund(&amounts).unwrap();
    let psbt = wallet
        .pay(
            external_destination(seed),
            Amount::from_sat(pay),
            SpendPath::Hsm,
        )
        .unwrap();
    (wallet, psbt)
}
