//! E-mail over SMTP with lettre: tokio transport, rustls (no OpenSSL), plain (a local
//! relay), STARTTLS or implicit TLS, optional AUTH PLAIN or LOGIN.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::{NotifierConfigError, error_chain, read_secret};
use crate::bank::{Identity, Notification, Notifier, NotifyError, Secret, SendFuture};

const CHANNEL: &str = "smtp";

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// No TLS: only for a relay on the same host or a trusted network (port 25).
    None,
    /// Plain connection upgraded with STARTTLS, which is required: a server that does not
    /// offer it is an error, never a silent downgrade (port 587).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

fn default_timeout_secs() -> u64 {
    10
}

/// The `[smtp]` table of the notifier configuration. The password is not here: the file
/// names where it is (`password_env` or `password_file`).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name (checked against its certificate with TLS).
    pub host: String,
    /// Port; 25, 587 or 465 by `tls` when absent.
    pub port: Option<u16>,
    /// Connection protection.
    pub tls: SmtpTls,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
    /// Deadline for one whole message (connect, TLS, AUTH, delivery), seconds, 1 to 300.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Name sent with EHLO (this host's name); the address literal `[127.0.0.1]` when
    /// absent, which some servers refuse.
    pub hello_name: Option<String>,
    /// AUTH user name; no AUTH when absent.
    pub username: Option<String>,
    /// Environment variable holding the AUTH password.
    pub password_env: Option<String>,
    /// File holding the AUTH password (one trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// A PEM file of root certificates trusted besides the public (webpki) roots: the
    /// CA of a private relay.
    pub ca_file: Option<PathBuf>,
}

fn invalid(field: &'static str, why: impl Into<String>) -> NotifierConfigError {
    NotifierConfigError::Invalid {
        field,
        why: why.into(),
    }
}

impl SmtpConfig {
    /// The port in use.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
        })
    }

    fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Checks the settings without reading the password.
    ///
    /// # Errors
    /// [`NotifierConfigError::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), NotifierConfigError> {
        if self.host.trim().is_empty() {
            return Err(invalid("smtp.host", "must not be empty"));
        }
        self.from
            .parse::<Mailbox>()
            .map_err(|e| invalid("smtp.from", format!("not an e-mail address: {e}")))?;
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(invalid("smtp.timeout_secs", "must be 1 to 300"));
        }
        let sources =
            usize::from(self.password_env.is_some()) + usize::from(self.password_file.is_some());
        match (&self.username, sources) {
            (None, 0) => {}
            (None, _) => {
                return Err(invalid(
                    "smtp.username",
                    "a password source is given without a username",
                ));
            }
            (Some(_), 1) => {}
            (Some(_), _) => {
                return Err(invalid(
                    "smtp.password_env",
                    "give exactly one of password_env and password_file with a username",
                ));
            }
        }
        if self.ca_file.is_some() && self.tls == SmtpTls::None {
            return Err(invalid(
                "smtp.ca_file",
                "only used with starttls or implicit",
            ));
        }
        // A password in clear text may cross a network only to a relay on this host.
        if self.username.is_some() && self.tls == SmtpTls::None && !self.is_loopback() {
            return Err(invalid(
                "smtp.tls",
                "AUTH without TLS is only allowed to a loopback relay; use starttls or implicit",
            ));
        }
        Ok(())
    }

    /// Reads the AUTH password from its environment variable or file; `None` without a
    /// username.
    ///
    /// # Errors
    /// [`NotifierConfigError::Invalid`] if the variable is unset or the file unreadable
    /// or empty. The message names the source, never the value.
    pub fn read_password(&self) -> Result<Option<Secret>, NotifierConfigError> {
        if self.username.is_none() {
            return Ok(None);
        }
        read_secret(
            "smtp.password_env",
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
        .map(Some)
    }
}

/// Sends e-mail through an SMTP server. A connection per message: codes are rare and a
/// fresh connection cannot be a stale one.
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
    tls: SmtpTls,
    timeout: Duration,
    auth: bool,
}

impl fmt::Debug for SmtpNotifier {
    // By hand: the transport holds the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for `config`, with the password read by [`SmtpConfig::read_password`]
    /// (or given directly). Nothing is connected until the first message.
    ///
    /// # Errors
    /// [`NotifierConfigError::Invalid`] for inconsistent settings, a password without a
    /// username or the other way round.
    pub fn new(
        config: &SmtpConfig,
        password: Option<Secret>,
    ) -> Result<SmtpNotifier, NotifierConfigError> {
        config.check()?;
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| invalid("smtp.from", format!("not an e-mail address: {e}")))?;
        let host = config.host.trim().to_owned();
        let ca = match &config.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    invalid(
                        "smtp.ca_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(
                    Certificate::from_pem(&pem)
                        .map_err(|e| invalid("smtp.ca_file", format!("{}: {e}", path.display())))?,
                )
            }
            None => None,
        };
        let tls_parameters = || {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(ca) = &ca {
                builder = builder.add_root_certificate(ca.clone());
            }
            builder
                .build()
                .map_err(|e| invalid("smtp.tls", format!("cannot set up TLS: {e}")))
        };
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters()?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters()?),
        };
        let timeout = Duration::from_secs(config.timeout_secs);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(config.port())
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(name) = &config.hello_name {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        let auth = match (&config.username, password) {
            (Some(user), Some(password)) => {
                // lettre keeps its own plain copy for the transport's lifetime; ours
                // is zeroized when dropped here.
                builder = builder
                    .credentials(Credentials::new(user.clone(), password.expose().to_owned()))
                    .authentication(vec![Mechanism::Plain, Mechanism::Login]);
                true
            }
            (None, None) => false,
            (Some(_), None) => return Err(invalid("smtp.password_env", "no password")),
            (None, Some(_)) => {
                return Err(invalid("smtp.username", "a password without a username"));
            }
        };
        Ok(SmtpNotifier {
            transport: builder.build(),
            from,
            server: format!("{host}:{}", config.port()),
            tls: config.tls,
            timeout,
            auth,
        })
    }

    fn error(&self, e: &lettre::transport::smtp::Error) -> NotifyError {
        let detail = format!("{}: {}", self.server, error_chain(e));
        let code = e.status().map(|c| c.to_string());
        // RFC 4954: 530 authentication required, 534 mechanism too weak, 535 credentials
        // invalid, 538 encryption required for the mechanism.
        if matches!(code.as_deref(), Some("530" | "534" | "535" | "538"))
            || (e.is_client() && detail.contains("authentication mechanism"))
        {
            NotifyError::Auth {
                channel: CHANNEL,
                detail,
            }
        } else if e.is_permanent() {
            NotifyError::Rejected {
                channel: CHANNEL,
                detail,
            }
        } else {
            NotifyError::Unavailable {
                channel: CHANNEL,
                detail,
            }
        }
    }
}

impl Notifier for SmtpNotifier {
    fn send(&self, message: Notification) -> SendFuture<'_> {
        Box::pin(async move {
            let Identity::Email(address) = &message.to else {
                return Err(NotifyError::NoChannel { channel: "sms" });
            };
            let to: Mailbox = address
                .as_str()
                .parse()
                .map_err(|e| NotifyError::Rejected {
                    channel: CHANNEL,
                    detail: format!("recipient address: {e}"),
                })?;
            let email = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(message.subject.as_str())
                .header(ContentType::TEXT_PLAIN)
                .body(message.body.expose().to_owned())
                .map_err(|e| NotifyError::Other(format!("building the message: {e}")))?;
            // lettre's timeout bounds each socket operation; this bounds the whole
            // exchange, so a server that answers slowly line by line cannot hold a
            // registration for minutes.
            match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(self.error(&e)),
                Err(_) => Err(NotifyError::Unavailable {
                    channel: CHANNEL,
                    detail: format!(
                        "{}: no answer within {} s",
                        self.server,
                        self.timeout.as_secs()
                    ),
                }),
            }
        })
    }

    fn check_channel(&self, to: &Identity) -> Result<(), NotifyError> {
        match to {
            Identity::Email(_) => Ok(()),
            Identity::Phone(_) => Err(NotifyError::NoChannel { channel: "sms" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: SmtpTls, host: &str) -> SmtpConfig {
        SmtpConfig {
            host: host.to_owned(),
            port: None,
            tls,
            from: "Bastion <no-reply@example.com>".to_owned(),
            timeout_secs: 10,
            hello_name: None,
            username: Some("bastion".to_owned()),
            password_env: None,
            password_file: Some(PathBuf::from("/nonexistent/smtp-password")),
            ca_file: None,
        }
    }

    #[test]
    fn auth_in_clear_text_only_to_a_loopback_relay() {
        assert!(config(SmtpTls::None, "127.0.0.1").check().is_ok());
        assert!(config(SmtpTls::None, "localhost").check().is_ok());
        assert!(config(SmtpTls::None, "[::1]").check().is_ok());
        let err = config(SmtpTls::None, "mail.example.com")
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(
            config(SmtpTls::Starttls, "mail.example.com")
                .check()
                .is_ok()
        );
        let mut both = config(SmtpTls::Implicit, "mail.example.com");
        both.password_env = Some("X".to_owned());
        assert!(both.check().is_err());
        let mut bad_from = config(SmtpTls::Implicit, "mail.example.com");
        bad_from.from = "not an address".to_owned();
        assert!(bad_from.check().is_err());
    }

    #[test]
    fn password_sources_are_named_in_errors_and_the_secret_never_shows() {
        let c = config(SmtpTls::Implicit, "mail.example.com");
        let err = c.read_password().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/smtp-password"), "{err}");
        let mut env = c.clone();
        env.password_file = None;
        env.password_env = Some("BASTION_TEST_UNSET_SMTP_PASSWORD".to_owned());
        let err = env.read_password().unwrap_err().to_string();
        assert!(err.contains("BASTION_TEST_UNSET_SMTP_PASSWORD"), "{err}");

        let dir = std::env::temp_dir().join(format!("smtp-pw-{}", uuid::Uuid::now_v7()));
        std::fs::write(&dir, "hunter2-but-longer\n").unwrap();
        let mut file = c.clone();
        file.password_file = Some(dir.clone());
        let pw = file.read_password().unwrap().unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(pw.expose(), "hunter2-but-longer");
        let n = SmtpNotifier::new(&file, Some(pw)).unwrap();
        let debug = format!("{n:?} {file:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("mail.example.com:465"), "{debug}");
    }
}
