//! LNURL-pay and Lightning addresses, both sides.
//!
//! Receive (LUD-06, LUD-12, LUD-16): `username@<domain>` answers a payRequest whose
//! callback makes an invoice for the user's default wallet, committing to the metadata by
//! its description hash. Send (Blink's `lnurlPaymentSend`, `lnAddressPaymentSend`): the
//! payRequest is fetched, the amount checked against it, the callback asked for an
//! invoice, and that invoice verified (network, exact amount, description hash, expiry)
//! before the bank pays it. An address or LNURL of the bank's own domain is answered
//! without HTTP; its invoice is then the bank's own and is settled inside the ledger.
//!
//! codec.rs reads what a payer names (LUD-01, LUD-16, LUD-17) and decides which URLs may
//! be called; pay.rs reads and checks the service's answers (no I/O); client.rs is the
//! HTTP side; service.rs ties them to the bank.

mod client;
mod codec;
mod pay;
mod service;

use std::time::Duration;

use reqwest::Url;

pub use codec::{LnAddress, MAX_TARGET_LEN, PayTarget, check_callable, decode_lnurl, encode_lnurl};
pub use pay::{PayRequest, description_hash, invoice_from_json, metadata_for, verify_invoice};
pub use service::Lnurl;

use crate::amount::{Msats, Sats};
use crate::bank::BankError;

/// Why an LNURL operation failed. Messages are safe to show the payer or the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LnurlError {
    /// The LNURL or address does not parse.
    #[error("lnurl: invalid target: {0}")]
    InvalidTarget(&'static str),
    /// A URL the bank will not call (plain HTTP, a loopback host, user info).
    #[error("lnurl: the service's URL must be https to a public host")]
    InsecureUrl,
    /// The service did not answer in time, or not at all.
    #[error("lnurl: the service could not be reached")]
    Unreachable,
    /// The service's answer is larger than the bank reads.
    #[error("lnurl: the service's answer is too large")]
    TooLarge,
    /// The service's answer is not what LUD-06 says.
    #[error("lnurl: unexpected answer from the service: {0}")]
    BadResponse(&'static str),
    /// The service refused, with its reason.
    #[error("lnurl: the service refused: {0}")]
    Service(String),
    /// The amount is outside what the recipient accepts.
    #[error("lnurl: amount {amount} msat outside {min}..={max} msat")]
    AmountOutOfRange {
        /// Asked.
        amount: Msats,
        /// Least accepted.
        min: Msats,
        /// Most accepted.
        max: Msats,
    },
    /// This bank's invoices are in whole satoshis.
    #[error("lnurl: amount must be whole satoshis (a multiple of 1000 msat)")]
    FractionalAmount,
    /// The callback's invoice is not the one asked for: nothing was paid.
    #[error("lnurl: invoice refused: {0}")]
    InvoiceMismatch(&'static str),
    /// No open account has this username.
    #[error("lnurl: unknown user")]
    UnknownUser,
    /// The callback's request is malformed.
    #[error("lnurl: invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Lightning addresses are not configured (`[api] public_url` unset).
    #[error("lnurl: Lightning addresses are not configured")]
    NotConfigured,
    /// The bank refused or failed.
    #[error(transparent)]
    Bank(#[from] BankError),
}

/// How Lightning addresses work here.
#[derive(Clone, Debug)]
pub struct LnurlConfig {
    /// The bank's public origin (`https://bank.example`): its host (and port) is the
    /// domain of its users' Lightning addresses. `None`: the bank has no Lightning
    /// addresses (its users can still pay others').
    pub public_url: Option<PublicUrl>,
    /// Least a payer may send to an address.
    pub min_sendable: Sats,
    /// Most a payer may send to an address in one payment.
    pub max_sendable: Sats,
    /// Longest comment (LUD-12) in characters, kept as the invoice's memo; 0: none.
    pub comment_allowed: u16,
    /// Call services on loopback hosts, over plain HTTP (tests and local demos only).
    pub allow_loopback: bool,
    /// How long one call to a service may take.
    pub timeout: Duration,
}

/// Most a comment may be: what a BOLT 11 memo holds.
pub const MAX_COMMENT_ALLOWED: u16 = 639;

impl Default for LnurlConfig {
    /// No Lightning addresses; 1 sat to 0.1 BTC per payment, comments up to 255
    /// characters, 10-second calls, no loopback.
    fn default() -> LnurlConfig {
        LnurlConfig {
            public_url: None,
            min_sendable: Sats::new(1).unwrap_or(Sats::ZERO),
            max_sendable: Sats::new(10_000_000).unwrap_or(Sats::ZERO),
            comment_allowed: 255,
            allow_loopback: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The bank's public origin: `http(s)://host[:port]`, without path, query or user info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl(Url);

impl std::str::FromStr for PublicUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be http:// or https://".into());
        }
        if url.host_str().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err("must be an origin, e.g. https://bank.example".into());
        }
        Ok(PublicUrl(url))
    }
}

impl PublicUrl {
    /// The Lightning address domain: host, and port when it is not the scheme's.
    pub fn domain(&self) -> String {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    /// Whether `url` is on this origin's host and port (whatever its scheme: a
    /// Lightning address of the bank resolves to it either way).
    pub fn is_own(&self, url: &Url) -> bool {
        url.host_str().is_some_and(|h| Some(h) == self.0.host_str())
            && url.port_or_known_default() == self.0.port_or_known_default()
    }

    /// A URL on this origin with the given path segments.
    pub fn join(&self, segments: &[&str]) -> Url {
        let mut url = self.0.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().extend(segments);
        }
        url
    }
}
