//! The signer's one public error, with stable machine codes.

use policies::analysis::Finding;

use crate::hsm::HsmError;

/// Why the signer refused or failed to sign a PSBT.
///
/// Every variant has a stable [`SignError::code`] that callers, logs and the
/// CLI's exit message use; the codes never change meaning once released.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The PSBT analysis found something it cannot prove; nothing was signed.
    #[error("refused: {}", describe(.findings))]
    Refused {
        /// Every finding, the first of which gives the code.
        findings: Vec<Finding>,
    },
    /// A token key carries a policy key's label but not its public key.
    #[error("refused: hsm key {label:?} is {found}, the policy expects {expected}")]
    KeyMismatch {
        /// The key label.
        label: String,
        /// The public key the policy names (compressed hex).
        expected: String,
        /// The public key the token holds under that label (compressed hex).
        found: String,
    },
    /// This signer holds none of the policy's HSM keys.
    #[error("refused: this signer holds none of the policy's hsm keys ({policy_keys:?})")]
    NoPolicyKeysHeld {
        /// The policy's HSM key labels.
        policy_keys: Vec<String>,
    },
    /// An input is already finalized: signing it again could only confuse.
    #[error("refused: input {input} is already finalized")]
    InputAlreadyFinal {
        /// The input index.
        input: usize,
    },
    /// An input carries no HSM key of the policy that this signer holds.
    #[error("refused: input {input} needs none of the keys this signer holds")]
    NothingToSign {
        /// The input index.
        input: usize,
    },
    /// The BIP143 sighash could not be computed.
    #[error("refused: cannot compute the sighash of input {input}: {reason}")]
    Sighash {
        /// The input index.
        input: usize,
        /// Why.
        reason: String,
    },
    /// The HSM failed; the PSBT is unchanged.
    #[error("hsm failure: {0}")]
    Hsm(#[from] HsmError),
}

fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl SignError {
    /// The stable machine code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            SignError::Refused { findings } => findings
                .first()
                .map(|f| f.code.code())
                .unwrap_or("PSBT_REFUSED"),
            SignError::KeyMismatch { .. } => "HSM_KEY_MISMATCH",
            SignError::NoPolicyKeysHeld { .. } => "NO_POLICY_KEYS_HELD",
            SignError::InputAlreadyFinal { .. } => "INPUT_ALREADY_FINAL",
            SignError::NothingToSign { .. } => "INPUT_NOTHING_TO_SIGN",
            SignError::Sighash { .. } => "SIGHASH_ERROR",
            SignError::Hsm(_) => "HSM_ERROR",
        }
    }

    /// Whether the PSBT itself was refused (as opposed to a failure of the HSM).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, SignError::Hsm(_))
    }
}

#[cfg(test)]
mod tests {
    use policies::analysis::FindingCode;

    use super::*;

    /// Operators read the codes in the README: every one must be documented.
    #[test]
    fn every_code_is_documented() {
        let readme = include_str!("../README.md");
        let signer_errors = [
            SignError::KeyMismatch {
                label: String::new(),
                expected: String::new(),
                found: String::new(),
            },
            SignError::NoPolicyKeysHeld {
                policy_keys: Vec::new(),
            },
            SignError::InputAlreadyFinal { input: 0 },
            SignError::NothingToSign { input: 0 },
            SignError::Sighash {
                input: 0,
                reason: String::new(),
            },
            SignError::Hsm(HsmError::WorkerGone),
        ];
        let codes = FindingCode::ALL
            .iter()
            .map(FindingCode::code)
            .chain(signer_errors.iter().map(SignError::code));
        for code in codes {
            assert!(
                readme.contains(&format!("`{code}`")),
                "{code} is not in the README"
            );
        }
    }
}
