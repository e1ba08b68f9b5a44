//! Webhooks for payment events, with Blink's names (callback endpoints) and Svix's
//! signature format (docs/adr/0017-webhooks.md).
//!
//! - [`store`]: an account's endpoints and their signing secrets.
//! - [`dispatch`]: one cursor over the ledger outbox, persisted and moved in the
//!   transaction that inserts the deliveries of the events it passes.
//! - [`deliver`]: workers claim due deliveries (`FOR UPDATE SKIP LOCKED`, the oldest
//!   undelivered one of each endpoint only, so an endpoint receives events in order), POST
//!   them signed, and retry with exponential backoff until they are delivered or dead.
//! - [`sign`]: signing and verifying in Svix's format.

pub mod deliver;
pub mod dispatch;
pub mod sign;
pub mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::bank::Bank;

pub use deliver::{DeliveryReport, deliver_due};
pub use dispatch::{DispatchReport, dispatch_once};
pub use sign::{SigningSecret, VerifyError};
pub use store::{
    Added, Endpoint, EndpointId, EndpointUrl, MAX_ENDPOINTS_PER_ACCOUNT, add_endpoint,
    delete_endpoint, endpoints,
};

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL cannot be used.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The account has as many endpoints as it may.
    #[error("too many callback endpoints: at most {max} per account")]
    TooManyEndpoints {
        /// The cap.
        max: i64,
    },
    /// No such endpoint on this account (or no such account).
    #[error("callback endpoint not found")]
    NotFound,
    /// A stored value that cannot be read.
    #[error("webhooks: corrupt stored value: {0}")]
    Corrupt(String),
    /// PostgreSQL.
    #[error("webhooks: database: {0}")]
    Database(#[from] sqlx::Error),
    /// The ledger (reading the outbox).
    #[error("webhooks: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The bank (reading a wallet's side of a transaction).
    #[error("webhooks: {0}")]
    Bank(#[from] crate::bank::BankError),
}

/// How the dispatcher and the delivery workers run.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Time between two dispatcher passes when the outbox had nothing new.
    pub dispatch_interval: Duration,
    /// Outbox events read per dispatcher pass at most.
    pub dispatch_batch: i64,
    /// Time between two delivery passes when nothing was due.
    pub deliver_interval: Duration,
    /// Deliveries claimed per pass at most (sent concurrently: one per endpoint).
    pub deliver_batch: i64,
    /// Time a POST may take.
    pub request_timeout: Duration,
    /// How long a claim keeps other workers away; longer than `request_timeout`.
    pub lease: Duration,
    /// The first retry's delay; each next one doubles, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts.
    pub max_backoff: Duration,
    /// Attempts after which a delivery is dead.
    pub max_attempts: i32,
    /// Age after which a failing delivery is dead.
    pub max_age: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            dispatch_interval: Duration::from_millis(500),
            dispatch_batch: 500,
            deliver_interval: Duration::from_millis(500),
            deliver_batch: 50,
            request_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60 * 60),
            max_attempts: 12,
            max_age: Duration::from_secs(3 * 24 * 60 * 60),
        }
    }
}

/// `[bank.webhooks]` of the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Run the dispatcher and the delivery workers in this instance.
    pub enabled: bool,
    /// Milliseconds between two dispatcher passes when the outbox had nothing new.
    pub dispatch_interval_ms: u64,
    /// Milliseconds between two delivery passes when nothing was due.
    pub deliver_interval_ms: u64,
    /// Deliveries claimed per pass at most.
    pub deliver_batch: u32,
    /// Seconds a POST may take.
    pub request_timeout_seconds: u64,
    /// Seconds a claim keeps other instances away.
    pub lease_seconds: u64,
    /// Milliseconds before the first retry (doubling each time).
    pub initial_backoff_ms: u64,
    /// Longest delay between two attempts, seconds.
    pub max_backoff_seconds: u64,
    /// Attempts after which a delivery is dead.
    pub max_attempts: u32,
    /// Age in seconds after which a failing delivery is dead.
    pub max_age_seconds: u64,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        let c = WebhookConfig::default();
        WebhooksSection {
            enabled: true,
            dispatch_interval_ms: millis(c.dispatch_interval),
            deliver_interval_ms: millis(c.deliver_interval),
            deliver_batch: u32::try_from(c.deliver_batch).unwrap_or(50),
            request_timeout_seconds: c.request_timeout.as_secs(),
            lease_seconds: c.lease.as_secs(),
            initial_backoff_ms: millis(c.initial_backoff),
            max_backoff_seconds: c.max_backoff.as_secs(),
            max_attempts: u32::try_from(c.max_attempts).unwrap_or(12),
            max_age_seconds: c.max_age.as_secs(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl WebhooksSection {
    /// The runtime configuration.
    ///
    /// # Errors
    /// The dotted key (under `bank.webhooks`) of a value that cannot be used, and why.
    pub fn config(&self) -> Result<WebhookConfig, (&'static str, &'static str)> {
        let positive = |key, v: u64| {
            if v == 0 {
                Err((key, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("dispatch_interval_ms", self.dispatch_interval_ms)?;
        positive("deliver_interval_ms", self.deliver_interval_ms)?;
        positive("deliver_batch", self.deliver_batch.into())?;
        positive("request_timeout_seconds", self.request_timeout_seconds)?;
        positive("initial_backoff_ms", self.initial_backoff_ms)?;
        positive("max_attempts", self.max_attempts.into())?;
        if self.lease_seconds <= self.request_timeout_seconds {
            // A lease that lapses during a POST would let another instance send it again.
            return Err(("lease_seconds", "must exceed request_timeout_seconds"));
        }
        Ok(WebhookConfig {
            dispatch_interval: Duration::from_millis(self.dispatch_interval_ms),
            dispatch_batch: WebhookConfig::default().dispatch_batch,
            deliver_interval: Duration::from_millis(self.deliver_interval_ms),
            deliver_batch: self.deliver_batch.into(),
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            lease: Duration::from_secs(self.lease_seconds),
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_secs(self.max_backoff_seconds.max(1)),
            max_attempts: i32::try_from(self.max_attempts).unwrap_or(i32::MAX),
            max_age: Duration::from_secs(self.max_age_seconds),
        })
    }
}

/// The running dispatcher and delivery worker of one instance; both stop when dropped.
#[derive(Debug)]
pub struct WebhooksHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for WebhooksHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts this instance's dispatcher and delivery worker. Every instance may run them:
/// the cursor row and the claims keep them from doing the same work twice.
///
/// # Errors
/// The HTTP client cannot be built (no TLS roots).
pub fn spawn(bank: Bank, config: WebhookConfig) -> Result<WebhooksHandle, WebhookError> {
    let client = deliver::client(&config)?;
    let dispatcher = {
        let (bank, config) = (bank.clone(), config.clone());
        tokio::spawn(async move {
            loop {
                let more = match dispatch_once(&bank, &config).await {
                    Ok(r) => r.more,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook dispatch failed; retrying");
                        false
                    }
                };
                if !more {
                    tokio::time::sleep(config.dispatch_interval).await;
                }
            }
        })
    };
    let worker = tokio::spawn(async move {
        let pool = bank.ledger().pool().clone();
        loop {
            let claimed = match deliver_due(&pool, &client, &config).await {
                Ok(r) => r.claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery pass failed; retrying");
                    0
                }
            };
            if claimed == 0 {
                tokio::time::sleep(config.deliver_interval).await;
            }
        }
    });
    Ok(WebhooksHandle {
        tasks: vec![dispatcher, worker],
    })
}
