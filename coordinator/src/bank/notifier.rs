//! Sending one-time codes to users.

use std::future::Future;
use std::pin::Pin;

use sqlx::PgPool;

use super::types::Identity;

/// A message to a user.
#[derive(Clone, Debug)]
pub struct Notification {
    /// Where to.
    pub to: Identity,
    /// Subject line (e-mail) or a short title.
    pub subject: String,
    /// Text. It may hold a one-time code: never log it.
    pub body: String,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("notifier: {0}")]
pub struct NotifyError(pub String);

/// Boxed future returned by [`Notifier::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;

/// Sends messages to users (e-mail or SMS). Not idempotent: a retry may send twice, which
/// for one-time codes is harmless.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Sends one message.
    fn send(&self, message: Notification) -> SendFuture<'_>;
}

/// The development and test notifier: writes each message to the `notification_outbox`
/// table, where tests (and a developer) read it.
#[derive(Clone, Debug)]
pub struct OutboxNotifier {
    pool: PgPool,
}

impl OutboxNotifier {
    /// A notifier writing to the outbox table of `pool`'s database.
    pub fn new(pool: PgPool) -> OutboxNotifier {
        OutboxNotifier { pool }
    }
}

impl Notifier for OutboxNotifier {
    fn send(&self, message: Notification) -> SendFuture<'_> {
        Box::pin(async move {
            let (channel, recipient) = match &message.to {
                Identity::Email(e) => ("email", e.as_str().to_owned()),
                Identity::Phone(p) => ("sms", p.as_str().to_owned()),
            };
            sqlx::query(
                "INSERT INTO notification_outbox (channel, recipient, subject, body) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(channel)
            .bind(recipient)
            .bind(&message.subject)
            .bind(&message.body)
            .execute(&self.pool)
            .await
            .map_err(|e| NotifyError(e.to_string()))?;
            Ok(())
        })
    }
}
