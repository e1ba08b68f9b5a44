//! Pure conversions between PKCS#11 encodings and `secp256k1` types (no I/O).

use bitcoin::bip32::Fingerprint;
use bitcoin::hashes::{Hash, hash160};
use bitcoin::secp256k1::{PublicKey, ecdsa::Signature};

use crate::error::{Error, Result};

/// `CKA_EC_PARAMS` for secp256k1: the DER-encoded OID 1.3.132.0.10.
pub const SECP256K1_EC_PARAMS: [u8; 7] = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x0A];

/// Parse a `CKA_EC_POINT` value into a public key.
///
/// Accepts the point as PKCS#11 specifies it, a DER OCTET STRING around the SEC1 point
/// (`04 41 04‖X‖Y` as SoftHSM2 returns it, or `04 21 02/03‖X`), and the raw SEC1 point
/// some vendors return (65 bytes uncompressed or 33 bytes compressed).
///
/// # Errors
///
/// [`Error::InvalidEcPoint`] when the bytes are neither form or not a point on the curve.
pub fn public_key_from_ec_point(ec_point: &[u8]) -> Result<PublicKey> {
    let invalid = |reason: &str| Error::InvalidEcPoint {
        len: ec_point.len(),
        reason: reason.to_owned(),
    };
    let sec1 = match ec_point {
        // DER OCTET STRING, short-form length equal to the rest.
        [0x04, len, rest @ ..]
            if usize::from(*len) == rest.len() && matches!(rest.len(), 33 | 65) =>
        {
            rest
        }
        raw if matches!(raw.len(), 33 | 65) => raw,
        _ => {
            return Err(invalid(
                "expected a DER OCTET STRING around a SEC1 point, or a raw SEC1 point of 33 or 65 bytes",
            ));
        }
    };
    PublicKey::from_slice(sec1).map_err(|e| invalid(&format!("not a secp256k1 point: {e}")))
}

/// Convert the raw `r‖s` of `CKM_ECDSA` (64 bytes, big-endian) into a low-S signature.
///
/// PKCS#11 returns `r‖s`, not DER, and does not care about BIP 62/146 low-S: about half
/// of SoftHSM2's signatures are high-S, which Bitcoin nodes do not relay. The result is
/// always normalised to low-S. This does not verify the signature; see
/// [`crate::token::TokenSession::sign_digest`], which does.
///
/// # Errors
///
/// [`Error::InvalidSignature`] when the length is not 64 or `r`/`s` is not in range.
pub fn signature_from_raw(raw: &[u8]) -> Result<Signature> {
    if raw.len() != 64 {
        return Err(Error::InvalidSignature {
            len: raw.len(),
            reason: "CKM_ECDSA on secp256k1 must return 64 bytes (r||s)".into(),
        });
    }
    let mut sig = Signature::from_compact(raw).map_err(|e| Error::InvalidSignature {
        len: raw.len(),
        reason: format!("r or s out of range: {e}"),
    })?;
    sig.normalize_s();
    Ok(sig)
}

/// HASH160 (RIPEMD160 of SHA256) of the compressed public key.
pub fn key_hash160(public_key: &PublicKey) -> [u8; 20] {
    hash160::Hash::hash(&public_key.serialize()).to_byte_array()
}

/// The key's fingerprint: the first 4 bytes of the HASH160 of the compressed key
/// (the same rule as BIP 32 fingerprints).
pub fn fingerprint(public_key: &PublicKey) -> Fingerprint {
    let hash = key_hash160(public_key);
    Fingerprint::from([hash[0], hash[1], hash[2], hash[3]])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bitcoin::hex::{DisplayHex, FromHex};
    use bitcoin::secp256k1::{Message, Secp256k1};

    // A high-S vector computed independently of libsecp256k1 (plain modular arithmetic):
    // d = SHA256("hsm-config test key"), digest = SHA256("hsm-config high-s vector"),
    // k = SHA256("hsm-config nonce"); s_high = n - s_low.
    const PUBKEY: &str = "03591af64aeb52b1d923c8728a75c86dfd3b0501e8343a7ed75414ee01258dda99";
    const DIGEST: &str = "178ecb2440c428b1383f66300c850dfa49e460dadedca9ac6ed0c4abe904f1ab";
    const HIGH_S: &str = "d4c6f570f792934bb110cb3ab4a4afb352da6b241ce7c43748075bf8c52d4879\
                          c39f829b91552a0e5fde59016e0f5cf07c984ece0bed8b5423c00f4b2d05f645";
    const LOW_S: &str = "d4c6f570f792934bb110cb3ab4a4afb352da6b241ce7c43748075bf8c52d4879\
                         3c607d646eaad5f1a021a6fe91f0a30e3e168e18a35b14e79c124f41a3304afc";

    fn bytes(hex: &str) -> Vec<u8> {
        Vec::from_hex(hex).unwrap()
    }

    #[test]
    fn high_s_is_normalised_to_low_s() {
        let sig = signature_from_raw(&bytes(HIGH_S)).unwrap();
        assert_eq!(sig.serialize_compact().to_lower_hex_string(), LOW_S);

        let secp = Secp256k1::verification_only();
        let pk = PublicKey::from_slice(&bytes(PUBKEY)).unwrap();
        let digest: [u8; 32] = bytes(DIGEST).try_into().unwrap();
        let msg = Message::from_digest(digest);
        secp.verify_ecdsa(&msg, &sig, &pk).unwrap();

        // libsecp256k1 refuses the high-S form as given, which is why we normalise.
        let high = Signature::from_compact(&bytes(HIGH_S)).unwrap();
        assert!(secp.verify_ecdsa(&msg, &high, &pk).is_err());
    }

    #[test]
    fn low_s_is_kept() {
        let sig = signature_from_raw(&bytes(LOW_S)).unwrap();
        assert_eq!(sig.serialize_compact().to_lower_hex_string(), LOW_S);
    }

    #[test]
    fn wrong_lengths_are_refused() {
        for len in [0, 63, 65, 70, 72] {
            let err = signature_from_raw(&vec![1u8; len]).unwrap_err();
            assert!(matches!(err, Error::InvalidSignature { len: l, .. } if l == len));
        }
        // A DER signature is not r||s.
        let der = Signature::from_compact(&bytes(LOW_S))
            .unwrap()
            .serialize_der();
        assert!(signature_from_raw(&der).is_err());
    }

    #[test]
    fn out_of_range_scalars_are_refused() {
        assert!(signature_from_raw(&[0xff; 64]).is_err());
    }

    #[test]
    fn ec_point_in_every_encoding() {
        let pk = PublicKey::from_slice(&bytes(PUBKEY)).unwrap();
        let uncompressed = pk.serialize_uncompressed().to_vec();
        let compressed = pk.serialize().to_vec();
        let mut der_uncompressed = vec![0x04, 0x41];
        der_uncompressed.extend_from_slice(&uncompressed);
        let mut der_compressed = vec![0x04, 0x21];
        der_compressed.extend_from_slice(&compressed);
        for encoding in [uncompressed, compressed, der_uncompressed, der_compressed] {
            assert_eq!(public_key_from_ec_point(&encoding).unwrap(), pk);
        }
    }

    #[test]
    fn bad_ec_points_are_refused() {
        assert!(public_key_from_ec_point(&[]).is_err());
        assert!(public_key_from_ec_point(&[0x04, 0x41, 0x04]).is_err());
        let mut wrong_len = vec![0x04, 0x40];
        wrong_len.extend_from_slice(&[0x04; 65]);
        assert!(public_key_from_ec_point(&wrong_len).is_err());
        // Not on the curve.
        let mut off_curve = vec![0x04];
        off_curve.extend_from_slice(&[0x01; 64]);
        assert!(public_key_from_ec_point(&off_curve).is_err());
    }

    #[test]
    fn fingerprint_is_first_four_bytes_of_hash160() {
        // The BIP 32 test vector 1 master key: public key and fingerprint 3442193e.
        let pk = PublicKey::from_slice(&bytes(
            "0339a36013301597daef41fbe593a02cc513d0b55527ec2df1050e2e8ff49c85c2",
        ))
        .unwrap();
        assert_eq!(fingerprint(&pk).to_string(), "3442193e");
        assert_eq!(key_hash160(&pk)[..4], bytes("3442193e")[..]);
    }
}
