//! Treasury officers' approvals: officer keys, the signed approval message and
//! its verification.
//!
//! An officer approves one thing at a time: a signing request (bound to the
//! signer instance, the policy, the request id, the unsigned txid, the hash of
//! the analysis the officer was shown, an expiry and the officer's own key) or a
//! policy change (bound to the change id and the hash of its canonical
//! document). Each kind has its own domain tag, so a signature made for one can
//! never count for the other, nor for anything outside this signer (ADR 0007).
//!
//! Officer keys are secp256k1 keys, either in a passphrase-encrypted file
//! ([`keyfile`]) or on the officer's own PKCS#11 token ([`token`]).

pub mod changes;
pub mod error;
pub mod keyfile;
pub mod message;
pub mod review;
pub mod token;
pub mod verify;

pub use changes::{ChangeDocument, Classification, Direction};
pub use error::ApprovalError;
pub use keyfile::{EncryptedKeyFile, FileKey, KdfParams, KeyFile, Passphrase};
pub use message::{
    Approval, ApprovalMessage, ChangeApproval, ChangeMessage, DEFAULT_TTL_SECS, MAX_TTL_SECS,
    OfficerId,
};
pub use token::TokenKey;
pub use verify::{Officer, RequestBinding, verify_approval, verify_change_approval};

use bitcoin::secp256k1::PublicKey;
use bitcoin::secp256k1::ecdsa::Signature;

/// A key an officer signs approvals with.
pub trait OfficerKey {
    /// The officer's public key, which is also the officer's id.
    fn public_key(&self) -> PublicKey;

    /// Signs a 32-byte digest; the signature is low-S and verified.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the key store (file or token) fails.
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Signature, ApprovalError>;
}
