//! Reading and writing PSBT files in either of their two usual encodings.

use std::str::FromStr;

use bitcoin::Psbt;
use bitcoin::base64::Engine as _;
use bitcoin::base64::engine::general_purpose::STANDARD;

/// How a PSBT is written to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// BIP174 binary, starting with the magic `psbt\xff`.
    Binary,
    /// Base64 of the binary form, as most wallets exchange it.
    Base64,
}

/// The BIP174 magic bytes.
const MAGIC: &[u8] = b"psbt\xff";

/// Errors reading a PSBT.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PsbtIoError {
    /// Neither valid binary nor valid base64 PSBT.
    #[error("not a psbt: {0}")]
    Parse(String),
}

/// Parses a PSBT from bytes that hold either the binary or the base64 form,
/// and says which it was.
///
/// # Errors
/// [`PsbtIoError::Parse`] with the parser's reason.
pub fn decode(bytes: &[u8]) -> Result<(Psbt, Encoding), PsbtIoError> {
    if bytes.starts_with(MAGIC) {
        return Psbt::deserialize(bytes)
            .map(|p| (p, Encoding::Binary))
            .map_err(|e| PsbtIoError::Parse(e.to_string()));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| PsbtIoError::Parse("neither binary psbt nor base64 text".into()))?;
    Psbt::from_str(text.trim())
        .map(|p| (p, Encoding::Base64))
        .map_err(|e| PsbtIoError::Parse(e.to_string()))
}

/// Serialises a PSBT in the given encoding (base64 gets a trailing newline).
pub fn encode(psbt: &Psbt, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Binary => psbt.serialize(),
        Encoding::Base64 => {
            let mut text = STANDARD.encode(psbt.serialize());
            text.push('\n');
            text.into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Psbt {
        use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(42_000),
                script_pubkey: ScriptBuf::new_op_return([1, 2, 3]),
            }],
        };
        Psbt::from_unsigned_tx(tx).expect("unsigned")
    }

    #[test]
    fn both_encodings_round_trip() {
        let psbt = sample();
        let binary = encode(&psbt, Encoding::Binary);
        assert!(binary.starts_with(MAGIC));
        let (again, encoding) = decode(&binary).expect("own output");
        assert_eq!(encoding, Encoding::Binary);
        assert_eq!(again, psbt);
        let text = encode(&psbt, Encoding::Base64);
        assert!(text.starts_with(b"cHNidP8"), "base64 of the magic");
        let (again, encoding) = decode(&text).expect("own output");
        assert_eq!(encoding, Encoding::Base64);
        assert_eq!(again, psbt);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode(b"psbt\xff\x00garbage").is_err());
        assert!(decode(b"not base64 at all!").is_err());
        assert!(decode(&[0xff, 0xfe, 0x00]).is_err());
    }
}
