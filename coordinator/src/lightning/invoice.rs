//! BOLT 11 payment requests, read with `lightning-invoice` (signature checked) and turned
//! into what the bank decides on: hash, amount, network, expiry, payee.

use std::str::FromStr;

use bitcoin::hashes::Hash;
use chrono::{DateTime, Utc};
use lightning_invoice::{Bolt11Invoice, Currency};

use super::types::PaymentHash;
use crate::amount::Msats;

/// Why a payment request cannot be paid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// Not a BOLT 11 invoice, or its signature does not verify.
    #[error("malformed invoice: {0}")]
    Malformed(String),
    /// For another network than the bank's.
    #[error("invoice for another network")]
    WrongNetwork,
    /// Its amount does not fit in bitcoin's supply.
    #[error("invoice amount out of range")]
    AmountOutOfRange,
}

/// A payment request, decoded and checked.
#[derive(Clone, Debug)]
pub struct DecodedInvoice {
    /// The request as given (trimmed, without a `lightning:` prefix).
    pub payment_request: String,
    /// Its payment hash.
    pub payment_hash: PaymentHash,
    /// Its payment secret (BOLT 11 `s`; not the preimage).
    pub payment_secret: [u8; 32],
    /// The amount it asks for; `None` for a no-amount invoice.
    pub amount: Option<Msats>,
    /// The payee's node public key, hex.
    pub payee: String,
    /// Its memo, if it carries one in the clear.
    pub memo: Option<String>,
    /// The SHA-256 of its description, when it carries that instead of a memo (BOLT 11
    /// `h`: LNURL-pay's metadata).
    pub description_hash: Option<[u8; 32]>,
    /// When it stops being payable.
    pub expires_at: DateTime<Utc>,
}

impl DecodedInvoice {
    /// Whether it can no longer be paid at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

fn currency_of(network: bitcoin::Network) -> Currency {
    match network {
        bitcoin::Network::Bitcoin => Currency::Bitcoin,
        bitcoin::Network::Testnet | bitcoin::Network::Testnet4 => Currency::BitcoinTestnet,
        bitcoin::Network::Signet => Currency::Signet,
        bitcoin::Network::Regtest => Currency::Regtest,
    }
}

/// Decodes a payment request for `network`, checking its signature.
///
/// # Errors
/// [`InvoiceError`].
pub fn decode_invoice(
    request: &str,
    network: bitcoin::Network,
) -> Result<DecodedInvoice, InvoiceError> {
    let trimmed = request.trim();
    let trimmed = trimmed
        .strip_prefix("lightning:")
        .or_else(|| trimmed.strip_prefix("LIGHTNING:"))
        .unwrap_or(trimmed);
    let invoice =
        Bolt11Invoice::from_str(trimmed).map_err(|e| InvoiceError::Malformed(e.to_string()))?;
    if invoice.currency() != currency_of(network) {
        return Err(InvoiceError::WrongNetwork);
    }
    let amount = invoice
        .amount_milli_satoshis()
        .map(|m| Msats::new(m).map_err(|_| InvoiceError::AmountOutOfRange))
        .transpose()?;
    // BOLT 11 times are seconds since the epoch; one past chrono's range never expires.
    let expires_at = invoice
        .expires_at()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let (memo, description_hash) = match invoice.description() {
        lightning_invoice::Bolt11InvoiceDescriptionRef::Direct(d) => (Some(d.to_string()), None),
        lightning_invoice::Bolt11InvoiceDescriptionRef::Hash(h) => {
            (None, Some(h.0.to_byte_array()))
        }
    };
    let payee = invoice.get_payee_pub_key().to_string();
    let hash: &[u8; 32] = invoice.payment_hash().as_ref();
    Ok(DecodedInvoice {
        payment_request: trimmed.to_string(),
        payment_hash: PaymentHash(*hash),
        payment_secret: invoice.payment_secret().0,
        amount,
        payee,
        memo,
        description_hash,
        expires_at,
    })
}
