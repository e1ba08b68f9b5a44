//! The values a [`super::LightningNode`] takes and returns.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::hex::{DisplayHex, FromHex};
use chrono::{DateTime, Utc};
use zeroize::Zeroize;

use crate::amount::{Msats, Sats};

/// A payment hash: the SHA-256 of the preimage, which names an invoice and its payments.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentHash(pub [u8; 32]);

impl fmt::Display for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_lower_hex_string())
    }
}

impl serde::Serialize for PaymentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Debug for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentHash({self})")
    }
}

/// A hex string that is not 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex digits")]
pub struct BadHex32;

fn parse_hex32(s: &str) -> Result<[u8; 32], BadHex32> {
    <[u8; 32]>::from_hex(s).map_err(|_| BadHex32)
}

impl FromStr for PaymentHash {
    type Err = BadHex32;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(PaymentHash)
    }
}

/// A payment preimage: proof of payment once an invoice settles. Zeroized on drop; shown
/// only to the parties of a settled payment.
#[derive(Clone, PartialEq, Eq, Zeroize)]
#[zeroize(drop)]
pub struct Preimage(pub [u8; 32]);

impl Preimage {
    /// Lower-case hex, as Blink shows it.
    pub fn to_hex(&self) -> String {
        PaymentHash(self.0).to_string()
    }

    /// The hash this preimage pays.
    pub fn payment_hash(&self) -> PaymentHash {
        PaymentHash(sha256::Hash::hash(&self.0).to_byte_array())
    }
}

impl serde::Serialize for Preimage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl FromStr for Preimage {
    type Err = BadHex32;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(Preimage)
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(..)")
    }
}

/// What an invoice says it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceDescription {
    /// A memo in the clear.
    Memo(String),
    /// The SHA-256 of a longer description (LNURL-pay's metadata, BOLT 11's `h` field).
    Hash([u8; 32]),
}

/// A new invoice.
#[derive(Clone, Debug)]
pub struct InvoiceRequest {
    /// The amount; `None` for an invoice the payer chooses the amount of.
    pub amount: Option<Msats>,
    /// The description.
    pub description: InvoiceDescription,
    /// How long it can be paid.
    pub expiry: Duration,
}

/// An invoice the node made.
#[derive(Clone, Debug)]
pub struct CreatedInvoice {
    /// BOLT 11 payment request.
    pub payment_request: String,
    /// Its payment hash.
    pub payment_hash: PaymentHash,
    /// When it stops being payable.
    pub expires_at: DateTime<Utc>,
}

/// A position in a node's sequence of settled invoices (0: before the first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SettleCursor(pub u64);

/// An invoice the node was paid.
#[derive(Clone, Debug)]
pub struct SettledInvoice {
    /// Its place in the node's settlement order.
    pub cursor: SettleCursor,
    /// Which invoice.
    pub payment_hash: PaymentHash,
    /// What arrived (at least the invoice's amount; any amount for a no-amount invoice).
    pub amount: Msats,
    /// The proof of payment.
    pub preimage: Preimage,
}

/// An invoice as the node sees it.
#[derive(Clone, Debug)]
pub enum InvoiceState {
    /// Payable.
    Open,
    /// Paid.
    Settled(SettledInvoice),
    /// Cancelled or expired: never payable again.
    Cancelled,
    /// Not an invoice of this node.
    Unknown,
}

/// Pay an invoice.
#[derive(Clone, Debug)]
pub struct PayRequest {
    /// BOLT 11 payment request.
    pub payment_request: String,
    /// Its payment hash (read from the request by the caller, who checked it).
    pub payment_hash: PaymentHash,
    /// The amount for a no-amount invoice; `None` to pay the invoice's own amount.
    pub amount: Option<Msats>,
    /// Most the routing may cost.
    pub max_fee: Msats,
    /// How long to wait for an outcome before answering [`PaymentState::InFlight`].
    pub timeout: Duration,
}

/// Why a payment failed (nothing was paid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentFailure {
    /// No route within the fee limit, or not enough liquidity.
    NoRoute,
    /// The recipient refused it (unknown or cancelled invoice, wrong amount).
    RecipientRejected,
    /// The payment's own deadline passed before a route succeeded.
    Timeout,
    /// Anything else the node reports.
    Other,
}

impl PaymentFailure {
    /// The reason as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentFailure::NoRoute => "NO_ROUTE",
            PaymentFailure::RecipientRejected => "RECIPIENT_REJECTED",
            PaymentFailure::Timeout => "TIMEOUT",
            PaymentFailure::Other => "FAILED",
        }
    }
}

/// An outgoing payment's state.
#[derive(Clone, Debug)]
pub enum PaymentState {
    /// HTLCs are out; the outcome is not known yet.
    InFlight,
    /// Paid: the preimage proves it; `fee` is what routing cost.
    Succeeded {
        /// Proof of payment.
        preimage: Preimage,
        /// Routing fee paid.
        fee: Msats,
    },
    /// Failed for good: nothing was paid.
    Failed(PaymentFailure),
}

/// A change of an outgoing payment's state.
#[derive(Clone, Debug)]
pub struct PaymentUpdate {
    /// Which payment.
    pub payment_hash: PaymentHash,
    /// Its new state.
    pub state: PaymentState,
}

/// The node's identity.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Node public key, hex.
    pub pubkey: String,
    /// The chain it runs on.
    pub network: bitcoin::Network,
    /// Chain tip height the node has seen.
    pub block_height: u32,
    /// Whether it is synced to the chain and ready to pay.
    pub synced: bool,
}

/// A channel of the node.
#[derive(Clone, Debug)]
pub struct ChannelInfo {
    /// The peer's public key, hex.
    pub peer: String,
    /// Channel size.
    pub capacity: Sats,
    /// What this node can send now.
    pub outbound: Msats,
    /// What this node can receive now.
    pub inbound: Msats,
    /// Open and usable for payments.
    pub usable: bool,
}

/// The node's money.
#[derive(Clone, Debug)]
pub struct Balances {
    /// Confirmed on-chain wallet balance.
    pub onchain: Sats,
    /// Sum of this node's side of its channels.
    pub lightning: Msats,
}
