//! Keys of a policy: fixed HSM keys and the ranged offline recovery key.

use std::fmt;
use std::str::FromStr;

use bitcoin::NetworkKind;
use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, KeySource, Xpub};
use bitcoin::hashes::{Hash, hash160};
use bitcoin::secp256k1::PublicKey;
use miniscript::descriptor::{
    DescriptorPublicKey, DescriptorXKey, SinglePub, SinglePubKey, Wildcard,
};
use serde::{Deserialize, Serialize};

/// The name that stands for the recovery key in a custom policy.
pub const RECOVERY_NAME: &str = "recovery";

/// The longest HSM key label accepted.
pub const MAX_LABEL_LEN: usize = 64;

/// Errors about keys: labels, fingerprints and the recovery key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The label is empty, too long or has characters a policy cannot name.
    #[error("invalid hsm key label {label:?}: {reason}")]
    InvalidLabel {
        /// The label refused.
        label: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The label is the name reserved for the recovery key.
    #[error("hsm key label {label:?} is reserved for the recovery key")]
    ReservedLabel {
        /// The label refused.
        label: String,
    },
    /// A stated fingerprint is not the one the public key gives.
    #[error("hsm key {label:?} states fingerprint {stated} but its public key gives {computed}")]
    FingerprintMismatch {
        /// The key's label.
        label: String,
        /// The fingerprint written in the document.
        stated: String,
        /// The fingerprint computed from the public key.
        computed: Fingerprint,
    },
    /// A public key or fingerprint string does not parse.
    #[error("invalid {what} {value:?}: {reason}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The value refused.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The recovery key is not a plain `[origin]xpub`.
    #[error("invalid recovery key {value:?}: {reason}")]
    InvalidRecoveryKey {
        /// The value refused.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Which of the two descriptors of a policy: receive (`/0/*`) or change (`/1/*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keychain {
    /// Addresses handed out to payers (`/0/*`).
    Receive,
    /// Change addresses (`/1/*`).
    Change,
}

impl Keychain {
    /// The unhardened derivation step that selects this keychain under the recovery key.
    pub fn child(self) -> u32 {
        match self {
            Keychain::Receive => 0,
            Keychain::Change => 1,
        }
    }

    /// The keychain for a derivation step, if it is 0 or 1.
    pub fn from_child(child: u32) -> Option<Keychain> {
        match child {
            0 => Some(Keychain::Receive),
            1 => Some(Keychain::Change),
            _ => None,
        }
    }

    /// `"receive"` or `"change"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Keychain::Receive => "receive",
            Keychain::Change => "change",
        }
    }
}

impl fmt::Display for Keychain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fixed secp256k1 key held in an HSM, named by a label.
///
/// In JSON: `{"label": "...", "public_key": "<33-byte compressed hex>", "fingerprint": "<8 hex>"}`.
/// The fingerprint is checked against the public key when read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "HsmKeyRepr", into = "HsmKeyRepr")]
pub struct HsmKey {
    /// The operator's name for the key (also its name in custom policies).
    pub label: String,
    /// The public key.
    pub public_key: PublicKey,
    /// First 4 bytes of HASH160 of the compressed public key.
    pub fingerprint: Fingerprint,
}

impl HsmKey {
    /// Makes an HSM key, computing its fingerprint from the public key.
    ///
    /// The label is checked when the key is used in a template or a document.
    pub fn new(label: impl Into<String>, public_key: PublicKey) -> HsmKey {
        HsmKey {
            label: label.into(),
            fingerprint: fingerprint_of(&public_key),
            public_key,
        }
    }

    /// The key as it appears in descriptors: `[fingerprint]02ab...` (origin with an empty path).
    ///
    /// The origin makes wallets such as bdk write a `bip32_derivation` entry
    /// (fingerprint, empty path) for this key into PSBTs.
    pub fn descriptor_key(&self) -> DescriptorPublicKey {
        DescriptorPublicKey::Single(SinglePub {
            origin: Some((self.fingerprint, DerivationPath::master())),
            key: SinglePubKey::FullKey(bitcoin::PublicKey::new(self.public_key)),
        })
    }

    /// Checks that the label can name a key in a policy and that the fingerprint matches the key.
    ///
    /// # Errors
    /// [`KeyError::InvalidLabel`], [`KeyError::ReservedLabel`] or
    /// [`KeyError::FingerprintMismatch`].
    pub fn validate(&self) -> Result<(), KeyError> {
        validate_label(&self.label)?;
        let computed = fingerprint_of(&self.public_key);
        if computed != self.fingerprint {
            return Err(KeyError::FingerprintMismatch {
                label: self.label.clone(),
                stated: self.fingerprint.to_string(),
                computed,
            });
        }
        Ok(())
    }
}

/// The fingerprint of a single key: the first 4 bytes of HASH160 of its compressed form.
///
/// The same rule BIP32 uses for the fingerprint of an extended key's public key.
pub fn fingerprint_of(public_key: &PublicKey) -> Fingerprint {
    let hash = hash160::Hash::hash(&public_key.serialize());
    let bytes = hash.to_byte_array();
    Fingerprint::from([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Checks an HSM key label: 1 to 64 characters from `A-Z a-z 0-9 . _ -`, not `recovery`.
///
/// The character set keeps labels usable as key names inside a miniscript policy string.
///
/// # Errors
/// [`KeyError::InvalidLabel`] or [`KeyError::ReservedLabel`].
pub fn validate_label(label: &str) -> Result<(), KeyError> {
    let invalid = |reason| KeyError::InvalidLabel {
        label: label.to_owned(),
        reason,
    };
    if label.is_empty() {
        return Err(invalid("empty"));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(invalid("longer than 64 characters"));
    }
    if !label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "only letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    if label == RECOVERY_NAME {
        return Err(KeyError::ReservedLabel {
            label: label.to_owned(),
        });
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HsmKeyRepr {
    label: String,
    public_key: String,
    fingerprint: String,
}

impl From<HsmKey> for HsmKeyRepr {
    fn from(key: HsmKey) -> Self {
        HsmKeyRepr {
            label: key.label,
            public_key: key.public_key.to_string(),
            fingerprint: key.fingerprint.to_string(),
        }
    }
}

impl TryFrom<HsmKeyRepr> for HsmKey {
    type Error = KeyError;

    fn try_from(repr: HsmKeyRepr) -> Result<Self, Self::Error> {
        // Only the compressed form is accepted, so that one key has one spelling.
        if repr.public_key.len() != 66 {
            return Err(KeyError::Parse {
                what: "public key",
                value: repr.public_key,
                reason: "expected 33-byte compressed hex".to_owned(),
            });
        }
        let public_key = PublicKey::from_str(&repr.public_key).map_err(|e| KeyError::Parse {
            what: "public key",
            value: repr.public_key.clone(),
            reason: e.to_string(),
        })?;
        let stated = Fingerprint::from_str(&repr.fingerprint).map_err(|e| KeyError::Parse {
            what: "fingerprint",
            value: repr.fingerprint.clone(),
            reason: e.to_string(),
        })?;
        let computed = fingerprint_of(&public_key);
        if computed != stated || repr.fingerprint != computed.to_string() {
            return Err(KeyError::FingerprintMismatch {
                label: repr.label,
                stated: repr.fingerprint,
                computed,
            });
        }
        Ok(HsmKey {
            label: repr.label,
            public_key,
            fingerprint: computed,
        })
    }
}

/// The offline recovery key: an extended public key with an optional origin, `[fp/path]xpub`.
///
/// It is the only ranged key of a policy: `<key>/0/*` in the receive descriptor and
/// `<key>/1/*` in the change descriptor. Serialised as its string form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecoveryKey {
    origin: Option<(Fingerprint, DerivationPath)>,
    xpub: Xpub,
}

impl RecoveryKey {
    /// Makes a recovery key from an xpub and the origin of that xpub, if known.
    pub fn new(xpub: Xpub, origin: Option<(Fingerprint, DerivationPath)>) -> RecoveryKey {
        RecoveryKey { origin, xpub }
    }

    /// The extended public key.
    pub fn xpub(&self) -> &Xpub {
        &self.xpub
    }

    /// The origin (master fingerprint and path to the xpub), if given.
    pub fn origin(&self) -> Option<&(Fingerprint, DerivationPath)> {
        self.origin.as_ref()
    }

    /// The fingerprint PSBT key sources use: the origin's, else the xpub's own.
    pub fn master_fingerprint(&self) -> Fingerprint {
        match &self.origin {
            Some((fingerprint, _)) => *fingerprint,
            None => self.xpub.fingerprint(),
        }
    }

    /// The path from the master key to the xpub (empty without an origin).
    pub fn origin_path(&self) -> DerivationPath {
        match &self.origin {
            Some((_, path)) => path.clone(),
            None => DerivationPath::master(),
        }
    }

    /// Mainnet or test networks, as encoded in the xpub's version bytes.
    pub fn network_kind(&self) -> NetworkKind {
        self.xpub.network
    }

    /// The key as it appears in the descriptor of a keychain: `<key>/0/*` or `<key>/1/*`.
    pub fn descriptor_key(&self, keychain: Keychain) -> DescriptorPublicKey {
        DescriptorPublicKey::XPub(DescriptorXKey {
            origin: self.origin.clone(),
            xkey: self.xpub,
            derivation_path: DerivationPath::from(vec![ChildNumber::Normal {
                index: keychain.child(),
            }]),
            wildcard: Wildcard::Unhardened,
        })
    }

    /// Reads the keychain and index a PSBT key source claims for this key.
    ///
    /// The source must carry this key's master fingerprint and the path
    /// `origin path / (0|1) / index` with both final steps unhardened. Returns `None` otherwise.
    pub fn claimed_derivation(&self, source: &KeySource) -> Option<(Keychain, u32)> {
        let (fingerprint, path) = source;
        if *fingerprint != self.master_fingerprint() {
            return None;
        }
        let prefix = self.origin_path();
        let steps: &[ChildNumber] = path.as_ref();
        let prefix_steps: &[ChildNumber] = prefix.as_ref();
        if steps.len() != prefix_steps.len() + 2 || !steps.starts_with(prefix_steps) {
            return None;
        }
        match steps.get(prefix_steps.len()..)? {
            [
                ChildNumber::Normal { index: keychain },
                ChildNumber::Normal { index },
            ] => Some((Keychain::from_child(*keychain)?, *index)),
            _ => None,
        }
    }

    /// Whether a PSBT key source names this key's master fingerprint (a claim of ownership).
    pub fn is_claimed_by(&self, source: &KeySource) -> bool {
        source.0 == self.master_fingerprint()
    }
}

impl fmt::Display for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Reuse miniscript's spelling of `[fp/path]xpub` so that the string parses back.
        let key = DescriptorPublicKey::XPub(DescriptorXKey {
            origin: self.origin.clone(),
            xkey: self.xpub,
            derivation_path: DerivationPath::master(),
            wildcard: Wildcard::None,
        });
        write!(f, "{key}")
    }
}

impl FromStr for RecoveryKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| KeyError::InvalidRecoveryKey {
            value: s.to_owned(),
            reason,
        };
        let key = DescriptorPublicKey::from_str(s).map_err(|e| invalid(e.to_string()))?;
        match key {
            DescriptorPublicKey::XPub(x) => {
                if !x.derivation_path.is_master() || x.wildcard != Wildcard::None {
                    return Err(invalid(
                        "give the xpub without a derivation suffix: /0/* and /1/* are added"
                            .to_owned(),
                    ));
                }
                Ok(RecoveryKey {
                    origin: x.origin,
                    xpub: x.xkey,
                })
            }
            DescriptorPublicKey::Single(_) => Err(invalid(
                "expected an extended public key, not a single key".to_owned(),
            )),
            DescriptorPublicKey::MultiXPub(_) => {
                Err(invalid("multipath keys are not accepted".to_owned()))
            }
        }
    }
}

impl Serialize for RecoveryKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecoveryKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        RecoveryKey::from_str(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bitcoin::bip32::Xpriv;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    fn key(seed: u8) -> PublicKey {
        let secp = Secp256k1::new();
        PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[seed; 32]).unwrap())
    }

    #[test]
    fn fingerprint_is_hash160_prefix_like_bip32() {
        let secp = Secp256k1::new();
        let xpriv = Xpriv::new_master(NetworkKind::Test, &[3; 32]).unwrap();
        let xpub = Xpub::from_priv(&secp, &xpriv);
        // BIP32 defines an extended key's fingerprint from its public key alone.
        assert_eq!(fingerprint_of(&xpub.public_key), xpub.fingerprint());
    }

    #[test]
    fn hsm_key_json_round_trip_and_fingerprint_check() {
        let k = HsmKey::new("ops-a", key(1));
        let json = serde_json::to_string(&k).unwrap();
        assert!(json.contains(&format!("\"public_key\":\"{}\"", k.public_key)));
        assert!(json.contains(&format!("\"fingerprint\":\"{}\"", k.fingerprint)));
        let back: HsmKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, k);

        let tampered = json.replace(&k.fingerprint.to_string(), "00000000");
        let err = serde_json::from_str::<HsmKey>(&tampered).unwrap_err();
        assert!(err.to_string().contains("fingerprint"), "{err}");

        let uncompressed = serde_json::json!({
            "label": "x",
            "public_key": bitcoin::hex::DisplayHex::to_lower_hex_string(&k.public_key.serialize_uncompressed()[..]),
            "fingerprint": k.fingerprint.to_string(),
        });
        assert!(serde_json::from_value::<HsmKey>(uncompressed).is_err());
    }

    #[test]
    fn descriptor_key_has_fingerprint_origin() {
        let k = HsmKey::new("a", key(2));
        assert_eq!(
            k.descriptor_key().to_string(),
            format!("[{}]{}", k.fingerprint, k.public_key)
        );
    }

    #[test]
    fn labels() {
        assert!(validate_label("ops-a.1_b").is_ok());
        assert!(matches!(
            validate_label(""),
            Err(KeyError::InvalidLabel { .. })
        ));
        assert!(matches!(
            validate_label("a,b"),
            Err(KeyError::InvalidLabel { .. })
        ));
        assert!(matches!(
            validate_label("pk(a)"),
            Err(KeyError::InvalidLabel { .. })
        ));
        assert!(matches!(
            validate_label(&"a".repeat(65)),
            Err(KeyError::InvalidLabel { .. })
        ));
        assert!(matches!(
            validate_label("recovery"),
            Err(KeyError::ReservedLabel { .. })
        ));
    }

    #[test]
    fn recovery_key_parse_display_and_claims() {
        let secp = Secp256k1::new();
        let master = Xpriv::new_master(NetworkKind::Test, &[9; 32]).unwrap();
        let path = DerivationPath::from_str("m/48'/1'/0'/2'").unwrap();
        let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).unwrap());
        let fp = master.fingerprint(&secp);
        let s = format!("[{fp}/48'/1'/0'/2']{xpub}");
        let r = RecoveryKey::from_str(&s).unwrap();
        assert_eq!(r.to_string(), s);
        assert_eq!(r.master_fingerprint(), fp);
        assert_eq!(RecoveryKey::from_str(&r.to_string()).unwrap(), r);
        assert_eq!(
            r.descriptor_key(Keychain::Change).to_string(),
            format!("{s}/1/*")
        );

        let full = path.extend([
            ChildNumber::from_normal_idx(1).unwrap(),
            ChildNumber::from_normal_idx(7).unwrap(),
        ]);
        assert_eq!(
            r.claimed_derivation(&(fp, full)),
            Some((Keychain::Change, 7))
        );
        let hardened = path.extend([
            ChildNumber::from_normal_idx(0).unwrap(),
            ChildNumber::from_hardened_idx(7).unwrap(),
        ]);
        assert_eq!(r.claimed_derivation(&(fp, hardened)), None);
        let third = path.extend([
            ChildNumber::from_normal_idx(2).unwrap(),
            ChildNumber::from_normal_idx(7).unwrap(),
        ]);
        assert_eq!(r.claimed_derivation(&(fp, third)), None);
        let short = DerivationPath::from_str("m/0/7").unwrap();
        assert_eq!(r.claimed_derivation(&(fp, short)), None);

        assert!(RecoveryKey::from_str(&format!("{s}/0/*")).is_err());
        assert!(RecoveryKey::from_str(&key(1).to_string()).is_err());
        assert!(RecoveryKey::from_str("nonsense").is_err());

        // Without origin, key sources use the xpub's own fingerprint and a bare 0|1/index.
        let bare = RecoveryKey::from_str(&xpub.to_string()).unwrap();
        let p = DerivationPath::from_str("m/0/3").unwrap();
        assert_eq!(
            bare.claimed_derivation(&(xpub.fingerprint(), p)),
            Some((Keychain::Receive, 3))
        );
    }
}
