//! SMS through Twilio's Messages API:
//! `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP basic
//! auth (the account SID and its auth token) and a form body `To`, `From`, `Body`. The
//! base URL is configurable so that tests (and a regional or proxy endpoint) can stand
//! in for `https://api.twilio.com`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{NotifierConfigError, read_secret};
use crate::bank::{Identity, Notification, Notifier, NotifyError, Secret, SendFuture};

const CHANNEL: &str = "twilio";

fn default_base_url() -> String {
    "https://api.twilio.com".to_owned()
}

fn default_timeout_secs() -> u64 {
    10
}

/// The `[twilio]` table of the notifier configuration. The auth token is not here: the
/// file names where it is (`auth_token_env` or `auth_token_file`).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account SID (`AC...`): in the URL and the basic-auth user.
    pub account_sid: String,
    /// The sending number, E.164.
    pub from: String,
    /// `https://api.twilio.com` unless set.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Deadline for one request, seconds, 1 to 300.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Environment variable holding the auth token.
    pub auth_token_env: Option<String>,
    /// File holding the auth token (one trailing newline is ignored).
    pub auth_token_file: Option<PathBuf>,
}

fn invalid(field: &'static str, why: impl Into<String>) -> NotifierConfigError {
    NotifierConfigError::Invalid {
        field,
        why: why.into(),
    }
}

impl TwilioConfig {
    /// Checks the settings without reading the token.
    ///
    /// # Errors
    /// [`NotifierConfigError::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), NotifierConfigError> {
        let sid = self.account_sid.trim();
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("twilio.account_sid", "must be letters and digits"));
        }
        self.from
            .parse::<crate::bank::Phone>()
            .map_err(|e| invalid("twilio.from", e.to_string()))?;
        let url = self.base_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid("twilio.base_url", "must be an http(s) URL"));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(invalid("twilio.timeout_secs", "must be 1 to 300"));
        }
        if self.auth_token_env.is_some() == self.auth_token_file.is_some() {
            return Err(invalid(
                "twilio.auth_token_env",
                "give exactly one of auth_token_env and auth_token_file",
            ));
        }
        Ok(())
    }

    /// Reads the auth token from its environment variable or file.
    ///
    /// # Errors
    /// [`NotifierConfigError::Invalid`] if it is unset, unreadable or empty.
    pub fn read_token(&self) -> Result<Secret, NotifierConfigError> {
        read_secret(
            "twilio.auth_token_env",
            self.auth_token_env.as_deref(),
            self.auth_token_file.as_deref(),
        )
    }
}

/// Sends SMS through Twilio.
pub struct TwilioNotifier {
    client: reqwest::Client,
    url: String,
    account_sid: String,
    token: Secret,
    from: String,
    timeout: Duration,
}

impl fmt::Debug for TwilioNotifier {
    // By hand: the token stays out (it is redacted anyway, but says nothing useful).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioNotifier")
            .field("url", &self.url)
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Twilio's error body.
#[derive(Debug, Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

impl TwilioNotifier {
    /// A notifier for `config` with its auth token.
    ///
    /// # Errors
    /// [`NotifierConfigError::Invalid`] for inconsistent settings or an HTTP client that
    /// cannot be built.
    pub fn new(
        config: &TwilioConfig,
        token: Secret,
    ) -> Result<TwilioNotifier, NotifierConfigError> {
        config.check()?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| invalid("twilio", format!("cannot build the HTTP client: {e}")))?;
        let account_sid = config.account_sid.trim().to_owned();
        Ok(TwilioNotifier {
            client,
            url: format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                config.base_url.trim_end_matches('/')
            ),
            account_sid,
            token,
            from: config
                .from
                .parse::<crate::bank::Phone>()
                .map_err(|e| invalid("twilio.from", e.to_string()))?
                .as_str()
                .to_owned(),
            timeout,
        })
    }
}

/// The text of an SMS: the first paragraph of the message (the code and its use); the
/// e-mail's advice paragraph would take a second segment.
fn sms_text(body: &str) -> &str {
    body.split("\n\n").next().unwrap_or(body).trim()
}

impl Notifier for TwilioNotifier {
    fn send(&self, message: Notification) -> SendFuture<'_> {
        Box::pin(async move {
            let Identity::Phone(to) = &message.to else {
                return Err(NotifyError::NoChannel { channel: "email" });
            };
            let form = [
                ("To", to.as_str()),
                ("From", self.from.as_str()),
                ("Body", sms_text(message.body.expose())),
            ];
            let response = self
                .client
                .post(&self.url)
                .basic_auth(&self.account_sid, Some(self.token.expose()))
                .form(&form)
                .send()
                .await
                .map_err(|e| NotifyError::Unavailable {
                    channel: CHANNEL,
                    detail: if e.is_timeout() {
                        format!("no answer within {} s", self.timeout.as_secs())
                    } else {
                        super::error_chain(&e)
                    },
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let text = response.text().await.unwrap_or_default();
            let detail = match serde_json::from_str::<TwilioError>(&text) {
                Ok(TwilioError {
                    code: Some(code),
                    message,
                }) => format!(
                    "HTTP {status}, error {code}: {}",
                    message.unwrap_or_default()
                ),
                _ => format!("HTTP {status}"),
            };
            Err(match status.as_u16() {
                401 | 403 => NotifyError::Auth {
                    channel: CHANNEL,
                    detail,
                },
                429 => NotifyError::Unavailable {
                    channel: CHANNEL,
                    detail,
                },
                400..=499 => NotifyError::Rejected {
                    channel: CHANNEL,
                    detail,
                },
                _ => NotifyError::Unavailable {
                    channel: CHANNEL,
                    detail,
                },
            })
        })
    }

    fn check_channel(&self, to: &Identity) -> Result<(), NotifyError> {
        match to {
            Identity::Phone(_) => Ok(()),
            Identity::Email(_) => Err(NotifyError::NoChannel { channel: "email" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sms_carries_the_first_paragraph_only() {
        assert_eq!(
            sms_text("Your code is 123456. Use it.\n\nIf you did not ask, ignore this.\n"),
            "Your code is 123456. Use it."
        );
        assert_eq!(sms_text("one line"), "one line");
    }

    #[test]
    fn config_is_checked() {
        let c = TwilioConfig {
            account_sid: "AC0123".to_owned(),
            from: "+15005550006".to_owned(),
            base_url: default_base_url(),
            timeout_secs: 10,
            auth_token_env: Some("TWILIO_AUTH_TOKEN".to_owned()),
            auth_token_file: None,
        };
        assert!(c.check().is_ok());
        let mut bad = c.clone();
        bad.account_sid = "AC/../x".to_owned();
        assert!(bad.check().is_err());
        let mut bad = c.clone();
        bad.auth_token_file = Some(PathBuf::from("x"));
        assert!(bad.check().is_err());
        let mut bad = c.clone();
        bad.from = "5550006".to_owned();
        assert!(bad.check().is_err());
        let n = TwilioNotifier::new(&c, Secret::new("token-value-xyz")).unwrap();
        assert!(n.url.ends_with("/2010-04-01/Accounts/AC0123/Messages.json"));
        assert!(!format!("{n:?}").contains("token-value-xyz"));
    }
}
