//! In-process rate limits for registration, login and code requests: a fixed window per
//! key (`<operation>:ip:<address>` and `<operation>:id:<identity>`). One process keeps
//! its own counts; with several instances behind a balancer each allows the limit, which
//! is acceptable for slowing guessing (codes also have their own attempt limit in the
//! domain). Move the counters to PostgreSQL or a shared store when running more than one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::errors::ApiError;

/// How many attempts a key may make per window.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitConfig {
    /// Attempts per window.
    pub max_attempts: u32,
    /// The window.
    pub window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_attempts: 10,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Counts attempts per key.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Past this many keys, expired windows are dropped on the next check.
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    /// A limiter.
    pub fn new(config: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            config,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`.
    ///
    /// # Errors
    /// [`ApiError::rate_limited`] once the key has used up its window.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= PRUNE_AT {
            let window = self.config.window;
            windows.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.config.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.config.max_attempts {
            return Err(ApiError::rate_limited());
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_window() {
        let l = RateLimiter::new(RateLimitConfig {
            max_attempts: 2,
            window: Duration::from_secs(3600),
        });
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert_eq!(l.check("a").unwrap_err().code, "RATE_LIMITED");
        assert!(l.check("b").is_ok());
        let l = RateLimiter::new(RateLimitConfig {
            max_attempts: 1,
            window: Duration::ZERO,
        });
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok(), "a new window starts");
    }
}
