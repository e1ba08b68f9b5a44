//! Notifier implementations behind the bank's [`Notifier`] trait, and their
//! configuration: the outbox table (development, demos, tests), SMTP for e-mail
//! ([`SmtpNotifier`]), Twilio for SMS ([`TwilioNotifier`]), and [`RoutingNotifier`],
//! which sends each identity to its channel.
//!
//! `coordinator serve --notifier <file>` reads a [`NotifierConfig`] (TOML); without one,
//! every message goes to the outbox table. Secrets are never in the file: it names the
//! environment variable or file that holds the SMTP password or the Twilio token.

mod smtp;
mod twilio;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use zeroize::Zeroizing;

pub use smtp::{SmtpConfig, SmtpNotifier, SmtpTls};
pub use twilio::{TwilioConfig, TwilioNotifier};

use crate::bank::{
    Identity, Notification, Notifier, NotifyError, OutboxNotifier, Secret, SendFuture,
};

/// Why a notifier configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierConfigError {
    /// The file could not be read.
    #[error("notifier config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown fields.
    #[error("notifier config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A field's value cannot be used.
    #[error("notifier config: {field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        why: String,
    },
}

/// Where e-mail goes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmailChannel {
    /// The `notification_outbox` table.
    Outbox,
    /// The SMTP server of the `[smtp]` table.
    Smtp,
}

/// Where SMS goes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmsChannel {
    /// The `notification_outbox` table.
    Outbox,
    /// Nowhere: phone identities fail with [`NotifyError::NoChannel`].
    None,
    /// Twilio's Messages API, configured by the `[twilio]` table.
    Twilio,
}

/// The notifier configuration file. Both channels are named explicitly, so that a
/// production file cannot fall back to the outbox by omission.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Where e-mail goes.
    pub email: EmailChannel,
    /// Where SMS goes.
    pub sms: SmsChannel,
    /// The SMTP server, required when `email = "smtp"`.
    pub smtp: Option<SmtpConfig>,
    /// The Twilio account, required when `sms = "twilio"`.
    pub twilio: Option<TwilioConfig>,
}

impl Default for NotifierConfig {
    /// Development: everything to the outbox table.
    fn default() -> Self {
        NotifierConfig {
            email: EmailChannel::Outbox,
            sms: SmsChannel::Outbox,
            smtp: None,
            twilio: None,
        }
    }
}

impl NotifierConfig {
    /// Reads and checks a TOML file.
    ///
    /// # Errors
    /// [`NotifierConfigError`] if the file cannot be read, does not parse, or is
    /// inconsistent.
    pub fn load(path: &Path) -> Result<NotifierConfig, NotifierConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| NotifierConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        NotifierConfig::parse(&text)
    }

    /// Parses and checks TOML text.
    ///
    /// # Errors
    /// [`NotifierConfigError`] if the text does not parse or is inconsistent.
    pub fn parse(text: &str) -> Result<NotifierConfig, NotifierConfigError> {
        let config: NotifierConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Checks that the channels and their tables agree, without reading any secret.
    ///
    /// # Errors
    /// [`NotifierConfigError::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), NotifierConfigError> {
        let config = self;
        match (&config.email, &config.smtp) {
            (EmailChannel::Smtp, None) => {
                return Err(NotifierConfigError::Invalid {
                    field: "smtp",
                    why: "email = \"smtp\" needs an [smtp] table".to_owned(),
                });
            }
            (EmailChannel::Outbox, Some(_)) => {
                return Err(NotifierConfigError::Invalid {
                    field: "smtp",
                    why: "an [smtp] table is only used with email = \"smtp\"".to_owned(),
                });
            }
            (EmailChannel::Smtp, Some(smtp)) => smtp.check()?,
            (EmailChannel::Outbox, None) => {}
        }
        match (&config.sms, &config.twilio) {
            (SmsChannel::Twilio, None) => {
                return Err(NotifierConfigError::Invalid {
                    field: "twilio",
                    why: "sms = \"twilio\" needs a [twilio] table".to_owned(),
                });
            }
            (SmsChannel::Outbox | SmsChannel::None, Some(_)) => {
                return Err(NotifierConfigError::Invalid {
                    field: "twilio",
                    why: "a [twilio] table is only used with sms = \"twilio\"".to_owned(),
                });
            }
            (SmsChannel::Twilio, Some(twilio)) => twilio.check()?,
            (SmsChannel::Outbox | SmsChannel::None, None) => {}
        }
        Ok(())
    }

    /// Reads the secrets and builds the SMTP and Twilio clients: everything but the
    /// outbox, which needs the database. Call it before anything else starts, so that
    /// a missing password stops the start at once.
    ///
    /// # Errors
    /// [`NotifierConfigError`] if the settings or a secret cannot be used.
    pub fn prepare(&self) -> Result<PreparedNotifier, NotifierConfigError> {
        let email = match (&self.email, &self.smtp) {
            (EmailChannel::Outbox, _) => None,
            (EmailChannel::Smtp, Some(smtp)) => {
                Some(Arc::new(SmtpNotifier::new(smtp, smtp.read_password()?)?) as Arc<dyn Notifier>)
            }
            (EmailChannel::Smtp, None) => {
                return Err(NotifierConfigError::Invalid {
                    field: "smtp",
                    why: "email = \"smtp\" needs an [smtp] table".to_owned(),
                });
            }
        };
        let sms = match (&self.sms, &self.twilio) {
            (SmsChannel::Outbox, _) => SmsRoute::Outbox,
            (SmsChannel::None, _) => SmsRoute::Nowhere,
            (SmsChannel::Twilio, Some(twilio)) => {
                SmsRoute::To(Arc::new(TwilioNotifier::new(twilio, twilio.read_token()?)?))
            }
            (SmsChannel::Twilio, None) => {
                return Err(NotifierConfigError::Invalid {
                    field: "twilio",
                    why: "sms = \"twilio\" needs a [twilio] table".to_owned(),
                });
            }
        };
        Ok(PreparedNotifier { email, sms })
    }

    /// [`NotifierConfig::prepare`], then [`PreparedNotifier::build`].
    ///
    /// # Errors
    /// [`NotifierConfigError`] if the settings or a secret cannot be used.
    pub fn build(&self, pool: &PgPool) -> Result<Arc<dyn Notifier>, NotifierConfigError> {
        Ok(self.prepare()?.build(pool))
    }
}

#[derive(Clone, Debug)]
enum SmsRoute {
    Outbox,
    Nowhere,
    To(Arc<dyn Notifier>),
}

/// A notifier configuration with its secrets read and its external clients built.
#[derive(Clone, Debug)]
pub struct PreparedNotifier {
    /// `None`: the outbox.
    email: Option<Arc<dyn Notifier>>,
    sms: SmsRoute,
}

impl PreparedNotifier {
    /// The notifier, with the outbox table of `pool` where the configuration says so.
    pub fn build(self, pool: &PgPool) -> Arc<dyn Notifier> {
        let outbox: Arc<dyn Notifier> = Arc::new(OutboxNotifier::new(pool.clone()));
        let sms = match self.sms {
            SmsRoute::Outbox => Some(outbox.clone()),
            SmsRoute::Nowhere => None,
            SmsRoute::To(n) => Some(n),
        };
        Arc::new(RoutingNotifier::new(self.email.unwrap_or(outbox), sms))
    }
}

/// Reads a secret from an environment variable or a file (one trailing newline
/// dropped). Errors name the source, never the value.
fn read_secret(
    field: &'static str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Secret, NotifierConfigError> {
    let invalid = |why: String| NotifierConfigError::Invalid { field, why };
    let secret = match (env, file) {
        (Some(var), None) => std::env::var(var).map(Secret::from).map_err(|_| {
            invalid(format!(
                "environment variable {var} is not set (or not UTF-8)"
            ))
        })?,
        (None, Some(path)) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?,
            );
            let line = text.strip_suffix('\n').unwrap_or(&text);
            Secret::new(line.strip_suffix('\r').unwrap_or(line))
        }
        _ => {
            return Err(invalid(
                "give exactly one of the environment and the file".to_owned(),
            ));
        }
    };
    if secret.expose().is_empty() {
        return Err(invalid("the secret is empty".to_owned()));
    }
    Ok(secret)
}

/// An error with its sources, for a notifier error's detail.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        // Some errors repeat their source in their own message.
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// Sends e-mail identities to one notifier and phone identities to another; without an
/// SMS notifier, phone identities fail with [`NotifyError::NoChannel`] before anything
/// is sent.
#[derive(Clone, Debug)]
pub struct RoutingNotifier {
    email: Arc<dyn Notifier>,
    sms: Option<Arc<dyn Notifier>>,
}

impl RoutingNotifier {
    /// A router over an e-mail notifier and, optionally, an SMS notifier.
    pub fn new(email: Arc<dyn Notifier>, sms: Option<Arc<dyn Notifier>>) -> RoutingNotifier {
        RoutingNotifier { email, sms }
    }
}

impl Notifier for RoutingNotifier {
    fn send(&self, message: Notification) -> SendFuture<'_> {
        match (&message.to, &self.sms) {
            (Identity::Email(_), _) => self.email.send(message),
            (Identity::Phone(_), Some(sms)) => sms.send(message),
            (Identity::Phone(_), None) => {
                Box::pin(async { Err(NotifyError::NoChannel { channel: "sms" }) })
            }
        }
    }

    fn check_channel(&self, to: &Identity) -> Result<(), NotifyError> {
        match (to, &self.sms) {
            (Identity::Email(_), _) => self.email.check_channel(to),
            (Identity::Phone(_), Some(sms)) => sms.check_channel(to),
            (Identity::Phone(_), None) => Err(NotifyError::NoChannel { channel: "sms" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_both_channels_and_refuses_unknown_fields() {
        let dev = NotifierConfig::parse("email = \"outbox\"\nsms = \"outbox\"\n").unwrap();
        assert_eq!(dev, NotifierConfig::default());
        assert!(
            NotifierConfig::parse("email = \"outbox\"\n").is_err(),
            "sms is required"
        );
        assert!(NotifierConfig::parse("email = \"outbox\"\nsms = \"none\"\nfoo = 1\n").is_err());
        let err = NotifierConfig::parse("email = \"smtp\"\nsms = \"none\"\n").unwrap_err();
        assert!(err.to_string().contains("needs an [smtp] table"), "{err}");
        let smtp = r#"
            email = "smtp"
            sms = "none"
            [smtp]
            host = "smtp.example.com"
            tls = "starttls"
            from = "Bastion <no-reply@example.com>"
            username = "bastion"
            password_env = "BASTION_SMTP_PASSWORD"
        "#;
        let c = NotifierConfig::parse(smtp).unwrap();
        let s = c.smtp.as_ref().unwrap();
        assert_eq!(s.port(), 587);
        assert_eq!(s.timeout_secs, 10);
        assert!(NotifierConfig::parse(&smtp.replace("host", "hots")).is_err());
        let outbox_with_smtp = smtp.replace("email = \"smtp\"", "email = \"outbox\"");
        assert!(NotifierConfig::parse(&outbox_with_smtp).is_err());
        let err = NotifierConfig::parse("email = \"outbox\"\nsms = \"twilio\"\n").unwrap_err();
        assert!(err.to_string().contains("needs a [twilio] table"), "{err}");
        let twilio = "email = \"outbox\"\nsms = \"twilio\"\n[twilio]\naccount_sid = \"AC1\"\n\
                      from = \"+15005550006\"\nauth_token_env = \"T\"\n";
        let c = NotifierConfig::parse(twilio).unwrap();
        assert_eq!(c.twilio.unwrap().base_url, "https://api.twilio.com");
        let none_with_twilio = twilio.replace("sms = \"twilio\"", "sms = \"none\"");
        assert!(NotifierConfig::parse(&none_with_twilio).is_err());
    }
}
