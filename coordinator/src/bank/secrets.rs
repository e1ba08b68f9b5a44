//! Secrets: password hashing (argon2id), opaque tokens and one-time codes. Only hashes are
//! stored; plaintext secrets are zeroized when dropped and redacted in `Debug`.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// A secret string: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(mut s: String) -> Secret {
        let out = Secret::new(s.as_str());
        s.zeroize();
        out
    }
}

/// Argon2id cost. The defaults are OWASP's recommendation (19 MiB, 2 passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordCost {
    fn default() -> Self {
        PasswordCost {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl PasswordCost {
    /// The cheapest valid cost: for tests only.
    pub const fn insecure_for_tests() -> PasswordCost {
        PasswordCost {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }
}

/// Why hashing failed (bad parameters).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password with argon2id and a random salt; returns the PHC string.
///
/// # Errors
/// [`HashError`] if the cost parameters are invalid.
pub fn hash_password(password: &Secret, cost: PasswordCost) -> Result<String, HashError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| HashError(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks a password against a stored PHC string (its own parameters are used).
pub fn verify_password(password: &Secret, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(hash) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A PHC string that no password matches, with `cost`'s parameters. Verifying a password
/// against it costs one full argon2id computation, exactly as against a stored hash of the
/// same cost: the salt and output are fixed bytes (the output is not the hash of anything
/// we know, so nothing matches it in practice), and only the parameters decide the work.
/// Logins spend it when the identity is unknown, so timing does not tell.
pub(crate) fn dummy_hash(cost: PasswordCost) -> String {
    // 16 bytes of salt and 32 of output, unpadded base64 as the PHC format wants.
    format!(
        "$argon2id$v=19$m={},t={},p={}$ZHVtbXktc2FsdC0xNmJ5dA$\
         AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        cost.memory_kib, cost.iterations, cost.parallelism
    )
}

/// SHA-256 of a token: what is stored and looked up. Tokens carry 256 random bits, so a
/// fast hash is enough.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Lower-case hex, as PostgreSQL's `encode(.., 'hex')` writes it.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// A fresh opaque token `<prefix>_<64 hex digits>` and its hash.
pub fn new_token(prefix: &str) -> (Secret, Vec<u8>) {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let token = Secret::new(format!("{prefix}_{}", hex(bytes.as_ref())));
    let hash = token_hash(token.expose());
    (token, hash)
}

/// A fresh six-digit one-time code.
pub fn new_code() -> Secret {
    let n = rand::rngs::OsRng.next_u32() % 1_000_000;
    Secret::new(format!("{n:06}"))
}

/// Hash of a one-time code, bound to the code's id.
pub fn code_hash(code_id: uuid::Uuid, code: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(code_id.as_bytes());
    h.update(code.as_bytes());
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let pw = Secret::new("correct horse battery");
        let stored = hash_password(&pw, PasswordCost::insecure_for_tests()).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password(&pw, &stored));
        assert!(!verify_password(&Secret::new("wrong"), &stored));
        assert!(!verify_password(&pw, "not a hash"));
        // A fresh salt each time.
        assert_ne!(
            stored,
            hash_password(&pw, PasswordCost::insecure_for_tests()).unwrap()
        );
    }

    #[test]
    fn the_dummy_hash_is_a_valid_hash_of_the_same_cost() {
        // If it did not parse, verification would return at once: the very timing leak
        // it is there to prevent.
        let cost = PasswordCost::default();
        let dummy = dummy_hash(cost);
        let parsed = PasswordHash::new(&dummy).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), cost.memory_kib);
        assert_eq!(params.t_cost(), cost.iterations);
        assert_eq!(params.p_cost(), cost.parallelism);
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let real = hash_password(&Secret::new("x"), cost).unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(parsed.salt.unwrap().len(), real.salt.unwrap().len());
        assert_eq!(parsed.hash.unwrap().len(), real.hash.unwrap().len());
        assert!(!verify_password(&Secret::new("not a password"), &dummy));
        assert!(!verify_password(&Secret::new(""), &dummy));
    }

    #[test]
    fn tokens_are_random_and_redacted() {
        let (a, ha) = new_token("sess");
        let (b, _) = new_token("sess");
        assert_ne!(a, b);
        assert!(a.expose().starts_with("sess_"));
        assert_eq!(a.expose().len(), 5 + 64);
        assert_eq!(token_hash(a.expose()), ha);
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
        let code = new_code();
        assert_eq!(code.expose().len(), 6);
        assert!(code.expose().chars().all(|c| c.is_ascii_digit()));
    }
}
