//! `coordinator serve --onchain <file>`: the chain source, the wallets and the deposit
//! driver from one TOML file.
//!
//! ```toml
//! [chain]                      # as chain::ChainSourceConfig
//! kind = "esplora"
//! url = "http://127.0.0.1:3002"
//!
//! [[wallets]]                  # as wallets::WalletConfig; the first hot one hands out addresses
//! name = "hot"
//! role = "hot"
//! policy_file = "hot-policy.json"
//!
//! [deposits]                   # all optional
//! confirmations = 3            # before the ledger is credited
//! minimum_sat = 546            # below: recorded, never credited
//! poll_interval_ms = 200
//! start_height = 0             # first block scanned on a fresh database
//! lease_ttl_ms = 10000         # how soon another instance takes the driver over
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AddressBookIndex, DepositConfig, DepositDriver, DriverHandle};
use crate::amount::Sats;
use crate::chain::{ChainSourceConfig, connect};
use crate::ledger::Ledger;
use crate::wallets::{OnchainWalletId, WalletConfig, WalletRole, Wallets};

/// The `--onchain` file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnchainFile {
    /// Where the chain is read.
    pub chain: ChainSourceConfig,
    /// The bank's wallets.
    pub wallets: Vec<WalletConfig>,
    /// How deposits are credited.
    #[serde(default)]
    pub deposits: DepositsSection,
}

/// `[deposits]` of the `--onchain` file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DepositsSection {
    /// Confirmations before crediting (default 3).
    pub confirmations: Option<u32>,
    /// Minimum credited deposit in satoshis (default 546).
    pub minimum_sat: Option<u64>,
    /// Milliseconds between two looks at the chain (default 200).
    pub poll_interval_ms: Option<u64>,
    /// First block scanned on a fresh database (default 0).
    pub start_height: Option<u32>,
    /// Milliseconds the driver's lease lasts without renewal: how soon another instance
    /// takes over from one that died (default 10,000).
    pub lease_ttl_ms: Option<u64>,
}

/// What `serve` runs for deposits.
#[derive(Debug)]
pub struct OnchainRuntime {
    /// The wallets and their address book.
    pub wallets: Wallets,
    /// The wallet that hands out deposit addresses.
    pub hot_wallet: OnchainWalletId,
    /// The driver task (stop it on shutdown).
    pub driver: DriverHandle,
    /// The chain source the driver reads (its health is a readiness check).
    pub chain: Arc<dyn crate::chain::ChainSource>,
}

impl OnchainFile {
    /// Reads and checks the file (policy files are read when wallets are registered).
    ///
    /// # Errors
    /// Unreadable file, unknown fields, no hot wallet, confirmations of 0.
    pub fn load(path: &Path) -> Result<OnchainFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: OnchainFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        // Policy paths are relative to the file.
        file.checked(path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks the settings and makes relative policy paths relative to `base`.
    ///
    /// # Errors
    /// No hot wallet, confirmations or a lease of 0.
    pub fn checked(mut self, base: &Path) -> Result<OnchainFile, String> {
        if !self.wallets.iter().any(|w| w.role == WalletRole::Hot) {
            return Err("no hot wallet in [[wallets]]".to_owned());
        }
        if self.deposits.confirmations == Some(0) {
            return Err("confirmations must be at least 1".to_owned());
        }
        if self.deposits.lease_ttl_ms == Some(0) {
            return Err("lease_ttl_ms must be at least 1".to_owned());
        }
        for w in &mut self.wallets {
            if w.policy_file.is_relative() {
                w.policy_file = base.join(&w.policy_file);
            }
        }
        Ok(self)
    }

    /// The deposit configuration it gives.
    ///
    /// # Errors
    /// A minimum above 21 million BTC.
    pub fn deposit_config(&self) -> Result<DepositConfig, String> {
        let mut c = DepositConfig::default();
        if let Some(n) = self.deposits.confirmations {
            c.confirmations = n;
        }
        if let Some(m) = self.deposits.minimum_sat {
            c.minimum = Sats::new(m).map_err(|e| format!("minimum_sat: {e}"))?;
        }
        if let Some(ms) = self.deposits.poll_interval_ms {
            c.poll_interval = Duration::from_millis(ms.max(10));
        }
        if let Some(ms) = self.deposits.lease_ttl_ms {
            c.lease_ttl = Duration::from_millis(ms);
        }
        Ok(c)
    }

    /// Connects the chain source, registers the wallets and starts the deposit driver.
    ///
    /// # Errors
    /// A chain source that cannot be configured, a wallet that cannot be registered.
    pub async fn start(&self, ledger: Ledger) -> Result<OnchainRuntime, String> {
        let chain = connect(&self.chain).map_err(|e| e.to_string())?;
        let pool = ledger.pool().clone();
        let wallets = Wallets::new(pool.clone());
        let infos = wallets
            .register_configured(&self.wallets, None)
            .await
            .map_err(|e| e.to_string())?;
        let hot = infos
            .iter()
            .find(|w| w.role == WalletRole::Hot)
            .ok_or("no hot wallet")?
            .id;
        if let Some(h) = self.deposits.start_height {
            super::set_start_height(&pool, h)
                .await
                .map_err(|e| e.to_string())?;
        }
        let driver = DepositDriver::new(
            ledger,
            chain.clone(),
            Arc::new(AddressBookIndex::new(wallets.clone())),
            self.deposit_config()?,
        )
        .spawn();
        Ok(OnchainRuntime {
            wallets,
            hot_wallet: hot,
            driver,
            chain,
        })
    }
}
