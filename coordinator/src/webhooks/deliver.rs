//! Delivery workers: claim due deliveries, POST them signed, record the outcome.
//!
//! A claim takes the oldest undelivered delivery of each endpoint only (`NOT EXISTS` an
//! earlier pending one), so an endpoint receives its events in order and at most one at a
//! time; `FOR UPDATE SKIP LOCKED` and a lease (`claimed_until`, longer than a POST may
//! take) keep two workers, on any instances, from sending the same delivery at once. The
//! outcome is recorded only by the claim that sent it (`claim` token). A failure is retried
//! with exponential backoff and jitter until `max_attempts` or `max_age`, then the delivery
//! is dead (it no longer holds the endpoint's later events back). Delivery is at least
//! once: a crash after the POST and before the record sends it again after the lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::{PgPool, Row};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::sign::SigningSecret;
use super::{WebhookConfig, WebhookError};

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Deliveries claimed (and attempted).
    pub claimed: usize,
    /// Of those, delivered (a 2xx answer).
    pub delivered: usize,
    /// Of those, failed and scheduled again.
    pub retried: usize,
    /// Of those, failed for the last time.
    pub dead: usize,
}

/// The HTTP client of the workers: a timeout on every call, and no redirects (an endpoint
/// must not send the bank's requests elsewhere).
///
/// # Errors
/// [`WebhookError::Corrupt`] if the TLS stack cannot start.
pub fn client(config: &WebhookConfig) -> Result<reqwest::Client, WebhookError> {
    reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("bastion-webhooks")
        .build()
        .map_err(|e| WebhookError::Corrupt(format!("http client: {e}")))
}

const CLAIM: &str = "
UPDATE webhook_deliveries d
SET claimed_until = now() + make_interval(secs => $1), claim = $2, attempts = d.attempts + 1
FROM (
    SELECT x.id FROM webhook_deliveries x
    WHERE x.state = 'pending'
      AND x.next_attempt_at <= now()
      AND (x.claimed_until IS NULL OR x.claimed_until < now())
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries y
          WHERE y.endpoint_id = x.endpoint_id AND y.state = 'pending' AND y.seq < x.seq)
    ORDER BY x.seq
    LIMIT $3
    FOR UPDATE OF x SKIP LOCKED
) c, webhook_endpoints e
WHERE d.id = c.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.payload, d.attempts, d.created_at, e.url, e.secret";

struct Claimed {
    id: Uuid,
    endpoint: Uuid,
    payload: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    url: String,
    secret: SigningSecret,
}

enum Outcome {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

/// The delay before attempt `attempts + 1`: `initial * 2^(attempts-1)`, capped, with
/// jitter (between half and all of it) so that endpoints coming back are not hit at once.
pub fn backoff(config: &WebhookConfig, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    let full = config
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(exp))
        .min(config.max_backoff);
    let half = full / 2;
    half + full
        .saturating_sub(half)
        .mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

/// One delivery pass: claims due deliveries (one per endpoint), sends them concurrently,
/// records each outcome.
///
/// # Errors
/// The database, when the claim fails (a failed record is logged; the lease lapses and
/// the delivery is sent again).
pub async fn deliver_due(
    pool: &PgPool,
    client: &reqwest::Client,
    config: &WebhookConfig,
) -> Result<DeliveryReport, WebhookError> {
    let claim = Uuid::now_v7();
    let rows = sqlx::query(CLAIM)
        .bind(config.lease.as_secs_f64())
        .bind(claim)
        .bind(config.deliver_batch)
        .fetch_all(pool)
        .await?;
    let mut report = DeliveryReport {
        claimed: rows.len(),
        ..DeliveryReport::default()
    };
    let mut sends = JoinSet::new();
    for r in rows {
        let secret: String = r.try_get("secret")?;
        let c = Claimed {
            id: r.try_get("id")?,
            endpoint: r.try_get("endpoint_id")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
            created_at: r.try_get("created_at")?,
            url: r.try_get("url")?,
            secret: SigningSecret::parse(&secret)
                .map_err(|_| WebhookError::Corrupt("endpoint secret".to_owned()))?,
        };
        let client = client.clone();
        sends.spawn(async move {
            let outcome = send(&client, &c).await;
            (c, outcome)
        });
    }
    while let Some(done) = sends.join_next().await {
        let Ok((c, outcome)) = done else {
            continue;
        };
        match record(pool, config, claim, &c, outcome).await {
            Ok(State::Delivered) => report.delivered += 1,
            Ok(State::Retry) => report.retried += 1,
            Ok(State::Dead) => report.dead += 1,
            Err(e) => {
                tracing::warn!(delivery = %c.id, error = %e, "recording a webhook delivery failed; it will be sent again");
            }
        }
    }
    Ok(report)
}

async fn send(client: &reqwest::Client, c: &Claimed) -> Outcome {
    let id = c.id.to_string();
    let timestamp = Utc::now().timestamp();
    let signature = match c.secret.sign(&id, timestamp, c.payload.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failed {
                status: None,
                error: e.to_string(),
            };
        }
    };
    let sent = client
        .post(&c.url)
        .header("content-type", "application/json")
        .header("svix-id", &id)
        .header("svix-timestamp", timestamp.to_string())
        .header("svix-signature", signature)
        .body(c.payload.clone())
        .send()
        .await;
    match sent {
        Ok(res) if res.status().is_success() => Outcome::Delivered(res.status().as_u16()),
        Ok(res) => Outcome::Failed {
            status: Some(res.status().as_u16()),
            error: format!("status {}", res.status().as_u16()),
        },
        // Without the URL: its query may carry the receiver's own token.
        Err(e) => Outcome::Failed {
            status: None,
            error: e.without_url().to_string(),
        },
    }
}

enum State {
    Delivered,
    Retry,
    Dead,
}

async fn record(
    pool: &PgPool,
    config: &WebhookConfig,
    claim: Uuid,
    c: &Claimed,
    outcome: Outcome,
) -> Result<State, WebhookError> {
    let (state, status, error) = match outcome {
        Outcome::Delivered(status) => {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now(), \
                 claimed_until = NULL, last_status = $3, last_error = NULL \
                 WHERE id = $1 AND claim = $2",
            )
            .bind(c.id)
            .bind(claim)
            .bind(i32::from(status))
            .execute(pool)
            .await?;
            metrics::counter!("bastion_webhook_deliveries_total", "outcome" => "delivered")
                .increment(1);
            return Ok(State::Delivered);
        }
        Outcome::Failed { status, error } => {
            let too_old = Utc::now() - c.created_at
                >= chrono::Duration::from_std(config.max_age).unwrap_or(chrono::Duration::MAX);
            let state = if c.attempts >= config.max_attempts || too_old {
                State::Dead
            } else {
                State::Retry
            };
            (state, status, error)
        }
    };
    let delay = backoff(config, c.attempts);
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $3, claimed_until = NULL, \
         next_attempt_at = now() + make_interval(secs => $4), last_status = $5, last_error = $6 \
         WHERE id = $1 AND claim = $2",
    )
    .bind(c.id)
    .bind(claim)
    .bind(match state {
        State::Dead => "dead",
        _ => "pending",
    })
    .bind(delay.as_secs_f64())
    .bind(status.map(i32::from))
    .bind(&error)
    .execute(pool)
    .await?;
    let outcome = match state {
        State::Dead => {
            tracing::warn!(delivery = %c.id, endpoint = %c.endpoint, attempts = c.attempts, %error, "webhook delivery dead");
            "dead"
        }
        _ => {
            tracing::info!(delivery = %c.id, endpoint = %c.endpoint, attempts = c.attempts, %error, "webhook delivery failed; retrying");
            "retry"
        }
    };
    metrics::counter!("bastion_webhook_deliveries_total", "outcome" => outcome).increment(1);
    Ok(state)
}
