//! The `[lightning]` section of the coordinator's configuration: which node the bank uses
//! and how it pays. Absent: Lightning is off (the `ln*` operations answer
//! `LIGHTNING_UNAVAILABLE`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ldk::{ChainAccess, EmbeddedConfig};
use super::lnd::LndConfig;
use crate::amount::Sats;
use crate::bank::lightning::LightningConfig;

/// Which node implementation runs the bank's Lightning.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// LDK Node inside the coordinator (one process per data directory).
    Embedded,
    /// An LND node over its gRPC API.
    Lnd,
}

/// The node a `[lightning]` section names, ready to start.
#[derive(Debug, Clone)]
pub enum NodeSettings {
    /// LND over gRPC.
    Lnd(LndConfig),
    /// LDK Node in this process.
    Embedded(EmbeddedConfig),
}

/// `[lightning]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LightningFile {
    /// The chain the node runs on: `bitcoin`, `testnet`, `signet` or `regtest`.
    pub network: bitcoin::Network,
    /// `embedded` or `lnd`. Absent: `lnd` when `lnd_address` is set, else `embedded`.
    #[serde(default)]
    pub backend: Option<Backend>,
    /// LND's gRPC address, `https://host:port`.
    #[serde(default)]
    pub lnd_address: Option<String>,
    /// LND's TLS certificate (PEM).
    #[serde(default)]
    pub lnd_tls_cert: Option<PathBuf>,
    /// The macaroon file the bank presents (admin, or one baked for invoices and payments).
    #[serde(default)]
    pub lnd_macaroon: Option<PathBuf>,
    /// The embedded node's directory: its seed, channel state and invoice book.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The embedded node's chain source: an Esplora API...
    #[serde(default)]
    pub esplora_url: Option<String>,
    /// ...or Bitcoin Core's JSON-RPC, `http://host:port` (without credentials)...
    #[serde(default)]
    pub bitcoind_url: Option<String>,
    /// ...with its credentials: `{ cookie_file = ".." }` or `{ user = "..",
    /// password_file = ".." }` (read once, at start).
    #[serde(default)]
    pub bitcoind_auth: Option<crate::chain::BitcoindAuth>,
    /// Where the embedded node accepts Lightning peers, `host:port` (absent: it only
    /// connects out).
    #[serde(default)]
    pub listen: Option<String>,
    /// Seconds between two chain syncs of the embedded node (default 10).
    #[serde(default)]
    pub sync_interval_seconds: Option<u64>,
    /// Whether the embedded node negotiates anchor channels (default true; each then keeps
    /// an on-chain reserve for fee bumping).
    #[serde(default)]
    pub anchor_channels: Option<bool>,
    /// Fee reserve of a payment out, in millionths of its amount (default 5,000: 0.5 %).
    #[serde(default)]
    pub fee_reserve_ppm: Option<u64>,
    /// Smallest fee reserve in satoshis (default 10).
    #[serde(default)]
    pub fee_reserve_min_sat: Option<u64>,
    /// Seconds a send waits for the outcome before answering PENDING (default 30).
    #[serde(default)]
    pub pay_timeout_seconds: Option<u64>,
    /// Default invoice lifetime in minutes (default 1,440: a day).
    #[serde(default)]
    pub invoice_expiry_minutes: Option<u64>,
    /// Seconds between two reconciler passes (default 5).
    #[serde(default)]
    pub reconcile_interval_seconds: Option<u64>,
}

fn required<T: Clone>(value: &Option<T>, key: &str, backend: &str) -> Result<T, String> {
    value
        .clone()
        .ok_or_else(|| format!("{key}: required with backend = \"{backend}\""))
}

impl LightningFile {
    /// The backend this section selects.
    pub fn backend(&self) -> Backend {
        self.backend.unwrap_or(if self.lnd_address.is_some() {
            Backend::Lnd
        } else {
            Backend::Embedded
        })
    }

    /// The node to start.
    ///
    /// # Errors
    /// A missing or invalid key, or a key of the other backend, named.
    pub fn node_settings(&self) -> Result<NodeSettings, String> {
        match self.backend() {
            Backend::Lnd => {
                let embedded_keys = [
                    ("data_dir", self.data_dir.is_some()),
                    ("esplora_url", self.esplora_url.is_some()),
                    ("bitcoind_url", self.bitcoind_url.is_some()),
                    ("bitcoind_auth", self.bitcoind_auth.is_some()),
                    ("listen", self.listen.is_some()),
                    (
                        "sync_interval_seconds",
                        self.sync_interval_seconds.is_some(),
                    ),
                    ("anchor_channels", self.anchor_channels.is_some()),
                ];
                if let Some((key, _)) = embedded_keys.iter().find(|(_, set)| *set) {
                    return Err(format!("{key}: only for backend = \"embedded\""));
                }
                Ok(NodeSettings::Lnd(LndConfig::new(
                    required(&self.lnd_address, "lnd_address", "lnd")?,
                    required(&self.lnd_tls_cert, "lnd_tls_cert", "lnd")?,
                    required(&self.lnd_macaroon, "lnd_macaroon", "lnd")?,
                    self.network,
                )))
            }
            Backend::Embedded => {
                let lnd_keys = [
                    ("lnd_address", self.lnd_address.is_some()),
                    ("lnd_tls_cert", self.lnd_tls_cert.is_some()),
                    ("lnd_macaroon", self.lnd_macaroon.is_some()),
                ];
                if let Some((key, _)) = lnd_keys.iter().find(|(_, set)| *set) {
                    return Err(format!("{key}: only for backend = \"lnd\""));
                }
                let data_dir = required(&self.data_dir, "data_dir", "embedded")?;
                let chain = match (&self.esplora_url, &self.bitcoind_url) {
                    (Some(url), None) => ChainAccess::esplora(url.clone()),
                    (None, Some(url)) => ChainAccess::Bitcoind {
                        url: url.clone(),
                        auth: required(&self.bitcoind_auth, "bitcoind_auth", "embedded")?,
                    },
                    (Some(_), Some(_)) => {
                        return Err("esplora_url, bitcoind_url: one chain source, not two".into());
                    }
                    (None, None) => {
                        return Err(
                            "esplora_url or bitcoind_url: required with backend = \"embedded\""
                                .into(),
                        );
                    }
                };
                if self.bitcoind_auth.is_some() && self.bitcoind_url.is_none() {
                    return Err("bitcoind_auth: only with bitcoind_url".into());
                }
                let mut c = EmbeddedConfig::new(data_dir, chain, self.network);
                if let Some(listen) = &self.listen {
                    ldk_node::lightning::ln::msgs::SocketAddress::from_str(listen)
                        .map_err(|_| format!("listen: not a host:port: {listen}"))?;
                    c.listen = Some(listen.clone());
                }
                if let Some(s) = self.sync_interval_seconds {
                    if s == 0 || s > 3600 {
                        return Err("sync_interval_seconds: 1 to 3,600".into());
                    }
                    c.sync_interval = Duration::from_secs(s);
                }
                if let Some(anchors) = self.anchor_channels {
                    c.anchor_channels = anchors;
                }
                Ok(NodeSettings::Embedded(c))
            }
        }
    }

    /// The bank's side of it.
    ///
    /// # Errors
    /// A value out of range, named by its key.
    pub fn bank_config(&self) -> Result<LightningConfig, String> {
        let mut c = LightningConfig::new(self.network);
        if let Some(ppm) = self.fee_reserve_ppm {
            if ppm > 1_000_000 {
                return Err("fee_reserve_ppm: at most 1,000,000".into());
            }
            c.fee_reserve_ppm = ppm;
        }
        if let Some(min) = self.fee_reserve_min_sat {
            c.fee_reserve_min = Sats::new(min)
                .map(Sats::to_msats)
                .map_err(|_| "fee_reserve_min_sat: out of range".to_string())?;
        }
        if let Some(s) = self.pay_timeout_seconds {
            if s == 0 || s > 600 {
                return Err("pay_timeout_seconds: 1 to 600".into());
            }
            c.pay_timeout = Duration::from_secs(s);
        }
        if let Some(m) = self.invoice_expiry_minutes {
            let e = Duration::from_secs(m.saturating_mul(60));
            if m == 0 || e > c.max_expiry {
                return Err("invoice_expiry_minutes: 1 to 10,080 (a week)".into());
            }
            c.default_expiry = e;
        }
        if let Some(s) = self.reconcile_interval_seconds {
            if s == 0 {
                return Err("reconcile_interval_seconds: at least 1".into());
            }
            c.reconcile_interval = Duration::from_secs(s);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(toml_text: &str) -> LightningFile {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn lnd_keys_select_lnd_and_an_embedded_key_beside_them_is_refused() {
        let lnd = "network = \"regtest\"\nlnd_address = \"https://lnd:10009\"\n\
                   lnd_tls_cert = \"tls.cert\"\nlnd_macaroon = \"bank.macaroon\"\n";
        assert!(
            matches!(file(lnd).node_settings(), Ok(NodeSettings::Lnd(c)) if c.address == "https://lnd:10009")
        );
        let mixed = file(&format!("{lnd}data_dir = \"/tmp/x\"\n"));
        assert_eq!(
            mixed.node_settings().unwrap_err(),
            "data_dir: only for backend = \"embedded\""
        );
        let partial =
            file("network = \"regtest\"\nbackend = \"lnd\"\nlnd_address = \"https://x\"\n");
        assert_eq!(
            partial.node_settings().unwrap_err(),
            "lnd_tls_cert: required with backend = \"lnd\""
        );
    }

    #[test]
    fn the_embedded_node_needs_its_directory_and_chain_and_checks_its_values() {
        let base = "network = \"signet\"\ndata_dir = \"/srv/ln\"\nesplora_url = \"http://e/api\"\n";
        let Ok(NodeSettings::Embedded(c)) = file(base).node_settings() else {
            panic!("embedded by default");
        };
        assert_eq!(c.network, bitcoin::Network::Signet);
        assert!(c.anchor_channels);
        assert_eq!(c.sync_interval, Duration::from_secs(10));
        let Ok(NodeSettings::Embedded(c)) = file(&format!(
            "{base}listen = \"127.0.0.1:9735\"\nsync_interval_seconds = 2\nanchor_channels = false\n"
        ))
        .node_settings() else {
            panic!("embedded");
        };
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9735"));
        assert_eq!(c.sync_interval, Duration::from_secs(2));
        assert!(!c.anchor_channels);
        for (extra, error) in [
            ("listen = \"nine\"\n", "listen: not a host:port: nine"),
            (
                "sync_interval_seconds = 0\n",
                "sync_interval_seconds: 1 to 3,600",
            ),
            (
                "lnd_macaroon = \"m\"\nbackend = \"embedded\"\n",
                "lnd_macaroon: only for backend = \"lnd\"",
            ),
        ] {
            assert_eq!(
                file(&format!("{base}{extra}")).node_settings().unwrap_err(),
                error
            );
        }
        let bitcoind = file(
            "network = \"regtest\"\ndata_dir = \"/srv/ln\"\nbitcoind_url = \"http://127.0.0.1:18443\"\n\
             bitcoind_auth = { cookie_file = \"/srv/btc/.cookie\" }\n",
        );
        assert!(matches!(
            bitcoind.node_settings(),
            Ok(NodeSettings::Embedded(EmbeddedConfig {
                chain: ChainAccess::Bitcoind { .. },
                ..
            }))
        ));
        let both = file(&format!("{base}bitcoind_url = \"http://b:8332\"\n"));
        assert_eq!(
            both.node_settings().unwrap_err(),
            "esplora_url, bitcoind_url: one chain source, not two"
        );
        let no_auth =
            file("network = \"regtest\"\ndata_dir = \"/x\"\nbitcoind_url = \"http://b:8332\"\n");
        assert_eq!(
            no_auth.node_settings().unwrap_err(),
            "bitcoind_auth: required with backend = \"embedded\""
        );
        let no_dir = file("network = \"regtest\"\nesplora_url = \"http://e\"\n");
        assert_eq!(
            no_dir.node_settings().unwrap_err(),
            "data_dir: required with backend = \"embedded\""
        );
        assert!(
            toml::from_str::<LightningFile>("network = \"regtest\"\nbackend = \"cln\"\n").is_err()
        );
    }
}
