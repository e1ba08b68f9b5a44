//! GraphQL over WebSocket (`/graphql/ws`): async-graphql speaks the protocol; this module
//! owns the socket around it, so that a connection never outlives its credential and
//! stays within its limits.
//!
//! **Credentials.** The credential given at `connection_init` is checked again before
//! every operation the client starts (a query, a mutation or a subscription: answered
//! from the authentication cache, so it costs no round trip), when the bank announces a
//! revocation of it (on any instance: the cache's PostgreSQL notifications), when it
//! expires, and every `recheck_interval` in case an announcement was missed. When it no
//! longer authenticates as the same principal, the connection is closed with **4403**
//! and every subscription on it ends. 4403 (Forbidden) is what the `graphql-transport-ws`
//! protocol recommends for a server that rejects a connection's authentication; its
//! 4401 means a protocol error (an operation before `connection_ack`), which clients
//! treat as fatal rather than as "authenticate again".
//!
//! **Limits** ([`WsConfig`]): connections in total per instance (the upgrade is refused
//! with `503 TOO_MANY_CONNECTIONS`), connections per credential per instance (closed
//! with 4429 at `connection_init`), and operations running at once on one connection
//! (one over is answered with an `error` message for that operation; the others go on).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::futures_util::{SinkExt, StreamExt};
use async_graphql::http::{WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};

use super::PublicSchema;
use crate::api::{ApiError, AppState, RequestMeta, authenticate_with_expiry};
use crate::bank::{Bank, Principal, Secret};

/// Close code: the credential is no longer valid (revoked, expired, logged out).
pub const CLOSE_CREDENTIAL_REVOKED: u16 = 4403;
/// Close code: too many connections for this credential.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 4429;

/// Limits of GraphQL WebSocket connections, per instance.
#[derive(Clone, Copy, Debug)]
pub struct WsConfig {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections per credential (API key or session).
    pub max_connections_per_credential: usize,
    /// Operations (subscriptions, queries, mutations) running at once on one connection.
    pub max_operations_per_connection: usize,
    /// How often a connection's credential is checked even without an operation or an
    /// announced revocation (a safety net for a missed announcement).
    pub recheck_interval: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_connections: 10_000,
            max_connections_per_credential: 10,
            max_operations_per_connection: 20,
            recheck_interval: Duration::from_secs(30),
        }
    }
}

/// Counts of open connections, shared by the instance's handlers.
#[derive(Debug)]
pub(crate) struct WsLimits {
    config: WsConfig,
    total: Arc<Semaphore>,
    per_credential: Arc<Mutex<HashMap<String, usize>>>,
}

impl WsLimits {
    pub(crate) fn new(config: WsConfig) -> WsLimits {
        WsLimits {
            config,
            total: Arc::new(Semaphore::new(config.max_connections)),
            per_credential: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A place among the open connections, or `None` when all are taken.
    pub(crate) fn connection(&self) -> Option<OwnedSemaphorePermit> {
        self.total.clone().try_acquire_owned().ok()
    }

    /// A place among the credential's connections, or `None` when all are taken.
    fn credential_slot(&self, key: &str) -> Option<CredentialSlot> {
        let mut map = self
            .per_credential
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key.to_owned()).or_insert(0);
        if *n >= self.config.max_connections_per_credential {
            return None;
        }
        *n += 1;
        Some(CredentialSlot {
            map: self.per_credential.clone(),
            key: key.to_owned(),
        })
    }
}

/// Held while a connection uses a credential; gives its place back when dropped.
#[derive(Debug)]
struct CredentialSlot {
    map: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for CredentialSlot {
    fn drop(&mut self) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The credential a connection was opened with.
struct Held {
    token: Secret,
    /// [`Bank::credential_key`] of the token.
    key: String,
    principal: Principal,
    expires_at: Option<DateTime<Utc>>,
    _slot: CredentialSlot,
}

/// One connection's state, shared by its input filter, its init callback and its loop.
struct Conn {
    bank: Bank,
    held: Mutex<Option<Held>>,
    /// Set when the connection must close with this code and reason.
    closing: Mutex<Option<(u16, String)>>,
    /// Operations running, by the client's id.
    running: Mutex<HashSet<String>>,
    /// Wakes the connection's loop when `closing` is set.
    closed: tokio::sync::Notify,
}

impl Conn {
    fn lock_held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close_with(&self, code: u16, reason: &str) {
        let mut c = self
            .closing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.get_or_insert_with(|| (code, reason.to_owned()));
        self.closed.notify_one();
    }

    fn closing(&self) -> Option<(u16, String)> {
        self.closing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the held credential (if any) still authenticates as the same principal;
    /// marks the connection for closing when it does not.
    async fn recheck(&self) -> bool {
        let token = match &*self.lock_held() {
            None => return true,
            Some(h) => h.token.clone(),
        };
        let result = self.bank.authenticate_with_expiry(token.expose()).await;
        let mut held = self.lock_held();
        let Some(h) = held.as_mut() else { return true };
        match result {
            Ok((p, expires_at)) if p == h.principal => {
                h.expires_at = expires_at;
                true
            }
            Ok(_) | Err(crate::bank::BankError::Unauthenticated) => {
                drop(held);
                self.close_with(
                    CLOSE_CREDENTIAL_REVOKED,
                    "credential revoked, expired or changed",
                );
                false
            }
            // A database outage is not a revocation: the next check decides.
            Err(e) => {
                tracing::warn!(error = %e, "websocket credential check failed; keeping the connection");
                true
            }
        }
    }

    /// The next moment the credential must be checked without being asked.
    fn next_check(&self, interval: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let by_interval = now + interval;
        match self.lock_held().as_ref().and_then(|h| h.expires_at) {
            Some(at) => {
                // Not sooner than a moment from now: the database's clock decides, and
                // it may lag ours a little.
                let left = (at - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(50));
                by_interval.min(now + left)
            }
            None => by_interval,
        }
    }

    /// Whether a revocation concerns this connection.
    fn concerns(&self, revocation: &Result<Option<Arc<str>>, broadcast::error::RecvError>) -> bool {
        match revocation {
            Ok(Some(key)) => self.lock_held().as_ref().is_some_and(|h| *h.key == **key),
            Ok(None) | Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => false,
        }
    }
}

/// The type and id of a protocol message, read without its payload.
fn kind_and_id(text: &[u8]) -> Option<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
    }
    serde_json::from_slice::<Head>(text)
        .ok()
        .map(|h| (h.kind, h.id))
}

/// The message refusing one operation, in the connection's protocol.
fn operation_error(protocol: WebSocketProtocols, id: &str, message: &str) -> String {
    let error = json!({"message": message, "extensions": {"code": "TOO_MANY_OPERATIONS"}});
    let payload = match protocol {
        WebSocketProtocols::GraphQLWS => Value::Array(vec![error]),
        WebSocketProtocols::SubscriptionsTransportWS => error,
    };
    json!({"type": "error", "id": id, "payload": payload}).to_string()
}

/// Reads the credential from the `connection_init` payload, as Blink's clients send it
/// (`{"Authorization": "Bearer ..."}` or `{"X-API-KEY": "..."}`), falling back to the
/// upgrade request's headers; takes a place among the credential's connections.
async fn init(
    app: AppState,
    conn: Arc<Conn>,
    mut headers: HeaderMap,
    client: String,
    payload: Value,
) -> async_graphql::Result<Data> {
    if let Value::Object(map) = &payload {
        for (k, v) in map {
            let name = k.to_ascii_lowercase();
            if (name == "authorization" || name == "x-api-key")
                && let (Ok(n), Some(Ok(v))) = (
                    HeaderName::try_from(name.as_str()),
                    v.as_str().map(HeaderValue::from_str),
                )
            {
                headers.insert(n, v);
            }
        }
    }
    let (principal, bearer, held) = match authenticate_with_expiry(&app.bank, &headers).await {
        Ok(found) => found,
        Err(e) => {
            conn.close_with(CLOSE_CREDENTIAL_REVOKED, &e.message);
            return Err(e.to_graphql());
        }
    };
    if let (Some(p), Some((token, expires_at))) = (&principal, held) {
        let key = Bank::credential_key(token.expose());
        let Some(slot) = app.ws.credential_slot(&key) else {
            let e = ApiError::too_many_connections("too many connections for this credential");
            conn.close_with(CLOSE_TOO_MANY_CONNECTIONS, &e.message);
            return Err(e.to_graphql());
        };
        *conn.lock_held() = Some(Held {
            token,
            key,
            principal: p.clone(),
            expires_at,
            _slot: slot,
        });
    }
    let mut data = Data::default();
    data.insert(RequestMeta {
        principal,
        bearer,
        idempotency_key: None,
        client,
    });
    Ok(data)
}

/// Serves one upgraded connection until either side ends it or its credential does.
pub(super) async fn serve(
    socket: WebSocket,
    schema: PublicSchema,
    protocol: WebSocketProtocols,
    app: AppState,
    headers: HeaderMap,
    client: String,
    _place: OwnedSemaphorePermit,
) {
    let conn = Arc::new(Conn {
        bank: app.bank.clone(),
        held: Mutex::new(None),
        closing: Mutex::new(None),
        running: Mutex::new(HashSet::new()),
        closed: tokio::sync::Notify::new(),
    });
    let config = app.ws.config;
    // Subscribed before the credential is first read, so that no revocation after that
    // read goes unheard.
    let mut revocations = app.bank.revocations();
    let (mut sink, stream) = socket.split();
    let (refusals, mut refused) = mpsc::unbounded_channel::<String>();
    let input_conn = conn.clone();
    let input = stream
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(move |m| {
            let conn = input_conn.clone();
            let refusals = refusals.clone();
            async move {
                let bytes = match m.ok()? {
                    Message::Text(t) => axum::body::Bytes::from(t),
                    Message::Binary(b) => b,
                    _ => return None,
                };
                match kind_and_id(&bytes) {
                    Some((kind, Some(id))) if kind == "subscribe" || kind == "start" => {
                        if !conn.recheck().await {
                            return None;
                        }
                        let mut running = conn.running();
                        if running.len() >= config.max_operations_per_connection
                            && !running.contains(&id)
                        {
                            let message = format!(
                                "too many operations on this connection (at most {})",
                                config.max_operations_per_connection
                            );
                            let _ = refusals.send(operation_error(protocol, &id, &message));
                            return None;
                        }
                        running.insert(id);
                    }
                    Some((kind, Some(id))) if kind == "complete" || kind == "stop" => {
                        conn.running().remove(&id);
                    }
                    _ => {}
                }
                Some(bytes)
            }
        })
        .boxed();
    let init_conn = conn.clone();
    let init_app = app.clone();
    let graphql = async_graphql::http::WebSocket::new(schema, input, protocol)
        .on_connection_init(move |payload| init(init_app, init_conn, headers, client, payload));
    tokio::pin!(graphql);

    let close = loop {
        if let Some(reason) = conn.closing() {
            break Some(reason);
        }
        let check_at = conn.next_check(config.recheck_interval);
        tokio::select! {
            () = conn.closed.notified() => {}
            msg = graphql.next() => match msg {
                None => break conn.closing(),
                Some(WsMessage::Text(text)) => {
                    if let Some((kind, Some(id))) = kind_and_id(text.as_bytes())
                        && (kind == "complete" || kind == "error")
                    {
                        conn.running().remove(&id);
                    }
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                // Our own reason wins over the library's (e.g. its 1002 for a refused
                // connection_init).
                Some(WsMessage::Close(code, reason)) => break Some(conn.closing().unwrap_or((code, reason))),
            },
            Some(text) = refused.recv() => {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break None;
                }
            }
            r = async {
                match revocations.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                    revocations = None;
                } else if conn.concerns(&r) {
                    conn.recheck().await;
                }
            }
            () = tokio::time::sleep_until(check_at) => {
                conn.recheck().await;
            }
        }
    };
    if let Some((code, reason)) = close {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    let _ = sink.close().await;
}
