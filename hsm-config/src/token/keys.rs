//! What this crate tells of a key on the token: its public information and its security
//! attributes.

use bitcoin::bip32::Fingerprint;
use bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};

use crate::ecdsa::fingerprint;

/// A secp256k1 key on the token, as the policy tooling needs it.
///
/// In JSON: `{"label": "cold-a", "id": "<hex>", "public_key": "<33-byte hex>",
/// "fingerprint": "<8 hex digits>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// `CKA_LABEL`, unique on the token.
    pub label: String,
    /// `CKA_ID`. Keys generated here get the 20-byte HASH160 of the compressed public key.
    #[serde(with = "hex_bytes")]
    pub id: Vec<u8>,
    /// The public key (compressed hex in JSON).
    pub public_key: PublicKey,
    /// First 4 bytes of HASH160 of the compressed public key.
    pub fingerprint: Fingerprint,
}

impl KeyInfo {
    pub(super) fn new(label: String, id: Vec<u8>, public_key: PublicKey) -> Self {
        KeyInfo {
            label,
            id,
            fingerprint: fingerprint(&public_key),
            public_key,
        }
    }
}

mod hex_bytes {
    use bitcoin::hex::{DisplayHex, FromHex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.to_lower_hex_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        Vec::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Attributes of a private key, read back from the token.
///
/// Keys generated on the token with
/// [`TokenSession::generate_key`](super::TokenSession::generate_key) read back as
/// [`KeyAttributes::problems`] empty. `always_sensitive`, `never_extractable` and `local`
/// are set by the token itself and tell an auditor the key was born inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAttributes {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_LOCAL` (generated on the token, not imported).
    pub local: bool,
    /// `CKA_TOKEN` (persistent).
    pub token: bool,
    /// `CKA_PRIVATE` (needs login).
    pub private: bool,
    /// `CKA_SIGN`.
    pub sign: bool,
    /// `CKA_DECRYPT`.
    pub decrypt: bool,
    /// `CKA_UNWRAP`.
    pub unwrap: bool,
    /// `CKA_DERIVE`.
    pub derive: bool,
}

impl KeyAttributes {
    /// Deviations from what a custody signing key must be, e.g. `"CKA_EXTRACTABLE is true"`.
    pub fn problems(&self) -> Vec<&'static str> {
        let checks = [
            (self.sensitive, true, "CKA_SENSITIVE is false"),
            (self.always_sensitive, true, "CKA_ALWAYS_SENSITIVE is false"),
            (self.extractable, false, "CKA_EXTRACTABLE is true"),
            (
                self.never_extractable,
                true,
                "CKA_NEVER_EXTRACTABLE is false",
            ),
            (self.local, true, "CKA_LOCAL is false (imported key)"),
            (self.token, true, "CKA_TOKEN is false (session key)"),
            (self.private, true, "CKA_PRIVATE is false"),
            (self.sign, true, "CKA_SIGN is false"),
            (self.decrypt, false, "CKA_DECRYPT is true"),
            (self.unwrap, false, "CKA_UNWRAP is true"),
            (self.derive, false, "CKA_DERIVE is true"),
        ];
        checks
            .into_iter()
            .filter(|(value, wanted, _)| value != wanted)
            .map(|(_, _, problem)| problem)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_of_a_good_key_have_no_problem() {
        let good = KeyAttributes {
            sensitive: true,
            always_sensitive: true,
            extractable: false,
            never_extractable: true,
            local: true,
            token: true,
            private: true,
            sign: true,
            decrypt: false,
            unwrap: false,
            derive: false,
        };
        assert!(good.problems().is_empty());
        let imported = KeyAttributes {
            local: false,
            decrypt: true,
            ..good
        };
        assert_eq!(
            imported.problems(),
            ["CKA_LOCAL is false (imported key)", "CKA_DECRYPT is true"]
        );
    }
}
