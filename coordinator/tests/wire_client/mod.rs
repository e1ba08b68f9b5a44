//! A client of the public API over the wire, as a third-party application speaks to it:
//! `POST /graphql` with a credential header, and `graphql-transport-ws` with the
//! credential in the `connection_init` payload.
#![allow(dead_code, reason = "each test binary uses part of it")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A coordinator instance on 127.0.0.1.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// `POST /graphql` as the client sends it; asserts HTTP 200 (Blink's clients treat
/// anything else as "cannot connect").
pub async fn gql(addr: SocketAddr, auth: Auth<'_>, query: &str, variables: Value) -> Value {
    let mut req = reqwest::Client::new().post(format!("http://{addr}/graphql"));
    req = match auth {
        Auth::None => req,
        Auth::Key(k) => req.header("X-API-KEY", k),
        Auth::Bearer(t) => req.header("Authorization", format!("Bearer {t}")),
    };
    let res = req
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The credential of a request.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Key(&'a str),
    Bearer(&'a str),
}

pub fn key(k: &str) -> Auth<'_> {
    Auth::Key(k)
}

/// A `graphql-transport-ws` client keeping messages of other operations for later.
pub struct Client {
    ws: Ws,
    inbox: Vec<Value>,
}

impl Client {
    /// Opens a connection with `payload` at `connection_init`: the client, or the close
    /// code of a refusal.
    pub async fn open(addr: SocketAddr, payload: Value) -> Result<Client, Option<u16>> {
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws.send(Message::text(
            json!({"type": "connection_init", "payload": payload}).to_string(),
        ))
        .await
        .unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an answer to connection_init");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["type"], "connection_ack", "{v}");
                    return Ok(Client {
                        ws,
                        inbox: Vec::new(),
                    });
                }
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let msg = json!({"id": id, "type": "subscribe",
                         "payload": {"query": query, "variables": variables}});
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
    }

    /// The next message of operation `id` within `wait`.
    pub async fn next(&mut self, id: &str, wait: Duration) -> Option<Value> {
        if let Some(i) = self.inbox.iter().position(|m| m["id"] == id) {
            return Some(self.inbox.remove(i));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            let Message::Text(t) = msg.ok()? else {
                continue;
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                return Some(v);
            }
            self.inbox.push(v);
        }
    }

    /// The data of the next `next` message of `id` (`field` of it).
    pub async fn data(&mut self, id: &str, field: &str) -> Value {
        let m = self
            .next(id, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("no message for {id}"));
        assert_eq!(m["type"], "next", "{m}");
        m["payload"]["data"][field].clone()
    }

    /// Asserts that operation `id` completes next.
    pub async fn completes(&mut self, id: &str) {
        let m = self.next(id, Duration::from_secs(10)).await;
        assert_eq!(
            m.as_ref().map(|m| m["type"].clone()),
            Some(json!("complete")),
            "{m:?}"
        );
    }
}
