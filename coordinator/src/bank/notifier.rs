//! Sending one-time codes to users.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::PgPool;

use super::secrets::Secret;
use super::types::Identity;

/// A message to a user.
#[derive(Clone, Debug)]
pub struct Notification {
    /// Where to.
    pub to: Identity,
    /// Subject line (e-mail) or a short title.
    pub subject: String,
    /// Text. It may hold a one-time code, so it is a [`Secret`]: redacted in `Debug`,
    /// zeroized on drop. Never log it.
    pub body: Secret,
}

/// Why a one-time code is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    /// Confirming a registration.
    Verify,
    /// Logging in.
    Login,
    /// Changing or resetting the password.
    PasswordReset,
}

impl Notification {
    /// The message carrying a one-time code: a subject that says what it is for and a
    /// short body with the code and its lifetime.
    pub fn one_time_code(
        to: Identity,
        purpose: CodePurpose,
        code: &Secret,
        ttl: Duration,
    ) -> Notification {
        let minutes = (ttl.as_secs() / 60).max(1);
        let (subject, what) = match purpose {
            CodePurpose::Verify => ("Confirm your registration", "confirm your registration"),
            CodePurpose::Login => ("Your login code", "log in"),
            CodePurpose::PasswordReset => ("Your password reset code", "set a new password"),
        };
        // Short lines keep the e-mail in plain 7-bit text (no quoted-printable breaks
        // through the code); the first paragraph alone makes the SMS.
        Notification {
            to,
            subject: subject.to_owned(),
            body: Secret::new(format!(
                "Your code is {}. It expires in {minutes} minutes.\n\n\
                 Use it to {what}. If you did not ask for it,\n\
                 ignore this message. We never ask you for this code.\n",
                code.expose()
            )),
        }
    }
}

/// Why a message could not be sent. Messages name the channel and never the body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// No channel is configured for this kind of identity (e.g. phone numbers without
    /// an SMS channel): retrying does not help.
    #[error("notifier: no {channel} channel is configured")]
    NoChannel {
        /// "email" or "sms".
        channel: &'static str,
    },
    /// The server refused our credentials (a configuration error on our side).
    #[error("notifier: {channel} authentication failed: {detail}")]
    Auth {
        /// Which channel, e.g. "smtp".
        channel: &'static str,
        /// The server's answer.
        detail: String,
    },
    /// The server could not be reached, did not answer in time, failed TLS, or asked
    /// to try again later: a retry may work.
    #[error("notifier: {channel} unavailable: {detail}")]
    Unavailable {
        /// Which channel.
        channel: &'static str,
        /// What happened.
        detail: String,
    },
    /// The server refused the message for good (e.g. the recipient).
    #[error("notifier: {channel} rejected the message: {detail}")]
    Rejected {
        /// Which channel.
        channel: &'static str,
        /// The server's answer.
        detail: String,
    },
    /// Anything else, e.g. the outbox table could not be written.
    #[error("notifier: {0}")]
    Other(String),
}

/// Boxed future returned by [`Notifier::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;

/// Sends messages to users (e-mail or SMS). Not idempotent: a retry may send twice, which
/// for one-time codes is harmless.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Sends one message.
    fn send(&self, message: Notification) -> SendFuture<'_>;

    /// Whether a channel exists for this kind of identity at all. The bank asks before
    /// looking the identity up, so that the answer cannot tell whether it is registered.
    ///
    /// # Errors
    /// [`NotifyError::NoChannel`].
    fn check_channel(&self, to: &Identity) -> Result<(), NotifyError> {
        let _ = to;
        Ok(())
    }
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
            .bind(message.body.expose())
            .execute(&self.pool)
            .await
            .map_err(|e| NotifyError::Other(format!("outbox: {e}")))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_messages_say_what_they_are_for_and_hide_the_code_in_debug() {
        let to: Identity = "alice@example.com".parse().unwrap();
        let code = Secret::new("123456");
        let n =
            Notification::one_time_code(to, CodePurpose::Verify, &code, Duration::from_secs(600));
        assert_eq!(n.subject, "Confirm your registration");
        assert!(
            n.body
                .expose()
                .starts_with("Your code is 123456. It expires in 10 minutes.\n")
        );
        assert!(n.body.expose().contains("confirm your registration"));
        assert!(n.body.expose().lines().all(|l| l.len() <= 76));
        assert!(!format!("{n:?}").contains("123456"));
        let login = Notification::one_time_code(
            "+41791234567".parse().unwrap(),
            CodePurpose::Login,
            &code,
            Duration::from_secs(600),
        );
        assert_eq!(login.subject, "Your login code");
    }
}
