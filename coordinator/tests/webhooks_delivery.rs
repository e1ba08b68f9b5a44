//! Webhook delivery against a real PostgreSQL and a real HTTP receiver on 127.0.0.1: events
//! arrive signed in Svix's format, in order per endpoint through failures and retries, once
//! per event with two instances on one database, and from the persisted cursor after a
//! restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is the failure report"
)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::{Customer, bank, customer, second_instance};
use coordinator::Sats;
use coordinator::bank::{Bank, Recipient, SendRequest};
use coordinator::webhooks::{
    self, EndpointUrl, SigningSecret, VerifyError, WebhookConfig, dispatch_once,
};
use serde_json::Value;

/// One request the sink received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
    at: Instant,
}

#[derive(Default)]
struct SinkState {
    received: Mutex<Vec<Received>>,
    /// Requests still to answer with 500.
    fail_next: AtomicU32,
    /// Answer every n-th request with 500 (0: never).
    fail_every: AtomicU32,
    count: AtomicU32,
    /// Requests of each svix-id in flight now, and the most ever seen at once.
    in_flight: Mutex<HashMap<String, u32>>,
    max_in_flight_same_id: AtomicU32,
    delay_ms: AtomicU32,
}

/// A receiver of webhooks on 127.0.0.1.
struct Sink {
    base: String,
    state: Arc<SinkState>,
}

async fn receive(
    State(s): State<Arc<SinkState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = h("svix-id");
    {
        let mut f = s.in_flight.lock().unwrap();
        let n = f.entry(id.clone()).or_default();
        *n += 1;
        s.max_in_flight_same_id.fetch_max(*n, Ordering::SeqCst);
    }
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay.into())).await;
    }
    let n = s.count.fetch_add(1, Ordering::SeqCst) + 1;
    let every = s.fail_every.load(Ordering::SeqCst);
    let fail = s
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
        || (every > 0 && n % every == 0);
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    s.received.lock().unwrap().push(Received {
        path,
        id: id.clone(),
        timestamp: h("svix-timestamp"),
        signature: h("svix-signature"),
        body: String::from_utf8(body.to_vec()).unwrap(),
        answered: status.as_u16(),
        at: Instant::now(),
    });
    *s.in_flight.lock().unwrap().get_mut(&id).unwrap() -= 1;
    status
}

impl Sink {
    async fn start() -> Sink {
        let state = Arc::new(SinkState::default());
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sink {
            base: format!("http://{addr}"),
            state,
        }
    }

    fn url(&self, path: &str) -> EndpointUrl {
        format!("{}/{path}", self.base).parse().unwrap()
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered < 300)
            .collect()
    }

    /// Waits until `n` requests were answered with success.
    async fn wait_delivered(&self, n: usize) -> Vec<Received> {
        // Generous: events are dispatched in commit order, and a long transaction anywhere
        // on the PostgreSQL server (another test's, under the full suite) holds that
        // horizon back, delaying (never losing) them; a lone run takes a few seconds.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived: {:?}",
                got.len(),
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Small delays, so that retries happen within the test.
fn fast() -> WebhookConfig {
    WebhookConfig {
        dispatch_interval: Duration::from_millis(20),
        deliver_interval: Duration::from_millis(20),
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        request_timeout: Duration::from_secs(5),
        lease: Duration::from_secs(10),
        ..WebhookConfig::default()
    }
}

async fn send(bank: &Bank, from: &Customer, to: &Customer, amount: u64, memo: &str) {
    let req = SendRequest {
        wallet_id: from.wallet,
        recipient: Recipient::Wallet(to.wallet),
        amount: Sats::new(amount).unwrap(),
        memo: Some(memo.to_owned()),
        idempotency_key: None,
    };
    bank.send_internal(&from.me, &req).await.unwrap();
}

async fn add(bank: &Bank, c: &Customer, url: &EndpointUrl) -> SigningSecret {
    webhooks::add_endpoint(bank.ledger().pool(), c.account, url)
        .await
        .unwrap()
        .secret
        .expect("a new endpoint has a secret")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn json(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

#[tokio::test]
async fn events_arrive_signed_and_verifiable_tampering_and_replays_fail() {
    let t = bank().await;
    let sink = Sink::start().await;
    let alice = customer(&t.bank, "alice@example.com", 10_000).await;
    let bob = customer(&t.bank, "bob@example.com", 0).await;
    let alice_secret = add(&t.bank, &alice, &sink.url("alice")).await;
    let bob_secret = add(&t.bank, &bob, &sink.url("bob")).await;
    send(&t.bank, &alice, &bob, 1_234, "lunch").await;
    let _running = webhooks::spawn(t.bank.clone(), fast()).unwrap();
    let got = sink.wait_delivered(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        let (secret, who, event, sign, wallet) = match r.path.as_str() {
            "alice" => (&alice_secret, &alice, "send.intraledger", -1, alice.wallet),
            "bob" => (&bob_secret, &bob, "receive.intraledger", 1, bob.wallet),
            other => panic!("unexpected path {other}"),
        };
        secret
            .verify(&r.id, &r.timestamp, &r.signature, r.body.as_bytes(), now())
            .unwrap();
        let v = json(r);
        assert_eq!(v["eventType"], event);
        assert_eq!(v["accountId"], who.account.to_string());
        assert_eq!(v["walletId"], wallet.to_string());
        let tx = &v["transaction"];
        assert_eq!(tx["settlementAmount"], sign * 1_234);
        assert_eq!(tx["settlementCurrency"], "BTC");
        assert_eq!(tx["status"], "success");
        assert_eq!(tx["memo"], "lunch");
        assert_eq!(tx["direction"], if sign < 0 { "SEND" } else { "RECEIVE" });
        assert_eq!(tx["initiationVia"]["type"], "intraledger");
        assert!(tx["id"].as_str().is_some_and(|s| s.len() == 36));
        assert!(tx["createdAt"].as_str().is_some_and(|s| s.ends_with('Z')));
        // Another endpoint's secret, a changed body, another id, an old or future
        // timestamp: refused.
        let other = if r.path == "alice" {
            &bob_secret
        } else {
            &alice_secret
        };
        assert_eq!(
            other.verify(&r.id, &r.timestamp, &r.signature, r.body.as_bytes(), now()),
            Err(VerifyError::Mismatch)
        );
        let tampered = r.body.replace("1234", "9234");
        assert_eq!(
            secret.verify(
                &r.id,
                &r.timestamp,
                &r.signature,
                tampered.as_bytes(),
                now()
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            secret.verify(
                "other-id",
                &r.timestamp,
                &r.signature,
                r.body.as_bytes(),
                now()
            ),
            Err(VerifyError::Mismatch)
        );
        for later in [now() + 301, now() - 301] {
            assert!(matches!(
                secret.verify(&r.id, &r.timestamp, &r.signature, r.body.as_bytes(), later),
                Err(VerifyError::TooOld { .. })
            ));
        }
    }
}

#[tokio::test]
async fn order_is_kept_while_the_receiver_fails_then_recovers() {
    let t = bank().await;
    let sink = Sink::start().await;
    let alice = customer(&t.bank, "alice@example.com", 10_000).await;
    let bob = customer(&t.bank, "bob@example.com", 0).await;
    let secret = add(&t.bank, &alice, &sink.url("alice")).await;
    sink.state.fail_next.store(4, Ordering::SeqCst);
    for amount in 1..=5 {
        send(&t.bank, &alice, &bob, amount, &format!("payment {amount}")).await;
    }
    let _running = webhooks::spawn(t.bank.clone(), fast()).unwrap();
    let got = sink.wait_delivered(5).await;
    let amounts: Vec<i64> = got
        .iter()
        .map(|r| -json(r)["transaction"]["settlementAmount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [1, 2, 3, 4, 5], "delivered in payment order");
    let all = sink.received();
    // The four failures were all the first event's (nothing overtook it), with the same
    // svix-id on every attempt and growing delays between the attempts.
    let first = &got[0].id;
    assert!(all[..5].iter().all(|r| &r.id == first), "{all:?}");
    assert_eq!(all[..4].iter().filter(|r| r.answered == 500).count(), 4);
    let gaps: Vec<Duration> = all[..5].windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(50), "{gaps:?}");
    assert!(
        gaps[3] >= Duration::from_millis(200),
        "backoff grows: {gaps:?}"
    );
    for r in &got {
        secret
            .verify(&r.id, &r.timestamp, &r.signature, r.body.as_bytes(), now())
            .unwrap();
    }
    let (attempts, state): (i32, String) =
        sqlx::query_as("SELECT attempts, state FROM webhook_deliveries WHERE id::text = $1")
            .bind(first)
            .fetch_one(t.bank.ledger().pool())
            .await
            .unwrap();
    assert_eq!((attempts, state.as_str()), (5, "delivered"));
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_dies_and_stops_holding_the_others_back() {
    let t = bank().await;
    let sink = Sink::start().await;
    let alice = customer(&t.bank, "alice@example.com", 10_000).await;
    let bob = customer(&t.bank, "bob@example.com", 0).await;
    add(&t.bank, &alice, &sink.url("alice")).await;
    sink.state.fail_next.store(3, Ordering::SeqCst);
    send(&t.bank, &alice, &bob, 1, "first").await;
    send(&t.bank, &alice, &bob, 2, "second").await;
    let config = WebhookConfig {
        max_attempts: 3,
        ..fast()
    };
    let _running = webhooks::spawn(t.bank.clone(), config).unwrap();
    let got = sink.wait_delivered(1).await;
    assert_eq!(json(&got[0])["transaction"]["memo"], "second");
    // The worker records the answer just after the receiver has it.
    let want = [("dead".to_owned(), 3), ("delivered".to_owned(), 1)];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states: Vec<(String, i32)> =
            sqlx::query_as("SELECT state, attempts FROM webhook_deliveries ORDER BY seq")
                .fetch_all(t.bank.ledger().pool())
                .await
                .unwrap();
        if states == want || Instant::now() > deadline {
            assert_eq!(states, want);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_deliver_every_event_once_never_twice_at_once() {
    let t = bank().await;
    let other = second_instance(&t.bank).await;
    let sink = Sink::start().await;
    // Slow answers and one failure in three: claims, leases and retries overlap.
    sink.state.delay_ms.store(30, Ordering::SeqCst);
    sink.state.fail_every.store(3, Ordering::SeqCst);
    let mut customers = Vec::new();
    for i in 0..4 {
        let c = customer(&t.bank, &format!("c{i}@example.com"), 100_000).await;
        add(&t.bank, &c, &sink.url(&format!("c{i}"))).await;
        customers.push(c);
    }
    let config = WebhookConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        ..fast()
    };
    let _a = webhooks::spawn(t.bank.clone(), config.clone()).unwrap();
    let _b = webhooks::spawn(other.clone(), config).unwrap();
    // Payments through both instances while both deliver: each makes a send and a receipt.
    let payments = 24;
    for n in 0..payments {
        let (from, to) = (&customers[n % 4], &customers[(n + 1) % 4]);
        let via = if n % 2 == 0 { &t.bank } else { &other };
        send(via, from, to, 1 + n as u64, &format!("{n}")).await;
    }
    let got = sink.wait_delivered(2 * payments).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_after = sink.delivered();
    assert_eq!(got_after.len(), got.len(), "no late duplicates");
    let mut ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2 * payments, "each event delivered exactly once");
    assert_eq!(
        sink.state.max_in_flight_same_id.load(Ordering::SeqCst),
        1,
        "a delivery was being sent twice at once"
    );
    // Per endpoint, in the order of the payments (the memos count up).
    for i in 0..4 {
        let memos: Vec<u64> = got
            .iter()
            .filter(|r| r.path == format!("c{i}"))
            .map(|r| {
                json(r)["transaction"]["memo"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(memos.windows(2).all(|w| w[0] < w[1]), "c{i}: {memos:?}");
        assert_eq!(memos.len(), payments / 2, "c{i}");
    }
    eprintln!(
        "two instances: {} deliveries, {} requests ({} failed on purpose)",
        got.len(),
        sink.received().len(),
        sink.received().iter().filter(|r| r.answered == 500).count()
    );
}

#[tokio::test]
async fn a_restart_resumes_from_the_persisted_cursor() {
    let t = bank().await;
    let sink = Sink::start().await;
    let alice = customer(&t.bank, "alice@example.com", 10_000).await;
    let bob = customer(&t.bank, "bob@example.com", 0).await;
    add(&t.bank, &alice, &sink.url("alice")).await;
    let config = fast();
    send(&t.bank, &alice, &bob, 1, "before").await;
    // A pass may find the payment held back behind a transaction running elsewhere on the
    // server (commit order): pass until it is dispatched.
    let deadline = Instant::now() + Duration::from_secs(10);
    while dispatch_once(&t.bank, &config).await.unwrap().deliveries == 0 {
        assert!(
            Instant::now() < deadline,
            "the payment was never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Passes with nothing new, on this instance or another (a "restarted" one that has
    // only the database), dispatch nothing again.
    let other = second_instance(&t.bank).await;
    assert_eq!(dispatch_once(&other, &config).await.unwrap().deliveries, 0);
    assert_eq!(dispatch_once(&t.bank, &config).await.unwrap().deliveries, 0);
    // While no instance runs, a payment commits; the next start picks it up.
    send(&t.bank, &alice, &bob, 2, "while stopped").await;
    let _running = webhooks::spawn(other, config).unwrap();
    let got = sink.wait_delivered(2).await;
    let memos: Vec<Value> = got
        .iter()
        .map(|r| json(r)["transaction"]["memo"].clone())
        .collect();
    assert_eq!(memos, ["before", "while stopped"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(t.bank.ledger().pool())
        .await
        .unwrap();
    assert_eq!(count, 2, "nothing dispatched twice");
}

#[tokio::test]
async fn a_credited_deposit_is_a_receive_onchain_event() {
    let t = bank().await;
    let sink = Sink::start().await;
    let alice = customer(&t.bank, "alice@example.com", 0).await;
    let secret = add(&t.bank, &alice, &sink.url("alice")).await;
    // The ledger credit of an on-chain deposit, as the deposits driver posts it.
    let txid = "ab".repeat(32);
    let credit = coordinator::Posting::transfer(
        coordinator::ledger::system::MAIN_JOURNAL,
        format!("deposit:{txid}:1"),
        coordinator::ledger::system::BANK_ONCHAIN,
        Bank::ledger_account(alice.wallet),
        Sats::new(5_000).unwrap().to_msats(),
        "on-chain deposit",
    )
    .unwrap();
    t.bank.ledger().post(credit).await.unwrap();
    let _running = webhooks::spawn(t.bank.clone(), fast()).unwrap();
    let got = sink.wait_delivered(1).await;
    let r = &got[0];
    secret
        .verify(&r.id, &r.timestamp, &r.signature, r.body.as_bytes(), now())
        .unwrap();
    let v = json(r);
    assert_eq!(v["eventType"], "receive.onchain");
    assert_eq!(v["transaction"]["settlementAmount"], 5_000);
    assert_eq!(v["transaction"]["direction"], "RECEIVE");
    assert_eq!(v["transaction"]["initiationVia"]["type"], "onchain");
    // The bank's side of the posting is no customer's: nothing else was sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.received().len(), 1);
}
