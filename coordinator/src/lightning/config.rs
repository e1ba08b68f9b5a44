//! The `[lightning]` section of the coordinator's configuration: which node the bank uses
//! and how it pays. Absent: Lightning is off (the `ln*` operations answer
//! `LIGHTNING_UNAVAILABLE`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::amount::Sats;
use crate::bank::lightning::LightningConfig;

/// `[lightning]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LightningFile {
    /// The chain the node runs on: `bitcoin`, `testnet`, `signet` or `regtest`.
    pub network: bitcoin::Network,
    /// LND's gRPC address, `https://host:port`.
    pub lnd_address: String,
    /// LND's TLS certificate (PEM).
    pub lnd_tls_cert: PathBuf,
    /// The macaroon file the bank presents (admin, or one baked for invoices and payments).
    pub lnd_macaroon: PathBuf,
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

impl LightningFile {
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
