//! The audit head anchored in the HSM: private PKCS#11 data objects
//! (`CKO_DATA`, on the token) holding the last anchored record's seq and hash.
//!
//! A database restored from an older backup has a head behind the anchor (or a
//! different hash at the anchored seq): `serve` refuses to start on it, so a
//! restore can never re-open velocity budget already spent.
//!
//! # Two slots, rewritten in turn
//! A write changes one attribute of an existing object (`C_SetAttributeValue`)
//! instead of creating an object and destroying the old one, which on
//! SoftHSM's file store cost about 33 ms. PKCS#11 lets a data object's
//! `CKA_LABEL` change but not its `CKA_VALUE` (SoftHSM enforces this), so the
//! head lives in the label: `bastion-signer-audit-anchor <seq> <hash hex>`.
//!
//! Two slot objects take the writes in turn, the older one rewritten each
//! time, because a token's rewrite of one object need not be atomic (SoftHSM
//! truncates and rewrites the object's file in place, without a rename): a
//! write torn by a crash loses at most the slot being written, and the other
//! still holds the previous anchored head. That head is never ahead of the
//! database (the anchor is written after the commit), so `serve` starts and
//! the next signing writes the anchor again.
//!
//! Objects of the earlier format (one object, the head in `CKA_VALUE`, the
//! label exactly [`ANCHOR_LABEL`]) are read, and destroyed by the first write.

use bitcoin::hex::{DisplayHex as _, FromHex as _};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use hsm_config::token::TokenSession;

use super::Head;

/// The label of the earlier format's object, and the prefix of a slot's label.
pub const ANCHOR_LABEL: &str = "bastion-signer-audit-anchor";
/// The objects' `CKA_APPLICATION`.
const APPLICATION: &[u8] = b"bastion-signer";
/// Slots kept: one written, one holding the previous head.
const SLOTS: usize = 2;

/// Errors reading or writing the anchor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The token refused.
    #[error("audit anchor: {context}: {source}")]
    Token {
        /// What was being done.
        context: &'static str,
        /// The PKCS#11 error.
        source: cryptoki::error::Error,
    },
    /// An earlier-format object's value is not 40 bytes (seq and hash).
    #[error("audit anchor: the data object holds {0} bytes, expected 40")]
    Malformed(usize),
    /// A slot's label does not parse.
    #[error("audit anchor: a slot's label does not parse: {0:?}")]
    MalformedLabel(String),
}

fn token(context: &'static str) -> impl FnOnce(cryptoki::error::Error) -> AnchorError {
    move |source| AnchorError::Token { context, source }
}

/// Where an anchored head was found.
#[derive(Debug, Clone, Copy)]
enum Found {
    /// A slot object (the head in its label).
    Slot(ObjectHandle, Head),
    /// An earlier-format object (the head in its value).
    Legacy(ObjectHandle, Head),
}

impl Found {
    fn head(self) -> Head {
        match self {
            Found::Slot(_, head) | Found::Legacy(_, head) => head,
        }
    }
}

fn slot_label(head: Head) -> Vec<u8> {
    format!(
        "{ANCHOR_LABEL} {} {}",
        head.seq,
        head.hash.to_lower_hex_string()
    )
    .into_bytes()
}

fn parse_slot(label: &str) -> Option<Head> {
    let rest = label.strip_prefix(ANCHOR_LABEL)?.strip_prefix(' ')?;
    let (seq, hash) = rest.split_once(' ')?;
    Some(Head {
        seq: seq.parse().ok()?,
        hash: <[u8; 32]>::from_hex(hash).ok()?,
    })
}

fn parse_legacy(value: &[u8]) -> Result<Head, AnchorError> {
    if value.len() != 40 {
        return Err(AnchorError::Malformed(value.len()));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&value[..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&value[8..]);
    Ok(Head {
        seq: i64::from_be_bytes(seq),
        hash,
    })
}

/// Every anchor object on the token, parsed.
fn find(session: &TokenSession) -> Result<Vec<Found>, AnchorError> {
    let template = [
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Application(APPLICATION.to_vec()),
    ];
    let objects = session
        .raw()
        .find_objects(&template)
        .map_err(token("finding the anchor objects"))?;
    let mut found = Vec::with_capacity(objects.len());
    for object in objects {
        let attributes = session
            .raw()
            .get_attributes(object, &[AttributeType::Label, AttributeType::Value])
            .map_err(token("reading an anchor object"))?;
        let (mut label, mut value) = (Vec::new(), Vec::new());
        for attribute in attributes {
            match attribute {
                Attribute::Label(l) => label = l,
                Attribute::Value(v) => value = v,
                _ => {}
            }
        }
        let label = String::from_utf8_lossy(&label).into_owned();
        if label == ANCHOR_LABEL {
            found.push(Found::Legacy(object, parse_legacy(&value)?));
        } else {
            let head = parse_slot(&label).ok_or(AnchorError::MalformedLabel(label))?;
            found.push(Found::Slot(object, head));
        }
    }
    Ok(found)
}

/// The anchored head (the highest seq of every slot), or `None` when nothing
/// was ever anchored on this token.
///
/// # Errors
/// A token failure or a malformed object.
pub fn read(session: &TokenSession) -> Result<Option<Head>, AnchorError> {
    Ok(find(session)?
        .into_iter()
        .map(Found::head)
        .max_by_key(|h| h.seq))
}

/// Writes `head` as the anchor: over the older of the two slots (creating a
/// slot while fewer than two exist), then destroys earlier-format objects.
///
/// # Errors
/// A token failure.
pub fn write(session: &TokenSession, head: Head) -> Result<(), AnchorError> {
    let found = find(session)?;
    let slots: Vec<(ObjectHandle, Head)> = found
        .iter()
        .filter_map(|f| match f {
            Found::Slot(o, h) => Some((*o, *h)),
            Found::Legacy(..) => None,
        })
        .collect();
    if slots.len() < SLOTS {
        session
            .raw()
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(true),
                Attribute::Application(APPLICATION.to_vec()),
                Attribute::Label(slot_label(head)),
            ])
            .map_err(token("creating an anchor slot"))?;
    } else if let Some((oldest, _)) = slots.iter().min_by_key(|(_, h)| h.seq) {
        session
            .raw()
            .update_attributes(*oldest, &[Attribute::Label(slot_label(head))])
            .map_err(token("rewriting the older anchor slot"))?;
    }
    for legacy in found.iter().filter_map(|f| match f {
        Found::Legacy(o, _) => Some(*o),
        Found::Slot(..) => None,
    }) {
        session
            .raw()
            .destroy_object(legacy)
            .map_err(token("destroying an earlier-format anchor object"))?;
    }
    tracing::debug!(seq = head.seq, hash = %head.hash.to_lower_hex_string(), "audit head anchored");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slot_labels_round_trip_and_refuse_other_text() {
        let head = Head {
            seq: 4_242,
            hash: [7; 32],
        };
        let label = String::from_utf8(slot_label(head)).unwrap();
        assert_eq!(parse_slot(&label), Some(head));
        assert_eq!(parse_slot(ANCHOR_LABEL), None);
        assert_eq!(parse_slot(&format!("{ANCHOR_LABEL} 12 00")), None);
        assert_eq!(
            parse_slot(&format!("{ANCHOR_LABEL} x {}", "00".repeat(32))),
            None
        );
    }
}
