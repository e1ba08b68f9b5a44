//! Choosing and configuring a chain source.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::bitcoind::BitcoindSource;
use super::esplora::EsploraSource;
use super::{CallPolicy, ChainError, ChainSource};

/// Which chain source the coordinator uses. In TOML:
///
/// ```toml
/// [chain]
/// kind = "esplora"
/// url = "http://127.0.0.1:3002"
/// ```
/// or
/// ```toml
/// [chain]
/// kind = "bitcoind"
/// url = "http://127.0.0.1:18443"
/// auth = { cookie_file = "/var/lib/bitcoind/regtest/.cookie" }
/// # auth = { user = "bastion", password_file = "/run/secrets/rpc-password" }
/// call = { timeout_ms = 5000, retries = 3 }
/// ```
///
/// Secrets are never in this file: only the path of the file that holds them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChainSourceConfig {
    /// An Esplora HTTP server.
    Esplora {
        /// Base URL, e.g. `http://127.0.0.1:3002` or `https://host/api`.
        url: String,
        /// Timeouts and retries.
        #[serde(default)]
        call: CallPolicy,
    },
    /// Bitcoin Core's JSON-RPC interface.
    Bitcoind {
        /// RPC URL, e.g. `http://127.0.0.1:8332`.
        url: String,
        /// Where the credentials are.
        auth: BitcoindAuth,
        /// Timeouts and retries.
        #[serde(default)]
        call: CallPolicy,
    },
}

/// Where Bitcoin Core's RPC credentials are read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum BitcoindAuth {
    /// The node's `.cookie` file (`__cookie__:<password>`), read again when the node
    /// refuses it (the node writes a new one at each start).
    Cookie {
        /// Path of the cookie file.
        cookie_file: PathBuf,
    },
    /// An `rpcauth` user and a file holding its password (trailing newline ignored).
    UserPassword {
        /// RPC user name.
        user: String,
        /// Path of the file holding the password.
        password_file: PathBuf,
    },
}

/// The chain source a configuration describes.
///
/// # Errors
/// [`ChainError::Config`] for a malformed URL or an unreadable credentials file. A source
/// that is down is not an error here: it is found on the first call.
pub fn connect(config: &ChainSourceConfig) -> Result<Arc<dyn ChainSource>, ChainError> {
    Ok(match config {
        ChainSourceConfig::Esplora { url, call } => Arc::new(EsploraSource::new(url, *call)?),
        ChainSourceConfig::Bitcoind { url, auth, call } => {
            Arc::new(BitcoindSource::new(url, auth.clone(), *call)?)
        }
    })
}

/// `url` with any user and password removed, for logs and health.
pub(crate) fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_parse_and_unknown_fields_are_refused() {
        let esplora: ChainSourceConfig =
            toml::from_str("kind = \"esplora\"\nurl = \"http://127.0.0.1:3002\"\n").unwrap();
        assert_eq!(
            esplora,
            ChainSourceConfig::Esplora {
                url: "http://127.0.0.1:3002".into(),
                call: CallPolicy::default()
            }
        );
        let bitcoind: ChainSourceConfig = toml::from_str(
            "kind = \"bitcoind\"\nurl = \"http://127.0.0.1:18443\"\n\
             auth = { user = \"bank\", password_file = \"pw\" }\n\
             call = { timeout_ms = 100 }\n",
        )
        .unwrap();
        match bitcoind {
            ChainSourceConfig::Bitcoind { auth, call, .. } => {
                assert!(matches!(auth, BitcoindAuth::UserPassword { .. }));
                assert_eq!(call.timeout_ms, 100);
                assert_eq!(call.retries, CallPolicy::default().retries);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            toml::from_str::<ChainSourceConfig>(
                "kind = \"esplora\"\nurl = \"http://x\"\npassword = \"p\"\n"
            )
            .is_err()
        );
    }

    #[test]
    fn credentials_in_urls_are_not_shown() {
        let url = reqwest::Url::parse("http://user:secret@127.0.0.1:8332/").unwrap();
        let shown = redact_url(&url);
        assert!(
            !shown.contains("secret") && !shown.contains("user"),
            "{shown}"
        );
    }
}
