//! Invoices as Blink shows them: `LnInvoice` and `LnNoAmountInvoice`, both an `Invoice`,
//! and a wallet's invoices as a connection.

use async_graphql::{Interface, SimpleObject};

use super::{InvoicePaymentStatus, PageInfo};
use crate::Sats;
use crate::api::gql::scalars::{
    LnPaymentRequestScalar, LnPaymentSecretScalar, PaymentHashScalar, SatAmount, Timestamp,
    TxExternalIdScalar,
};
use crate::bank::lightning::LnInvoiceView;

/// A Lightning invoice with an amount.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnInvoice {
    created_at: Timestamp,
    external_id: TxExternalIdScalar,
    payment_hash: PaymentHashScalar,
    payment_request: LnPaymentRequestScalar,
    payment_secret: LnPaymentSecretScalar,
    payment_status: InvoicePaymentStatus,
    satoshis: SatAmount,
}

/// A Lightning invoice without an amount.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnNoAmountInvoice {
    created_at: Timestamp,
    external_id: TxExternalIdScalar,
    payment_hash: PaymentHashScalar,
    payment_request: LnPaymentRequestScalar,
    payment_secret: LnPaymentSecretScalar,
    payment_status: InvoicePaymentStatus,
}

fn hex(bytes: &[u8]) -> String {
    use bitcoin::hex::DisplayHex;
    bytes.to_lower_hex_string()
}

impl From<&LnInvoiceView> for LnNoAmountInvoice {
    fn from(v: &LnInvoiceView) -> Self {
        LnNoAmountInvoice {
            created_at: v.created_at.into(),
            external_id: TxExternalIdScalar(v.external_id.clone()),
            payment_hash: PaymentHashScalar(v.payment_hash.to_string()),
            payment_request: LnPaymentRequestScalar(v.payment_request.clone()),
            payment_secret: LnPaymentSecretScalar(hex(&v.payment_secret)),
            payment_status: v.status.into(),
        }
    }
}

impl From<&LnInvoiceView> for LnInvoice {
    fn from(v: &LnInvoiceView) -> Self {
        let n = LnNoAmountInvoice::from(v);
        LnInvoice {
            created_at: n.created_at,
            external_id: n.external_id,
            payment_hash: n.payment_hash,
            payment_request: n.payment_request,
            payment_secret: n.payment_secret,
            payment_status: n.payment_status,
            satoshis: SatAmount(v.amount.map(Sats::to_sat).unwrap_or(0)),
        }
    }
}

/// An invoice of a wallet, with or without an amount.
#[derive(Interface, Clone, Debug)]
#[graphql(
    name = "Invoice",
    field(name = "created_at", ty = "&Timestamp"),
    field(name = "external_id", ty = "&TxExternalIdScalar"),
    field(name = "payment_hash", ty = "&PaymentHashScalar"),
    field(name = "payment_request", ty = "&LnPaymentRequestScalar"),
    field(name = "payment_secret", ty = "&LnPaymentSecretScalar"),
    field(name = "payment_status", ty = "&InvoicePaymentStatus")
)]
pub enum Invoice {
    /// With an amount.
    LnInvoice(LnInvoice),
    /// Without.
    LnNoAmountInvoice(LnNoAmountInvoice),
}

impl From<&LnInvoiceView> for Invoice {
    fn from(v: &LnInvoiceView) -> Self {
        match v.amount {
            Some(_) => Invoice::LnInvoice(LnInvoice::from(v)),
            None => Invoice::LnNoAmountInvoice(LnNoAmountInvoice::from(v)),
        }
    }
}

/// An edge of [`InvoiceConnection`].
#[derive(SimpleObject, Clone, Debug)]
pub struct InvoiceEdge {
    /// Opaque cursor.
    pub cursor: String,
    /// The invoice.
    pub node: Invoice,
}

/// A page of invoices, newest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct InvoiceConnection {
    /// The invoices.
    pub edges: Option<Vec<InvoiceEdge>>,
    /// Paging.
    pub page_info: PageInfo,
}
