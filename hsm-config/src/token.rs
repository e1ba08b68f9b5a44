//! The PKCS#11 module, tokens and sessions.

use std::fmt;
use std::path::{Path, PathBuf};

use bitcoin::bip32::Fingerprint;
use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::{self, Message, PublicKey, Secp256k1, VerifyOnly, ecdsa::Signature};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use serde::{Deserialize, Serialize};

pub use cryptoki::object::ObjectHandle;
pub use cryptoki::slot::Slot;

use crate::ecdsa::{SECP256K1_EC_PARAMS, fingerprint, key_hash160, public_key_from_ec_point};
use crate::error::{Error, Result};
use crate::pin::{SoPin, UserPin};
use crate::profile::MAX_TOKEN_LABEL_LEN;

/// A loaded and initialised PKCS#11 module.
///
/// `C_Initialize` is called once, with `CKF_OS_LOCKING_OK`, so the module may be used
/// from several threads. Cloning is cheap (an `Arc`); clones share the module.
///
/// SoftHSM2 reads `SOFTHSM2_CONF` once, during `C_Initialize`: the variable must be in the
/// process environment before [`Module::load`] (tests give each process its own).
#[derive(Clone)]
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish()
    }
}

/// What we know of a token: label and serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSummary {
    /// `CKA_LABEL` of the token (trailing padding removed).
    pub label: String,
    /// The token's serial number.
    pub serial: String,
    /// Manufacturer id.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Whether the token is initialised.
    pub initialized: bool,
}

impl Module {
    /// Load the module at `path` and call `C_Initialize` (OS locking).
    ///
    /// A module that answers `CKR_CRYPTOKI_ALREADY_INITIALIZED` (loaded twice in one
    /// process) is accepted.
    ///
    /// # Errors
    ///
    /// [`Error::ModuleLoad`] when the library cannot be opened or initialised.
    pub fn load(path: impl AsRef<Path>) -> Result<Module> {
        let path = path.as_ref().to_owned();
        let load_err = |source| Error::ModuleLoad {
            path: path.clone(),
            source,
        };
        let ctx = Pkcs11::new(&path).map_err(load_err)?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                tracing::debug!(module = %path.display(), "module already initialised in this process");
            }
            Err(e) => return Err(load_err(e)),
        }
        tracing::debug!(module = %path.display(), "PKCS#11 module loaded");
        Ok(Module { ctx, path })
    }

    /// Path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every token present, initialised or not.
    ///
    /// # Errors
    ///
    /// [`Error::Pkcs11`] from `C_GetSlotList` or `C_GetTokenInfo`.
    pub fn tokens(&self) -> Result<Vec<TokenSummary>> {
        Ok(self.slots()?.into_iter().map(|(_, t)| t).collect())
    }

    fn slots(&self) -> Result<Vec<(Slot, TokenSummary)>> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| Error::pkcs11("listing slots", e))?;
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let info = self
                .ctx
                .get_token_info(slot)
                .map_err(|e| Error::pkcs11(format!("reading token info of slot {slot}"), e))?;
            out.push((
                slot,
                TokenSummary {
                    label: info.label().trim_end().to_owned(),
                    serial: info.serial_number().trim_end().to_owned(),
                    manufacturer: info.manufacturer_id().trim_end().to_owned(),
                    model: info.model().trim_end().to_owned(),
                    initialized: info.token_initialized(),
                },
            ));
        }
        Ok(out)
    }

    /// The slot of the one initialised token labelled `token_label`.
    ///
    /// Slot numbers are not stable (SoftHSM2 renumbers after `C_InitToken`), so this is
    /// the only way this crate finds a token.
    ///
    /// # Errors
    ///
    /// [`Error::TokenNotFound`] when none, [`Error::DuplicateToken`] when several tokens
    /// carry the label, [`Error::Pkcs11`] when the module fails.
    pub fn find_slot(&self, token_label: &str) -> Result<Slot> {
        Ok(self.find_token(token_label)?.0)
    }

    /// Like [`Module::find_slot`], also returning the token's summary.
    ///
    /// # Errors
    ///
    /// As [`Module::find_slot`].
    pub fn find_token(&self, token_label: &str) -> Result<(Slot, TokenSummary)> {
        let slots = self.slots()?;
        let available = slots
            .iter()
            .filter(|(_, t)| t.initialized)
            .map(|(_, t)| t.label.clone())
            .collect::<Vec<_>>();
        let mut matching = slots
            .into_iter()
            .filter(|(_, t)| t.initialized && t.label == token_label);
        match (matching.next(), matching.next()) {
            (Some(found), None) => Ok(found),
            (None, _) => Err(Error::TokenNotFound {
                label: token_label.to_owned(),
                available,
            }),
            (Some(_), Some(_)) => Err(Error::DuplicateToken {
                label: token_label.to_owned(),
                count: 2 + matching.count(),
            }),
        }
    }

    /// Initialise a free token as `label`, with `so_pin`, and set its user PIN.
    ///
    /// Uses the first slot whose token is not initialised (SoftHSM2 always offers one).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLabel`], [`Error::TokenExists`] when a token already has the label,
    /// [`Error::NoFreeSlot`], [`Error::Pkcs11`] from `C_InitToken`, `C_Login` or `C_InitPIN`.
    pub fn init_token(
        &self,
        label: &str,
        so_pin: &SoPin,
        user_pin: &UserPin,
    ) -> Result<TokenSummary> {
        check_token_label(label)?;
        let slots = self.slots()?;
        if slots.iter().any(|(_, t)| t.initialized && t.label == label) {
            return Err(Error::TokenExists {
                label: label.to_owned(),
            });
        }
        let (slot, _) = slots
            .into_iter()
            .find(|(_, t)| !t.initialized)
            .ok_or(Error::NoFreeSlot)?;
        let context = format!("initialising token {label:?}");
        self.ctx
            .init_token(slot, so_pin.secret(), label)
            .map_err(|e| Error::pkcs11(context.clone(), e))?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11(context.clone(), e))?;
        login(&session, UserType::So, so_pin.secret(), label, "SO PIN")?;
        session
            .init_pin(user_pin.secret())
            .map_err(|e| Error::pkcs11(format!("setting the user PIN of token {label:?}"), e))?;
        if let Err(e) = session.logout() {
            tracing::warn!(token = label, error = %e, "SO logout failed");
        }
        drop(session);
        // The slot may change after C_InitToken: look the token up again, by label.
        let (_, summary) = self.find_token(label)?;
        tracing::info!(token = label, serial = %summary.serial, "token initialised");
        Ok(summary)
    }

    /// Open a read-write session on the token labelled `token_label` and log in as user.
    ///
    /// Login is per application and token: when another session already logged in,
    /// `CKR_USER_ALREADY_LOGGED_IN` is success. Closing the last session logs out.
    ///
    /// Consequence (measured with SoftHSM2 2.6.1): while a session of this process is
    /// logged in, the token answers `CKR_USER_ALREADY_LOGGED_IN` *before* checking the
    /// PIN, so a wrong PIN is only detected by the process's first login. Treat the PIN
    /// as checked once per process, at start-up.
    ///
    /// # Errors
    ///
    /// As [`Module::find_slot`]; [`Error::WrongPin`], [`Error::PinLocked`],
    /// [`Error::Pkcs11`] from `C_OpenSession` or `C_Login`.
    pub fn open_session(&self, token_label: &str, user_pin: &UserPin) -> Result<TokenSession> {
        let slot = self.find_slot(token_label)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11(format!("opening a session on token {token_label:?}"), e))?;
        login(
            &session,
            UserType::User,
            user_pin.secret(),
            token_label,
            "user PIN",
        )?;
        tracing::debug!(token = token_label, "session opened and logged in");
        Ok(TokenSession {
            session,
            token_label: token_label.to_owned(),
            secp: Secp256k1::verification_only(),
        })
    }
}

fn login(
    session: &Session,
    user: UserType,
    pin: &secrecy::SecretString,
    token: &str,
    what: &'static str,
) -> Result<()> {
    match session.login(user, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(Error::WrongPin {
            token: token.to_owned(),
            what,
        }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Error::PinLocked {
            token: token.to_owned(),
            what,
        }),
        Err(e) => Err(Error::pkcs11(format!("logging in to token {token:?}"), e)),
    }
}

fn check_token_label(label: &str) -> Result<()> {
    let reason = if label.is_empty() {
        "empty"
    } else if label.len() > MAX_TOKEN_LABEL_LEN {
        "longer than 32 bytes"
    } else if label.trim() != label {
        "leading or trailing spaces (PKCS#11 pads labels with spaces)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidLabel {
        label: label.to_owned(),
        reason,
    })
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
    fn new(label: String, id: Vec<u8>, public_key: PublicKey) -> Self {
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
/// Keys generated on the token with [`TokenSession::generate_key`] read back as
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

/// A logged-in read-write session on one token.
///
/// `Send` (it can move to a worker thread) but not `Sync`: one thread uses a session at a
/// time. Object handles are valid for this session only; persist labels, never handles.
pub struct TokenSession {
    session: Session,
    token_label: String,
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

const PUBLIC: &str = "public key";
const PRIVATE: &str = "private key";

impl TokenSession {
    /// Label of the token this session is on.
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

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

    fn err(&self, context: String, e: CkError) -> Error {
        Error::pkcs11(format!("token {:?}: {context}", self.token_label), e)
    }

    fn find(&self, template: &[Attribute], what: &str) -> Result<Vec<ObjectHandle>> {
        self.session
            .find_objects(template)
            .map_err(|e| self.err(what.to_owned(), e))
    }

    fn attributes(
        &self,
        handle: ObjectHandle,
        types: &[AttributeType],
        what: &str,
    ) -> Result<Vec<Attribute>> {
        self.session
            .get_attributes(handle, types)
            .map_err(|e| self.err(what.to_owned(), e))
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

    fn read_public_key(&self, handle: ObjectHandle, label: &str) -> Result<PublicKey> {
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

    fn read_id(&self, handle: ObjectHandle) -> Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn module_is_send_sync_and_session_is_send() {
        assert_send_sync::<Module>();
        assert_send::<TokenSession>();
    }

    #[test]
    fn token_labels_are_checked() {
        assert!(check_token_label("custody-dev").is_ok());
        assert!(check_token_label("").is_err());
        assert!(check_token_label(&"x".repeat(33)).is_err());
        assert!(check_token_label(" padded").is_err());
    }

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
