//! A logged-in session on one token: signing, and the calls the other parts build on.

use std::fmt;

use bitcoin::secp256k1::{self, Message, PublicKey, Secp256k1, VerifyOnly, ecdsa::Signature};
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, Result};

/// A logged-in read-write session on one token.
///
/// `Send` (it can move to a worker thread) but not `Sync`: one thread uses a session at a
/// time. Object handles are valid for this session only; persist labels, never handles.
pub struct TokenSession {
    pub(super) session: Session,
    pub(super) token_label: String,
    secp: Secp256k1<VerifyOnly>,
}

impl fmt::Debug for TokenSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSession")
            .field("token_label", &self.token_label)
            .field("session", &self.session.handle())
            .finish()
    }
}

impl TokenSession {
    /// A session already logged in as user on the token labelled `token_label`.
    pub(super) fn new(session: Session, token_label: String) -> Self {
        TokenSession {
            session,
            token_label,
            secp: Secp256k1::verification_only(),
        }
    }

    /// Label of the token this session is on.
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    /// Sign a 32-byte digest (a sighash) with `CKM_ECDSA`; return a verified low-S signature.
    ///
    /// The digest is signed as is (not `CKM_ECDSA_SHA256`, which would hash it again).
    /// The raw `r‖s` is converted by [`crate::ecdsa::signature_from_raw`] (low-S) and
    /// verified with libsecp256k1 against `public_key` before it is returned, so a wrong
    /// handle/key pairing or a faulty token never yields a signature.
    ///
    /// # Errors
    ///
    /// [`Error::Pkcs11`] from `C_SignInit`/`C_Sign`, [`Error::InvalidSignature`],
    /// [`Error::SignatureVerification`].
    pub fn sign_digest(
        &self,
        key: &ObjectHandle,
        public_key: &PublicKey,
        digest: &[u8; 32],
    ) -> Result<Signature> {
        let raw = self
            .session
            .sign(&Mechanism::Ecdsa, *key, digest)
            .map_err(|e| self.err(format!("signing with key {public_key}"), e))?;
        let signature = crate::ecdsa::signature_from_raw(&raw)?;
        self.secp
            .verify_ecdsa(&Message::from_digest(*digest), &signature, public_key)
            .map_err(|_: secp256k1::Error| Error::SignatureVerification {
                public_key: *public_key,
            })?;
        Ok(signature)
    }

    /// The underlying cryptoki session, for operations this crate does not wrap.
    pub fn raw(&self) -> &Session {
        &self.session
    }

    pub(super) fn err(&self, context: String, e: CkError) -> Error {
        Error::pkcs11(format!("token {:?}: {context}", self.token_label), e)
    }

    pub(super) fn find(&self, template: &[Attribute], what: &str) -> Result<Vec<ObjectHandle>> {
        self.session
            .find_objects(template)
            .map_err(|e| self.err(what.to_owned(), e))
    }

    pub(super) fn attributes(
        &self,
        handle: ObjectHandle,
        types: &[AttributeType],
        what: &str,
    ) -> Result<Vec<Attribute>> {
        self.session
            .get_attributes(handle, types)
            .map_err(|e| self.err(what.to_owned(), e))
    }
}
