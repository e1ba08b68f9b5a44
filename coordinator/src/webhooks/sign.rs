//! Signatures in Svix's format, so that the webhook libraries clients already use (Blink
//! sends through Svix) verify ours: `svix-id`, `svix-timestamp` (unix seconds) and
//! `svix-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key being
//! the base64-decoded part of the `whsec_` secret.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far a signed timestamp may be from the receiver's clock (replays are refused).
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Random bytes of a new secret (Svix uses 24; more does not hurt).
const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret (`whsec_` + base64): zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Zeroizing<String>);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The secret is not `whsec_` + base64.
    #[error("webhook signature: the secret is not whsec_ followed by base64")]
    BadSecret,
    /// The timestamp header is not a number.
    #[error("webhook signature: the timestamp is not unix seconds")]
    BadTimestamp,
    /// The timestamp is more than five minutes from now (a replay, or a wrong clock).
    #[error("webhook signature: timestamp {timestamp} is too far from now ({now})")]
    TooOld {
        /// The signed timestamp.
        timestamp: i64,
        /// The receiver's time.
        now: i64,
    },
    /// No `v1` signature matches the body.
    #[error("webhook signature: no signature matches")]
    Mismatch,
}

impl SigningSecret {
    /// A fresh random secret.
    pub fn generate() -> SigningSecret {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
        SigningSecret(Zeroizing::new(format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(&bytes[..])
        )))
    }

    /// A stored secret.
    ///
    /// # Errors
    /// [`VerifyError::BadSecret`] unless it is `whsec_` + base64.
    pub fn parse(s: &str) -> Result<SigningSecret, VerifyError> {
        let secret = SigningSecret(Zeroizing::new(s.to_owned()));
        secret.key()?;
        Ok(secret)
    }

    /// The secret as shown to its owner (once, at creation); do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Result<Zeroizing<Vec<u8>>, VerifyError> {
        let b64 = self
            .0
            .strip_prefix(SECRET_PREFIX)
            .ok_or(VerifyError::BadSecret)?;
        STANDARD
            .decode(b64)
            .map(Zeroizing::new)
            .map_err(|_| VerifyError::BadSecret)
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<Hmac<Sha256>, VerifyError> {
        let key = self.key()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| VerifyError::BadSecret)?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        Ok(mac)
    }

    /// The `svix-signature` header of a message: `v1,<base64>`.
    ///
    /// # Errors
    /// [`VerifyError::BadSecret`] for a secret that is not `whsec_` + base64.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, VerifyError> {
        let tag = self.mac(id, timestamp, body)?.finalize().into_bytes();
        Ok(format!("v1,{}", STANDARD.encode(tag)))
    }

    /// Checks a received message as a client should: the timestamp within five minutes of
    /// `now` (unix seconds), and one of the space-separated `v1,` signatures of the
    /// `svix-signature` header matching (compared in constant time).
    ///
    /// # Errors
    /// Why it does not verify ([`VerifyError`]).
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        if (now - ts).abs() > TOLERANCE_SECONDS {
            return Err(VerifyError::TooOld { timestamp: ts, now });
        }
        for candidate in signatures.split_whitespace() {
            let Some(b64) = candidate.strip_prefix("v1,") else {
                continue;
            };
            let Ok(tag) = STANDARD.decode(b64) else {
                continue;
            };
            if self.mac(id, ts, body)?.verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svix_documentation_vector() {
        // The example of Svix's "verifying manually" guide.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = secret
            .sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
            .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        secret
            .verify(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &format!("v1,bm90IGl0 {sig}"),
                body,
                1614265330 + 10,
            )
            .unwrap();
    }

    #[test]
    fn tampering_and_replays_fail() {
        let s = SigningSecret::generate();
        assert!(s.expose().starts_with(SECRET_PREFIX));
        assert!(!format!("{s:?}").contains(s.expose()));
        let sig = s.sign("id", 1_000_000, b"{}").unwrap();
        assert_eq!(s.verify("id", "1000000", &sig, b"{}", 1_000_000), Ok(()));
        assert_eq!(
            s.verify("id", "1000000", &sig, b"{ }", 1_000_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            s.verify("other", "1000000", &sig, b"{}", 1_000_000),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            s.verify("id", "1000000", &sig, b"{}", 1_000_000 + 301),
            Err(VerifyError::TooOld { .. })
        ));
        assert_eq!(
            SigningSecret::generate().verify("id", "1000000", &sig, b"{}", 1_000_000),
            Err(VerifyError::Mismatch)
        );
        assert!(SigningSecret::parse("nope").is_err());
    }
}
