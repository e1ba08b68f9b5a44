//! Officer keys on the officer's own PKCS#11 token.
//!
//! The key is generated on the token (sensitive, not extractable, as every
//! custody key: `hsm_config::token::TokenSession::generate_key`) and signs with
//! `CKM_ECDSA` over the 32-byte approval digest; the raw `r || s` is normalised
//! to low-S and verified before use, as the signer's own HSM path does.

use std::path::PathBuf;

use bitcoin::secp256k1::PublicKey;
use bitcoin::secp256k1::ecdsa::Signature;
use hsm_config::ObjectHandle;
use hsm_config::pin::UserPin;
use hsm_config::token::{Module, TokenSession};
use serde::{Deserialize, Serialize};

use super::{ApprovalError, OfficerKey};

/// Where an officer's key is: module, token and key label (the PIN is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyRef {
    /// The PKCS#11 module.
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The key's label.
    pub key_label: String,
}

/// An officer key on a logged-in token session.
#[derive(Debug)]
pub struct TokenKey {
    session: TokenSession,
    handle: ObjectHandle,
    public_key: PublicKey,
}

fn key_err(e: hsm_config::Error) -> ApprovalError {
    ApprovalError::Key(e.to_string())
}

impl TokenKey {
    /// Generates a new officer key on the token.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the module, the token, the PIN or the key
    /// generation fails (an existing label is refused).
    pub fn generate(reference: &TokenKeyRef, pin: &UserPin) -> Result<TokenKey, ApprovalError> {
        let module = Module::load(&reference.module).map_err(key_err)?;
        let session = module
            .open_session(&reference.token_label, pin)
            .map_err(key_err)?;
        session
            .generate_key(&reference.key_label)
            .map_err(key_err)?;
        Self::from_session(session, &reference.key_label)
    }

    /// Opens the officer key named by `reference`.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the module, token, PIN or key is missing.
    pub fn open(reference: &TokenKeyRef, pin: &UserPin) -> Result<TokenKey, ApprovalError> {
        let module = Module::load(&reference.module).map_err(key_err)?;
        let session = module
            .open_session(&reference.token_label, pin)
            .map_err(key_err)?;
        Self::from_session(session, &reference.key_label)
    }

    fn from_session(session: TokenSession, label: &str) -> Result<TokenKey, ApprovalError> {
        let (handle, info) = session.signing_key(label).map_err(key_err)?;
        Ok(TokenKey {
            session,
            handle,
            public_key: info.public_key,
        })
    }
}

impl OfficerKey for TokenKey {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Signature, ApprovalError> {
        // CKM_ECDSA, low-S normalised and verified by hsm-config.
        self.session
            .sign_digest(&self.handle, &self.public_key, digest)
            .map_err(key_err)
    }
}
