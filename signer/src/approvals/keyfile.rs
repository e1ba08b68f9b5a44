//! Officer keys in a passphrase-encrypted file.
//!
//! The secret key is encrypted with XChaCha20-Poly1305 under a key derived from
//! the passphrase with Argon2id; the format, the public key and the KDF
//! parameters are authenticated as associated data, so a file whose public key
//! was swapped does not decrypt. The passphrase comes from a file or a prompt,
//! never from an argument; it and every derived secret are zeroized.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::secp256k1::ecdsa::Signature;
use bitcoin::secp256k1::rand::{self, RngCore as _};
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::token::TokenKeyRef;
use super::{ApprovalError, OfficerKey};

/// The `format` field of an officer key file.
pub const FORMAT: &str = "bastion-officer-key";

/// A passphrase: zeroized on drop, redacted in `Debug`.
pub struct Passphrase(SecretString);

impl Passphrase {
    /// Wraps a passphrase obtained elsewhere.
    pub fn new(passphrase: SecretString) -> Self {
        Self(passphrase)
    }

    /// Reads a passphrase from a file; one trailing newline is removed.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the file cannot be read, is not UTF-8 or is empty.
    pub fn from_file(path: &Path) -> Result<Self, ApprovalError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            ApprovalError::Key(format!("reading passphrase file {}: {e}", path.display()))
        })?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApprovalError::Key("passphrase file is not UTF-8".into()))?;
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        Self::checked(text)
    }

    /// Refuses an empty passphrase.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when it is empty.
    pub fn checked(text: &str) -> Result<Self, ApprovalError> {
        if text.is_empty() {
            return Err(ApprovalError::Key("the passphrase is empty".into()));
        }
        Ok(Self(SecretString::from(text)))
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([REDACTED])")
    }
}

/// Argon2id cost parameters, stored in the file so they can grow later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter second here, once per approval.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// The least a file may ask for (OWASP's Argon2id floor): a file cannot
    /// weaken its own protection below it.
    pub const MINIMUM: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    fn argon2(&self) -> Result<Argon2<'static>, ApprovalError> {
        if self.memory_kib < Self::MINIMUM.memory_kib || self.iterations < Self::MINIMUM.iterations
        {
            return Err(ApprovalError::Key(format!(
                "key file kdf parameters {self:?} are below the minimum {:?}",
                Self::MINIMUM
            )));
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| ApprovalError::Key(format!("kdf parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A `kind = "encrypted"` key file's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedKeyFile {
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// 16 random bytes, hex.
    pub salt: String,
    /// 24 random bytes, hex (XChaCha20-Poly1305 nonce).
    pub nonce: String,
    /// The encrypted 32-byte secret key with its 16-byte tag, hex.
    pub ciphertext: String,
}

/// Where the officer's secret lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyStore {
    /// Encrypted in this file.
    Encrypted(EncryptedKeyFile),
    /// On the officer's own PKCS#11 token.
    Pkcs11(TokenKeyRef),
}

/// An officer key file: the public key (the officer's id) and where the secret is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// The officer's public key.
    pub public_key: PublicKey,
    /// Where the secret key is.
    pub store: KeyStore,
}

impl KeyFile {
    /// Reads and checks a key file (it is not decrypted).
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when it cannot be read or is not an officer key file.
    pub fn load(path: &Path) -> Result<Self, ApprovalError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ApprovalError::Key(format!("reading {}: {e}", path.display())))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            ApprovalError::Key(format!(
                "{} is not an officer key file: {e}",
                path.display()
            ))
        })?;
        if file.format != FORMAT || file.version != 1 {
            return Err(ApprovalError::Key(format!(
                "{} is format {:?} version {}, expected {FORMAT:?} version 1",
                path.display(),
                file.format,
                file.version
            )));
        }
        Ok(file)
    }

    /// Writes the file with owner-only permissions; refuses to overwrite.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the file exists or cannot be written.
    pub fn save_new(&self, path: &Path) -> Result<(), ApprovalError> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| ApprovalError::Key(format!("encoding key file: {e}")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(|e| ApprovalError::Key(format!("creating {}: {e}", path.display())))?;
        file.write_all(json.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| ApprovalError::Key(format!("writing {}: {e}", path.display())))
    }

    /// The officer this file belongs to.
    pub fn officer(&self) -> super::OfficerId {
        super::OfficerId(self.public_key)
    }
}

/// The associated data: everything in the file but the secret's ciphertext.
fn associated_data(public_key: &PublicKey, kdf: &KdfParams) -> Vec<u8> {
    let mut aad = Vec::new();
    aad.extend_from_slice(FORMAT.as_bytes());
    aad.extend_from_slice(b"/v1/argon2id/xchacha20poly1305");
    aad.extend_from_slice(&public_key.serialize());
    aad.extend_from_slice(&kdf.memory_kib.to_be_bytes());
    aad.extend_from_slice(&kdf.iterations.to_be_bytes());
    aad.extend_from_slice(&kdf.parallelism.to_be_bytes());
    aad
}

fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8],
    kdf: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, ApprovalError> {
    let mut key = Zeroizing::new([0u8; 32]);
    kdf.argon2()?
        .hash_password_into(passphrase.bytes(), salt, key.as_mut())
        .map_err(|e| ApprovalError::Key(format!("deriving the file key: {e}")))?;
    Ok(key)
}

/// An officer's secret key held in memory (decrypted from a [`KeyFile`]).
pub struct FileKey {
    secret: Zeroizing<[u8; 32]>,
    public_key: PublicKey,
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl FileKey {
    /// Makes a new random key and its encrypted file under `passphrase`.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] when the KDF or the cipher fails.
    pub fn generate(
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<(FileKey, KeyFile), ApprovalError> {
        let secp = Secp256k1::signing_only();
        let mut rng = rand::thread_rng();
        let mut secret = Zeroizing::new([0u8; 32]);
        let mut secret_key = loop {
            rng.fill_bytes(secret.as_mut());
            if let Ok(key) = SecretKey::from_slice(secret.as_ref()) {
                break key;
            }
        };
        let public_key = secret_key.public_key(&secp);
        secret_key.non_secure_erase();
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let file_key = derive_key(passphrase, &salt, &kdf)?;
        let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&file_key[..]));
        let aad = associated_data(&public_key, &kdf);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_ref(),
                    aad: &aad,
                },
            )
            .map_err(|_| ApprovalError::Key("encrypting the key failed".into()))?;
        let file = KeyFile {
            format: FORMAT.to_owned(),
            version: 1,
            public_key,
            store: KeyStore::Encrypted(EncryptedKeyFile {
                kdf,
                salt: salt.to_lower_hex_string(),
                nonce: nonce.to_lower_hex_string(),
                ciphertext: ciphertext.to_lower_hex_string(),
            }),
        };
        Ok((FileKey { secret, public_key }, file))
    }

    /// Decrypts the key in `file` with `passphrase`.
    ///
    /// # Errors
    /// [`ApprovalError::Key`] for a wrong passphrase or a tampered file (the two
    /// cannot be told apart), or a file that is not `kind = "encrypted"`.
    pub fn decrypt(file: &KeyFile, passphrase: &Passphrase) -> Result<FileKey, ApprovalError> {
        let KeyStore::Encrypted(body) = &file.store else {
            return Err(ApprovalError::Key(
                "this key is on a PKCS#11 token, not in the file".into(),
            ));
        };
        let hex = |field: &str, value: &str| {
            Vec::<u8>::from_hex(value)
                .map_err(|_| ApprovalError::Key(format!("key file field {field} is not hex")))
        };
        let salt = hex("salt", &body.salt)?;
        let nonce = hex("nonce", &body.nonce)?;
        let ciphertext = hex("ciphertext", &body.ciphertext)?;
        if nonce.len() != 24 || salt.len() < 16 {
            return Err(ApprovalError::Key(
                "key file nonce must be 24 bytes and salt at least 16".into(),
            ));
        }
        let file_key = derive_key(passphrase, &salt, &body.kdf)?;
        let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&file_key[..]));
        let aad = associated_data(&file.public_key, &body.kdf);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    ApprovalError::Key("wrong passphrase, or the key file was altered".into())
                })?,
        );
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
            plain
                .as_slice()
                .try_into()
                .map_err(|_| ApprovalError::Key("decrypted key is not 32 bytes".into()))?,
        );
        let key = FileKey {
            secret,
            public_key: file.public_key,
        };
        // Authenticated already, but a key that does not give its public key is useless.
        let mut secret_key = key.secret_key()?;
        let derived = secret_key.public_key(&Secp256k1::signing_only());
        secret_key.non_secure_erase();
        if derived != file.public_key {
            return Err(ApprovalError::Key(
                "the decrypted key does not match the file's public key".into(),
            ));
        }
        Ok(key)
    }

    fn secret_key(&self) -> Result<SecretKey, ApprovalError> {
        SecretKey::from_slice(self.secret.as_ref())
            .map_err(|_| ApprovalError::Key("the secret is not a valid key".into()))
    }
}

impl OfficerKey for FileKey {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Signature, ApprovalError> {
        let secp = Secp256k1::new();
        let mut secret_key = self.secret_key()?;
        let message = Message::from_digest(*digest);
        // libsecp256k1 signs low-S with RFC 6979 nonces.
        let signature = secp.sign_ecdsa(&message, &secret_key);
        secret_key.non_secure_erase();
        secp.verify_ecdsa(&message, &signature, &self.public_key)
            .map_err(|_| ApprovalError::Key("own signature does not verify".into()))?;
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn passphrase(s: &str) -> Passphrase {
        Passphrase::checked(s).unwrap()
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("officer.key");
        let (key, file) =
            FileKey::generate(&passphrase("correct horse"), KdfParams::MINIMUM).unwrap();
        file.save_new(&path).unwrap();
        // Never overwritten.
        assert!(file.save_new(&path).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = KeyFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        let again = FileKey::decrypt(&loaded, &passphrase("correct horse")).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let digest = [7u8; 32];
        let signature = again.sign_digest(&digest).unwrap();
        Secp256k1::verification_only()
            .verify_ecdsa(&Message::from_digest(digest), &signature, &key.public_key())
            .unwrap();
        let err = FileKey::decrypt(&loaded, &passphrase("wrong horse")).unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        // The secret is not in the file in the clear.
        assert!(!text.contains(&key.secret.to_lower_hex_string()));
    }

    #[test]
    fn swapped_public_key_does_not_decrypt() {
        let (_, mut file) = FileKey::generate(&passphrase("p"), KdfParams::MINIMUM).unwrap();
        let (other, _) = FileKey::generate(&passphrase("p"), KdfParams::MINIMUM).unwrap();
        file.public_key = other.public_key();
        assert!(FileKey::decrypt(&file, &passphrase("p")).is_err());
    }

    #[test]
    fn weakened_kdf_is_refused() {
        let (_, mut file) = FileKey::generate(&passphrase("p"), KdfParams::MINIMUM).unwrap();
        if let KeyStore::Encrypted(body) = &mut file.store {
            body.kdf.memory_kib = 8;
        }
        let err = FileKey::decrypt(&file, &passphrase("p")).unwrap_err();
        assert!(err.to_string().contains("below the minimum"), "{err}");
    }

    #[test]
    fn empty_passphrase_is_refused_and_debug_is_redacted() {
        assert!(Passphrase::checked("").is_err());
        assert_eq!(
            format!("{:?}", passphrase("hunter2")),
            "Passphrase([REDACTED])"
        );
        let (key, _) = FileKey::generate(&passphrase("p"), KdfParams::MINIMUM).unwrap();
        assert!(!format!("{key:?}").contains(&key.secret.to_lower_hex_string()));
    }
}
