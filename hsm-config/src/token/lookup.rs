//! Finding keys on the token by label and reading them back.

use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::PublicKey;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

use super::{KeyAttributes, KeyInfo, TokenSession};
use crate::ecdsa::{SECP256K1_EC_PARAMS, public_key_from_ec_point};
use crate::error::{Error, Result};

const PUBLIC: &str = "public key";
const PRIVATE: &str = "private key";

impl TokenSession {
    /// Every secp256k1 key pair on the token (found through its public key), sorted by label.
    ///
    /// EC keys on other curves are skipped with a debug log.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateKey`] when two public keys share a label, [`Error::Pkcs11`],
    /// [`Error::InvalidEcPoint`].
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let handles = self.find(
            &[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
            ],
            "listing keys",
        )?;
        let mut keys = Vec::with_capacity(handles.len());
        for handle in handles {
            let attrs = self.attributes(
                handle,
                &[AttributeType::Label, AttributeType::EcParams],
                "reading a public key",
            )?;
            let mut label = None;
            let mut params = None;
            for attr in attrs {
                match attr {
                    Attribute::Label(l) => label = Some(String::from_utf8_lossy(&l).into_owned()),
                    Attribute::EcParams(p) => params = Some(p),
                    _ => {}
                }
            }
            let label = label.unwrap_or_default();
            if params.as_deref() != Some(&SECP256K1_EC_PARAMS[..]) {
                tracing::debug!(key = %label, "skipping an EC key that is not on secp256k1");
                continue;
            }
            keys.push(self.key_info(handle, label)?);
        }
        keys.sort_by(|a, b| a.label.cmp(&b.label));
        if let Some(pair) = keys.windows(2).find(|w| w[0].label == w[1].label) {
            return Err(Error::DuplicateKey {
                token: self.token_label.clone(),
                label: pair[0].label.clone(),
                class: PUBLIC,
                count: keys.iter().filter(|k| k.label == pair[0].label).count(),
            });
        }
        Ok(keys)
    }

    /// The key labelled `label` (read from its public key).
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`], [`Error::DuplicateKey`], [`Error::UnsupportedCurve`],
    /// [`Error::InvalidEcPoint`], [`Error::Pkcs11`].
    pub fn key(&self, label: &str) -> Result<KeyInfo> {
        let handle = self.unique(ObjectClass::PUBLIC_KEY, label)?;
        let params =
            self.attributes(handle, &[AttributeType::EcParams], "reading CKA_EC_PARAMS")?;
        let params = params.into_iter().find_map(|a| match a {
            Attribute::EcParams(p) => Some(p),
            _ => None,
        });
        match params {
            Some(p) if p == SECP256K1_EC_PARAMS => self.key_info(handle, label.to_owned()),
            Some(p) => Err(Error::UnsupportedCurve {
                label: label.to_owned(),
                params: p.to_lower_hex_string(),
            }),
            None => Err(Error::AttributeMissing {
                label: label.to_owned(),
                attribute: "CKA_EC_PARAMS",
            }),
        }
    }

    /// Handle of the private key labelled `label`, valid for this session only.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`], [`Error::DuplicateKey`], [`Error::Pkcs11`].
    pub fn private_key_handle(&self, label: &str) -> Result<ObjectHandle> {
        self.unique(ObjectClass::PRIVATE_KEY, label)
    }

    /// The private key's handle and the key's public information, in one call.
    ///
    /// # Errors
    ///
    /// As [`TokenSession::key`] and [`TokenSession::private_key_handle`].
    pub fn signing_key(&self, label: &str) -> Result<(ObjectHandle, KeyInfo)> {
        Ok((self.private_key_handle(label)?, self.key(label)?))
    }

    /// Read back the security attributes of the private key labelled `label`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`], [`Error::DuplicateKey`], [`Error::AttributeMissing`],
    /// [`Error::Pkcs11`].
    pub fn key_attributes(&self, label: &str) -> Result<KeyAttributes> {
        let handle = self.private_key_handle(label)?;
        let wanted = [
            (AttributeType::Sensitive, "CKA_SENSITIVE"),
            (AttributeType::AlwaysSensitive, "CKA_ALWAYS_SENSITIVE"),
            (AttributeType::Extractable, "CKA_EXTRACTABLE"),
            (AttributeType::NeverExtractable, "CKA_NEVER_EXTRACTABLE"),
            (AttributeType::Local, "CKA_LOCAL"),
            (AttributeType::Token, "CKA_TOKEN"),
            (AttributeType::Private, "CKA_PRIVATE"),
            (AttributeType::Sign, "CKA_SIGN"),
            (AttributeType::Decrypt, "CKA_DECRYPT"),
            (AttributeType::Unwrap, "CKA_UNWRAP"),
            (AttributeType::Derive, "CKA_DERIVE"),
        ];
        let types = wanted.iter().map(|(t, _)| *t).collect::<Vec<_>>();
        let attrs = self.attributes(
            handle,
            &types,
            &format!("reading attributes of key {label:?}"),
        )?;
        let mut values: [Option<bool>; 11] = [None; 11];
        for attr in attrs {
            let (index, value) = match attr {
                Attribute::Sensitive(v) => (0, v),
                Attribute::AlwaysSensitive(v) => (1, v),
                Attribute::Extractable(v) => (2, v),
                Attribute::NeverExtractable(v) => (3, v),
                Attribute::Local(v) => (4, v),
                Attribute::Token(v) => (5, v),
                Attribute::Private(v) => (6, v),
                Attribute::Sign(v) => (7, v),
                Attribute::Decrypt(v) => (8, v),
                Attribute::Unwrap(v) => (9, v),
                Attribute::Derive(v) => (10, v),
                _ => continue,
            };
            values[index] = Some(value);
        }
        let get = |i: usize| {
            values[i].ok_or(Error::AttributeMissing {
                label: label.to_owned(),
                attribute: wanted[i].1,
            })
        };
        Ok(KeyAttributes {
            sensitive: get(0)?,
            always_sensitive: get(1)?,
            extractable: get(2)?,
            never_extractable: get(3)?,
            local: get(4)?,
            token: get(5)?,
            private: get(6)?,
            sign: get(7)?,
            decrypt: get(8)?,
            unwrap: get(9)?,
            derive: get(10)?,
        })
    }

    fn unique(&self, class: ObjectClass, label: &str) -> Result<ObjectHandle> {
        let class_name = if class == ObjectClass::PRIVATE_KEY {
            PRIVATE
        } else {
            PUBLIC
        };
        let handles = self.find(
            &[
                Attribute::Class(class),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
            &format!("looking up {class_name} {label:?}"),
        )?;
        match handles.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::KeyNotFound {
                token: self.token_label.clone(),
                label: label.to_owned(),
                class: class_name,
            }),
            many => Err(Error::DuplicateKey {
                token: self.token_label.clone(),
                label: label.to_owned(),
                class: class_name,
                count: many.len(),
            }),
        }
    }

    pub(super) fn read_public_key(&self, handle: ObjectHandle, label: &str) -> Result<PublicKey> {
        let attrs = self.attributes(handle, &[AttributeType::EcPoint], "reading CKA_EC_POINT")?;
        let point = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or(Error::AttributeMissing {
                label: label.to_owned(),
                attribute: "CKA_EC_POINT",
            })?;
        public_key_from_ec_point(&point)
    }

    pub(super) fn read_id(&self, handle: ObjectHandle) -> Result<Vec<u8>> {
        let attrs = self.attributes(handle, &[AttributeType::Id], "reading CKA_ID")?;
        Ok(attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Id(id) => Some(id),
                _ => None,
            })
            .unwrap_or_default())
    }

    fn key_info(&self, public: ObjectHandle, label: String) -> Result<KeyInfo> {
        let public_key = self.read_public_key(public, &label)?;
        let id = self.read_id(public)?;
        Ok(KeyInfo::new(label, id, public_key))
    }
}
