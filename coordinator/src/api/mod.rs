//! The HTTP API of the coordinator: Blink-compatible GraphQL at `/graphql` (with
//! subscriptions over WebSocket at `/graphql/ws`), REST under `/v1` with its OpenAPI
//! document at `/v1/openapi.json`, staff GraphQL at `/admin/graphql`, and `/healthz`.
//!
//! The handlers are thin: they turn requests into typed domain values and call
//! [`Bank`]. Decisions and their reasons are in this module's README.
#![doc = include_str!("README.md")]

mod client_ip;
mod deposit_updates;
mod errors;
mod gql;
mod http;
mod idempotency;
mod lnurl;
mod observe;
pub(crate) mod onchain;
mod paging;
mod payments;
mod ratelimit;
mod rest;
mod rest_auth;
mod rest_health;
mod rest_onchain;
mod seq_feed;
mod updates;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

pub use client_ip::ForwardedHeader;
pub use errors::ApiError;
pub use gql::{
    CLOSE_CREDENTIAL_REVOKED, CLOSE_TOO_MANY_CONNECTIONS, WsConfig, admin_sdl, public_sdl,
};
pub use onchain::OnchainConfig;
pub use ratelimit::{LimitedOp, RateLimitConfig, RateLimiter};
pub use rest::openapi_json;
pub use rest_health::health_routes;
pub use updates::{CHANNEL as OUTBOX_CHANNEL, LISTENER_APPLICATION_NAME};

use crate::Sats;
use crate::bank::{AuthMethod, Bank, Principal, Secret, StaffPrincipal};
use crate::ids::{TransactionId, WalletId};

/// How the API is configured.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Serve the GraphiQL pages (development only: they load scripts from a CDN).
    pub dev_mode: bool,
    /// Limits on registration, login and code requests.
    pub rate_limit: RateLimitConfig,
    /// Deepest GraphQL selection accepted.
    pub max_query_depth: usize,
    /// Most fields one GraphQL document may select, each counted once (async-graphql's
    /// complexity).
    pub max_query_complexity: usize,
    /// Most a GraphQL operation may cost when every field counts once per item of the
    /// lists around it (`first`/`last`, or the default page): see `gql/guard.rs`.
    pub max_query_cost: usize,
    /// Longest a request may run before it is abandoned with `503 REQUEST_TIMEOUT`.
    pub request_timeout: std::time::Duration,
    /// Largest request body accepted (`413 PAYLOAD_TOO_LARGE` above). GraphQL and REST
    /// POSTs also have their own 64 KiB bound.
    pub max_body_bytes: usize,
    /// Origins allowed to call from a browser (CORS), e.g. `https://wallet.example`.
    /// Empty (the default): no cross-origin access.
    pub cors_allowed_origins: Vec<axum::http::HeaderValue>,
    /// Limits of GraphQL WebSocket connections.
    pub ws: WsConfig,
    /// Reverse proxies whose forwarding header names the client (CIDRs). Empty (the
    /// default): the TCP peer is the client, whatever the headers say.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header the trusted proxies write (only that one is read).
    pub forwarded_header: ForwardedHeader,
    /// Lightning addresses and LNURL-pay.
    pub lnurl: crate::lnurl::LnurlConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            dev_mode: false,
            rate_limit: RateLimitConfig::default(),
            max_query_depth: 16,
            max_query_complexity: 1_000,
            max_query_cost: 10_000,
            request_timeout: std::time::Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            cors_allowed_origins: Vec::new(),
            ws: WsConfig::default(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            lnurl: crate::lnurl::LnurlConfig::default(),
        }
    }
}

/// A payment that just committed, for `myUpdates` and the Lightning invoice status
/// subscriptions (read from the ledger outbox): an internal transfer, or a Lightning
/// posting (an invoice credited, a payment out settled).
#[derive(Clone, Copy, Debug)]
pub struct PaymentEvent {
    /// The rail: [`Rail::IntraLedger`](crate::bank::events::Rail) or `Lightning`.
    pub rail: crate::bank::events::Rail,
    /// The paying wallet.
    pub sender_wallet: WalletId,
    /// The receiving wallet.
    pub recipient_wallet: WalletId,
    /// The ledger transaction.
    pub transaction_id: TransactionId,
    /// The amount.
    pub amount: Sats,
}

/// State shared by every handler and resolver.
#[derive(Clone, Debug)]
pub struct AppState {
    pub(crate) bank: Bank,
    /// The source of `myUpdates`: the ledger outbox, shared by every instance.
    pub(crate) updates: Arc<updates::OutboxFeed>,
    /// The source of on-chain `myUpdates`: deposit events, shared by every instance.
    pub(crate) deposit_updates: Arc<deposit_updates::DepositFeed>,
    /// Deposits (reads and operator actions).
    pub(crate) deposits: crate::deposits::Deposits,
    /// The wallet that hands out deposit addresses; `None`: on-chain not configured.
    pub(crate) onchain: Option<Arc<OnchainConfig>>,
    pub(crate) limiter: Arc<RateLimiter>,
    /// Open WebSocket connections, for their limits.
    pub(crate) ws: Arc<gql::WsLimits>,
    pub(crate) config: Arc<ApiConfig>,
    /// The checks of `/readyz`.
    pub(crate) readiness: Arc<crate::ops::Readiness>,
    /// LNURL-pay; `None` only if its HTTP client could not be built (logged).
    pub(crate) lnurl: Option<Arc<crate::lnurl::Lnurl>>,
}

impl AppState {
    /// The state for a bank.
    pub fn new(bank: Bank, config: ApiConfig) -> AppState {
        AppState {
            updates: Arc::new(updates::OutboxFeed::new(
                bank.ledger().pool().clone(),
                &updates::SOURCE,
            )),
            limiter: Arc::new(RateLimiter::new(
                config.rate_limit,
                bank.ledger().pool().clone(),
            )),
            deposit_updates: Arc::new(deposit_updates::DepositFeed::new(
                bank.ledger().pool().clone(),
                &deposit_updates::SOURCE,
            )),
            deposits: crate::deposits::Deposits::new(bank.ledger().clone()),
            onchain: None,
            readiness: Arc::new(crate::ops::Readiness::standard(bank.ledger())),
            lnurl: crate::lnurl::Lnurl::new(config.lnurl.clone())
                .map(Arc::new)
                .ok(),
            bank,
            ws: Arc::new(gql::WsLimits::new(config.ws)),
            config: Arc::new(config),
        }
    }

    /// Hands out deposit addresses from `onchain`'s hot wallet (`onChainAddressCreate`);
    /// without it those operations answer `ONCHAIN_UNAVAILABLE`.
    pub fn with_onchain(mut self, onchain: OnchainConfig) -> AppState {
        self.onchain = Some(Arc::new(onchain));
        self
    }

    /// Adds a check to `/readyz` (the chain source, for example).
    pub fn with_readiness_check(mut self, check: Arc<dyn crate::ops::ReadinessCheck>) -> AppState {
        self.readiness = Arc::new((*self.readiness).clone().with(check));
        self
    }
}

/// What a GraphQL resolver knows about the request besides its body.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestMeta {
    /// The authenticated user, if any.
    pub principal: Option<Principal>,
    /// The session token of the request (for `userLogout`); never logged.
    pub bearer: Option<Secret>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The client's address, for rate limits.
    pub client: String,
}

/// The client's IP address, when the server was started with connect info.
#[derive(Clone, Debug)]
pub(crate) struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // As resolved by `client_ip::resolve`: the peer, or behind a trusted proxy the
        // address it forwards (a client cannot choose its own).
        let resolved = parts.extensions.get::<client_ip::ClientIp>().map(|c| c.0);
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        };
        Ok(ClientAddr(
            resolved
                .or_else(peer)
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        ))
    }
}

/// The credential of a request: `X-API-KEY: <key>` or `Authorization: Bearer <token>`.
pub(crate) enum Credential {
    /// An API key.
    ApiKey(Secret),
    /// A session token.
    Bearer(Secret),
}

/// Reads the credential headers. Two credentials, or one of the wrong kind for its
/// header, are refused rather than guessed between.
pub(crate) fn credential(headers: &HeaderMap) -> Result<Option<Credential>, ApiError> {
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().map(|s| s.trim().to_owned()));
    let bearer = headers.get(axum::http::header::AUTHORIZATION).map(|v| {
        v.to_str().map(|s| {
            let s = s.trim();
            s.strip_prefix("Bearer ")
                .or_else(|| s.strip_prefix("bearer "))
                .unwrap_or("")
                .trim()
                .to_owned()
        })
    });
    match (key, bearer) {
        (None, None) => Ok(None),
        (Some(Ok(k)), None) if k.starts_with("key_") => {
            Ok(Some(Credential::ApiKey(Secret::new(k))))
        }
        (None, Some(Ok(b))) if b.starts_with("sess_") => {
            Ok(Some(Credential::Bearer(Secret::new(b))))
        }
        _ => Err(ApiError::unauthenticated()),
    }
}

/// Resolves the request's user credential.
pub(crate) async fn authenticate(
    bank: &Bank,
    headers: &HeaderMap,
) -> Result<(Option<Principal>, Option<Secret>), ApiError> {
    match credential(headers)? {
        None => Ok((None, None)),
        Some(Credential::ApiKey(k)) => {
            let p = bank
                .authenticate(k.expose())
                .await
                .map_err(ApiError::from)?;
            if !matches!(p.method, AuthMethod::ApiKey(_)) {
                return Err(ApiError::unauthenticated());
            }
            Ok((Some(p), None))
        }
        Some(Credential::Bearer(t)) => {
            let p = bank
                .authenticate(t.expose())
                .await
                .map_err(ApiError::from)?;
            if p.method != AuthMethod::Session {
                return Err(ApiError::unauthenticated());
            }
            Ok((Some(p), Some(t)))
        }
    }
}

/// [`authenticate`] for a connection that holds the credential open: also the
/// credential itself and its expiry, to check it again later.
pub(crate) async fn authenticate_with_expiry(
    bank: &Bank,
    headers: &HeaderMap,
) -> Result<
    (
        Option<Principal>,
        Option<Secret>,
        Option<(Secret, Option<chrono::DateTime<chrono::Utc>>)>,
    ),
    ApiError,
> {
    let (token, session) = match credential(headers)? {
        None => return Ok((None, None, None)),
        Some(Credential::ApiKey(k)) => (k, false),
        Some(Credential::Bearer(t)) => (t, true),
    };
    let (p, expires_at) = bank
        .authenticate_with_expiry(token.expose())
        .await
        .map_err(ApiError::from)?;
    if session != (p.method == AuthMethod::Session) {
        return Err(ApiError::unauthenticated());
    }
    let bearer = session.then(|| token.clone());
    Ok((Some(p), bearer, Some((token, expires_at))))
}

/// Resolves a staff session (`Authorization: Bearer <staff token>`).
pub(crate) async fn authenticate_staff(
    bank: &Bank,
    headers: &HeaderMap,
) -> Result<Option<StaffPrincipal>, ApiError> {
    match credential(headers)? {
        None => Ok(None),
        Some(Credential::ApiKey(_)) => Err(ApiError::unauthenticated()),
        Some(Credential::Bearer(t)) => bank
            .authenticate_staff(t.expose())
            .await
            .map(Some)
            .map_err(ApiError::from),
    }
}

/// The `Idempotency-Key` header, checked: 1 to 200 visible characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::idempotency_key_required())?
        .trim();
    if s.is_empty() || s.len() > 200 {
        return Err(ApiError::idempotency_key_required());
    }
    Ok(Some(s.to_owned()))
}

/// Any path no route matches, `/graphql/` with its trailing slash included: a 404 with
/// a code, never an error of some other route's middleware.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::route_not_found(&method, uri.path()).into_response()
}

/// A known path with a method it does not take.
async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::method_not_allowed(&method, uri.path()).into_response()
}

/// The whole HTTP API over a bank.
pub fn router(bank: Bank, config: ApiConfig) -> Router {
    router_with_state(AppState::new(bank, config))
}

/// The API over a prepared state (for example with on-chain deposits configured:
/// [`AppState::with_onchain`]).
pub fn router_with_state(state: AppState) -> Router {
    let cors = http::cors(&state.config.cors_allowed_origins);
    let (timeout, max_body) = (state.config.request_timeout, state.config.max_body_bytes);
    let trust = Arc::new(client_ip::ProxyTrust {
        trusted: state.config.trusted_proxies.clone(),
        header: state.config.forwarded_header,
    });
    // Layers run outside-in: tracing, CORS (so that error answers carry its headers
    // too), the body bound, then the time limit around the handlers.
    let app = Router::new()
        .merge(gql::routes(state.clone()))
        .merge(rest_auth::routes(state.clone()))
        .merge(lnurl::routes(state.clone()))
        .merge(rest::routes(state))
        .route_layer(axum::middleware::from_fn(observe::label_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            trust,
            client_ip::resolve,
        ))
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            http::time_limit,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            http::body_limit,
        ));
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(axum::middleware::from_fn(observe::observe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (axum::http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn credentials_are_taken_from_the_right_header_only() {
        assert!(matches!(credential(&headers(&[])), Ok(None)));
        assert!(matches!(
            credential(&headers(&[("x-api-key", "key_abc")])),
            Ok(Some(Credential::ApiKey(_)))
        ));
        assert!(matches!(
            credential(&headers(&[("authorization", "Bearer sess_abc")])),
            Ok(Some(Credential::Bearer(_)))
        ));
        for bad in [
            headers(&[("x-api-key", "sess_abc")]),
            headers(&[("authorization", "Bearer key_abc")]),
            headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
            headers(&[("authorization", "sess_abc")]),
            headers(&[("x-api-key", "key_a"), ("authorization", "Bearer sess_b")]),
        ] {
            assert!(credential(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert_eq!(idempotency_key(&headers(&[])).unwrap(), None);
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", " k1 ")])).unwrap(),
            Some("k1".to_owned())
        );
        let long = "k".repeat(201);
        assert!(idempotency_key(&headers(&[("idempotency-key", &long)])).is_err());
        assert!(idempotency_key(&headers(&[("idempotency-key", " ")])).is_err());
    }
}
