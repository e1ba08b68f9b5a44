//! Lightning payments of the bank: invoices for its wallets (receive.rs), payments out and
//! to invoices of its own node (send.rs), and the background work that keeps the ledger
//! in step with the node (watch.rs: the settlement watcher and the payment reconciler).
//!
//! The node is behind [`LightningNode`]; the ledger holds the money. External ids make
//! each movement happen once, whichever instance or retry gets there:
//! - `lnrecv:<payment hash>`: an invoice paid over Lightning credits its wallet;
//! - `lnsend:<payment id>:hold`: amount and fee reserve held pending before the node is
//!   called;
//! - `lnsend:<payment id>:final`: the hold released and, on success, the amount and the
//!   fee actually paid debited (one posting for either outcome: it cannot happen twice,
//!   nor both ways);
//! - `lnsend:<payment id>:internal`: an invoice of the bank's own node paid inside the
//!   ledger, without touching Lightning.

mod history;
mod receive;
mod send;
mod settle;
mod watch;

use std::sync::Arc;
use std::time::Duration;

pub use history::LnLine;
pub(crate) use history::LnShow;
pub use receive::{InvoiceCreate, InvoiceStatus, LnInvoiceView};
pub use send::{LnPayRequest, LnPayResult, LnPayStatus};
pub use watch::{LightningTasks, ReconcileReport};

use super::types::ParseError;
use super::{Bank, BankError};
use crate::amount::Msats;
use crate::lightning::{DecodedInvoice, InvoiceError, LightningError, LightningNode, PaymentHash};

/// How the bank uses its Lightning node.
#[derive(Clone, Debug)]
pub struct LightningConfig {
    /// The chain the node runs on; invoices for another are refused.
    pub network: bitcoin::Network,
    /// Invoice lifetime when the creator gives none.
    pub default_expiry: Duration,
    /// Longest invoice lifetime a creator may ask for.
    pub max_expiry: Duration,
    /// Fee reserve of a payment out: this many millionths of the amount...
    pub fee_reserve_ppm: u64,
    /// ...and at least this much.
    pub fee_reserve_min: Msats,
    /// How long a send waits for the node's outcome before answering PENDING.
    pub pay_timeout: Duration,
    /// How often the reconciler looks at PENDING payments.
    pub reconcile_interval: Duration,
    /// Age before the reconciler takes a PENDING payment over from the request that
    /// started it.
    pub reconcile_grace: Duration,
}

/// The smallest fee reserve by default.
const TEN_SATS: Msats = match Msats::new(10_000) {
    Ok(m) => m,
    Err(_) => Msats::ZERO,
};

impl LightningConfig {
    /// Defaults for `network`: invoices live a day (Blink's default) and at most a week;
    /// the fee reserve is 0.5 % of the amount, at least 10 satoshis.
    pub fn new(network: bitcoin::Network) -> LightningConfig {
        LightningConfig {
            network,
            default_expiry: Duration::from_secs(24 * 3600),
            max_expiry: Duration::from_secs(7 * 24 * 3600),
            fee_reserve_ppm: 5_000,
            fee_reserve_min: TEN_SATS,
            pay_timeout: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(5),
            reconcile_grace: Duration::from_secs(10),
        }
    }

    /// The fee reserve held for a payment of `amount`.
    pub fn fee_reserve(&self, amount: Msats) -> Result<Msats, BankError> {
        let ratio = u128::from(amount.to_msat()) * u128::from(self.fee_reserve_ppm) / 1_000_000;
        let ratio = u64::try_from(ratio).map_err(|_| BankError::InvalidAmount)?;
        let ratio = Msats::new(ratio).map_err(|_| BankError::InvalidAmount)?;
        Ok(ratio.max(self.fee_reserve_min))
    }
}

/// The bank's Lightning node and how to use it.
#[derive(Clone, Debug)]
pub struct LightningRail {
    node: Arc<dyn LightningNode>,
    config: LightningConfig,
    /// The node's public key: an invoice payable to it is one of the bank's own.
    pubkey: String,
}

impl LightningRail {
    /// Connects the bank to `node`, reading its identity.
    ///
    /// # Errors
    /// [`BankError::LightningUnavailable`] if the node does not answer;
    /// [`BankError::Corrupt`] if it runs on another network than `config` says.
    pub async fn new(
        node: Arc<dyn LightningNode>,
        config: LightningConfig,
    ) -> Result<LightningRail, BankError> {
        let info = node.info().await.map_err(lightning_error)?;
        if info.network != config.network {
            return Err(BankError::Corrupt(format!(
                "the Lightning node runs on {}, the bank on {}",
                info.network, config.network
            )));
        }
        Ok(LightningRail {
            node,
            config,
            pubkey: info.pubkey,
        })
    }

    /// The node.
    pub fn node(&self) -> &Arc<dyn LightningNode> {
        &self.node
    }

    /// The configuration.
    pub fn config(&self) -> &LightningConfig {
        &self.config
    }

    /// The node's public key.
    pub fn pubkey(&self) -> &str {
        &self.pubkey
    }

    fn decode(&self, request: &str) -> Result<DecodedInvoice, BankError> {
        crate::lightning::decode_invoice(request, self.config.network).map_err(|e| {
            BankError::Invalid(ParseError {
                what: "payment request",
                why: match e {
                    InvoiceError::Malformed(_) => "not a valid BOLT 11 invoice",
                    InvoiceError::WrongNetwork => "for another network",
                    InvoiceError::AmountOutOfRange => "amount out of range",
                },
            })
        })
    }
}

/// A node error as the bank reports it.
pub(crate) fn lightning_error(e: LightningError) -> BankError {
    match e {
        LightningError::Unavailable(why) => {
            tracing::warn!(error = %why, "Lightning node unavailable");
            BankError::LightningUnavailable
        }
        // Customers cannot act on it either, but an operator must: an error, not a warning.
        LightningError::Unauthorized(why) => {
            tracing::error!(error = %why, "the Lightning node refused our credentials");
            BankError::LightningUnavailable
        }
        LightningError::Invalid(why) => {
            tracing::info!(error = %why, "Lightning node refused a request");
            BankError::Invalid(ParseError {
                what: "payment request",
                why: "refused by the Lightning node",
            })
        }
        LightningError::NoRoute(why) => {
            tracing::info!(error = %why, "no route");
            BankError::NoRoute
        }
        LightningError::AlreadySettled => BankError::InvoiceAlreadyPaid,
        LightningError::NotFound => BankError::NotFound { what: "invoice" },
        LightningError::Protocol(why) => BankError::Corrupt(format!("Lightning node: {why}")),
    }
}

fn hash_bytes(h: &PaymentHash) -> Vec<u8> {
    h.0.to_vec()
}

fn hash_from_db(v: &[u8]) -> Result<PaymentHash, BankError> {
    <[u8; 32]>::try_from(v)
        .map(PaymentHash)
        .map_err(|_| BankError::Corrupt("payment hash length".into()))
}

fn msats_from_db(v: i64) -> Result<Msats, BankError> {
    u64::try_from(v)
        .ok()
        .and_then(|v| Msats::new(v).ok())
        .ok_or_else(|| BankError::Corrupt(format!("amount {v} msat")))
}

impl Bank {
    /// The bank with a Lightning node: the `ln*` operations work from now on.
    pub fn with_lightning(mut self, rail: LightningRail) -> Bank {
        self.lightning = Some(Arc::new(rail));
        self
    }

    /// The Lightning node, if the bank has one.
    pub fn lightning(&self) -> Option<&LightningRail> {
        self.lightning.as_deref()
    }

    fn rail(&self) -> Result<&LightningRail, BankError> {
        self.lightning
            .as_deref()
            .ok_or(BankError::LightningUnavailable)
    }
}
