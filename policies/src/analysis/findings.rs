//! Findings: what is wrong with a PSBT, each with a stable code.

use std::fmt;

use serde::{Serialize, Serializer};

/// What is wrong with a PSBT. [`FindingCode::code`] gives a stable machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FindingCode {
    /// The transaction has no input.
    PsbtNoInputs,
    /// The transaction has no output.
    PsbtNoOutputs,
    /// The PSBT's input or output maps do not match the unsigned transaction.
    PsbtMalformed,
    /// The same previous output is spent twice.
    InputDuplicate,
    /// The input is not proven to be ours: no derivation for our keys, or the script at the
    /// claimed index differs from the spent output's.
    InputNotOurs,
    /// The input has no full previous transaction (`non_witness_utxo`), so its amount is unproven.
    InputPreviousTxMissing,
    /// The previous transaction's txid is not the outpoint's, or it lacks the output index.
    InputPreviousTxMismatch,
    /// `witness_utxo` differs from the previous transaction's output.
    InputWitnessUtxoMismatch,
    /// The input has no witness script.
    InputWitnessScriptMissing,
    /// The witness script differs from the policy's script at the claimed index.
    InputWitnessScriptMismatch,
    /// The input names our HSM keys but has no derivation for the recovery key.
    InputDerivationMissing,
    /// The recovery key's derivation is malformed (wrong path shape, hardened, several claims).
    InputDerivationInvalid,
    /// The spent output is not P2WSH (segwit v0 script hash).
    InputNotSegwitV0,
    /// A sighash type other than ALL is asked.
    InputSighashNotAll,
    /// No spending path is satisfiable with this input's nSequence and the transaction's
    /// locktime and version.
    InputNoSatisfiablePath,
    /// An output claims to be ours (derivation for our keys) but is not the policy's script at
    /// the claimed index, or the claim is malformed.
    OutputChangeUnproven,
    /// The outputs spend more than the inputs.
    FeeNegative,
    /// A sum of amounts overflowed or passed 21 million bitcoin.
    AmountOverflow,
    /// The transaction version is neither 1 nor 2 (non-standard, or rules we do not model).
    TxVersionNonStandard,
    /// An output is below the dust threshold (non-standard: it would not relay).
    OutputDust,
}

impl FindingCode {
    /// The stable upper-snake code, e.g. `INPUT_NOT_OURS`.
    pub fn code(&self) -> &'static str {
        match self {
            FindingCode::PsbtNoInputs => "PSBT_NO_INPUTS",
            FindingCode::PsbtNoOutputs => "PSBT_NO_OUTPUTS",
            FindingCode::PsbtMalformed => "PSBT_MALFORMED",
            FindingCode::InputDuplicate => "INPUT_DUPLICATE",
            FindingCode::InputNotOurs => "INPUT_NOT_OURS",
            FindingCode::InputPreviousTxMissing => "INPUT_PREVIOUS_TX_MISSING",
            FindingCode::InputPreviousTxMismatch => "INPUT_PREVIOUS_TX_MISMATCH",
            FindingCode::InputWitnessUtxoMismatch => "INPUT_WITNESS_UTXO_MISMATCH",
            FindingCode::InputWitnessScriptMissing => "INPUT_WITNESS_SCRIPT_MISSING",
            FindingCode::InputWitnessScriptMismatch => "INPUT_WITNESS_SCRIPT_MISMATCH",
            FindingCode::InputDerivationMissing => "INPUT_DERIVATION_MISSING",
            FindingCode::InputDerivationInvalid => "INPUT_DERIVATION_INVALID",
            FindingCode::InputNotSegwitV0 => "INPUT_NOT_SEGWIT_V0",
            FindingCode::InputSighashNotAll => "INPUT_SIGHASH_NOT_ALL",
            FindingCode::InputNoSatisfiablePath => "INPUT_NO_SATISFIABLE_PATH",
            FindingCode::OutputChangeUnproven => "OUTPUT_CHANGE_UNPROVEN",
            FindingCode::FeeNegative => "FEE_NEGATIVE",
            FindingCode::AmountOverflow => "AMOUNT_OVERFLOW",
            FindingCode::TxVersionNonStandard => "TX_VERSION_NONSTANDARD",
            FindingCode::OutputDust => "OUTPUT_DUST",
        }
    }

    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [FindingCode; 20] = [
        FindingCode::PsbtNoInputs,
        FindingCode::PsbtNoOutputs,
        FindingCode::PsbtMalformed,
        FindingCode::InputDuplicate,
        FindingCode::InputNotOurs,
        FindingCode::InputPreviousTxMissing,
        FindingCode::InputPreviousTxMismatch,
        FindingCode::InputWitnessUtxoMismatch,
        FindingCode::InputWitnessScriptMissing,
        FindingCode::InputWitnessScriptMismatch,
        FindingCode::InputDerivationMissing,
        FindingCode::InputDerivationInvalid,
        FindingCode::InputNotSegwitV0,
        FindingCode::InputSighashNotAll,
        FindingCode::InputNoSatisfiablePath,
        FindingCode::OutputChangeUnproven,
        FindingCode::FeeNegative,
        FindingCode::AmountOverflow,
        FindingCode::TxVersionNonStandard,
        FindingCode::OutputDust,
    ];
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for FindingCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// One problem found in a PSBT, with where it is and a message with the values involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What is wrong.
    pub code: FindingCode,
    /// The input concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<usize>,
    /// The output concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<usize>,
    /// Human-readable detail.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(i) = self.input {
            write!(f, " (input {i})")?;
        }
        if let Some(o) = self.output {
            write!(f, " (output {o})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Collects findings, keeping input, output and transaction findings in that order.
#[derive(Default)]
pub(super) struct Findings {
    pub(super) inputs: Vec<Finding>,
    pub(super) outputs: Vec<Finding>,
    pub(super) tx: Vec<Finding>,
}

impl Findings {
    pub(super) fn input(&mut self, index: usize, code: FindingCode, message: String) {
        self.inputs.push(Finding {
            code,
            input: Some(index),
            output: None,
            message,
        });
    }

    pub(super) fn output(&mut self, index: usize, code: FindingCode, message: String) {
        self.outputs.push(Finding {
            code,
            input: None,
            output: Some(index),
            message,
        });
    }

    pub(super) fn tx(&mut self, code: FindingCode, message: String) {
        self.tx.push(Finding {
            code,
            input: None,
            output: None,
            message,
        });
    }

    pub(super) fn finish(self) -> Vec<Finding> {
        let mut all = self.inputs;
        all.extend(self.outputs);
        all.extend(self.tx);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_are_ordered_inputs_outputs_transaction() {
        let mut f = Findings::default();
        f.tx(FindingCode::FeeNegative, "t".into());
        f.output(0, FindingCode::OutputChangeUnproven, "o".into());
        f.input(1, FindingCode::InputNotOurs, "i".into());
        let all = f.finish();
        let codes: Vec<&str> = all.iter().map(|x| x.code.code()).collect();
        assert_eq!(
            codes,
            ["INPUT_NOT_OURS", "OUTPUT_CHANGE_UNPROVEN", "FEE_NEGATIVE"]
        );
        assert_eq!(all[0].to_string(), "INPUT_NOT_OURS (input 1): i");
    }
}
