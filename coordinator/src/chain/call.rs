//! One call to a backend: a timeout on each attempt, exponential backoff between attempts of
//! idempotent calls, and the health state updated by every attempt.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Deserialize;

use super::error::ChainError;
use super::health::HealthTracker;

/// Timeouts and retries of every call to a chain source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallPolicy {
    /// Time allowed for one attempt (connect, request and answer), in milliseconds.
    pub timeout_ms: u64,
    /// Attempts after the first for an idempotent call that failed transiently.
    pub retries: u32,
    /// First backoff delay, in milliseconds (doubling, with jitter).
    pub min_backoff_ms: u64,
    /// Longest backoff delay, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout_ms: 5_000,
            retries: 3,
            min_backoff_ms: 100,
            max_backoff_ms: 2_000,
        }
    }
}

impl CallPolicy {
    /// The time allowed for one attempt.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.min_backoff_ms))
            .with_max_delay(Duration::from_millis(self.max_backoff_ms))
            .with_max_times(usize::try_from(self.retries).unwrap_or(usize::MAX))
            .with_jitter()
    }
}

/// Runs the calls of one adapter.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) source_name: &'static str,
    pub(crate) policy: CallPolicy,
    pub(crate) health: HealthTracker,
}

impl Caller {
    pub(crate) fn new(source_name: &'static str, endpoint: String, policy: CallPolicy) -> Caller {
        Caller {
            source_name,
            policy,
            health: HealthTracker::new(source_name, endpoint),
        }
    }

    /// An [`ChainError::Unavailable`] of this source.
    pub(crate) fn unavailable(&self, reason: impl Into<String>) -> ChainError {
        ChainError::Unavailable {
            source_name: self.source_name,
            reason: reason.into(),
        }
    }

    /// An [`ChainError::InvalidResponse`] of this source.
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> ChainError {
        ChainError::InvalidResponse {
            source_name: self.source_name,
            reason: reason.into(),
        }
    }

    /// One attempt under the timeout; the outcome goes into the health state.
    async fn attempt<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, ChainError>>,
    ) -> Result<T, ChainError> {
        let result = match tokio::time::timeout(self.policy.timeout(), fut).await {
            Ok(result) => result,
            Err(_) => Err(self.unavailable(format!(
                "{what}: no answer within {} ms",
                self.policy.timeout_ms
            ))),
        };
        match &result {
            // A refusal is an answer: the source is up.
            Ok(_) | Err(ChainError::Rejected { .. }) => self.health.success(),
            Err(e) => {
                tracing::warn!(source = self.source_name, call = what, error = %e, "chain source call failed");
                self.health.failure(&e.to_string());
            }
        }
        result
    }

    /// An idempotent call: attempts under the timeout, retried with backoff while the
    /// failure is transient.
    pub(crate) async fn idempotent<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ChainError>>,
    {
        (|| self.attempt(what, f()))
            .retry(self.policy.backoff())
            .sleep(tokio::time::sleep)
            .when(ChainError::is_transient)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn caller(retries: u32) -> Caller {
        Caller::new(
            "esplora",
            "http://127.0.0.1:1".into(),
            CallPolicy {
                timeout_ms: 50,
                retries,
                min_backoff_ms: 1,
                max_backoff_ms: 2,
            },
        )
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_reported() {
        let c = caller(2);
        let attempts = AtomicU32::new(0);
        let r: Result<(), _> = c
            .idempotent("tip", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(c.unavailable("connection refused"))
            })
            .await;
        assert!(matches!(r, Err(ChainError::Unavailable { .. })));
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            3,
            "first attempt and two retries"
        );
        assert_eq!(c.health.snapshot().consecutive_failures, 3);
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_count_as_up() {
        let c = caller(5);
        let attempts = AtomicU32::new(0);
        let r: Result<(), _> = c
            .idempotent("broadcast", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(ChainError::Rejected {
                    reason: "dust".into(),
                })
            })
            .await;
        assert!(matches!(r, Err(ChainError::Rejected { .. })));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert!(c.health.snapshot().is_up());
    }

    #[tokio::test]
    async fn a_hanging_attempt_times_out_as_unavailable() {
        let c = caller(0);
        let r: Result<(), _> = c
            .idempotent("tip", std::future::pending::<Result<(), ChainError>>)
            .await;
        match r {
            Err(ChainError::Unavailable { reason, .. }) => assert!(reason.contains("50 ms")),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn recovers_after_a_transient_failure() {
        let c = caller(3);
        let attempts = AtomicU32::new(0);
        let r = c
            .idempotent("tip", || async {
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(c.unavailable("connection reset"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r, Ok(7));
        assert!(c.health.snapshot().is_up());
    }
}
