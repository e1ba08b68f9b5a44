//! Lightning addresses and LNURL-pay: the bank's endpoints through the real router, and
//! the payer's side against a small LNURL service on 127.0.0.1 that answers what each
//! test crafts (including invoices that must be refused). Tests that pay over a Lightning
//! node are in `lnurl_node.rs`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use api_common::{Api, Cred, api_with, customer};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use coordinator::Msats;
use coordinator::api::ApiConfig;
use coordinator::bank::{AccountStatus, Actor, Username};
use coordinator::lnurl::{
    LnAddress, Lnurl, LnurlConfig, LnurlError, PayTarget, description_hash, verify_invoice,
};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use serde_json::{Value, json};

const DOMAIN: &str = "bank.example";

fn lnurl_config(public_url: Option<&str>) -> LnurlConfig {
    LnurlConfig {
        public_url: public_url.map(|u| u.parse().unwrap()),
        allow_loopback: true,
        timeout: Duration::from_secs(5),
        ..LnurlConfig::default()
    }
}

async fn bank_api() -> Api {
    api_with(ApiConfig {
        lnurl: lnurl_config(Some("https://bank.example")),
        ..ApiConfig::default()
    })
    .await
}

/// A customer with a username.
async fn named(a: &Api, email: &str, username: &str) -> api_common::Customer {
    let c = customer(a.bank(), email, 50_000).await;
    a.bank()
        .set_username(&c.principal, &username.parse::<Username>().unwrap())
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn the_well_known_endpoint_answers_the_pay_request() {
    let a = bank_api().await;
    named(&a, "alice@example.com", "alice").await;
    let (status, headers, v) = a.get("/.well-known/lnurlp/Alice", Cred::None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(v["tag"], "payRequest");
    assert_eq!(v["callback"], "https://bank.example/lnurlp/alice/callback");
    assert_eq!(v["minSendable"], 1_000);
    assert_eq!(v["maxSendable"], 10_000_000_000u64);
    assert_eq!(v["commentAllowed"], 255);
    let metadata = v["metadata"].as_str().unwrap();
    let entries: Vec<Vec<String>> = serde_json::from_str(metadata).unwrap();
    assert_eq!(
        entries,
        vec![
            vec!["text/plain".to_owned(), "Payment to alice".to_owned()],
            vec!["text/identifier".to_owned(), format!("alice@{DOMAIN}")],
        ]
    );
    // What a payer reads from it is what the bank will commit to.
    let pay = coordinator::lnurl::PayRequest::from_json(v.clone()).unwrap();
    assert_eq!(pay.description_hash(), description_hash(metadata));
    let address: LnAddress = format!("alice@{DOMAIN}").parse().unwrap();
    pay.check_identifier(&address).unwrap();
}

fn assert_lnurl_error(status: StatusCode, v: &Value, want: StatusCode, reason_has: &str) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["status"], "ERROR", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains(reason_has),
        "{reason:?} lacks {reason_has:?}"
    );
}

#[tokio::test]
async fn unknown_closed_and_unconfigured_addresses_are_lnurl_errors() {
    let a = bank_api().await;
    let (s, _, v) = a.get("/.well-known/lnurlp/nobody", Cred::None).await;
    assert_lnurl_error(s, &v, StatusCode::NOT_FOUND, "unknown user");
    let (s, _, v) = a
        .get("/.well-known/lnurlp/Not%20A%20Name", Cred::None)
        .await;
    assert_lnurl_error(s, &v, StatusCode::NOT_FOUND, "unknown user");
    let (s, _, v) = a
        .get("/lnurlp/nobody/callback?amount=1000", Cred::None)
        .await;
    assert_lnurl_error(s, &v, StatusCode::NOT_FOUND, "unknown user");

    let bob = named(&a, "bob@example.com", "bob").await;
    a.bank()
        .set_status(
            Actor::User(bob.principal.user_id),
            bob.account,
            AccountStatus::Closed,
            "leaving",
        )
        .await
        .unwrap();
    let (s, _, v) = a.get("/.well-known/lnurlp/bob", Cred::None).await;
    assert_lnurl_error(s, &v, StatusCode::NOT_FOUND, "unknown user");

    let plain = api_with(ApiConfig::default()).await;
    named(&plain, "carol@example.com", "carol").await;
    let (s, _, v) = plain.get("/.well-known/lnurlp/carol", Cred::None).await;
    assert_lnurl_error(s, &v, StatusCode::NOT_FOUND, "not configured");
}

#[tokio::test]
async fn the_callback_checks_its_query_before_making_an_invoice() {
    let a = bank_api().await;
    named(&a, "alice@example.com", "alice").await;
    let cases = [
        ("", "amount"),
        ("?amount=", "amount"),
        ("?amount=ten", "amount"),
        ("?amount=-1000", "amount"),
        ("?amount=999", "between 1000 and 10000000000"),
        ("?amount=10000001000", "between"),
        ("?amount=18446744073709551615", "between"),
        ("?amount=1500", "whole satoshis"),
    ];
    for (query, reason) in cases {
        let (s, h, v) = a
            .get(&format!("/lnurlp/alice/callback{query}"), Cred::None)
            .await;
        assert_lnurl_error(s, &v, StatusCode::BAD_REQUEST, reason);
        assert_eq!(h["access-control-allow-origin"], "*");
    }
    let long = "x".repeat(256);
    let (s, _, v) = a
        .get(
            &format!("/lnurlp/alice/callback?amount=2000&comment={long}"),
            Cred::None,
        )
        .await;
    assert_lnurl_error(s, &v, StatusCode::BAD_REQUEST, "comment too long");
    // A valid request reaches the bank, which has no Lightning node here.
    let (s, _, v) = a
        .get("/lnurlp/alice/callback?amount=2000&comment=hi", Cred::None)
        .await;
    assert_lnurl_error(s, &v, StatusCode::SERVICE_UNAVAILABLE, "Lightning");
}

// ---- The payer's side, against a service the test controls. ----

/// What the test service answers and how often its callback was called.
#[derive(Clone)]
struct Remote {
    pay_request: Arc<std::sync::Mutex<Value>>,
    callback: Arc<std::sync::Mutex<Value>>,
    callback_hits: Arc<AtomicUsize>,
}

async fn well_known(State(r): State<Remote>) -> Json<Value> {
    Json(r.pay_request.lock().unwrap().clone())
}

async fn callback(State(r): State<Remote>) -> (StatusCode, Json<Value>) {
    r.callback_hits.fetch_add(1, Ordering::SeqCst);
    // A status code a careless client would give up on: LUD-01 says to read the body.
    (
        StatusCode::BAD_REQUEST,
        Json(r.callback.lock().unwrap().clone()),
    )
}

async fn big() -> String {
    "x".repeat(1024 * 1024)
}

async fn elsewhere() -> axum::response::Redirect {
    axum::response::Redirect::temporary("http://localhost:9/.well-known/lnurlp/bob")
}

/// A service at 127.0.0.1:<port> with the address `bob@127.0.0.1:<port>`.
async fn remote() -> (Remote, String) {
    let r = Remote {
        pay_request: Arc::default(),
        callback: Arc::default(),
        callback_hits: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/.well-known/lnurlp/bob", get(well_known))
        .route("/.well-known/lnurlp/big", get(big))
        .route("/.well-known/lnurlp/moved", get(elsewhere))
        .route("/cb", get(callback))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let domain = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let metadata = json!([
        ["text/plain", "Bob's coffee"],
        ["text/identifier", format!("bob@{domain}")]
    ])
    .to_string();
    *r.pay_request.lock().unwrap() = json!({
        "tag": "payRequest",
        "callback": format!("http://{domain}/cb?k=v"),
        "minSendable": 1_000,
        "maxSendable": 1_000_000,
        "metadata": metadata,
    });
    (r, domain)
}

fn metadata_of(r: &Remote) -> String {
    r.pay_request.lock().unwrap()["metadata"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A signed regtest invoice with these fields (the service's node key is the test's).
fn invoice(amount_msat: u64, description: &str, currency: Currency, age: Duration) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).unwrap();
    InvoiceBuilder::new(currency)
        .amount_milli_satoshis(amount_msat)
        .description_hash(sha256::Hash::hash(description.as_bytes()))
        .payment_hash(sha256::Hash::hash(b"preimage"))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                - age,
        )
        .expiry_time(Duration::from_secs(600))
        .min_final_cltv_expiry_delta(144)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .unwrap()
        .to_string()
}

async fn payer() -> (Api, Lnurl) {
    let a = bank_api().await;
    let lnurl = Lnurl::new(lnurl_config(Some("https://bank.example"))).unwrap();
    (a, lnurl)
}

fn bob_at(domain: &str) -> PayTarget {
    PayTarget::Address(format!("bob@{domain}").parse().unwrap())
}

const REGTEST: bitcoin::Network = bitcoin::Network::Regtest;

#[tokio::test]
async fn a_correct_invoice_passes_and_crafted_ones_are_refused() {
    let (r, domain) = remote().await;
    let (a, lnurl) = payer().await;
    let amount = Msats::new(21_000).unwrap();
    let metadata = metadata_of(&r);
    let now = chrono::Utc::now();

    let good = invoice(21_000, &metadata, Currency::Regtest, Duration::ZERO);
    *r.callback.lock().unwrap() = json!({"pr": good, "routes": []});
    let (pay, pr) = lnurl
        .fetch_invoice(a.bank(), &bob_at(&domain), amount)
        .await
        .unwrap();
    assert_eq!(pr, good);
    let decoded = verify_invoice(&pr, REGTEST, &pay, amount, now).unwrap();
    assert_eq!(decoded.description_hash, Some(description_hash(&metadata)));

    let crafted = [
        (
            invoice(21_001, &metadata, Currency::Regtest, Duration::ZERO),
            "amount",
        ),
        (
            invoice(1_000_000, &metadata, Currency::Regtest, Duration::ZERO),
            "amount",
        ),
        (
            invoice(
                21_000,
                "[[\"text/plain\",\"else\"]]",
                Currency::Regtest,
                Duration::ZERO,
            ),
            "description hash",
        ),
        (
            invoice(21_000, &metadata, Currency::Bitcoin, Duration::ZERO),
            "another network",
        ),
        (
            invoice(
                21_000,
                &metadata,
                Currency::Regtest,
                Duration::from_secs(3600),
            ),
            "expired",
        ),
        ("lnbcrt1notaninvoice".to_owned(), "not a valid BOLT 11"),
    ];
    for (bad, why) in crafted {
        *r.callback.lock().unwrap() = json!({"pr": bad, "routes": []});
        let (pay, pr) = lnurl
            .fetch_invoice(a.bank(), &bob_at(&domain), amount)
            .await
            .unwrap();
        match verify_invoice(&pr, REGTEST, &pay, amount, now) {
            Err(LnurlError::InvoiceMismatch(m)) => assert!(m.contains(why), "{m} / {why}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    // The callback was asked with the amount in msat, its own query kept.
    assert_eq!(r.callback_hits.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn the_payer_checks_the_pay_request_before_calling_back() {
    let (r, domain) = remote().await;
    let (a, lnurl) = payer().await;
    let fetch = |target: PayTarget, msat: u64| {
        let (bank, lnurl) = (a.bank().clone(), lnurl.clone());
        async move {
            lnurl
                .fetch_invoice(&bank, &target, Msats::new(msat).unwrap())
                .await
        }
    };
    // Out of the service's range: refused before its callback is called.
    for msat in [999, 1_000_001] {
        let e = fetch(bob_at(&domain), msat).await.unwrap_err();
        assert!(matches!(e, LnurlError::AmountOutOfRange { .. }), "{e:?}");
    }
    // A payRequest naming another address than the one asked.
    let e = fetch(
        PayTarget::Address(format!("alice@{domain}").parse().unwrap()),
        5_000,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, LnurlError::BadResponse(_)), "{e:?}");
    // The service's own refusal, with its reason.
    *r.pay_request.lock().unwrap() = json!({"status": "ERROR", "reason": "closed for today"});
    let e = fetch(bob_at(&domain), 5_000).await.unwrap_err();
    assert!(
        matches!(&e, LnurlError::Service(m) if m == "closed for today"),
        "{e:?}"
    );
    // Too large an answer, a redirect to another host, a host that does not answer.
    let big = PayTarget::Address(format!("big@{domain}").parse().unwrap());
    assert!(matches!(fetch(big, 5_000).await, Err(LnurlError::TooLarge)));
    let moved = PayTarget::Address(format!("moved@{domain}").parse().unwrap());
    assert!(matches!(
        fetch(moved, 5_000).await,
        Err(LnurlError::BadResponse(_))
    ));
    let gone = PayTarget::Address("bob@127.0.0.1:9".parse().unwrap());
    assert!(matches!(
        fetch(gone, 5_000).await,
        Err(LnurlError::Unreachable)
    ));
    assert_eq!(r.callback_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn loopback_services_are_not_called_unless_allowed() {
    let (r, domain) = remote().await;
    let a = bank_api().await;
    let strict = Lnurl::new(LnurlConfig {
        allow_loopback: false,
        ..lnurl_config(None)
    })
    .unwrap();
    let e = strict
        .fetch_invoice(a.bank(), &bob_at(&domain), Msats::new(5_000).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, LnurlError::InsecureUrl), "{e:?}");
    assert_eq!(r.callback_hits.load(Ordering::SeqCst), 0);
}

const LNURL_SEND: &str = "mutation LnurlPaymentSend($input: LnurlPaymentSendInput!) {
  lnurlPaymentSend(input: $input) { status errors { code message path } }
}";

const ADDRESS_SEND: &str = "mutation LnAddressPaymentSend($input: LnAddressPaymentSendInput!) {
  lnAddressPaymentSend(input: $input) { status errors { code message path } }
}";

#[tokio::test]
async fn the_mutations_refuse_bad_input_and_pay_nothing_without_a_node() {
    let (r, domain) = remote().await;
    let a = bank_api().await;
    let alice = named(&a, "alice@example.com", "alice").await;
    let cred = Cred::Bearer(&alice.token);
    let wallet = alice.wallet.to_string();
    let cases = [
        (
            ADDRESS_SEND,
            "lnAddressPaymentSend",
            json!({"walletId": wallet, "lnAddress": "bob", "amount": 5}),
            "lnAddress",
        ),
        (
            ADDRESS_SEND,
            "lnAddressPaymentSend",
            json!({"walletId": wallet, "lnAddress": format!("bob@{domain}"), "amount": 0}),
            "amount",
        ),
        (
            LNURL_SEND,
            "lnurlPaymentSend",
            json!({"walletId": wallet, "lnurl": "LNURL1NOTBECH32", "amount": 5}),
            "lnurl",
        ),
        (
            LNURL_SEND,
            "lnurlPaymentSend",
            json!({"walletId": "nope", "lnurl": "x", "amount": 5}),
            "walletId",
        ),
    ];
    for (doc, field, input, path) in cases {
        let (_, v) = a.gql(cred, doc, json!({"input": input})).await;
        let payload = &v["data"][field];
        assert_eq!(payload["status"], "FAILURE", "{v}");
        assert_eq!(payload["errors"][0]["path"][1], path, "{v}");
    }
    // Valid input, but the bank has no Lightning node: refused before any call out.
    let input = json!({"walletId": wallet, "lnAddress": format!("bob@{domain}"), "amount": 5});
    let (_, v) = a.gql(cred, ADDRESS_SEND, json!({"input": input})).await;
    assert_eq!(
        v["data"]["lnAddressPaymentSend"]["status"], "FAILURE",
        "{v}"
    );
    assert_eq!(
        v["data"]["lnAddressPaymentSend"]["errors"][0]["code"], "LIGHTNING_UNAVAILABLE",
        "{v}"
    );
    assert_eq!(r.callback_hits.load(Ordering::SeqCst), 0);
    // Without a credential: a top-level error, as Blink.
    let (_, v) = a
        .gql(Cred::None, ADDRESS_SEND, json!({"input": input}))
        .await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "NOT_AUTHENTICATED",
        "{v}"
    );
}

#[tokio::test]
async fn the_banks_own_addresses_and_lnurls_resolve_without_http() {
    let (a, lnurl) = payer().await;
    named(&a, "alice@example.com", "alice").await;
    let alice: Username = "alice".parse().unwrap();
    assert_eq!(lnurl.address_of(&alice).unwrap(), "alice@bank.example");
    let encoded = lnurl.lnurl_of(&alice).unwrap();
    let target = PayTarget::parse_lnurl(&encoded).unwrap();
    assert_eq!(
        target.url().unwrap().as_str(),
        "https://bank.example/.well-known/lnurlp/alice"
    );
    // bank.example does not exist: only a local resolution reaches the bank, whose
    // missing node is then the refusal.
    let amount = Msats::new(2_000).unwrap();
    for t in [
        target,
        PayTarget::Address("alice@bank.example".parse().unwrap()),
    ] {
        let e = lnurl.fetch_invoice(a.bank(), &t, amount).await.unwrap_err();
        assert!(
            matches!(
                e,
                LnurlError::Bank(coordinator::bank::BankError::LightningUnavailable)
            ),
            "{e:?}"
        );
    }
    let nobody = PayTarget::Address("nobody@bank.example".parse().unwrap());
    let e = lnurl
        .fetch_invoice(a.bank(), &nobody, amount)
        .await
        .unwrap_err();
    assert!(matches!(e, LnurlError::UnknownUser), "{e:?}");
    let e = lnurl
        .fetch_invoice(
            a.bank(),
            &PayTarget::Address("alice@bank.example".parse().unwrap()),
            Msats::new(1).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, LnurlError::AmountOutOfRange { .. }), "{e:?}");
}
