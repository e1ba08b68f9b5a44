//! Generating a key pair on the token.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType};

use super::{KeyInfo, TokenSession};
use crate::ecdsa::{SECP256K1_EC_PARAMS, key_hash160};
use crate::error::{Error, Result};

impl TokenSession {
    /// Generate a secp256k1 key pair on the token under `label`.
    ///
    /// The private key is `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not
    /// `CKA_EXTRACTABLE`, `CKA_SIGN` and explicitly not `CKA_DECRYPT`, `CKA_UNWRAP`,
    /// `CKA_DERIVE` (SoftHSM2 would default some of them to true). The public key is
    /// `CKA_TOKEN`, `CKA_VERIFY`, not `CKA_ENCRYPT`, `CKA_WRAP`, `CKA_DERIVE`. Both halves
    /// share the label and, once generated, get `CKA_ID` = HASH160 of the compressed
    /// public key (20 bytes, its first 4 are the fingerprint). If the token refuses to
    /// change `CKA_ID` (some vendors assign their own ids), the token's id is kept and a
    /// warning is logged.
    ///
    /// PKCS#11 does not make labels unique; this refuses a label that any object on the
    /// token already has. (Two processes generating the same label at the same instant
    /// can still race; the ceremony runs one generator.)
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLabel`], [`Error::KeyExists`], [`Error::Pkcs11`] from
    /// `C_GenerateKeyPair`, and the errors of reading the key back.
    pub fn generate_key(&self, label: &str) -> Result<KeyInfo> {
        check_key_label(label)?;
        let label_bytes = label.as_bytes().to_vec();
        let existing = self.find(&[Attribute::Label(label_bytes.clone())], "looking up")?;
        if !existing.is_empty() {
            return Err(Error::KeyExists {
                token: self.token_label.clone(),
                label: label.to_owned(),
            });
        }
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(SECP256K1_EC_PARAMS.to_vec()),
            Attribute::Label(label_bytes.clone()),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(label_bytes),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ];
        let (public, private) = self
            .session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(|e| self.err(format!("generating key {label:?}"), e))?;
        let public_key = self.read_public_key(public, label)?;
        let id = key_hash160(&public_key).to_vec();
        let set_id = [Attribute::Id(id.clone())];
        let id = match self
            .session
            .update_attributes(public, &set_id)
            .and_then(|()| self.session.update_attributes(private, &set_id))
        {
            Ok(()) => id,
            Err(e) => {
                tracing::warn!(
                    token = %self.token_label, key = label, error = %e,
                    "the token refused to set CKA_ID; keeping the token's id"
                );
                self.read_id(public)?
            }
        };
        let info = KeyInfo::new(label.to_owned(), id, public_key);
        tracing::info!(
            token = %self.token_label, key = label, fingerprint = %info.fingerprint,
            public_key = %info.public_key, "key generated"
        );
        Ok(info)
    }
}

fn check_key_label(label: &str) -> Result<()> {
    let reason = if label.is_empty() {
        "empty"
    } else if label.trim() != label {
        "leading or trailing spaces"
    } else {
        return Ok(());
    };
    Err(Error::InvalidLabel {
        label: label.to_owned(),
        reason,
    })
}
