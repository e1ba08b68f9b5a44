//! The canonical approval messages and their signed forms.
//!
//! An officer signs `tagged_hash(TAG, canonical bytes)` with ECDSA over
//! secp256k1, where `tagged_hash(t, m) = SHA256(SHA256(t) || SHA256(t) || m)`
//! (the BIP 340 construction). The canonical bytes are a fixed binary layout,
//! so any language can rebuild them (ADR 0007):
//!
//! request approval, tag `bastion/signer/approval/v1`:
//! `len(instance) u8 || instance (UTF-8) || policy_id (32) || request_id (16, UUID bytes)
//!  || txid (32, internal byte order) || analysis_hash (32) || expires_at (u64 BE, unix s)
//!  || officer (33, compressed)`
//!
//! policy-change approval, tag `bastion/signer/policy-change/v1`:
//! `len(instance) u8 || instance || change_id (16) || document_hash (32)
//!  || expires_at (u64 BE) || officer (33)`

use std::fmt;
use std::str::FromStr;

use bitcoin::Txid;
use bitcoin::hashes::{Hash, HashEngine, sha256};
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::secp256k1::ecdsa::Signature;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1};
use policies::PolicyId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApprovalError, OfficerKey};

/// Domain tag of a signing-request approval.
pub const APPROVAL_TAG: &str = "bastion/signer/approval/v1";
/// Domain tag of a policy-change approval.
pub const CHANGE_TAG: &str = "bastion/signer/policy-change/v1";
/// Default life of an approval: two hours.
pub const DEFAULT_TTL_SECS: u64 = 2 * 60 * 60;
/// Longest life of an approval: a day.
pub const MAX_TTL_SECS: u64 = 24 * 60 * 60;
/// Longest signer instance name (it is length-prefixed with one byte).
pub const MAX_INSTANCE_LEN: usize = 64;

/// An officer's id: their compressed secp256k1 public key (66 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OfficerId(pub PublicKey);

impl fmt::Display for OfficerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for OfficerId {
    type Err = ApprovalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 66 {
            return Err(ApprovalError::Malformed(format!(
                "officer id {s:?} is not 66 hex digits (a compressed public key)"
            )));
        }
        PublicKey::from_str(s)
            .map(OfficerId)
            .map_err(|e| ApprovalError::Malformed(format!("officer id {s:?}: {e}")))
    }
}

fn tagged_hash(tag: &str, message: &[u8]) -> [u8; 32] {
    let tag = sha256::Hash::hash(tag.as_bytes());
    let mut engine = sha256::Hash::engine();
    engine.input(tag.as_byte_array());
    engine.input(tag.as_byte_array());
    engine.input(message);
    sha256::Hash::from_engine(engine).to_byte_array()
}

fn push_instance(out: &mut Vec<u8>, instance: &str) -> Result<(), ApprovalError> {
    let len = u8::try_from(instance.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_INSTANCE_LEN && *l > 0)
        .ok_or_else(|| {
            ApprovalError::Malformed(format!(
                "signer instance name must be 1 to {MAX_INSTANCE_LEN} bytes"
            ))
        })?;
    out.push(len);
    out.extend_from_slice(instance.as_bytes());
    Ok(())
}

/// What an officer approves when approving a signing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalMessage {
    /// The signer instance's name (so one instance's approvals are no use to another).
    pub instance: String,
    /// The policy the request spends from.
    pub policy_id: PolicyId,
    /// The signing request.
    pub request_id: Uuid,
    /// The unsigned transaction's id.
    pub txid: Txid,
    /// SHA-256 of the analysis the officer reviewed.
    pub analysis_hash: sha256::Hash,
    /// Unix seconds after which the approval no longer counts.
    pub expires_at: u64,
    /// The approving officer.
    pub officer: OfficerId,
}

impl ApprovalMessage {
    /// The canonical bytes (see the module docs).
    ///
    /// # Errors
    /// [`ApprovalError::Malformed`] when the instance name is empty or too long.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ApprovalError> {
        let mut out = Vec::with_capacity(1 + self.instance.len() + 32 + 16 + 32 + 32 + 8 + 33);
        push_instance(&mut out, &self.instance)?;
        out.extend_from_slice(&self.policy_id.to_bytes());
        out.extend_from_slice(self.request_id.as_bytes());
        out.extend_from_slice(self.txid.as_byte_array());
        out.extend_from_slice(self.analysis_hash.as_byte_array());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.officer.0.serialize());
        Ok(out)
    }

    /// The digest an officer signs.
    ///
    /// # Errors
    /// As [`ApprovalMessage::canonical_bytes`].
    pub fn digest(&self) -> Result<[u8; 32], ApprovalError> {
        Ok(tagged_hash(APPROVAL_TAG, &self.canonical_bytes()?))
    }

    /// Signs the message with `key`, which must be the named officer's.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the key is not the officer's or fails.
    pub fn sign(self, key: &dyn OfficerKey) -> Result<Approval, ApprovalError> {
        let signature = sign_as(key, &self.officer, &self.digest()?)?;
        Ok(Approval {
            message: self,
            signature: CompactSignature(signature),
        })
    }
}

/// What an officer approves when approving a policy change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeMessage {
    /// The signer instance's name.
    pub instance: String,
    /// The policy change.
    pub change_id: Uuid,
    /// SHA-256 of the change's canonical document.
    pub document_hash: sha256::Hash,
    /// Unix seconds after which the approval no longer counts.
    pub expires_at: u64,
    /// The approving officer.
    pub officer: OfficerId,
}

impl ChangeMessage {
    /// The canonical bytes (see the module docs).
    ///
    /// # Errors
    /// [`ApprovalError::Malformed`] when the instance name is empty or too long.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ApprovalError> {
        let mut out = Vec::with_capacity(1 + self.instance.len() + 16 + 32 + 8 + 33);
        push_instance(&mut out, &self.instance)?;
        out.extend_from_slice(self.change_id.as_bytes());
        out.extend_from_slice(self.document_hash.as_byte_array());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.officer.0.serialize());
        Ok(out)
    }

    /// The digest an officer signs.
    ///
    /// # Errors
    /// As [`ChangeMessage::canonical_bytes`].
    pub fn digest(&self) -> Result<[u8; 32], ApprovalError> {
        Ok(tagged_hash(CHANGE_TAG, &self.canonical_bytes()?))
    }

    /// Signs the message with `key`, which must be the named officer's.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the key is not the officer's or fails.
    pub fn sign(self, key: &dyn OfficerKey) -> Result<ChangeApproval, ApprovalError> {
        let signature = sign_as(key, &self.officer, &self.digest()?)?;
        Ok(ChangeApproval {
            message: self,
            signature: CompactSignature(signature),
        })
    }
}

fn sign_as(
    key: &dyn OfficerKey,
    officer: &OfficerId,
    digest: &[u8; 32],
) -> Result<Signature, ApprovalError> {
    if key.public_key() != officer.0 {
        return Err(ApprovalError::Key(format!(
            "this key is {}, the message names officer {officer}",
            key.public_key()
        )));
    }
    key.sign_digest(digest)
}

/// An ECDSA signature as 128 hex digits (`r || s`, low-S).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactSignature(pub Signature);

impl Serialize for CompactSignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.serialize_compact().as_hex())
    }
}

impl<'de> Deserialize<'de> for CompactSignature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        let bytes = <[u8; 64]>::from_hex(&s).map_err(|_| {
            serde::de::Error::custom("signature must be 128 hex digits (compact r || s)")
        })?;
        Signature::from_compact(&bytes)
            .map(CompactSignature)
            .map_err(|e| serde::de::Error::custom(format!("signature out of range: {e}")))
    }
}

/// A signed request approval, as submitted to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// What was approved.
    #[serde(flatten)]
    pub message: ApprovalMessage,
    /// The officer's signature over [`ApprovalMessage::digest`].
    pub signature: CompactSignature,
}

/// A signed policy-change approval, as submitted to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeApproval {
    /// What was approved.
    #[serde(flatten)]
    pub message: ChangeMessage,
    /// The officer's signature over [`ChangeMessage::digest`].
    pub signature: CompactSignature,
}

/// Verifies an ECDSA signature over `digest` by `officer`, refusing high-S.
pub(crate) fn signature_valid(
    officer: &OfficerId,
    digest: &[u8; 32],
    signature: &Signature,
) -> bool {
    let mut normalised = *signature;
    normalised.normalize_s();
    // A high-S signature is a malleated copy: the same approval must have one form.
    normalised == *signature
        && Secp256k1::verification_only()
            .verify_ecdsa(&Message::from_digest(*digest), signature, &officer.0)
            .is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The tag construction is BIP 340's: check it against a hand-computed value.
    #[test]
    fn tagged_hash_is_bip340_construction() {
        let tag = sha256::Hash::hash(b"t");
        let mut data = Vec::new();
        data.extend_from_slice(tag.as_byte_array());
        data.extend_from_slice(tag.as_byte_array());
        data.extend_from_slice(b"m");
        assert_eq!(
            tagged_hash("t", b"m"),
            sha256::Hash::hash(&data).to_byte_array()
        );
        assert_ne!(
            tagged_hash(APPROVAL_TAG, b"m"),
            tagged_hash(CHANGE_TAG, b"m")
        );
    }

    #[test]
    fn instance_name_is_bounded() {
        let mut out = Vec::new();
        assert!(push_instance(&mut out, "").is_err());
        assert!(push_instance(&mut out, &"x".repeat(MAX_INSTANCE_LEN + 1)).is_err());
        push_instance(&mut out, "signer-1").unwrap();
        assert_eq!(out[0], 8);
    }

    #[test]
    fn officer_id_parses_only_compressed_keys() {
        let key = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        assert_eq!(key.parse::<OfficerId>().unwrap().to_string(), key);
        assert!("04".parse::<OfficerId>().is_err());
        assert!(key.to_uppercase().parse::<OfficerId>().is_ok());
    }
}
