//! BOLT 11 payment requests, read with `lightning-invoice` (signature checked) and turned
//! into what the bank decides on: hash, amount, network, expiry, payee.

use std::str::FromStr;

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
    /// The amount it asks for; `None` for a no-amount invoice.
    pub amount: Option<Msats>,
    /// The payee's node public key, hex.
    pub payee: String,
    /// Its memo, if it carries one in the clear.
    pub memo: Option<String>,
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
    let created = DateTime::<Utc>::from(invoice.timestamp());
    let expiry = chrono::Duration::from_std(invoice.expiry_time())
        .map_err(|_| InvoiceError::Malformed("expiry out of range".into()))?;
    let memo = match invoice.description() {
        lightning_invoice::Bolt11InvoiceDescriptionRef::Direct(d) => Some(d.to_string()),
        lightning_invoice::Bolt11InvoiceDescriptionRef::Hash(_) => None,
    };
    let payee = invoice.get_payee_pub_key().to_string();
    let hash: &[u8; 32] = invoice.payment_hash().as_ref();
    Ok(DecodedInvoice {
        payment_request: trimmed.to_string(),
        payment_hash: PaymentHash(*hash),
        amount,
        payee,
        memo,
        expires_at: created
            .checked_add_signed(expiry)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    })
}
