//! Callback endpoints: an account's URLs and their signing secrets.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::WebhookError;
use super::sign::SigningSecret;
use crate::ids::AccountId;

/// Endpoints one account may have.
pub const MAX_ENDPOINTS_PER_ACCOUNT: i64 = 10;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A callback endpoint's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(Uuid);

impl EndpointId {
    /// Wraps a stored id.
    pub const fn from_uuid(id: Uuid) -> Self {
        EndpointId(id)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for EndpointId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(EndpointId)
    }
}

/// A URL events may be sent to: `https`, or `http` to a loopback host (local development
/// and tests); no credentials or fragment; not an IP literal of a private, link-local or
/// unspecified network (cloud metadata, the bank's own services).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_loopback()
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // fc00::/7 (unique local) and fe80::/10 (link-local).
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl std::str::FromStr for EndpointUrl {
    type Err = WebhookError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| WebhookError::InvalidUrl(why.to_owned());
        let s = s.trim();
        if s.is_empty() || s.len() > MAX_URL_LEN {
            return Err(bad("must be 1 to 2048 characters"));
        }
        let url = reqwest::Url::parse(s).map_err(|_| bad("not a URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        if url.fragment().is_some() {
            return Err(bad("must not have a fragment"));
        }
        let host = url.host_str().ok_or_else(|| bad("has no host"))?;
        let ip: Option<IpAddr> = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        let loopback =
            host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|i| i.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(bad("must use https (http only to a loopback host)")),
            _ => return Err(bad("must use https")),
        }
        if url.scheme() == "https" && ip.is_some_and(private_ip) {
            return Err(bad(
                "must not name a private, loopback or link-local address",
            ));
        }
        Ok(EndpointUrl(url.to_string()))
    }
}

/// A stored endpoint (its secret stays in the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Where events go.
    pub url: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// What [`add_endpoint`] did.
#[derive(Debug)]
pub struct Added {
    /// The endpoint.
    pub id: EndpointId,
    /// Its secret when this call created it; `None` when the account had the URL already
    /// (the secret is shown once: delete and add again for a new one).
    pub secret: Option<SigningSecret>,
}

/// Adds `url` to the account's endpoints with a fresh secret, or answers the existing
/// endpoint of the same URL (idempotent).
///
/// # Errors
/// [`WebhookError::TooManyEndpoints`] at [`MAX_ENDPOINTS_PER_ACCOUNT`]; the database.
pub async fn add_endpoint(
    pool: &PgPool,
    account: AccountId,
    url: &EndpointUrl,
) -> Result<Added, WebhookError> {
    let mut tx = pool.begin().await?;
    // Serialises this account's additions, so that two at once cannot pass the cap.
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(account.as_uuid())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(WebhookError::NotFound)?;
    let existing: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE account_id = $1 AND url = $2")
            .bind(account.as_uuid())
            .bind(url.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(id) = existing {
        return Ok(Added {
            id: EndpointId(id),
            secret: None,
        });
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE account_id = $1")
            .bind(account.as_uuid())
            .fetch_one(&mut *tx)
            .await?;
    if count >= MAX_ENDPOINTS_PER_ACCOUNT {
        return Err(WebhookError::TooManyEndpoints {
            max: MAX_ENDPOINTS_PER_ACCOUNT,
        });
    }
    let id = Uuid::now_v7();
    let secret = SigningSecret::generate();
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, account_id, url, secret) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(account.as_uuid())
    .bind(url.as_str())
    .bind(secret.expose())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(account = %account, endpoint = %id, "callback endpoint added");
    Ok(Added {
        id: EndpointId(id),
        secret: Some(secret),
    })
}

/// Deletes one of the account's endpoints and its undelivered events.
///
/// # Errors
/// [`WebhookError::NotFound`] when the account has no such endpoint (another account's
/// answers the same); the database.
pub async fn delete_endpoint(
    pool: &PgPool,
    account: AccountId,
    id: EndpointId,
) -> Result<(), WebhookError> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND account_id = $2")
        .bind(id.as_uuid())
        .bind(account.as_uuid())
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(WebhookError::NotFound);
    }
    tracing::info!(account = %account, endpoint = %id, "callback endpoint deleted");
    Ok(())
}

/// The account's endpoints, oldest first.
///
/// # Errors
/// The database.
pub async fn endpoints(pool: &PgPool, account: AccountId) -> Result<Vec<Endpoint>, WebhookError> {
    let rows = sqlx::query(
        "SELECT id, url, created_at FROM webhook_endpoints WHERE account_id = $1 ORDER BY id",
    )
    .bind(account.as_uuid())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Endpoint {
                id: EndpointId(r.try_get("id")?),
                url: r.try_get("url")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "https://example.com/hook",
            "https://example.com:8443/a?b=c",
            "http://127.0.0.1:9000/sink",
            "http://localhost/x",
            "http://[::1]:80/",
            "https://8.8.8.8/",
        ] {
            assert!(ok.parse::<EndpointUrl>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "ftp://example.com/",
            "http://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[fd00::1]/",
            "javascript:alert(1)",
        ] {
            assert!(bad.parse::<EndpointUrl>().is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(long.parse::<EndpointUrl>().is_err());
    }
}
