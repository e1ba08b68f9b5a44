//! What the signer needs per input, from a clean analysis only.

use bitcoin::psbt::Psbt;
use bitcoin::{Amount, EcdsaSighashType, ScriptBuf};
use serde::{Serialize, Serializer};

use super::{AnalysisError, PsbtAnalysis};
use crate::document::PolicyDocument;
use crate::keys::HsmKey;

/// What the signer needs to sign one input with the HSM keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SigningTarget {
    /// Position of the input.
    pub input_index: usize,
    /// The policy's witness script for this input (the BIP143 script code).
    pub witness_script: ScriptBuf,
    /// The proven amount spent.
    pub amount: Amount,
    /// Always `EcdsaSighashType::All`.
    #[serde(serialize_with = "serialize_sighash")]
    pub sighash_type: EcdsaSighashType,
    /// The HSM keys in the input's descriptor.
    pub hsm_keys: Vec<HsmKey>,
}

fn serialize_sighash<S: Serializer>(t: &EcdsaSighashType, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// Per-input signing data for a clean analysis of this PSBT under this policy.
///
/// # Errors
/// [`AnalysisError::NotClean`] if the analysis has findings, [`AnalysisError::PolicyMismatch`]
/// or [`AnalysisError::PsbtMismatch`] if it was made for another policy or PSBT.
pub fn hsm_signing_targets(
    policy: &PolicyDocument,
    psbt: &Psbt,
    analysis: &PsbtAnalysis,
) -> Result<Vec<SigningTarget>, AnalysisError> {
    if analysis.policy_id != policy.id {
        return Err(AnalysisError::PolicyMismatch {
            analysis: analysis.policy_id,
            policy: policy.id,
        });
    }
    let psbt_txid = psbt.unsigned_tx.compute_txid();
    if analysis.txid != psbt_txid {
        return Err(AnalysisError::PsbtMismatch {
            analysis: analysis.txid,
            psbt: psbt_txid,
        });
    }
    if !analysis.is_clean() {
        return Err(AnalysisError::NotClean {
            codes: analysis.codes(),
        });
    }
    analysis
        .inputs
        .iter()
        .map(|input| {
            let incomplete = |what| AnalysisError::IncompleteInput {
                index: input.index,
                what,
            };
            let witness_script = input
                .witness_script
                .clone()
                .ok_or(incomplete("witness script"))?;
            let amount = input.amount.ok_or(incomplete("proven amount"))?;
            let hsm_keys = input
                .hsm_keys
                .iter()
                .filter_map(|label| policy.hsm_keys.iter().find(|k| &k.label == label))
                .cloned()
                .collect();
            Ok(SigningTarget {
                input_index: input.index,
                witness_script,
                amount,
                sighash_type: EcdsaSighashType::All,
                hsm_keys,
            })
        })
        .collect()
}
