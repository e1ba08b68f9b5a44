//! LUD-06 payRequests: reading a service's answers (the payRequest, the callback's
//! invoice) into typed values, building this bank's metadata, and the checks a payer makes
//! on an invoice before paying it. No I/O.

use bitcoin::hashes::{Hash, sha256};
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Deserialize;

use super::LnurlError;
use super::codec::LnAddress;
use crate::amount::Msats;
use crate::lightning::{DecodedInvoice, InvoiceError, decode_invoice};

/// Longest reason from a service we repeat to the payer.
const MAX_REASON_LEN: usize = 200;

/// A payRequest, checked: what the service will accept and the metadata its invoices
/// must commit to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayRequest {
    /// Where to ask for an invoice.
    pub callback: Url,
    /// Least it accepts.
    pub min_sendable: Msats,
    /// Most it accepts.
    pub max_sendable: Msats,
    /// The metadata string exactly as sent: its SHA-256 is the invoice's description hash.
    pub metadata: String,
    /// Longest comment it takes (LUD-12); 0: none.
    pub comment_allowed: u64,
}

/// The JSON of an answer, before checking. Unknown fields are ignored (services add their
/// own and later LUDs').
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAnswer {
    status: Option<String>,
    reason: Option<String>,
    tag: Option<String>,
    callback: Option<String>,
    min_sendable: Option<u64>,
    max_sendable: Option<u64>,
    metadata: Option<String>,
    comment_allowed: Option<u64>,
    pr: Option<String>,
}

fn bad(why: &'static str) -> LnurlError {
    LnurlError::BadResponse(why)
}

fn read(value: serde_json::Value) -> Result<RawAnswer, LnurlError> {
    let raw: RawAnswer =
        serde_json::from_value(value).map_err(|_| bad("unexpected JSON fields"))?;
    if raw
        .status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("ERROR"))
    {
        let reason: String = raw
            .reason
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON_LEN)
            .collect();
        return Err(LnurlError::Service(reason));
    }
    Ok(raw)
}

/// The entries of a metadata string: a JSON array of arrays, each led by its type.
fn metadata_entries(metadata: &str) -> Result<Vec<Vec<serde_json::Value>>, LnurlError> {
    let entries: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(metadata).map_err(|_| bad("metadata is not an array of arrays"))?;
    if entries
        .iter()
        .any(|e| !e.first().is_some_and(serde_json::Value::is_string))
    {
        return Err(bad("a metadata entry has no type"));
    }
    Ok(entries)
}

fn entry<'a>(entries: &'a [Vec<serde_json::Value>], kind: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|e| e.first().and_then(|t| t.as_str()) == Some(kind))
        .and_then(|e| e.get(1))
        .and_then(|v| v.as_str())
}

impl PayRequest {
    /// Reads a service's first answer.
    ///
    /// # Errors
    /// [`LnurlError::Service`] for its `{"status":"ERROR"}`; [`LnurlError::BadResponse`]
    /// for anything that is not a payRequest LUD-06 allows.
    pub fn from_json(value: serde_json::Value) -> Result<PayRequest, LnurlError> {
        let raw = read(value)?;
        if raw.tag.as_deref() != Some("payRequest") {
            return Err(bad("not a payRequest"));
        }
        let callback = raw
            .callback
            .as_deref()
            .and_then(|c| Url::parse(c).ok())
            .ok_or(bad("no valid callback URL"))?;
        let msats = |v: Option<u64>| v.and_then(|v| Msats::new(v).ok());
        let min = msats(raw.min_sendable).ok_or(bad("no valid minSendable"))?;
        let max = msats(raw.max_sendable).ok_or(bad("no valid maxSendable"))?;
        if min == Msats::ZERO || min > max {
            return Err(bad(
                "minSendable must be at least 1 and at most maxSendable",
            ));
        }
        let metadata = raw.metadata.ok_or(bad("no metadata"))?;
        let entries = metadata_entries(&metadata)?;
        if entry(&entries, "text/plain").is_none() {
            return Err(bad("metadata has no text/plain entry"));
        }
        Ok(PayRequest {
            callback,
            min_sendable: min,
            max_sendable: max,
            metadata,
            comment_allowed: raw.comment_allowed.unwrap_or(0),
        })
    }

    /// The metadata's `text/plain` description (checked present when read).
    pub fn description(&self) -> String {
        metadata_entries(&self.metadata)
            .ok()
            .and_then(|e| entry(&e, "text/plain").map(str::to_owned))
            .unwrap_or_default()
    }

    /// Refuses an amount outside what the service accepts.
    ///
    /// # Errors
    /// [`LnurlError::AmountOutOfRange`].
    pub fn check_amount(&self, amount: Msats) -> Result<(), LnurlError> {
        if amount < self.min_sendable || amount > self.max_sendable {
            return Err(LnurlError::AmountOutOfRange {
                amount,
                min: self.min_sendable,
                max: self.max_sendable,
            });
        }
        Ok(())
    }

    /// LUD-16: a payRequest reached through an address must not name another one. A
    /// service that names none (`text/identifier` or `text/email`) is accepted, as most
    /// wallets do.
    ///
    /// # Errors
    /// [`LnurlError::BadResponse`].
    pub fn check_identifier(&self, address: &LnAddress) -> Result<(), LnurlError> {
        let entries = metadata_entries(&self.metadata)?;
        let named = entry(&entries, "text/identifier").or_else(|| entry(&entries, "text/email"));
        match named {
            Some(n) if !n.eq_ignore_ascii_case(&address.to_string()) => {
                Err(bad("the payRequest names another address"))
            }
            _ => Ok(()),
        }
    }

    /// The callback URL for `amount` (LUD-06 step 4), its own query kept.
    pub fn callback_url(&self, amount: Msats) -> Url {
        let mut url = self.callback.clone();
        url.query_pairs_mut()
            .append_pair("amount", &amount.to_msat().to_string());
        url
    }

    /// The description hash an invoice for this payRequest must carry.
    pub fn description_hash(&self) -> [u8; 32] {
        description_hash(&self.metadata)
    }
}

/// SHA-256 of the metadata string's UTF-8 bytes, exactly as sent (LUD-06: the invoice's
/// `h` tag). Any re-serialisation would change it, so the string is never re-encoded.
pub fn description_hash(metadata: &str) -> [u8; 32] {
    sha256::Hash::hash(metadata.as_bytes()).to_byte_array()
}

/// The metadata of this bank's payRequest for a user: a `text/plain` description and
/// the LUD-16 identifier.
pub fn metadata_for(username: &str, domain: &str) -> String {
    serde_json::json!([
        ["text/plain", format!("Payment to {username}")],
        ["text/identifier", format!("{username}@{domain}")],
    ])
    .to_string()
}

/// Reads the callback's answer (LUD-06 step 5): the payment request.
///
/// # Errors
/// [`LnurlError::Service`] for its `{"status":"ERROR"}`; [`LnurlError::BadResponse`].
pub fn invoice_from_json(value: serde_json::Value) -> Result<String, LnurlError> {
    let raw = read(value)?;
    raw.pr
        .filter(|p| !p.is_empty())
        .ok_or(bad("the callback gave no invoice"))
}

/// The checks before paying (LUD-06 steps 6 and 7): the invoice is for the bank's
/// network, asks exactly `amount`, commits to the payRequest's metadata, and can still be
/// paid at `now`. Only an invoice that passes all of them is handed to the bank.
///
/// # Errors
/// [`LnurlError::InvoiceMismatch`] naming the first check that failed.
pub fn verify_invoice(
    payment_request: &str,
    network: bitcoin::Network,
    pay: &PayRequest,
    amount: Msats,
    now: DateTime<Utc>,
) -> Result<DecodedInvoice, LnurlError> {
    let decoded = decode_invoice(payment_request, network).map_err(|e| {
        LnurlError::InvoiceMismatch(match e {
            InvoiceError::WrongNetwork => "the invoice is for another network",
            InvoiceError::Malformed(_) | InvoiceError::AmountOutOfRange => {
                "the invoice is not a valid BOLT 11 invoice"
            }
        })
    })?;
    if decoded.amount != Some(amount) {
        return Err(LnurlError::InvoiceMismatch(
            "the invoice's amount is not the amount asked for",
        ));
    }
    if decoded.description_hash != Some(pay.description_hash()) {
        return Err(LnurlError::InvoiceMismatch(
            "the invoice's description hash is not that of the payRequest's metadata",
        ));
    }
    if decoded.is_expired(now) {
        return Err(LnurlError::InvoiceMismatch("the invoice has expired"));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(metadata: &str) -> serde_json::Value {
        json!({
            "tag": "payRequest",
            "callback": "https://shop.example/cb?id=7",
            "minSendable": 1_000,
            "maxSendable": 5_000_000,
            "metadata": metadata,
            "commentAllowed": 32,
            "allowsNostr": true,
        })
    }

    #[test]
    fn a_pay_request_reads_and_checks_amounts() {
        let p = PayRequest::from_json(answer(r#"[["text/plain","a cup"]]"#)).unwrap();
        assert_eq!(p.description(), "a cup");
        assert_eq!(p.comment_allowed, 32);
        let m = |v| Msats::new(v).unwrap();
        assert!(p.check_amount(m(1_000)).is_ok());
        assert!(p.check_amount(m(5_000_000)).is_ok());
        assert!(matches!(
            p.check_amount(m(999)),
            Err(LnurlError::AmountOutOfRange { .. })
        ));
        assert!(p.check_amount(m(5_000_001)).is_err());
        assert_eq!(
            p.callback_url(m(21_000)).as_str(),
            "https://shop.example/cb?id=7&amount=21000"
        );
    }

    #[test]
    fn bad_pay_requests_are_refused() {
        let error = json!({"status": "ERROR", "reason": "no such user\u{7}"});
        assert!(matches!(
            PayRequest::from_json(error),
            Err(LnurlError::Service(r)) if r == "no such user"
        ));
        let mut v = answer(r#"[["text/plain","x"]]"#);
        v["tag"] = json!("withdrawRequest");
        assert!(PayRequest::from_json(v).is_err());
        for metadata in [r#"[["image/png;base64","x"]]"#, "not json", r#"[[1,"x"]]"#] {
            assert!(
                PayRequest::from_json(answer(metadata)).is_err(),
                "{metadata}"
            );
        }
        let mut v = answer(r#"[["text/plain","x"]]"#);
        v["minSendable"] = json!(0);
        assert!(PayRequest::from_json(v).is_err());
        let mut v = answer(r#"[["text/plain","x"]]"#);
        v["minSendable"] = json!(6_000_000);
        assert!(PayRequest::from_json(v).is_err());
        let mut v = answer(r#"[["text/plain","x"]]"#);
        v["maxSendable"] = json!(u64::MAX);
        assert!(PayRequest::from_json(v).is_err(), "beyond bitcoin's supply");
    }

    #[test]
    fn the_description_hash_is_of_the_exact_string() {
        // The same JSON value spaced differently is another commitment.
        let tight = r#"[["text/plain","a cup"]]"#;
        let spaced = r#"[["text/plain", "a cup"]]"#;
        assert_ne!(description_hash(tight), description_hash(spaced));
        // SHA-256("") as published, to pin the hash function.
        assert_eq!(
            bitcoin::hex::DisplayHex::to_lower_hex_string(&description_hash("")[..]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let ours = metadata_for("alice", "bank.example");
        assert_eq!(
            ours,
            r#"[["text/plain","Payment to alice"],["text/identifier","alice@bank.example"]]"#
        );
        let p = PayRequest::from_json(answer(&ours)).unwrap();
        assert_eq!(p.description_hash(), description_hash(&ours));
        let alice: LnAddress = "alice@bank.example".parse().unwrap();
        let mallory: LnAddress = "mallory@bank.example".parse().unwrap();
        assert!(p.check_identifier(&alice).is_ok());
        assert!(p.check_identifier(&mallory).is_err());
    }

    #[test]
    fn callback_answers_read() {
        assert_eq!(
            invoice_from_json(json!({"pr": "lnbcrt1...", "routes": []})).unwrap(),
            "lnbcrt1..."
        );
        assert!(invoice_from_json(json!({"routes": []})).is_err());
        assert!(matches!(
            invoice_from_json(json!({"status": "ERROR", "reason": "too small"})),
            Err(LnurlError::Service(r)) if r == "too small"
        ));
    }
}
