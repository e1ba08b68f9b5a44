//! The coordinator's configuration: one typed tree for every knob of `serve`, loaded once
//! in `main` (see [`super::load`] for the layers). Durations are whole seconds or
//! milliseconds, named so; amounts are satoshis.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secret::DatabaseUrl;
use crate::amount::Sats;
use crate::api::{ApiConfig, ForwardedHeader, RateLimitConfig, WsConfig};
use crate::bank::{BankConfig, LimitsConfig, PasswordCost, ResumeConfig};
use crate::deposits::OnchainFile;
use crate::ledger::LedgerConfig;
use crate::lnurl::{LnurlConfig, MAX_COMMENT_ALLOWED, PublicUrl};
use crate::notify::NotifierConfig;
use crate::webhooks::{WebhookConfig, WebhooksSection};

/// A value that cannot be used, named by its dotted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct InvalidValue {
    /// The dotted key, e.g. `api.cors_origins`.
    pub key: &'static str,
    /// Why.
    pub why: String,
}

fn invalid(key: &'static str, why: impl Into<String>) -> InvalidValue {
    InvalidValue {
        key,
        why: why.into(),
    }
}

/// Everything `coordinator serve` is configured with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// PostgreSQL.
    pub database: DatabaseSection,
    /// The HTTP API.
    pub api: ApiSection,
    /// Attempts at registration, codes and logins.
    pub rate_limit: RateLimitSection,
    /// The ledger writer.
    pub ledger: LedgerSection,
    /// Sessions, codes, passwords and KYC limits.
    pub bank: BankSection,
    /// Where one-time codes go.
    pub notifier: NotifierConfig,
    /// The chain source, the wallets and deposits; absent: on-chain is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onchain: Option<OnchainFile>,
    /// The Lightning node; absent: Lightning is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lightning: Option<crate::lightning::LightningFile>,
    /// Logs.
    pub log: LogSection,
    /// The Prometheus listener.
    pub metrics: MetricsSection,
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// The PostgreSQL URL (its password is redacted wherever it is shown).
    pub url: DatabaseUrl,
    /// Most connections in the pool.
    pub connections: u32,
    /// Run the migrations at start; off, the instance waits (not ready) until another
    /// instance or `coordinator migrate` has brought the schema up to this binary's.
    pub migrate: bool,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: DatabaseUrl::new(crate::db::DEFAULT_DATABASE_URL),
            connections: 16,
            migrate: true,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// The address of the API listener (also `/healthz` and `/readyz`).
    pub bind: SocketAddr,
    /// Development mode: GraphiQL pages and introspection.
    pub dev: bool,
    /// Seconds a request may run before it is abandoned (503 REQUEST_TIMEOUT).
    pub request_timeout_seconds: u64,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Origins allowed to call from a browser (CORS).
    pub cors_origins: Vec<String>,
    /// Seconds an authentication may be answered from memory (0: never).
    pub auth_cache_seconds: u64,
    /// Reverse proxies (CIDRs) whose forwarding header names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header the trusted proxies write: `x-forwarded-for` or `forwarded`.
    pub forwarded_header: String,
    /// The bank's public origin, the domain of its users' Lightning addresses; unset:
    /// no Lightning addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// GraphQL query limits.
    pub query: QuerySection,
    /// GraphQL WebSocket limits.
    pub websocket: WebSocketSection,
    /// Lightning addresses and LNURL-pay.
    pub lnurl: LnurlSection,
}

impl Default for ApiSection {
    fn default() -> Self {
        let api = ApiConfig::default();
        ApiSection {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            dev: api.dev_mode,
            request_timeout_seconds: api.request_timeout.as_secs(),
            max_body_bytes: api.max_body_bytes,
            cors_origins: Vec::new(),
            auth_cache_seconds: BankConfig::default().auth_cache_ttl.as_secs(),
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".to_owned(),
            public_url: None,
            query: QuerySection::default(),
            websocket: WebSocketSection::default(),
            lnurl: LnurlSection::default(),
        }
    }
}

/// `[api.lnurl]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LnurlSection {
    /// Least a payer may send to an address, satoshis.
    pub min_sendable_sats: u64,
    /// Most a payer may send to an address in one payment, satoshis.
    pub max_sendable_sats: u64,
    /// Longest payer comment (LUD-12), characters; 0: none.
    pub comment_allowed: u16,
    /// Seconds one call to another LNURL service may take.
    pub timeout_seconds: u64,
    /// Call LNURL services on loopback hosts over plain HTTP (tests, local demos).
    pub allow_loopback: bool,
}

impl Default for LnurlSection {
    fn default() -> Self {
        let d = LnurlConfig::default();
        LnurlSection {
            min_sendable_sats: d.min_sendable.to_sat(),
            max_sendable_sats: d.max_sendable.to_sat(),
            comment_allowed: d.comment_allowed,
            timeout_seconds: d.timeout.as_secs(),
            allow_loopback: d.allow_loopback,
        }
    }
}

/// `[api.query]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySection {
    /// Deepest selection.
    pub max_depth: usize,
    /// Most fields in one document, each counted once.
    pub max_complexity: usize,
    /// Most fields counted once per item of the lists around them.
    pub max_cost: usize,
}

impl Default for QuerySection {
    fn default() -> Self {
        let api = ApiConfig::default();
        QuerySection {
            max_depth: api.max_query_depth,
            max_complexity: api.max_query_complexity,
            max_cost: api.max_query_cost,
        }
    }
}

/// `[api.websocket]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSection {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections per credential.
    pub max_connections_per_credential: usize,
    /// Operations at once on one connection.
    pub max_operations_per_connection: usize,
    /// Seconds between two checks of a connection's credential.
    pub recheck_seconds: u64,
}

impl Default for WebSocketSection {
    fn default() -> Self {
        let ws = WsConfig::default();
        WebSocketSection {
            max_connections: ws.max_connections,
            max_connections_per_credential: ws.max_connections_per_credential,
            max_operations_per_connection: ws.max_operations_per_connection,
            recheck_seconds: ws.recheck_interval.as_secs(),
        }
    }
}

/// `[rate_limit]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// Attempts per client network and per identity, per window.
    pub max_attempts: u32,
    /// The window, seconds.
    pub window_seconds: u64,
    /// Attempts per identity per 24 hours.
    pub max_attempts_per_day: u32,
    /// SMS codes per country calling code, per `sms_country_window_seconds`.
    pub max_sms_per_country: u32,
    /// That window, seconds.
    pub sms_country_window_seconds: u64,
    /// Invoices made without a credential (on behalf of a recipient, LNURL-pay) per
    /// client network, per `public_invoice_window_seconds`.
    pub max_public_invoices: u32,
    /// That window, seconds.
    pub public_invoice_window_seconds: u64,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        let r = RateLimitConfig::default();
        RateLimitSection {
            max_attempts: r.max_attempts,
            window_seconds: r.window.as_secs(),
            max_attempts_per_day: r.max_attempts_per_day,
            max_sms_per_country: r.max_sms_per_country,
            sms_country_window_seconds: r.sms_country_window.as_secs(),
            max_public_invoices: r.max_public_invoices,
            public_invoice_window_seconds: r.public_invoice_window.as_secs(),
        }
    }
}

/// `[ledger]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// Most postings written by one statement.
    pub max_batch: usize,
    /// Most account balances kept in the writer's memory.
    pub cache_capacity: usize,
    /// Postings that may wait for the writer before callers are slowed down.
    pub queue_depth: usize,
    /// Yields of the writer to gather more postings before a batch (0: off).
    pub gather_yields: usize,
}

impl Default for LedgerSection {
    fn default() -> Self {
        let l = LedgerConfig::default();
        LedgerSection {
            max_batch: l.max_batch,
            cache_capacity: l.cache_capacity,
            queue_depth: l.queue_depth,
            gather_yields: l.gather_yields,
        }
    }
}

/// `[bank]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BankSection {
    /// Seconds a login session lasts.
    pub session_ttl_seconds: u64,
    /// Seconds a one-time code is valid.
    pub code_ttl_seconds: u64,
    /// Seconds a registration may stay unverified.
    pub registration_ttl_seconds: u64,
    /// Wrong guesses allowed per one-time code.
    pub max_code_attempts: u32,
    /// Argon2id cost of new password hashes.
    pub password_cost: PasswordCost,
    /// Limits per KYC level over a rolling 24 hours, satoshis.
    pub limits: LimitsConfig,
    /// The resumer of payments left PENDING.
    pub resume: ResumeSection,
    /// Webhooks: the dispatcher and the delivery workers.
    pub webhooks: WebhooksSection,
}

/// `[bank.resume]`: every instance claims payments left PENDING and finishes them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResumeSection {
    /// Seconds between two passes.
    pub interval_seconds: u64,
    /// Age in seconds below which a PENDING payment is left to the instance making it.
    pub grace_seconds: u64,
    /// Seconds a claim keeps the other instances away.
    pub lease_seconds: u64,
    /// Most payments claimed per pass.
    pub batch: u32,
}

impl Default for ResumeSection {
    fn default() -> Self {
        let r = ResumeConfig::default();
        ResumeSection {
            interval_seconds: r.interval.as_secs(),
            grace_seconds: r.grace.as_secs(),
            lease_seconds: r.lease.as_secs(),
            batch: u32::try_from(r.batch).unwrap_or(100),
        }
    }
}

impl Default for BankSection {
    fn default() -> Self {
        let b = BankConfig::default();
        BankSection {
            session_ttl_seconds: b.session_ttl.as_secs(),
            code_ttl_seconds: b.code_ttl.as_secs(),
            registration_ttl_seconds: b.registration_ttl.as_secs(),
            max_code_attempts: u32::try_from(b.max_code_attempts).unwrap_or(5),
            password_cost: b.password_cost,
            limits: b.limits,
            resume: ResumeSection::default(),
            webhooks: WebhooksSection::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, with the fields of its spans.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Which events are written, as `RUST_LOG` (which overrides it when set).
    pub filter: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// The address of the Prometheus listener (`GET /metrics`); absent: no listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Seconds between two samples of the payment states and the connection pool.
    pub sample_seconds: u64,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            bind: None,
            sample_seconds: 15,
        }
    }
}

fn positive(key: &'static str, v: u64) -> Result<(), InvalidValue> {
    if v == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}

impl Config {
    /// Checks every value that its type alone does not.
    ///
    /// # Errors
    /// The first value that cannot be used, named by its key.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        positive("database.connections", self.database.connections.into())?;
        positive(
            "api.request_timeout_seconds",
            self.api.request_timeout_seconds,
        )?;
        positive("api.max_body_bytes", self.api.max_body_bytes as u64)?;
        self.cors_origins()?;
        self.forwarded_header()?;
        self.lnurl_config()?;
        positive("api.query.max_depth", self.api.query.max_depth as u64)?;
        positive(
            "api.websocket.recheck_seconds",
            self.api.websocket.recheck_seconds,
        )?;
        positive("rate_limit.window_seconds", self.rate_limit.window_seconds)?;
        positive(
            "rate_limit.sms_country_window_seconds",
            self.rate_limit.sms_country_window_seconds,
        )?;
        positive(
            "rate_limit.public_invoice_window_seconds",
            self.rate_limit.public_invoice_window_seconds,
        )?;
        positive("ledger.max_batch", self.ledger.max_batch as u64)?;
        positive("ledger.queue_depth", self.ledger.queue_depth as u64)?;
        positive("bank.session_ttl_seconds", self.bank.session_ttl_seconds)?;
        positive("bank.code_ttl_seconds", self.bank.code_ttl_seconds)?;
        positive(
            "bank.registration_ttl_seconds",
            self.bank.registration_ttl_seconds,
        )?;
        positive("bank.max_code_attempts", self.bank.max_code_attempts.into())?;
        if i32::try_from(self.bank.max_code_attempts).is_err() {
            return Err(invalid("bank.max_code_attempts", "too large"));
        }
        let resume = &self.bank.resume;
        positive("bank.resume.interval_seconds", resume.interval_seconds)?;
        positive("bank.resume.lease_seconds", resume.lease_seconds)?;
        positive("bank.resume.batch", resume.batch.into())?;
        self.webhook_config()?;
        let cost = self.bank.password_cost;
        argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| invalid("bank.password_cost", e.to_string()))?;
        self.notifier
            .check()
            .map_err(|e| invalid("notifier", e.to_string()))?;
        if let Some(ln) = &self.lightning {
            ln.bank_config().map_err(|e| invalid("lightning", e))?;
            ln.node_settings().map_err(|e| invalid("lightning", e))?;
        }
        if let Some(onchain) = &self.onchain {
            onchain
                .clone()
                .checked(std::path::Path::new("."))
                .map_err(|e| invalid("onchain", e))?;
            onchain
                .deposit_config()
                .map_err(|e| invalid("onchain.deposits", e))?;
        }
        if self
            .log
            .filter
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return Err(invalid(
                "log.filter",
                format!("{:?} is not a tracing filter", self.log.filter),
            ));
        }
        positive("metrics.sample_seconds", self.metrics.sample_seconds)?;
        Ok(())
    }

    fn cors_origins(&self) -> Result<Vec<axum::http::HeaderValue>, InvalidValue> {
        self.api
            .cors_origins
            .iter()
            .map(|o| {
                o.trim()
                    .parse()
                    .map_err(|_| invalid("api.cors_origins", format!("{o:?} is not an origin")))
            })
            .collect()
    }

    fn forwarded_header(&self) -> Result<ForwardedHeader, InvalidValue> {
        self.api
            .forwarded_header
            .parse()
            .map_err(|e: String| invalid("api.forwarded_header", e))
    }

    fn lnurl_config(&self) -> Result<LnurlConfig, InvalidValue> {
        let l = &self.api.lnurl;
        let public_url = self
            .api
            .public_url
            .as_deref()
            .map(str::parse::<PublicUrl>)
            .transpose()
            .map_err(|e| invalid("api.public_url", e))?;
        let sats = |key: &'static str, v: u64| {
            Sats::new(v).map_err(|_| invalid(key, "more than bitcoin's supply"))
        };
        let min = sats("api.lnurl.min_sendable_sats", l.min_sendable_sats)?;
        let max = sats("api.lnurl.max_sendable_sats", l.max_sendable_sats)?;
        positive("api.lnurl.min_sendable_sats", l.min_sendable_sats)?;
        if min > max {
            return Err(invalid(
                "api.lnurl.max_sendable_sats",
                "less than min_sendable_sats",
            ));
        }
        if l.comment_allowed > MAX_COMMENT_ALLOWED {
            return Err(invalid(
                "api.lnurl.comment_allowed",
                format!("at most {MAX_COMMENT_ALLOWED} (a BOLT 11 memo)"),
            ));
        }
        positive("api.lnurl.timeout_seconds", l.timeout_seconds)?;
        Ok(LnurlConfig {
            public_url,
            min_sendable: min,
            max_sendable: max,
            comment_allowed: l.comment_allowed,
            allow_loopback: l.allow_loopback,
            timeout: Duration::from_secs(l.timeout_seconds),
        })
    }

    /// The API's configuration.
    ///
    /// # Errors
    /// A value [`Config::validate`] refuses.
    pub fn api_config(&self) -> Result<ApiConfig, InvalidValue> {
        let (a, r, ws) = (&self.api, &self.rate_limit, &self.api.websocket);
        Ok(ApiConfig {
            dev_mode: a.dev,
            rate_limit: RateLimitConfig {
                max_attempts: r.max_attempts,
                window: Duration::from_secs(r.window_seconds),
                max_attempts_per_day: r.max_attempts_per_day,
                max_sms_per_country: r.max_sms_per_country,
                sms_country_window: Duration::from_secs(r.sms_country_window_seconds),
                max_public_invoices: r.max_public_invoices,
                public_invoice_window: Duration::from_secs(r.public_invoice_window_seconds),
            },
            max_query_depth: a.query.max_depth,
            max_query_complexity: a.query.max_complexity,
            max_query_cost: a.query.max_cost,
            request_timeout: Duration::from_secs(a.request_timeout_seconds),
            max_body_bytes: a.max_body_bytes,
            cors_allowed_origins: self.cors_origins()?,
            ws: WsConfig {
                max_connections: ws.max_connections,
                max_connections_per_credential: ws.max_connections_per_credential,
                max_operations_per_connection: ws.max_operations_per_connection,
                recheck_interval: Duration::from_secs(ws.recheck_seconds),
            },
            trusted_proxies: a.trusted_proxies.clone(),
            forwarded_header: self.forwarded_header()?,
            lnurl: self.lnurl_config()?,
        })
    }

    /// The bank's configuration.
    pub fn bank_config(&self) -> BankConfig {
        let b = &self.bank;
        BankConfig {
            limits: b.limits.clone(),
            session_ttl: Duration::from_secs(b.session_ttl_seconds),
            code_ttl: Duration::from_secs(b.code_ttl_seconds),
            registration_ttl: Duration::from_secs(b.registration_ttl_seconds),
            max_code_attempts: i32::try_from(b.max_code_attempts).unwrap_or(i32::MAX),
            password_cost: b.password_cost,
            auth_cache_ttl: Duration::from_secs(self.api.auth_cache_seconds),
        }
    }

    /// The payment resumer's configuration.
    pub fn resume_config(&self) -> ResumeConfig {
        let r = &self.bank.resume;
        ResumeConfig {
            interval: Duration::from_secs(r.interval_seconds),
            grace: Duration::from_secs(r.grace_seconds),
            lease: Duration::from_secs(r.lease_seconds),
            batch: r.batch.into(),
        }
    }

    /// The webhooks' configuration.
    ///
    /// # Errors
    /// A value of `[bank.webhooks]` that cannot be used.
    pub fn webhook_config(&self) -> Result<WebhookConfig, InvalidValue> {
        self.bank
            .webhooks
            .config()
            .map_err(|(key, why)| InvalidValue {
                key: match key {
                    "dispatch_interval_ms" => "bank.webhooks.dispatch_interval_ms",
                    "deliver_interval_ms" => "bank.webhooks.deliver_interval_ms",
                    "deliver_batch" => "bank.webhooks.deliver_batch",
                    "request_timeout_seconds" => "bank.webhooks.request_timeout_seconds",
                    "initial_backoff_ms" => "bank.webhooks.initial_backoff_ms",
                    "max_attempts" => "bank.webhooks.max_attempts",
                    "lease_seconds" => "bank.webhooks.lease_seconds",
                    _ => "bank.webhooks",
                },
                why: why.to_owned(),
            })
    }

    /// The ledger writer's configuration.
    pub fn ledger_config(&self) -> LedgerConfig {
        LedgerConfig {
            max_batch: self.ledger.max_batch,
            cache_capacity: self.ledger.cache_capacity,
            queue_depth: self.ledger.queue_depth,
            gather_yields: self.ledger.gather_yields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_those_of_the_parts() {
        let c = Config::default();
        c.validate().unwrap();
        let api = c.api_config().unwrap();
        let d = ApiConfig::default();
        assert_eq!(api.request_timeout, d.request_timeout);
        assert_eq!(api.max_query_cost, d.max_query_cost);
        assert_eq!(api.ws.max_connections, d.ws.max_connections);
        assert_eq!(api.rate_limit.window, d.rate_limit.window);
        let b = c.bank_config();
        let bd = BankConfig::default();
        assert_eq!(b.session_ttl, bd.session_ttl);
        assert_eq!(b.limits, bd.limits);
        assert_eq!(b.max_code_attempts, bd.max_code_attempts);
        assert_eq!(
            c.ledger_config().max_batch,
            LedgerConfig::default().max_batch
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = Config::default();
        c.api.forwarded_header = "x-real-ip".into();
        assert_eq!(c.validate().unwrap_err().key, "api.forwarded_header");
        let mut c = Config::default();
        c.api.cors_origins = vec!["https://ok.example".into(), "bad\norigin".into()];
        assert_eq!(c.validate().unwrap_err().key, "api.cors_origins");
        let mut c = Config::default();
        c.bank.password_cost.memory_kib = 1;
        assert_eq!(c.validate().unwrap_err().key, "bank.password_cost");
        let mut c = Config::default();
        c.log.filter = "info,[[[".into();
        assert_eq!(c.validate().unwrap_err().key, "log.filter");
        let mut c = Config::default();
        c.database.connections = 0;
        assert_eq!(c.validate().unwrap_err().key, "database.connections");
        let mut c = Config::default();
        c.bank.webhooks.lease_seconds = c.bank.webhooks.request_timeout_seconds;
        assert_eq!(c.validate().unwrap_err().key, "bank.webhooks.lease_seconds");
        for url in [
            "bank.example",
            "ftp://bank.example",
            "https://bank.example/api",
        ] {
            let mut c = Config::default();
            c.api.public_url = Some(url.into());
            assert_eq!(c.validate().unwrap_err().key, "api.public_url", "{url}");
        }
        let mut c = Config::default();
        c.api.lnurl.max_sendable_sats = 0;
        assert_eq!(c.validate().unwrap_err().key, "api.lnurl.max_sendable_sats");
        let mut c = Config::default();
        c.api.lnurl.max_sendable_sats = 21_000_001 * 100_000_000;
        assert_eq!(c.validate().unwrap_err().key, "api.lnurl.max_sendable_sats");
        let mut c = Config::default();
        c.api.lnurl.comment_allowed = 640;
        assert_eq!(c.validate().unwrap_err().key, "api.lnurl.comment_allowed");
    }

    #[test]
    fn the_public_url_names_the_lightning_address_domain() {
        let mut c = Config::default();
        assert!(c.api_config().unwrap().lnurl.public_url.is_none());
        c.api.public_url = Some("https://Bank.Example:8443".into());
        let lnurl = c.api_config().unwrap().lnurl;
        assert_eq!(lnurl.public_url.unwrap().domain(), "bank.example:8443");
        let text =
            "[api]\npublic_url = \"https://bank.example\"\n[api.lnurl]\ncomment_allowed = 0\n";
        let c: Config = toml::from_str(text).unwrap();
        let lnurl = c.api_config().unwrap().lnurl;
        assert_eq!(lnurl.public_url.unwrap().domain(), "bank.example");
        assert_eq!(lnurl.comment_allowed, 0);
    }
}
