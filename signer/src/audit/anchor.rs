//! The audit head anchored in the HSM: a private PKCS#11 data object
//! (`CKO_DATA`, on the token) holding the last anchored record's seq and hash.
//!
//! A database restored from an older backup has a head behind the anchor (or a
//! different hash at the anchored seq): `serve` refuses to start on it, so a
//! restore can never re-open velocity budget already spent.

use bitcoin::hex::DisplayHex as _;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use hsm_config::token::TokenSession;

use super::Head;

/// The data object's `CKA_LABEL`.
pub const ANCHOR_LABEL: &str = "bastion-signer-audit-anchor";
/// The data object's `CKA_APPLICATION`.
const APPLICATION: &[u8] = b"bastion-signer";

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
    /// The object's value is not 40 bytes (seq and hash).
    #[error("audit anchor: the data object holds {0} bytes, expected 40")]
    Malformed(usize),
}

fn token(context: &'static str) -> impl FnOnce(cryptoki::error::Error) -> AnchorError {
    move |source| AnchorError::Token { context, source }
}

fn template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Label(ANCHOR_LABEL.as_bytes().to_vec()),
    ]
}

fn encode(head: Head) -> Vec<u8> {
    let mut value = Vec::with_capacity(40);
    value.extend_from_slice(&head.seq.to_be_bytes());
    value.extend_from_slice(&head.hash);
    value
}

fn find(session: &TokenSession) -> Result<Vec<cryptoki::object::ObjectHandle>, AnchorError> {
    session
        .raw()
        .find_objects(&template())
        .map_err(token("finding the anchor object"))
}

fn value(
    session: &TokenSession,
    object: cryptoki::object::ObjectHandle,
) -> Result<Head, AnchorError> {
    let attributes = session
        .raw()
        .get_attributes(object, &[AttributeType::Value])
        .map_err(token("reading the anchor object"))?;
    let value = attributes
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
        .unwrap_or_default();
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

/// The anchored head, or `None` when nothing was ever anchored on this token.
///
/// Several objects exist only if a write was interrupted between creating the
/// new one and destroying the old: the highest seq is the anchor.
///
/// # Errors
/// A token failure or a malformed object.
pub fn read(session: &TokenSession) -> Result<Option<Head>, AnchorError> {
    let mut best: Option<Head> = None;
    for object in find(session)? {
        let head = value(session, object)?;
        if best.is_none_or(|b| head.seq > b.seq) {
            best = Some(head);
        }
    }
    Ok(best)
}

/// Writes `head` as the anchor: a new private data object first, then the old
/// ones destroyed (tokens such as SoftHSM do not let `CKA_VALUE` be changed).
///
/// # Errors
/// A token failure.
pub fn write(session: &TokenSession, head: Head) -> Result<(), AnchorError> {
    let old = find(session)?;
    let mut attributes = template();
    attributes.extend([
        Attribute::Private(true),
        Attribute::Modifiable(true),
        Attribute::Application(APPLICATION.to_vec()),
        Attribute::Value(encode(head)),
    ]);
    session
        .raw()
        .create_object(&attributes)
        .map_err(token("creating the anchor object"))?;
    for object in old {
        session
            .raw()
            .destroy_object(object)
            .map_err(token("destroying the previous anchor object"))?;
    }
    tracing::debug!(seq = head.seq, hash = %head.hash.to_lower_hex_string(), "audit head anchored");
    Ok(())
}
