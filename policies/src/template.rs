//! Policy templates and their compilation to `wsh()` descriptors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use bitcoin::hashes::{hash160, ripemd160, sha256};
use miniscript::descriptor::DescriptorPublicKey;
use miniscript::policy::Concrete;
use miniscript::{Descriptor, ForEachKey, Segwitv0, TranslatePk, Translator, hash256};
use serde::{Deserialize, Serialize};

use crate::keys::{HsmKey, KeyError, Keychain, RECOVERY_NAME, RecoveryKey};

/// Errors found while checking or compiling a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// An HSM key is not usable (bad label, reserved label, wrong fingerprint).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The template lists no HSM key.
    #[error("the template has no hsm key")]
    NoHsmKeys,
    /// Two HSM keys share a label.
    #[error("hsm key label {label:?} is used twice")]
    DuplicateLabel {
        /// The repeated label.
        label: String,
    },
    /// Two HSM keys are the same public key.
    #[error("hsm keys {first:?} and {second:?} are the same public key")]
    DuplicatePublicKey {
        /// Label of the first key.
        first: String,
        /// Label of the second key.
        second: String,
    },
    /// Two different HSM keys have the same fingerprint, so PSBT key sources would be ambiguous.
    #[error("hsm keys {first:?} and {second:?} share fingerprint {fingerprint}")]
    DuplicateFingerprint {
        /// Label of the first key.
        first: String,
        /// Label of the second key.
        second: String,
        /// The shared fingerprint.
        fingerprint: String,
    },
    /// The threshold is zero.
    #[error("threshold must be at least 1")]
    ThresholdZero,
    /// The threshold exceeds the number of HSM keys.
    #[error("threshold {threshold} exceeds the {keys} hsm keys")]
    ThresholdTooLarge {
        /// The threshold asked.
        threshold: usize,
        /// The number of HSM keys.
        keys: usize,
    },
    /// The recovery timelock is zero, which would make the recovery key spend at once.
    #[error("recovery_after must be at least 1 block")]
    RecoveryAfterZero,
    /// The custom policy string does not parse.
    #[error("invalid policy {policy:?}: {reason}")]
    PolicyParse {
        /// The policy string.
        policy: String,
        /// The parser's message.
        reason: String,
    },
    /// The custom policy names a key that is neither an HSM label nor `recovery`.
    #[error("policy names unknown key {name:?} (known: the hsm key labels and \"recovery\")")]
    UnknownKeyName {
        /// The unknown name.
        name: String,
    },
    /// The custom policy does not use the recovery key; addresses would then repeat.
    #[error("policy does not use the recovery key \"recovery\"; every address would be the same")]
    RecoveryNotUsed,
    /// An HSM key of the template does not appear in the custom policy.
    #[error("hsm key {label:?} is listed but not used by the policy")]
    UnusedHsmKey {
        /// The unused key's label.
        label: String,
    },
    /// A hash in the policy is not valid hex of the right length.
    #[error("invalid {kind} hash {value:?} in policy")]
    InvalidHash {
        /// Which hash function.
        kind: &'static str,
        /// The value refused.
        value: String,
    },
    /// The miniscript compiler refused the policy.
    #[error("policy does not compile to segwit v0 miniscript: {reason}")]
    Compile {
        /// The compiler's message.
        reason: String,
    },
    /// The compiled descriptor fails miniscript's sanity check.
    #[error("{keychain} descriptor fails the sanity check: {reason}")]
    Sanity {
        /// Which descriptor.
        keychain: Keychain,
        /// Miniscript's message.
        reason: String,
    },
    /// The compiled descriptor has no wildcard, so every address would be the same.
    #[error("{keychain} descriptor is not ranged")]
    NotRanged {
        /// Which descriptor.
        keychain: Keychain,
    },
}

/// The receive (`/0/*`) and change (`/1/*`) descriptors of a policy.
///
/// In JSON each descriptor is its string with checksum, e.g. `"wsh(...)#abcdefgh"`;
/// a descriptor without checksum is refused when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorPair {
    /// Descriptor for receive addresses.
    pub receive: Descriptor<DescriptorPublicKey>,
    /// Descriptor for change addresses.
    pub change: Descriptor<DescriptorPublicKey>,
}

impl DescriptorPair {
    /// The descriptor of a keychain.
    pub fn get(&self, keychain: Keychain) -> &Descriptor<DescriptorPublicKey> {
        match keychain {
            Keychain::Receive => &self.receive,
            Keychain::Change => &self.change,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescriptorPairRepr {
    receive: String,
    change: String,
}

impl Serialize for DescriptorPair {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `Display` of a descriptor appends its checksum.
        DescriptorPairRepr {
            receive: self.receive.to_string(),
            change: self.change.to_string(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DescriptorPair {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = DescriptorPairRepr::deserialize(deserializer)?;
        let parse = |s: &str, keychain: &str| {
            if !s.contains('#') {
                return Err(serde::de::Error::custom(format!(
                    "{keychain} descriptor {s:?} has no checksum"
                )));
            }
            Descriptor::<DescriptorPublicKey>::from_str(s).map_err(|e| {
                serde::de::Error::custom(format!("invalid {keychain} descriptor {s:?}: {e}"))
            })
        };
        Ok(DescriptorPair {
            receive: parse(&repr.receive, "receive")?,
            change: parse(&repr.change, "change")?,
        })
    }
}

/// A way to build a policy from HSM keys and the recovery key.
///
/// Serialised with a `kind` tag (`"cold"`, `"hot"`, `"custom"`) so that it can live in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Template {
    /// `threshold` of the HSM keys, or the recovery key after `recovery_after` blocks.
    Cold {
        /// Signatures needed from the HSM keys.
        threshold: usize,
        /// The HSM keys.
        hsm_keys: Vec<HsmKey>,
        /// The offline recovery key.
        recovery: RecoveryKey,
        /// Relative timelock of the recovery path, in blocks (`older(n)`).
        recovery_after: u16,
    },
    /// One HSM key, or the recovery key after `recovery_after` blocks.
    Hot {
        /// The HSM key.
        hsm_key: HsmKey,
        /// The offline recovery key.
        recovery: RecoveryKey,
        /// Relative timelock of the recovery path, in blocks (`older(n)`).
        recovery_after: u16,
    },
    /// A miniscript policy whose keys are named by HSM key label and `recovery`.
    ///
    /// Example: `or(9@thresh(2,pk(ops-a),pk(ops-b),pk(ops-c)),1@and(pk(recovery),older(1000)))`.
    Custom {
        /// The policy in miniscript's policy language.
        policy: String,
        /// The HSM keys the policy names; each must be used.
        hsm_keys: Vec<HsmKey>,
        /// The offline recovery key; the policy must use it.
        recovery: RecoveryKey,
    },
}

impl Template {
    /// `"cold"`, `"hot"` or `"custom"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Template::Cold { .. } => "cold",
            Template::Hot { .. } => "hot",
            Template::Custom { .. } => "custom",
        }
    }

    /// The kinds [`Template::kind`] can return.
    pub const KINDS: [&'static str; 3] = ["cold", "hot", "custom"];

    /// The HSM keys of the template, in the order given.
    pub fn hsm_keys(&self) -> Vec<HsmKey> {
        match self {
            Template::Cold { hsm_keys, .. } | Template::Custom { hsm_keys, .. } => hsm_keys.clone(),
            Template::Hot { hsm_key, .. } => vec![hsm_key.clone()],
        }
    }

    /// The recovery key of the template.
    pub fn recovery(&self) -> &RecoveryKey {
        match self {
            Template::Cold { recovery, .. }
            | Template::Hot { recovery, .. }
            | Template::Custom { recovery, .. } => recovery,
        }
    }

    /// The miniscript policy, keys named by label and `recovery`.
    ///
    /// # Errors
    /// Any check of the template's parameters or keys that fails.
    pub fn policy(&self) -> Result<String, TemplateError> {
        let keys = self.hsm_keys();
        check_keys(&keys)?;
        match self {
            Template::Cold {
                threshold,
                recovery_after,
                ..
            } => {
                if *threshold == 0 {
                    return Err(TemplateError::ThresholdZero);
                }
                if *threshold > keys.len() {
                    return Err(TemplateError::ThresholdTooLarge {
                        threshold: *threshold,
                        keys: keys.len(),
                    });
                }
                if *recovery_after == 0 {
                    return Err(TemplateError::RecoveryAfterZero);
                }
                let pks: Vec<String> = keys.iter().map(|k| format!("pk({})", k.label)).collect();
                let hsm = match pks.as_slice() {
                    [single] => single.clone(),
                    _ => format!("thresh({threshold},{})", pks.join(",")),
                };
                // The weights tell the compiler the HSM path is the usual one, so it gets
                // the cheaper witness.
                Ok(format!(
                    "or(99@{hsm},1@and(pk({RECOVERY_NAME}),older({recovery_after})))"
                ))
            }
            Template::Hot {
                hsm_key,
                recovery_after,
                ..
            } => {
                if *recovery_after == 0 {
                    return Err(TemplateError::RecoveryAfterZero);
                }
                Ok(format!(
                    "or(99@pk({}),1@and(pk({RECOVERY_NAME}),older({recovery_after})))",
                    hsm_key.label
                ))
            }
            Template::Custom { policy, .. } => Ok(policy.clone()),
        }
    }

    /// Compiles the template (miniscript policy compiler, segwit v0) to `wsh()` descriptors.
    ///
    /// The policy is compiled once with named keys, then the names are replaced by
    /// the HSM keys and by `<recovery>/0/*` or `<recovery>/1/*`, so receive and change
    /// have the same script shape.
    ///
    /// # Errors
    /// A [`TemplateError`] naming the first problem: parameters, keys, names in a custom
    /// policy, compilation, sanity check.
    pub fn compile(&self) -> Result<DescriptorPair, TemplateError> {
        let policy_str = self.policy()?;
        let keys = self.hsm_keys();
        let policy =
            Concrete::<String>::from_str(&policy_str).map_err(|e| TemplateError::PolicyParse {
                policy: policy_str.clone(),
                reason: e.to_string(),
            })?;

        let mut unknown = None;
        let mut used = BTreeSet::new();
        policy.for_each_key(|name| {
            if name != RECOVERY_NAME && !keys.iter().any(|k| &k.label == name) {
                unknown.get_or_insert_with(|| name.clone());
            }
            used.insert(name.clone());
            true
        });
        if let Some(name) = unknown {
            return Err(TemplateError::UnknownKeyName { name });
        }
        if !used.contains(RECOVERY_NAME) {
            return Err(TemplateError::RecoveryNotUsed);
        }
        if let Some(k) = keys.iter().find(|k| !used.contains(&k.label)) {
            return Err(TemplateError::UnusedHsmKey {
                label: k.label.clone(),
            });
        }

        let ms = policy
            .compile::<Segwitv0>()
            .map_err(|e| TemplateError::Compile {
                reason: e.to_string(),
            })?;
        let named = Descriptor::new_wsh(ms).map_err(|e| TemplateError::Compile {
            reason: e.to_string(),
        })?;

        let receive = instantiate(&named, &keys, self.recovery(), Keychain::Receive)?;
        let change = instantiate(&named, &keys, self.recovery(), Keychain::Change)?;
        Ok(DescriptorPair { receive, change })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.policy() {
            Ok(policy) => write!(f, "{} template: {policy}", self.kind()),
            Err(e) => write!(f, "{} template (invalid: {e})", self.kind()),
        }
    }
}

/// Checks labels, fingerprints, and that labels, keys and fingerprints are all distinct.
pub(crate) fn check_keys(keys: &[HsmKey]) -> Result<(), TemplateError> {
    if keys.is_empty() {
        return Err(TemplateError::NoHsmKeys);
    }
    let mut labels = BTreeMap::new();
    let mut pubkeys = BTreeMap::new();
    let mut fingerprints = BTreeMap::new();
    for key in keys {
        key.validate()?;
        if labels.insert(key.label.as_str(), ()).is_some() {
            return Err(TemplateError::DuplicateLabel {
                label: key.label.clone(),
            });
        }
        if let Some(first) = pubkeys.insert(key.public_key, key.label.clone()) {
            return Err(TemplateError::DuplicatePublicKey {
                first,
                second: key.label.clone(),
            });
        }
        if let Some(first) = fingerprints.insert(key.fingerprint, key.label.clone()) {
            return Err(TemplateError::DuplicateFingerprint {
                first,
                second: key.label.clone(),
                fingerprint: key.fingerprint.to_string(),
            });
        }
    }
    Ok(())
}

/// Replaces key names by real keys for one keychain and checks the result.
fn instantiate(
    named: &Descriptor<String>,
    keys: &[HsmKey],
    recovery: &RecoveryKey,
    keychain: Keychain,
) -> Result<Descriptor<DescriptorPublicKey>, TemplateError> {
    let mut translator = NameTranslator {
        keys,
        recovery,
        keychain,
    };
    let descriptor = named.translate_pk(&mut translator).map_err(|e| match e {
        miniscript::TranslateErr::TranslatorErr(e) => e,
        miniscript::TranslateErr::OuterError(e) => TemplateError::Compile {
            reason: e.to_string(),
        },
    })?;
    descriptor
        .sanity_check()
        .map_err(|e| TemplateError::Sanity {
            keychain,
            reason: e.to_string(),
        })?;
    if !descriptor.has_wildcard() {
        return Err(TemplateError::NotRanged { keychain });
    }
    Ok(descriptor)
}

struct NameTranslator<'a> {
    keys: &'a [HsmKey],
    recovery: &'a RecoveryKey,
    keychain: Keychain,
}

fn parse_hash<H: FromStr>(kind: &'static str, value: &str) -> Result<H, TemplateError> {
    H::from_str(value).map_err(|_| TemplateError::InvalidHash {
        kind,
        value: value.to_owned(),
    })
}

impl Translator<String, DescriptorPublicKey, TemplateError> for NameTranslator<'_> {
    fn pk(&mut self, name: &String) -> Result<DescriptorPublicKey, TemplateError> {
        if name == RECOVERY_NAME {
            return Ok(self.recovery.descriptor_key(self.keychain));
        }
        self.keys
            .iter()
            .find(|k| &k.label == name)
            .map(HsmKey::descriptor_key)
            .ok_or_else(|| TemplateError::UnknownKeyName { name: name.clone() })
    }

    fn sha256(&mut self, h: &String) -> Result<sha256::Hash, TemplateError> {
        parse_hash("sha256", h)
    }

    fn hash256(&mut self, h: &String) -> Result<hash256::Hash, TemplateError> {
        parse_hash("hash256", h)
    }

    fn ripemd160(&mut self, h: &String) -> Result<ripemd160::Hash, TemplateError> {
        parse_hash("ripemd160", h)
    }

    fn hash160(&mut self, h: &String) -> Result<hash160::Hash, TemplateError> {
        parse_hash("hash160", h)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};

    fn key(label: &str, seed: u8) -> HsmKey {
        let sk = SecretKey::from_slice(&[seed; 32]).unwrap();
        HsmKey::new(label, PublicKey::from_secret_key(&Secp256k1::new(), &sk))
    }

    #[test]
    fn single_key_cold_template_uses_pk_not_thresh() {
        let recovery = RecoveryKey::from_str(
            "tpubD6NzVbkrYhZ4XgiXtGrdW5XDAPFCL9h7we1vwNCpn8tGbBcgfVYjXyhWo4E1xkh56hjod1RhGjxbaTLV3X4FyWuejifB9jusQ46QzG87VKp",
        )
        .unwrap();
        let t = Template::Cold {
            threshold: 1,
            hsm_keys: vec![key("solo", 1)],
            recovery,
            recovery_after: 6,
        };
        assert_eq!(
            t.policy().unwrap(),
            "or(99@pk(solo),1@and(pk(recovery),older(6)))"
        );
        assert!(t.compile().is_ok());
        assert!(t.to_string().starts_with("cold template: or("));
    }

    #[test]
    fn duplicate_fingerprints_are_refused() {
        let a = key("a", 1);
        let mut b = key("b", 2);
        b.fingerprint = a.fingerprint;
        // `validate` catches the forged fingerprint first.
        assert!(matches!(check_keys(&[a, b]), Err(TemplateError::Key(_))));
    }
}
