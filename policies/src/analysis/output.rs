//! Outputs: change and receive proven by derivation, everything else external.

use bitcoin::psbt;
use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use bitcoin::{Address, Amount, ScriptBuf, TxOut};
use serde::Serialize;

use super::findings::{FindingCode, Findings};
use super::input::{Claim, read_claim};
use crate::document::PolicyDocument;
use crate::keys::Keychain;

/// How an output is classified.
///
/// An output is ours only when its PSBT `bip32_derivation` claims a recovery-key derivation and
/// the policy descriptor at that keychain and index gives exactly its script. Outputs to our own
/// receive keychain are reported as [`OutputClass::Receive`] (a transfer to ourselves, counted
/// apart from change and from external payments); rules decide what to make of them. An output
/// with no claim is [`OutputClass::External`], even if its script happens to be ours: the
/// analysis never scans indexes. A claim that fails is [`OutputClass::Unproven`] with the finding
/// `OUTPUT_CHANGE_UNPROVEN`, and its value counts as external.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputClass {
    /// Proven change at this index of the change keychain.
    Change {
        /// The derivation index.
        index: u32,
    },
    /// Proven address of our receive keychain at this index.
    Receive {
        /// The derivation index.
        index: u32,
    },
    /// Not ours as far as the PSBT claims.
    External,
    /// Claims to be ours but is not proven.
    Unproven,
}

/// What the analysis found about one output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputAnalysis {
    /// Position in the transaction.
    pub index: usize,
    /// Value.
    pub value: Amount,
    /// The output script.
    pub script_pubkey: ScriptBuf,
    /// The address on the policy's network, if the script is a standard address type.
    pub address: Option<String>,
    /// Change, receive, external or unproven.
    pub class: OutputClass,
}

pub(super) fn analyze_output(
    policy: &PolicyDocument,
    secp: &Secp256k1<VerifyOnly>,
    index: usize,
    txout: &TxOut,
    psbt_output: Option<&psbt::Output>,
    findings: &mut Findings,
) -> OutputAnalysis {
    let address = Address::from_script(&txout.script_pubkey, policy.network)
        .ok()
        .map(|a| a.to_string());
    let mut analysis = OutputAnalysis {
        index,
        value: txout.value,
        script_pubkey: txout.script_pubkey.clone(),
        address,
        class: OutputClass::External,
    };
    if txout.value > Amount::MAX_MONEY {
        findings.output(
            index,
            FindingCode::AmountOverflow,
            format!(
                "output value {} sat exceeds 21 million bitcoin",
                txout.value.to_sat()
            ),
        );
    }
    let dust = txout.script_pubkey.minimal_non_dust();
    if txout.value < dust {
        findings.output(
            index,
            FindingCode::OutputDust,
            format!(
                "output value {} sat is below the dust threshold of {} sat for its script",
                txout.value.to_sat(),
                dust.to_sat()
            ),
        );
    }
    let Some(output) = psbt_output else {
        return analysis;
    };
    let mut unproven = |message: String| {
        findings.output(index, FindingCode::OutputChangeUnproven, message);
        OutputClass::Unproven
    };
    analysis.class = match read_claim(policy, &output.bip32_derivation) {
        Claim::None {
            names_hsm_key: false,
        } => OutputClass::External,
        Claim::None {
            names_hsm_key: true,
        } => unproven("derivations name our hsm keys but none the recovery key".to_owned()),
        Claim::Invalid(reason) => unproven(reason),
        Claim::Ours(keychain, derivation_index) => {
            let expected = policy
                .derive(keychain, derivation_index)
                .map_err(|e| e.to_string())
                .and_then(|d| d.derived_descriptor(secp).map_err(|e| e.to_string()))
                .map(|d| d.script_pubkey());
            match expected {
                Err(e) => unproven(e),
                Ok(expected) if expected != txout.script_pubkey => unproven(format!(
                    "claims {keychain}/{derivation_index} but pays {}, the policy gives {expected}",
                    txout.script_pubkey,
                )),
                Ok(_) => match keychain {
                    Keychain::Change => OutputClass::Change {
                        index: derivation_index,
                    },
                    Keychain::Receive => OutputClass::Receive {
                        index: derivation_index,
                    },
                },
            }
        }
    };
    analysis
}
