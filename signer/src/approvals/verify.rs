//! Verifying an approval against what it claims to approve.
//!
//! Pure: the caller supplies the officer registry, the request's binding and the
//! time. The order of checks gives the most specific refusal first: the bound
//! fields, then the expiry, then the signature, then the officer.

use bitcoin::Txid;
use bitcoin::hashes::sha256;
use policies::PolicyId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::message::{MAX_TTL_SECS, signature_valid};
use super::{Approval, ApprovalError, ChangeApproval, OfficerId};

/// A registered officer, as the registry knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Officer {
    /// The officer's public key.
    pub id: OfficerId,
    /// A human name for listings.
    pub name: String,
    /// The API client this officer also acts as, if any: an officer never
    /// approves what that client initiated.
    pub client: Option<String>,
    /// Whether the officer was revoked (revocation is permanent).
    pub revoked: bool,
}

/// What a request approval must be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBinding {
    /// This signer instance's name.
    pub instance: String,
    /// The request's policy.
    pub policy_id: PolicyId,
    /// The request's id.
    pub request_id: Uuid,
    /// The request's unsigned txid.
    pub txid: Txid,
    /// The hash of the request's analysis.
    pub analysis_hash: sha256::Hash,
    /// The client that submitted the request.
    pub initiator: String,
}

fn mismatch<T: ToString>(expected: &T, found: &T) -> (String, String) {
    (expected.to_string(), found.to_string())
}

fn check_expiry(expires_at: u64, now: u64) -> Result<(), ApprovalError> {
    if now >= expires_at {
        return Err(ApprovalError::Expired { expires_at, now });
    }
    if expires_at - now > MAX_TTL_SECS {
        return Err(ApprovalError::ExpiryTooFar {
            expires_at,
            now,
            max_secs: MAX_TTL_SECS,
        });
    }
    Ok(())
}

fn check_officer(
    id: &OfficerId,
    initiator: Option<&str>,
    lookup: impl Fn(&OfficerId) -> Option<Officer>,
) -> Result<Officer, ApprovalError> {
    let officer = lookup(id).ok_or_else(|| ApprovalError::UnknownOfficer {
        officer: id.to_string(),
    })?;
    if officer.revoked {
        return Err(ApprovalError::RevokedOfficer {
            officer: id.to_string(),
        });
    }
    if initiator.is_some() && officer.client.as_deref() == initiator {
        return Err(ApprovalError::SelfApproval {
            officer: id.to_string(),
        });
    }
    Ok(officer)
}

/// Checks that `approval` approves exactly this request, now, by a registered,
/// unrevoked officer who did not initiate it, with a valid signature.
///
/// # Errors
/// The first failed check, in this order: instance or policy
/// (`APPROVAL_WRONG_POLICY`), request (`APPROVAL_WRONG_REQUEST`), txid
/// (`APPROVAL_WRONG_TXID`), analysis (`APPROVAL_WRONG_ANALYSIS`), expiry
/// (`APPROVAL_EXPIRED`, `APPROVAL_EXPIRY_TOO_FAR`), signature
/// (`APPROVAL_SIGNATURE_INVALID`), officer (`APPROVAL_OFFICER_UNKNOWN`,
/// `APPROVAL_OFFICER_REVOKED`, `APPROVAL_SELF`).
pub fn verify_approval(
    approval: &Approval,
    binding: &RequestBinding,
    lookup: impl Fn(&OfficerId) -> Option<Officer>,
    now: u64,
) -> Result<Officer, ApprovalError> {
    let m = &approval.message;
    if m.instance != binding.instance {
        let (expected, found) = mismatch(&binding.instance, &m.instance);
        return Err(ApprovalError::WrongPolicy {
            field: "instance",
            expected,
            found,
        });
    }
    if m.policy_id != binding.policy_id {
        let (expected, found) = mismatch(&binding.policy_id, &m.policy_id);
        return Err(ApprovalError::WrongPolicy {
            field: "policy_id",
            expected,
            found,
        });
    }
    if m.request_id != binding.request_id {
        let (expected, found) = mismatch(&binding.request_id, &m.request_id);
        return Err(ApprovalError::WrongRequest { expected, found });
    }
    if m.txid != binding.txid {
        let (expected, found) = mismatch(&binding.txid, &m.txid);
        return Err(ApprovalError::WrongTxid { expected, found });
    }
    if m.analysis_hash != binding.analysis_hash {
        let (expected, found) = mismatch(&binding.analysis_hash, &m.analysis_hash);
        return Err(ApprovalError::WrongAnalysis { expected, found });
    }
    check_expiry(m.expires_at, now)?;
    if !signature_valid(&m.officer, &m.digest()?, &approval.signature.0) {
        return Err(ApprovalError::SignatureInvalid {
            officer: m.officer.to_string(),
        });
    }
    check_officer(&m.officer, Some(&binding.initiator), lookup)
}

/// Checks that `approval` approves exactly this policy change (`change_id`,
/// `document_hash`), now, by a registered, unrevoked officer who did not
/// propose it, with a valid signature.
///
/// # Errors
/// As [`verify_approval`], with `APPROVAL_WRONG_DOCUMENT` for another document.
pub fn verify_change_approval(
    approval: &ChangeApproval,
    instance: &str,
    change_id: Uuid,
    document_hash: sha256::Hash,
    proposer: Option<&str>,
    lookup: impl Fn(&OfficerId) -> Option<Officer>,
    now: u64,
) -> Result<Officer, ApprovalError> {
    let m = &approval.message;
    if m.instance != instance {
        return Err(ApprovalError::WrongPolicy {
            field: "instance",
            expected: instance.to_owned(),
            found: m.instance.clone(),
        });
    }
    if m.change_id != change_id {
        let (expected, found) = mismatch(&change_id, &m.change_id);
        return Err(ApprovalError::WrongRequest { expected, found });
    }
    if m.document_hash != document_hash {
        let (expected, found) = mismatch(&document_hash, &m.document_hash);
        return Err(ApprovalError::WrongDocument { expected, found });
    }
    check_expiry(m.expires_at, now)?;
    if !signature_valid(&m.officer, &m.digest()?, &approval.signature.0) {
        return Err(ApprovalError::SignatureInvalid {
            officer: m.officer.to_string(),
        });
    }
    check_officer(&m.officer, proposer, lookup)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr as _;

    use bitcoin::hashes::Hash as _;

    use super::*;
    use crate::approvals::message::CompactSignature;
    use crate::approvals::{ApprovalMessage, ChangeMessage, OfficerKey};

    const NOW: u64 = 1_800_000_000;

    /// An in-memory key: the file format has its own tests, and Argon2 is slow in debug builds.
    struct TestKey(bitcoin::secp256k1::SecretKey);

    impl OfficerKey for TestKey {
        fn public_key(&self) -> bitcoin::secp256k1::PublicKey {
            self.0
                .public_key(&bitcoin::secp256k1::Secp256k1::signing_only())
        }

        fn sign_digest(
            &self,
            digest: &[u8; 32],
        ) -> Result<bitcoin::secp256k1::ecdsa::Signature, ApprovalError> {
            Ok(bitcoin::secp256k1::Secp256k1::signing_only()
                .sign_ecdsa(&bitcoin::secp256k1::Message::from_digest(*digest), &self.0))
        }
    }

    fn key() -> TestKey {
        TestKey(bitcoin::secp256k1::SecretKey::new(
            &mut bitcoin::secp256k1::rand::thread_rng(),
        ))
    }

    fn binding(request: u128) -> RequestBinding {
        RequestBinding {
            instance: "signer-1".into(),
            policy_id: PolicyId::from_str(&"ab".repeat(32)).unwrap(),
            request_id: Uuid::from_u128(request),
            txid: Txid::from_byte_array([3; 32]),
            analysis_hash: sha256::Hash::hash(b"analysis"),
            initiator: "coordinator".into(),
        }
    }

    fn approve(key: &TestKey, b: &RequestBinding, expires_at: u64) -> Approval {
        ApprovalMessage {
            instance: b.instance.clone(),
            policy_id: b.policy_id,
            request_id: b.request_id,
            txid: b.txid,
            analysis_hash: b.analysis_hash,
            expires_at,
            officer: OfficerId(key.public_key()),
        }
        .sign(key)
        .unwrap()
    }

    fn registry(officers: Vec<Officer>) -> impl Fn(&OfficerId) -> Option<Officer> {
        move |id| officers.iter().find(|o| o.id == *id).cloned()
    }

    fn officer(key: &TestKey) -> Officer {
        Officer {
            id: OfficerId(key.public_key()),
            name: "alice".into(),
            client: None,
            revoked: false,
        }
    }

    fn code(r: Result<Officer, ApprovalError>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn a_bound_approval_verifies() {
        let k = key();
        let b = binding(1);
        let a = approve(&k, &b, NOW + 3600);
        let o = verify_approval(&a, &b, registry(vec![officer(&k)]), NOW).unwrap();
        assert_eq!(o.id, OfficerId(k.public_key()));
        // It survives its JSON form.
        let json = serde_json::to_string(&a).unwrap();
        let back: Approval = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn each_binding_is_checked() {
        let k = key();
        let reg = || registry(vec![officer(&k)]);
        let b = binding(1);
        let a = approve(&k, &b, NOW + 3600);
        // Replayed on another request.
        assert_eq!(
            code(verify_approval(&a, &binding(2), reg(), NOW)),
            "APPROVAL_WRONG_REQUEST"
        );
        let mut other = b.clone();
        other.txid = Txid::from_byte_array([4; 32]);
        assert_eq!(
            code(verify_approval(&a, &other, reg(), NOW)),
            "APPROVAL_WRONG_TXID"
        );
        let mut other = b.clone();
        other.analysis_hash = sha256::Hash::hash(b"changed");
        assert_eq!(
            code(verify_approval(&a, &other, reg(), NOW)),
            "APPROVAL_WRONG_ANALYSIS"
        );
        let mut other = b.clone();
        other.instance = "signer-2".into();
        assert_eq!(
            code(verify_approval(&a, &other, reg(), NOW)),
            "APPROVAL_WRONG_POLICY"
        );
        // Fields edited to match another request break the signature.
        let mut forged = a.clone();
        forged.message.request_id = Uuid::from_u128(2);
        assert_eq!(
            code(verify_approval(&forged, &binding(2), reg(), NOW)),
            "APPROVAL_SIGNATURE_INVALID"
        );
    }

    #[test]
    fn expiry_is_enforced_both_ways() {
        let k = key();
        let reg = || registry(vec![officer(&k)]);
        let b = binding(1);
        let a = approve(&k, &b, NOW);
        assert_eq!(
            code(verify_approval(&a, &b, reg(), NOW)),
            "APPROVAL_EXPIRED"
        );
        assert!(verify_approval(&a, &b, reg(), NOW - 1).is_ok());
        let a = approve(&k, &b, NOW + MAX_TTL_SECS + 1);
        assert_eq!(
            code(verify_approval(&a, &b, reg(), NOW)),
            "APPROVAL_EXPIRY_TOO_FAR"
        );
        assert!(verify_approval(&a, &b, reg(), NOW + 1).is_ok());
    }

    #[test]
    fn officer_must_be_registered_unrevoked_and_not_the_initiator() {
        let k = key();
        let b = binding(1);
        let a = approve(&k, &b, NOW + 60);
        assert_eq!(
            code(verify_approval(&a, &b, registry(vec![]), NOW)),
            "APPROVAL_OFFICER_UNKNOWN"
        );
        let mut revoked = officer(&k);
        revoked.revoked = true;
        assert_eq!(
            code(verify_approval(&a, &b, registry(vec![revoked]), NOW)),
            "APPROVAL_OFFICER_REVOKED"
        );
        let mut initiator = officer(&k);
        initiator.client = Some("coordinator".into());
        assert_eq!(
            code(verify_approval(&a, &b, registry(vec![initiator]), NOW)),
            "APPROVAL_SELF"
        );
    }

    #[test]
    fn high_s_copy_is_refused() {
        let k = key();
        let b = binding(1);
        let mut a = approve(&k, &b, NOW + 60);
        // Negate s: the same signature, malleated.
        let mut compact = a.signature.0.serialize_compact();
        let order = bitcoin::secp256k1::constants::CURVE_ORDER;
        let mut s = [0u8; 32];
        s.copy_from_slice(&compact[32..]);
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let v = i16::from(order[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(v < 0);
            s[i] = v.rem_euclid(256) as u8;
        }
        compact[32..].copy_from_slice(&s);
        a.signature =
            CompactSignature(bitcoin::secp256k1::ecdsa::Signature::from_compact(&compact).unwrap());
        assert_eq!(
            code(verify_approval(&a, &b, registry(vec![officer(&k)]), NOW)),
            "APPROVAL_SIGNATURE_INVALID"
        );
    }

    #[test]
    fn a_request_approval_is_no_change_approval() {
        let k = key();
        let b = binding(1);
        let a = approve(&k, &b, NOW + 60);
        // Reuse the request signature over a change with the same id.
        let change = ChangeApproval {
            message: ChangeMessage {
                instance: b.instance.clone(),
                change_id: b.request_id,
                document_hash: b.analysis_hash,
                expires_at: NOW + 60,
                officer: OfficerId(k.public_key()),
            },
            signature: a.signature,
        };
        let r = verify_change_approval(
            &change,
            "signer-1",
            b.request_id,
            b.analysis_hash,
            None,
            registry(vec![officer(&k)]),
            NOW,
        );
        assert_eq!(code(r), "APPROVAL_SIGNATURE_INVALID");
        let good = change.message.clone().sign(&k).unwrap();
        assert!(
            verify_change_approval(
                &good,
                "signer-1",
                b.request_id,
                b.analysis_hash,
                None,
                registry(vec![officer(&k)]),
                NOW,
            )
            .is_ok()
        );
    }
}
