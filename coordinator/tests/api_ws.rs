//! GraphQL subscriptions over a real WebSocket on 127.0.0.1: `myUpdates` delivers an
//! internal transfer to both sides, authenticated the way Blink's clients do it (the
//! credential in the `connection_init` payload); a bad credential is refused.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::time::Duration;

use api_common::{Cred, SEND, api, customer, send_input};
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
