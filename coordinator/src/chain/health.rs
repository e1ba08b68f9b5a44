//! The health of a chain source, as its own calls found it.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What the last calls to a chain source found. Operators read it from readiness; callers
/// use [`ChainHealth::is_up`] to decide whether to wait before the next call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHealth {
    /// `esplora` or `bitcoind`.
    pub backend: &'static str,
    /// The endpoint, without credentials.
    pub endpoint: String,
    /// When a call last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// When a call (one attempt) last failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Attempts that failed since the last success.
    pub consecutive_failures: u32,
}

impl ChainHealth {
    /// A source that has answered and whose last attempt succeeded.
    pub fn is_up(&self) -> bool {
        self.last_success.is_some() && self.consecutive_failures == 0
    }
}

/// Shared, updated by every attempt.
#[derive(Debug)]
pub(crate) struct HealthTracker {
    state: Mutex<ChainHealth>,
}

impl HealthTracker {
    pub(crate) fn new(backend: &'static str, endpoint: String) -> HealthTracker {
        HealthTracker {
            state: Mutex::new(ChainHealth {
                backend,
                endpoint,
                last_success: None,
                last_error_at: None,
                last_error: None,
                consecutive_failures: 0,
            }),
        }
    }

    pub(crate) fn snapshot(&self) -> ChainHealth {
        // A poisoned lock only means a panic elsewhere mid-update of plain fields: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn success(&self) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.last_success = Some(Utc::now());
        s.consecutive_failures = 0;
    }

    pub(crate) fn failure(&self, reason: &str) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.last_error_at = Some(Utc::now());
        s.last_error = Some(reason.to_owned());
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_until_a_success() {
        let h = HealthTracker::new("esplora", "http://127.0.0.1:1".into());
        assert!(!h.snapshot().is_up(), "never answered is not up");
        h.failure("connection refused");
        h.failure("timeout");
        let s = h.snapshot();
        assert_eq!(s.consecutive_failures, 2);
        assert_eq!(s.last_error.as_deref(), Some("timeout"));
        h.success();
        let s = h.snapshot();
        assert!(s.is_up());
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(
            s.last_error.as_deref(),
            Some("timeout"),
            "last error is kept"
        );
    }
}
