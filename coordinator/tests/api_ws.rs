//! GraphQL subscriptions over a real WebSocket on 127.0.0.1: `myUpdates` delivers an
//! internal transfer to both sides, authenticated the way Blink's clients do it (the
//! credential in the `connection_init` payload); a bad credential is refused. Updates
//! come from the ledger outbox: a payment through one API instance reaches subscribers
//! on another, and a lost listener connection loses and repeats nothing.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::time::Duration;

use api_common::{Cred, SEND, api, customer, send_input, send_status};
use async_graphql::futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

const MY_UPDATES: &str = "subscription myUpdates {
  myUpdates {
    errors { message }
    me { id defaultAccount { id } }
    update {
      __typename
      ... on IntraLedgerUpdate {
        txNotificationType
        amount
        walletId
        transaction { id direction settlementAmount memo initiationVia { ... on InitiationViaIntraLedger { counterPartyWalletId } } }
      }
      ... on LnUpdate { paymentHash status transaction { id } }
    }
  }
}";

async fn subscribe(addr: std::net::SocketAddr, auth: Value) -> Ws {
    let mut ws = connect(addr).await;
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": auth}).to_string(),
    ))
    .await
    .unwrap();
    let ack = next_json(&mut ws).await.unwrap();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.send(Message::text(
        json!({"id": "1", "type": "subscribe", "payload": {"query": MY_UPDATES}}).to_string(),
    ))
    .await
    .unwrap();
    ws
}

#[tokio::test]
async fn my_updates_reach_both_sides_over_a_real_websocket() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let bob_key = api_common::api_key(a.bank(), &bob, &[coordinator::bank::Scope::Read]).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = a.router.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    let mut alice_ws = subscribe(
        addr,
        json!({"Authorization": format!("Bearer {}", alice.token)}),
    )
    .await;
    let mut bob_ws = subscribe(addr, json!({"X-API-KEY": bob_key})).await;
    // Let both subscriptions register before the payment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (_, v) = a
        .gql(
            Cred::Bearer(&alice.token),
            SEND,
            send_input(alice.wallet, bob.wallet, 4_321),
        )
        .await;
    assert_eq!(
        v["data"]["intraLedgerPaymentSend"]["status"], "SUCCESS",
        "{v}"
    );

    let msg = next_json(&mut alice_ws).await.unwrap();
    assert_eq!(msg["type"], "next", "{msg}");
    let p = &msg["payload"]["data"]["myUpdates"];
    assert_eq!(p["update"]["__typename"], "IntraLedgerUpdate");
    assert_eq!(p["update"]["txNotificationType"], "IntraLedgerPayment");
    assert_eq!(p["update"]["amount"], 4_321);
    assert_eq!(p["update"]["walletId"], alice.wallet.to_string());
    assert_eq!(p["update"]["transaction"]["settlementAmount"], -4_321);
    assert_eq!(p["me"]["defaultAccount"]["id"], alice.account.to_string());

    let msg = next_json(&mut bob_ws).await.unwrap();
    let p = &msg["payload"]["data"]["myUpdates"];
    assert_eq!(
        p["update"]["txNotificationType"], "IntraLedgerReceipt",
        "{msg}"
    );
    assert_eq!(p["update"]["transaction"]["direction"], "RECEIVE");
    assert_eq!(
        p["update"]["transaction"]["initiationVia"]["counterPartyWalletId"],
        alice.wallet.to_string()
    );

    // A bad credential is refused at connection_init; no credential cannot subscribe.
    let mut ws = connect(addr).await;
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {"Authorization": "Bearer sess_forged"}})
            .to_string(),
    ))
    .await
    .unwrap();
    let reply = next_json(&mut ws).await;
    assert!(
        reply.as_ref().is_none_or(|r| r["type"] != "connection_ack"),
        "{reply:?}"
    );

    let mut anon = subscribe(addr, json!({})).await;
    let msg = next_json(&mut anon).await.unwrap();
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "NOT_AUTHENTICATED",
        "{msg}"
    );
    assert!(msg["payload"]["data"].is_null());

    let _ = stop.send(());
    server.await.unwrap();
}

/// Serves `router` on 127.0.0.1 until the returned sender is used or dropped.
async fn serve(
    router: axum::Router,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, server)
}

/// The next `myUpdates` event, or `None` if nothing arrives within `wait`.
async fn next_update(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let msg = tokio::time::timeout(wait, next_json(ws)).await.ok()??;
    assert_eq!(msg["type"], "next", "{msg}");
    Some(msg["payload"]["data"]["myUpdates"]["update"].clone())
}

/// A second API instance over the same database, as a second coordinator process would
/// be: it shares nothing in memory with the first but the bank's connection pool.
fn second_instance(a: &api_common::Api) -> axum::Router {
    coordinator::api::router(a.bank().clone(), coordinator::api::ApiConfig::default())
}

/// The backend pids of the outbox listeners on this test's database.
async fn listener_pids(a: &api_common::Api) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database() ORDER BY pid",
    )
    .bind(coordinator::api::LISTENER_APPLICATION_NAME)
    .fetch_all(a.bank().ledger().pool())
    .await
    .unwrap()
}

async fn bearer_subscription(addr: std::net::SocketAddr, token: &str) -> Ws {
    subscribe(addr, json!({"Authorization": format!("Bearer {token}")})).await
}

#[tokio::test]
async fn a_payment_through_one_instance_reaches_subscribers_on_another() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let carol = customer(a.bank(), "carol@example.com", 500).await;
    let (addr, stop, server) = serve(second_instance(&a)).await;
    let mut bob_ws = bearer_subscription(addr, &bob.token).await;
    let mut alice_ws = bearer_subscription(addr, &alice.token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Paid through instance A (the test's router); subscribed on instance B.
    for amount in [1_111, 2_222] {
        let (_, v) = a
            .send_via_graphql(Cred::Bearer(&alice.token), alice.wallet, bob.wallet, amount)
            .await;
        assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    }
    for amount in [1_111, 2_222] {
        let u = next_update(&mut bob_ws, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(u["txNotificationType"], "IntraLedgerReceipt", "{u}");
        assert_eq!(u["amount"], amount, "in order: {u}");
        assert_eq!(u["walletId"], bob.wallet.to_string());
        assert_eq!(u["transaction"]["direction"], "RECEIVE");
        assert_eq!(
            u["transaction"]["initiationVia"]["counterPartyWalletId"],
            alice.wallet.to_string()
        );
        let u = next_update(&mut alice_ws, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(u["txNotificationType"], "IntraLedgerPayment", "{u}");
        assert_eq!(u["amount"], amount);
        assert_eq!(u["transaction"]["settlementAmount"], -amount);
    }
    // Another payer's transfer reaches Bob only; each update arrives once.
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&carol.token), carol.wallet, bob.wallet, 5)
        .await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    let u = next_update(&mut bob_ws, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(u["amount"], 5, "{u}");
    assert_eq!(next_update(&mut bob_ws, Duration::from_secs(1)).await, None);
    assert_eq!(
        next_update(&mut alice_ws, Duration::from_secs(1)).await,
        None
    );

    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test]
async fn a_lost_listener_connection_recovers_without_loss_or_repeats() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let (addr, stop, server) = serve(second_instance(&a)).await;
    let mut bob_ws = bearer_subscription(addr, &bob.token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = listener_pids(&a).await;
    assert_eq!(before.len(), 1, "instance B listens: {before:?}");

    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&alice.token), alice.wallet, bob.wallet, 100)
        .await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    let u = next_update(&mut bob_ws, Duration::from_secs(10)).await;
    assert_eq!(u.unwrap()["amount"], 100);

    // The listener's connection dies and cannot come back for a while: payments made
    // meanwhile are never notified to it.
    let pool = a.bank().ledger().pool();
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    // Every connection of the shared pool is opened first, so that only the listener
    // (which has its own) needs a new one during the outage.
    let mut warm = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        warm.push(pool.acquire().await.unwrap());
    }
    drop(warm);
    // A database's connections are switched off from another database.
    let mut admin =
        sqlx::ConnectOptions::connect(&(*pool.connect_options()).clone().database("postgres"))
            .await
            .unwrap();
    sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(coordinator::api::LISTENER_APPLICATION_NAME)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(killed, [true]);
    for amount in [201, 202, 203] {
        let (_, v) = a
            .send_via_graphql(Cred::Bearer(&alice.token), alice.wallet, bob.wallet, amount)
            .await;
        assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();

    // Everything committed during the outage arrives, in order, once.
    for amount in [201, 202, 203] {
        let u = next_update(&mut bob_ws, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(u["amount"], amount, "{u}");
    }
    // The listener is back on a new connection and notifications flow again: a new
    // payment arrives well within the fallback poll interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let after = loop {
        let pids = listener_pids(&a).await;
        if pids.len() == 1 || std::time::Instant::now() > deadline {
            break pids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "a new connection");
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&alice.token), alice.wallet, bob.wallet, 300)
        .await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    let started = std::time::Instant::now();
    let u = next_update(&mut bob_ws, Duration::from_secs(10)).await;
    assert_eq!(u.unwrap()["amount"], 300);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(next_update(&mut bob_ws, Duration::from_secs(1)).await, None);

    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test]
async fn the_request_time_limit_does_not_cut_subscriptions() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 1_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let short = coordinator::api::router(
        a.bank().clone(),
        coordinator::api::ApiConfig {
            request_timeout: Duration::from_millis(300),
            ..coordinator::api::ApiConfig::default()
        },
    );
    let (addr, stop, server) = serve(short).await;
    let mut bob_ws = bearer_subscription(addr, &bob.token).await;
    // Well past the time limit of a request.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&alice.token), alice.wallet, bob.wallet, 7)
        .await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    let u = next_update(&mut bob_ws, Duration::from_secs(10)).await;
    assert_eq!(u.unwrap()["amount"], 7);

    let _ = stop.send(());
    server.await.unwrap();
}
