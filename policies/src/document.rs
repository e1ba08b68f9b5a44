//! Policy documents: a named, versioned, self-verifying record of a policy.

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::bip32::Fingerprint;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, Network, NetworkKind};
use miniscript::descriptor::{DefiniteDescriptorKey, DescriptorPublicKey, SinglePubKey};
use miniscript::{Descriptor, ForEachKey, TranslatePk, Translator};
use serde::{Deserialize, Serialize};

pub use crate::keys::Keychain;
use crate::keys::{HsmKey, KeyError, RecoveryKey};
pub use crate::template::DescriptorPair;
use crate::template::{Template, TemplateError, check_keys};

/// Errors from building, reading or using a [`PolicyDocument`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The template does not compile.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The rules section is invalid for this policy.
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// A listed HSM key is invalid.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The JSON does not parse into a document (syntax, unknown field, bad value).
    #[error("invalid policy document json: {0}")]
    Json(#[from] serde_json::Error),
    /// The name is empty.
    #[error("policy name is empty")]
    EmptyName,
    /// The stated id is not the hash of the content.
    #[error("policy id {stated} does not match its content, which hashes to {computed}")]
    IdMismatch {
        /// The id written in the document.
        stated: PolicyId,
        /// The id computed from the content.
        computed: PolicyId,
    },
    /// The template kind is not one this crate knows.
    #[error("unknown template kind {template:?} (expected cold, hot or custom)")]
    UnknownTemplate {
        /// The kind found.
        template: String,
    },
    /// A descriptor is not `wsh()` miniscript.
    #[error("{keychain} descriptor is not wsh(): {descriptor}")]
    NotWsh {
        /// Which descriptor.
        keychain: Keychain,
        /// The descriptor.
        descriptor: String,
    },
    /// A descriptor is not ranged.
    #[error("{keychain} descriptor is not ranged: {descriptor}")]
    NotRanged {
        /// Which descriptor.
        keychain: Keychain,
        /// The descriptor.
        descriptor: String,
    },
    /// A descriptor fails miniscript's sanity check.
    #[error("{keychain} descriptor fails the sanity check: {reason}")]
    Sanity {
        /// Which descriptor.
        keychain: Keychain,
        /// Miniscript's message.
        reason: String,
    },
    /// A descriptor holds a key that is neither a listed HSM key nor the recovery key.
    #[error(
        "{keychain} descriptor holds key {key} that is not a listed hsm key nor the recovery key"
    )]
    UnexpectedKey {
        /// Which descriptor.
        keychain: Keychain,
        /// The key as written in the descriptor.
        key: String,
    },
    /// A listed HSM key does not appear in the descriptors.
    #[error("hsm key {label:?} is listed but not in the {keychain} descriptor")]
    HsmKeyNotInDescriptor {
        /// The key's label.
        label: String,
        /// Which descriptor.
        keychain: Keychain,
    },
    /// The recovery key does not appear in a descriptor.
    #[error("recovery key is not in the {keychain} descriptor")]
    RecoveryNotInDescriptor {
        /// Which descriptor.
        keychain: Keychain,
    },
    /// The change descriptor is not the receive descriptor with `/1/*` instead of `/0/*`.
    #[error(
        "change descriptor {change} is not the receive descriptor with /1/* (expected {expected})"
    )]
    ChangeMismatch {
        /// The change descriptor found.
        change: String,
        /// The change descriptor expected from the receive descriptor.
        expected: String,
    },
    /// The recovery key's network (xpub or tpub) does not fit the document's network.
    #[error("recovery key is for {key:?} networks but the policy network is {network}")]
    NetworkMismatch {
        /// The document's network.
        network: Network,
        /// The kind of network the xpub's version bytes encode.
        key: NetworkKind,
    },
    /// A derivation index is hardened or out of range.
    #[error("derivation index {index} is out of range (must be below 2^31)")]
    IndexOutOfRange {
        /// The index refused.
        index: u32,
    },
    /// Deriving or making an address failed.
    #[error("cannot derive {keychain} index {index}: {reason}")]
    Derivation {
        /// Which descriptor.
        keychain: Keychain,
        /// The index.
        index: u32,
        /// The underlying message.
        reason: String,
    },
}

/// The id of a policy document: SHA-256 of its canonical content, shown as 64 lower-case hex digits.
///
/// See [`PolicyDocument`] for exactly what is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId([u8; 32]);

impl PolicyId {
    /// The raw 32 bytes of the hash.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// The id of some canonical content.
    fn of(content: &[u8]) -> PolicyId {
        PolicyId(sha256::Hash::hash(content).to_byte_array())
    }
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_hex())
    }
}

impl std::str::FromStr for PolicyId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the lower-case spelling is accepted so an id has one string form.
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!("policy id {s:?} is not 64 lower-case hex digits"));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = s
                .get(2 * i..2 * i + 2)
                .ok_or_else(|| format!("policy id {s:?} is short"))?;
            *byte = u8::from_str_radix(pair, 16).map_err(|e| format!("policy id {s:?}: {e}"))?;
        }
        Ok(PolicyId(bytes))
    }
}

impl Serialize for PolicyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub use crate::rules::Rules;

/// A named, versioned policy: its descriptors, keys and rules, identified by a content hash.
///
/// # JSON and id
///
/// The JSON object has these fields, in this order:
/// `id`, `version`, `name`, `network`, `template`, `descriptors` (`{"receive", "change"}`,
/// descriptor strings with checksum), `hsm_keys` (array of `{"label", "public_key",
/// "fingerprint"}`), `recovery` (`"[fp/path]xpub"`), `rules` (`{}`). Unknown fields are refused.
///
/// The id is computed as follows, so that other languages can reproduce it:
/// 1. Take the document without its `id` field: the object with the eight other fields in the
///    order above, nested objects in the order above too.
/// 2. Serialise it as compact JSON: no whitespace at all, strings escaped as JSON requires
///    (`"` and `\` and control characters; non-ASCII characters are written as UTF-8, not
///    `\u` escapes), integers in decimal.
///    `network` is one of `"bitcoin"`, `"testnet"`, `"testnet4"`, `"signet"`, `"regtest"`;
///    public keys are 66 lower-case hex digits, fingerprints 8 lower-case hex digits.
/// 3. Hash the UTF-8 bytes with SHA-256; the id is the 64 lower-case hex digits of the hash.
///
/// For example, the content starts `{"version":1,"name":"treasury","network":"regtest",...`.
///
/// Reading a document ([`PolicyDocument::from_json`], or deserialising it with serde) re-checks
/// everything: the id, the descriptors, the keys and the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DocumentRepr")]
pub struct PolicyDocument {
    /// Hash of the content, see above.
    pub id: PolicyId,
    /// Version chosen by the operator; a new version is a new document with a new id.
    pub version: u32,
    /// Name chosen by the operator.
    pub name: String,
    /// Network the policy is for.
    pub network: Network,
    /// Kind of template it was made from: `cold`, `hot` or `custom`.
    pub template: String,
    /// The receive and change descriptors.
    pub descriptors: DescriptorPair,
    /// The HSM keys, exactly those in the descriptors.
    pub hsm_keys: Vec<HsmKey>,
    /// The offline recovery key, the only ranged key of the descriptors.
    pub recovery: RecoveryKey,
    /// Signer rules.
    pub rules: Rules,
}

/// The content hashed for the id: every field but `id`, in declaration order.
#[derive(Serialize)]
struct Canonical<'a> {
    version: u32,
    name: &'a str,
    network: Network,
    template: &'a str,
    descriptors: &'a DescriptorPair,
    hsm_keys: &'a [HsmKey],
    recovery: &'a RecoveryKey,
    rules: &'a Rules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentRepr {
    id: PolicyId,
    version: u32,
    name: String,
    network: Network,
    template: String,
    descriptors: DescriptorPair,
    hsm_keys: Vec<HsmKey>,
    recovery: RecoveryKey,
    rules: Rules,
}

impl TryFrom<DocumentRepr> for PolicyDocument {
    type Error = PolicyError;

    fn try_from(r: DocumentRepr) -> Result<Self, Self::Error> {
        let doc = PolicyDocument {
            id: r.id,
            version: r.version,
            name: r.name,
            network: r.network,
            template: r.template,
            descriptors: r.descriptors,
            hsm_keys: r.hsm_keys,
            recovery: r.recovery,
            rules: r.rules,
        };
        doc.verify()?;
        Ok(doc)
    }
}

impl PolicyDocument {
    /// Compiles a template into a new document and computes its id.
    ///
    /// # Errors
    /// [`PolicyError::Template`] if the template does not compile, [`PolicyError::EmptyName`],
    /// [`PolicyError::NetworkMismatch`] if the recovery key is for another network, or any
    /// other check of [`PolicyDocument::verify`].
    pub fn new(
        name: impl Into<String>,
        version: u32,
        network: Network,
        template: &Template,
    ) -> Result<PolicyDocument, PolicyError> {
        let descriptors = template.compile()?;
        let mut doc = PolicyDocument {
            id: PolicyId([0; 32]),
            version,
            name: name.into(),
            network,
            template: template.kind().to_owned(),
            descriptors,
            hsm_keys: template.hsm_keys(),
            recovery: template.recovery().clone(),
            rules: Rules::default(),
        };
        doc.id = doc.compute_id()?;
        doc.verify()?;
        Ok(doc)
    }

    /// The same policy with other rules: a new document with a new id.
    ///
    /// # Errors
    /// [`PolicyError::Rules`] if the rules do not fit the policy, or any other check of
    /// [`PolicyDocument::verify`].
    pub fn with_rules(mut self, rules: Rules) -> Result<PolicyDocument, PolicyError> {
        self.rules = rules;
        self.id = self.compute_id()?;
        self.verify()?;
        Ok(self)
    }

    /// Reads a document from JSON and verifies it (see [`PolicyDocument::verify`]).
    ///
    /// # Errors
    /// [`PolicyError::Json`] for malformed JSON or unknown fields, otherwise the first failed check.
    pub fn from_json(json: &str) -> Result<PolicyDocument, PolicyError> {
        // Through the raw form so that check failures keep their own error variant.
        let repr: DocumentRepr = serde_json::from_str(json)?;
        PolicyDocument::try_from(repr)
    }

    /// The document as indented JSON.
    ///
    /// # Errors
    /// [`PolicyError::Json`] if serialisation fails, which the types here do not cause.
    pub fn to_json_pretty(&self) -> Result<String, PolicyError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The exact bytes the id hashes: compact JSON of every field but `id`.
    ///
    /// # Errors
    /// [`PolicyError::Json`] if serialisation fails, which the types here do not cause.
    pub fn canonical_content(&self) -> Result<String, PolicyError> {
        let canonical = Canonical {
            version: self.version,
            name: &self.name,
            network: self.network,
            template: &self.template,
            descriptors: &self.descriptors,
            hsm_keys: &self.hsm_keys,
            recovery: &self.recovery,
            rules: &self.rules,
        };
        Ok(serde_json::to_string(&canonical)?)
    }

    /// The id the current content hashes to (which [`PolicyDocument::id`] must equal).
    ///
    /// # Errors
    /// As [`PolicyDocument::canonical_content`].
    pub fn compute_id(&self) -> Result<PolicyId, PolicyError> {
        Ok(PolicyId::of(self.canonical_content()?.as_bytes()))
    }

    /// Checks the whole document.
    ///
    /// The id matches the content; the template kind is known; the name is not empty; the
    /// HSM keys have valid labels, right fingerprints, and are distinct; both descriptors are
    /// sane, ranged `wsh()`; every key in them is a listed HSM key (as `[fp]pubkey`) or the
    /// recovery key (`/0/*` in receive, `/1/*` in change), and every listed key is in them; change
    /// is receive with `/1/*` for `/0/*`; the recovery key's network fits `network`.
    ///
    /// # Errors
    /// The [`PolicyError`] of the first failed check.
    pub fn verify(&self) -> Result<(), PolicyError> {
        let computed = self.compute_id()?;
        if computed != self.id {
            return Err(PolicyError::IdMismatch {
                stated: self.id,
                computed,
            });
        }
        if !Template::KINDS.contains(&self.template.as_str()) {
            return Err(PolicyError::UnknownTemplate {
                template: self.template.clone(),
            });
        }
        if self.name.trim().is_empty() {
            return Err(PolicyError::EmptyName);
        }
        check_keys(&self.hsm_keys)?;
        let expected_kind = NetworkKind::from(self.network);
        if self.recovery.network_kind() != expected_kind {
            return Err(PolicyError::NetworkMismatch {
                network: self.network,
                key: self.recovery.network_kind(),
            });
        }
        for keychain in [Keychain::Receive, Keychain::Change] {
            self.check_descriptor(keychain)?;
        }
        self.rules.check(self.network, &self.template)?;
        let expected_change = self
            .descriptors
            .receive
            .translate_pk(&mut ReceiveToChange {
                recovery: &self.recovery,
            })
            .map_err(|_| PolicyError::ChangeMismatch {
                change: self.descriptors.change.to_string(),
                expected: "(receive descriptor does not translate)".to_owned(),
            })?;
        if expected_change != self.descriptors.change {
            return Err(PolicyError::ChangeMismatch {
                change: self.descriptors.change.to_string(),
                expected: expected_change.to_string(),
            });
        }
        Ok(())
    }

    fn check_descriptor(&self, keychain: Keychain) -> Result<(), PolicyError> {
        let descriptor = self.descriptors.get(keychain);
        if !matches!(descriptor, Descriptor::Wsh(_)) {
            return Err(PolicyError::NotWsh {
                keychain,
                descriptor: descriptor.to_string(),
            });
        }
        descriptor.sanity_check().map_err(|e| PolicyError::Sanity {
            keychain,
            reason: e.to_string(),
        })?;
        if !descriptor.has_wildcard() {
            return Err(PolicyError::NotRanged {
                keychain,
                descriptor: descriptor.to_string(),
            });
        }
        let recovery_key = self.recovery.descriptor_key(keychain);
        let hsm_keys: BTreeMap<DescriptorPublicKey, &str> = self
            .hsm_keys
            .iter()
            .map(|k| (k.descriptor_key(), k.label.as_str()))
            .collect();
        let mut seen_hsm = BTreeSet::new();
        let mut seen_recovery = false;
        let mut unexpected = None;
        descriptor.for_each_key(|key| {
            if *key == recovery_key {
                seen_recovery = true;
            } else if let Some(label) = hsm_keys.get(key) {
                seen_hsm.insert(*label);
            } else {
                unexpected.get_or_insert_with(|| key.to_string());
            }
            true
        });
        if let Some(key) = unexpected {
            return Err(PolicyError::UnexpectedKey { keychain, key });
        }
        if !seen_recovery {
            return Err(PolicyError::RecoveryNotInDescriptor { keychain });
        }
        if let Some(k) = self
            .hsm_keys
            .iter()
            .find(|k| !seen_hsm.contains(k.label.as_str()))
        {
            return Err(PolicyError::HsmKeyNotInDescriptor {
                label: k.label.clone(),
                keychain,
            });
        }
        Ok(())
    }

    /// The descriptor of a keychain at an index, with every key definite.
    ///
    /// # Errors
    /// [`PolicyError::IndexOutOfRange`] for an index at or above 2^31 (hardened),
    /// [`PolicyError::Derivation`] if derivation fails.
    pub fn derive(
        &self,
        keychain: Keychain,
        index: u32,
    ) -> Result<Descriptor<DefiniteDescriptorKey>, PolicyError> {
        if index >= 0x8000_0000 {
            return Err(PolicyError::IndexOutOfRange { index });
        }
        self.descriptors
            .get(keychain)
            .at_derivation_index(index)
            .map_err(|e| PolicyError::Derivation {
                keychain,
                index,
                reason: e.to_string(),
            })
    }

    /// The address of a keychain at an index on the policy's network.
    ///
    /// # Errors
    /// As [`PolicyDocument::derive`].
    pub fn address(&self, keychain: Keychain, index: u32) -> Result<Address, PolicyError> {
        self.derive(keychain, index)?
            .address(self.network)
            .map_err(|e| PolicyError::Derivation {
                keychain,
                index,
                reason: e.to_string(),
            })
    }

    /// The HSM key with this fingerprint, if listed.
    pub fn hsm_key_by_fingerprint(&self, fingerprint: Fingerprint) -> Option<&HsmKey> {
        self.hsm_keys.iter().find(|k| k.fingerprint == fingerprint)
    }

    /// The HSM key with this public key, if listed.
    pub fn hsm_key_by_pubkey(&self, public_key: &PublicKey) -> Option<&HsmKey> {
        self.hsm_keys.iter().find(|k| &k.public_key == public_key)
    }

    /// The HSM key a definite descriptor key stands for, if any.
    pub(crate) fn hsm_key_of(&self, key: &DefiniteDescriptorKey) -> Option<&HsmKey> {
        match key.as_descriptor_public_key() {
            DescriptorPublicKey::Single(single) => match single.key {
                SinglePubKey::FullKey(pk) => self.hsm_key_by_pubkey(&pk.inner),
                SinglePubKey::XOnly(_) => None,
            },
            _ => None,
        }
    }

    /// Whether a definite descriptor key is a derivation of the recovery key.
    pub(crate) fn is_recovery_key(&self, key: &DefiniteDescriptorKey) -> bool {
        match key.as_descriptor_public_key() {
            DescriptorPublicKey::XPub(x) => x.xkey == *self.recovery.xpub(),
            _ => false,
        }
    }
}

/// Maps `<recovery>/0/*` to `<recovery>/1/*` and leaves every other key as it is.
struct ReceiveToChange<'a> {
    recovery: &'a RecoveryKey,
}

impl Translator<DescriptorPublicKey, DescriptorPublicKey, ()> for ReceiveToChange<'_> {
    fn pk(&mut self, pk: &DescriptorPublicKey) -> Result<DescriptorPublicKey, ()> {
        if *pk == self.recovery.descriptor_key(Keychain::Receive) {
            Ok(self.recovery.descriptor_key(Keychain::Change))
        } else {
            Ok(pk.clone())
        }
    }

    miniscript::translate_hash_clone!(DescriptorPublicKey, DescriptorPublicKey, ());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn policy_id_string_form() {
        let id = PolicyId::of(b"");
        // SHA-256 of the empty string.
        assert_eq!(
            id.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(id.to_string().parse::<PolicyId>().unwrap(), id);
        assert!("e3b0".parse::<PolicyId>().is_err());
        assert!("g".repeat(64).parse::<PolicyId>().is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
    }

    #[test]
    fn keychain_serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&Keychain::Change).unwrap(),
            "\"change\""
        );
        assert_eq!(
            serde_json::from_str::<Keychain>("\"receive\"").unwrap(),
            Keychain::Receive
        );
        assert!(serde_json::from_str::<Keychain>("\"Receive\"").is_err());
    }
}
