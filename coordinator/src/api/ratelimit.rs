//! Rate limits of the operations that guess or send: registration, code requests, logins
//! (password and code), password resets and staff logins; and of the invoices anyone may
//! ask for without a credential (on behalf of a recipient, LNURL-pay callbacks). One
//! limiter for GraphQL, REST, LNURL and the admin API, so switching API buys no attempts.
//!
//! The counters live in PostgreSQL (`rate_limit_counters`, migration 0008): every
//! instance shares them, so two coordinators behind a balancer allow the limit once, not
//! twice. One statement counts all of a request's keys (a fixed window per key, written
//! with one upsert), so a check costs one round trip. A request is counted whether it
//! succeeds or not.
//!
//! Keys per attempt (ADR 0011):
//! - `<op>:net:<client>`: the client's address, an IPv6 client by its /64 (one host
//!   usually holds a whole /64, so per address would give it 2^64 tries);
//! - `<op>:id:<identity>` per window and `<op>:day:<identity>` per 24 hours: caps the
//!   slow guessing that rotates addresses (with 5 tries per code, a daily cap of 20
//!   logins is 20 guesses a day at most, instead of the ~960 of a 15-minute window alone);
//! - for operations that send a code to a phone, `sms:cc:<country calling code>`: caps
//!   SMS pumping (traffic to premium ranges of one country) across identities;
//! - `invoice:net:<client>` for invoices made without a credential: every one is a row and
//!   a node invoice, so a flood is capped per client network. Not per recipient: that
//!   would let anyone stop a popular address from being paid.
//!
//! A code itself dies after `BankConfig::max_code_attempts` wrong tries (the domain).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;

use super::errors::ApiError;
use crate::bank::Identity;
use crate::ids::AccountId;

/// A counter after one more attempt.
#[derive(Debug, sqlx::FromRow)]
struct Counted {
    key: String,
    hits: i32,
}

/// How many attempts the keys of an operation may make.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitConfig {
    /// Attempts per client network and per identity, per window.
    pub max_attempts: u32,
    /// The window.
    pub window: Duration,
    /// Attempts per identity per 24 hours.
    pub max_attempts_per_day: u32,
    /// Codes sent by SMS per country calling code, per `sms_country_window`.
    pub max_sms_per_country: u32,
    /// The window of `max_sms_per_country`.
    pub sms_country_window: Duration,
    /// Invoices made without a credential per client network, per `public_invoice_window`.
    pub max_public_invoices: u32,
    /// The window of `max_public_invoices`.
    pub public_invoice_window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_attempts: 10,
            window: Duration::from_secs(15 * 60),
            max_attempts_per_day: 20,
            max_sms_per_country: 500,
            sms_country_window: Duration::from_secs(3600),
            // A payer's server asking for its users' invoices stays well under this.
            max_public_invoices: 120,
            public_invoice_window: Duration::from_secs(60),
        }
    }
}

/// An operation with its own counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitedOp {
    /// Registration (sends a code).
    Register,
    /// A code request or a password reset request (sends a code).
    Code,
    /// A login, a code confirmation, a password change or reset (guesses a secret).
    Login,
    /// A staff login.
    StaffLogin,
}

impl LimitedOp {
    fn name(self) -> &'static str {
        match self {
            LimitedOp::Register => "register",
            LimitedOp::Code => "code",
            LimitedOp::Login => "login",
            LimitedOp::StaffLogin => "staff-login",
        }
    }

    fn sends_code(self) -> bool {
        matches!(self, LimitedOp::Register | LimitedOp::Code)
    }
}

/// Counts attempts in PostgreSQL.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    pool: PgPool,
    checks: AtomicU64,
}

/// Every this many checks, counters of windows long past are deleted.
const PRUNE_EVERY: u64 = 1_000;

impl RateLimiter {
    /// A limiter over the coordinator's database (migrated).
    pub fn new(config: RateLimitConfig, pool: PgPool) -> RateLimiter {
        RateLimiter {
            config,
            pool,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one attempt of `op` from `client` (an IP address as text) for `identity`.
    ///
    /// # Errors
    /// [`ApiError::rate_limited`] once any of its keys has used up its window;
    /// an internal error if the counters cannot be read.
    pub async fn check(
        &self,
        op: LimitedOp,
        client: &str,
        identity: &Identity,
    ) -> Result<(), ApiError> {
        let mut keys = self.client_and_subject(op, client, &identity.to_string());
        if let (true, Identity::Phone(p)) = (op.sends_code(), identity) {
            keys.push((
                format!("sms:cc:{}", country_calling_code(p.as_str())),
                self.config.max_sms_per_country,
                self.config.sms_country_window,
            ));
        }
        self.count(keys).await
    }

    /// [`RateLimiter::check`] for an operation of a logged-in user (keyed by account).
    ///
    /// # Errors
    /// As [`RateLimiter::check`].
    pub async fn check_account(
        &self,
        op: LimitedOp,
        client: &str,
        account: AccountId,
    ) -> Result<(), ApiError> {
        let keys = self.client_and_subject(op, client, &format!("account:{account}"));
        self.count(keys).await
    }

    /// [`RateLimiter::check`] for a staff login (by e-mail).
    ///
    /// # Errors
    /// As [`RateLimiter::check`].
    pub async fn check_staff(&self, client: &str, email: &str) -> Result<(), ApiError> {
        let keys = self.client_and_subject(LimitedOp::StaffLogin, client, email);
        self.count(keys).await
    }

    /// Counts one invoice asked for without a credential (on behalf of a recipient, or an
    /// LNURL-pay callback) from `client`.
    ///
    /// # Errors
    /// As [`RateLimiter::check`].
    pub async fn check_public_invoice(&self, client: &str) -> Result<(), ApiError> {
        let c = &self.config;
        let key = format!("invoice:net:{}", client_network(client));
        self.count(vec![(key, c.max_public_invoices, c.public_invoice_window)])
            .await
    }

    fn client_and_subject(
        &self,
        op: LimitedOp,
        client: &str,
        subject: &str,
    ) -> Vec<(String, u32, Duration)> {
        let c = &self.config;
        let op = op.name();
        vec![
            (
                format!("{op}:net:{}", client_network(client)),
                c.max_attempts,
                c.window,
            ),
            (format!("{op}:id:{subject}"), c.max_attempts, c.window),
            (
                format!("{op}:day:{subject}"),
                c.max_attempts_per_day,
                Duration::from_secs(24 * 3600),
            ),
        ]
    }

    /// Counts one attempt on every key in one statement; fails if any key is over.
    async fn count(&self, mut keys: Vec<(String, u32, Duration)>) -> Result<(), ApiError> {
        // Always the same lock order, so concurrent checks of overlapping keys cannot
        // deadlock.
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.dedup_by(|a, b| a.0 == b.0);
        let names: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let windows: Vec<f64> = keys.iter().map(|k| k.2.as_secs_f64()).collect();
        let rows: Vec<Counted> = sqlx::query_as(
            "INSERT INTO rate_limit_counters AS c (key, window_secs, window_start, hits) \
             SELECT k, w, now(), 1 FROM unnest($1::text[], $2::float8[]) AS t(k, w) ORDER BY k \
             ON CONFLICT (key) DO UPDATE SET \
               window_start = CASE WHEN c.window_start \
                   <= now() - make_interval(secs => EXCLUDED.window_secs) \
                 THEN now() ELSE c.window_start END, \
               hits = CASE WHEN c.window_start \
                   <= now() - make_interval(secs => EXCLUDED.window_secs) \
                 THEN 1 ELSE least(c.hits + 1, 1000000000) END, \
               window_secs = EXCLUDED.window_secs \
             RETURNING key, hits",
        )
        .bind(&names)
        .bind(&windows)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune().await;
        }
        let over = rows.iter().find(|row| {
            keys.iter()
                .find(|k| k.0 == row.key)
                .is_some_and(|k| i64::from(row.hits) > i64::from(k.1))
        });
        if let Some(row) = over {
            // The key's operation and kind (`login:net`, `sms:cc`...), never the client or
            // the identity: a bounded label set.
            let limit: String = row.key.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
            metrics::counter!("bastion_rate_limited_total", "limit" => limit).increment(1);
            return Err(ApiError::rate_limited());
        }
        Ok(())
    }

    /// Deletes counters whose window ended (a bounded batch; failures only logged).
    async fn prune(&self) {
        if let Err(e) = sqlx::query(
            "DELETE FROM rate_limit_counters WHERE key IN ( \
               SELECT key FROM rate_limit_counters \
               WHERE window_start < now() - make_interval(secs => window_secs) LIMIT 10000)",
        )
        .execute(&self.pool)
        .await
        {
            tracing::warn!(error = %e, "could not prune rate limit counters");
        }
    }
}

/// The network a client is counted by: an IPv4 address, or an IPv6 address's /64 (an
/// IPv4-mapped IPv6 address is its IPv4 address).
pub(crate) fn client_network(client: &str) -> String {
    match client.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => client.to_owned(),
    }
}

/// The ITU-T E.164 country calling code of an E.164 number (`+41...` is `41`). Codes are
/// prefix-free: `1` and `7` are one digit; the two-digit codes are listed; every other
/// code has three digits.
pub(crate) fn country_calling_code(e164: &str) -> &str {
    const TWO_DIGITS: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    let digits = e164.strip_prefix('+').unwrap_or(e164);
    let len = match digits.as_bytes().first() {
        Some(b'1' | b'7') => 1,
        _ if digits.get(..2).is_some_and(|p| TWO_DIGITS.contains(&p)) => 2,
        _ => 3,
    };
    digits.get(..len).unwrap_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            client_network("2001:db8:1:2:aaaa::1"),
            client_network("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(
            client_network("2001:db8:1:2::1"),
            client_network("2001:db8:1:3::1")
        );
        assert_eq!(client_network("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_network("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn country_calling_codes_follow_e164() {
        for (number, code) in [
            ("+14155550100", "1"),
            ("+79161234567", "7"),
            ("+41791234567", "41"),
            ("+447700900123", "44"),
            ("+2250700000000", "225"),
            ("+351912345678", "351"),
            ("+8801712345678", "880"),
            ("+8613800138000", "86"),
        ] {
            assert_eq!(country_calling_code(number), code, "{number}");
        }
    }
}
