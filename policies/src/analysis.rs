//! PSBT analysis against a policy: what is spent, where it goes, and what looks wrong.
//!
//! PSBTs come from an untrusted coordinator. [`analyze`] trusts nothing in them that it cannot
//! prove from the policy: ownership is proven by re-deriving the policy descriptor at the
//! claimed index, amounts by the full previous transaction. Anything it cannot prove, or that
//! is unsafe to sign, becomes a [`Finding`]; a signer refuses any PSBT with a finding.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bitcoin::bip32::KeySource;
use bitcoin::hashes::{hash160, ripemd160, sha256};
use bitcoin::psbt::{self, Psbt};
use bitcoin::secp256k1::{PublicKey, Secp256k1, VerifyOnly};
use bitcoin::{
    Address, Amount, EcdsaSighashType, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxOut,
    Txid, Weight, absolute, relative,
};
use miniscript::descriptor::DefiniteDescriptorKey;
use miniscript::policy::{Liftable, semantic};
use miniscript::{Descriptor, ForEachKey, Translator, hash256};
use serde::{Serialize, Serializer};

use crate::document::{PolicyDocument, PolicyId};
use crate::keys::{HsmKey, Keychain, RECOVERY_NAME};

/// Errors of the analysis area.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The analysis has findings, so nothing may be signed.
    #[error("psbt has findings: {}", codes.join(", "))]
    NotClean {
        /// The finding codes, in order.
        codes: Vec<&'static str>,
    },
    /// The analysis was made under another policy.
    #[error("analysis was made under policy {analysis} but the policy given is {policy}")]
    PolicyMismatch {
        /// Policy id recorded in the analysis.
        analysis: PolicyId,
        /// Id of the policy given.
        policy: PolicyId,
    },
    /// The analysis was made for another PSBT.
    #[error("analysis is of transaction {analysis} but the psbt is of {psbt}")]
    PsbtMismatch {
        /// Unsigned txid recorded in the analysis.
        analysis: Txid,
        /// Unsigned txid of the PSBT given.
        psbt: Txid,
    },
    /// A clean analysis lacks what signing an input needs (should not happen).
    #[error("input {index} lacks {what} although the analysis is clean")]
    IncompleteInput {
        /// The input.
        index: usize,
        /// What is missing.
        what: &'static str,
    },
}

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
        }
    }

    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [FindingCode; 18] = [
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

/// A proven owner of an input or output: the policy descriptor at this keychain and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// Receive (`/0/*`) or change (`/1/*`).
    pub keychain: Keychain,
    /// The derivation index.
    pub derivation_index: u32,
}

/// One top-level alternative of the input's policy (for the templates: the HSM path and the
/// recovery path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendingPath {
    /// The path as a semantic policy with keys named by label and `recovery`.
    pub description: String,
    /// Labels of the keys involved (`recovery` for the recovery key), in policy order.
    pub keys: Vec<String>,
    /// The fewest signatures that satisfy the path (`None` if it can never be satisfied).
    pub signatures_needed: Option<usize>,
    /// The largest relative timelock (`older`, consensus value) in the path.
    pub relative_timelock: Option<u32>,
    /// The largest absolute timelock (`after`, consensus value) in the path.
    pub absolute_timelock: Option<u32>,
    /// Whether the path's timelocks are met by this input's nSequence and the transaction's
    /// locktime and version. Signatures and hash preimages are assumed available.
    pub satisfiable_now: bool,
}

/// What the analysis found about one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputAnalysis {
    /// Position in the transaction.
    pub index: usize,
    /// The outpoint spent.
    pub previous_output: OutPoint,
    /// The input's nSequence.
    pub sequence: Sequence,
    /// Proven owner, when the policy's script at the claimed derivation is the spent script.
    pub ownership: Option<Ownership>,
    /// Amount spent, proven by the full previous transaction; `None` if unproven.
    pub amount: Option<Amount>,
    /// The sighash type the PSBT asks, if any (absent means ALL).
    pub sighash_type: Option<String>,
    /// The policy's witness script at the proven derivation: the script code to sign with
    /// `SighashCache::p2wsh_signature_hash(index, &witness_script, amount, EcdsaSighashType::All)`.
    /// `None` unless ownership is proven.
    pub witness_script: Option<ScriptBuf>,
    /// Labels of the HSM keys in the input's descriptor (those that may sign it), in policy order.
    pub hsm_keys: Vec<String>,
    /// Top-level spending alternatives of the input's descriptor.
    pub spending_paths: Vec<SpendingPath>,
    /// Upper bound on the witness weight of the input once satisfied.
    pub max_satisfaction_weight: Option<Weight>,
    /// The policy descriptor at the proven derivation, with concrete keys: what a finalizer
    /// satisfies. `None` unless ownership is proven. Not serialised (the witness script and
    /// the ownership say the same).
    #[serde(skip)]
    pub descriptor: Option<Descriptor<bitcoin::PublicKey>>,
}

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

/// The result of [`analyze`]: per-input and per-output facts, totals, and findings.
///
/// Amounts are serialised in satoshis, weights in weight units, the feerate in sat/kwu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PsbtAnalysis {
    /// Id of the policy the PSBT was analysed against.
    pub policy_id: PolicyId,
    /// Txid of the unsigned transaction.
    pub txid: Txid,
    /// Transaction version.
    pub version: i32,
    /// Transaction locktime.
    pub lock_time: absolute::LockTime,
    /// One entry per input.
    pub inputs: Vec<InputAnalysis>,
    /// One entry per output.
    pub outputs: Vec<OutputAnalysis>,
    /// Sum of proven input amounts; `None` if any is unproven.
    pub total_in: Option<Amount>,
    /// Sum of output values; `None` on overflow.
    pub total_out: Option<Amount>,
    /// Sum of proven change outputs.
    pub change_total: Option<Amount>,
    /// Sum of proven outputs to our receive keychain.
    pub receive_total: Option<Amount>,
    /// Sum of external and unproven outputs.
    pub external_total: Option<Amount>,
    /// `total_in - total_out`; `None` if unproven or negative.
    pub fee: Option<Amount>,
    /// Weight once every input is satisfied, at most (unsigned weight, segwit marker and flag,
    /// each input's witness bound); `None` if any input is not ours or there is none.
    pub estimated_weight: Option<Weight>,
    /// `estimated_weight` in virtual bytes, rounded up.
    pub estimated_vsize: Option<u64>,
    /// `fee / estimated_weight`, rounded down (a lower bound of the real feerate).
    pub estimated_feerate: Option<FeeRate>,
    findings: Vec<Finding>,
}

impl PsbtAnalysis {
    /// The problems found, in input then output then transaction order.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// True when there is no finding.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Whether a finding with this code was made.
    pub fn has(&self, code: FindingCode) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }

    /// The codes of the findings, in order (repeats kept).
    pub fn codes(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.code.code()).collect()
    }
}

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

/// Analyses a PSBT against a policy. Never panics, whatever the PSBT holds.
///
/// The policy is trusted (it was verified when registered); the PSBT is not.
pub fn analyze(policy: &PolicyDocument, psbt: &Psbt) -> PsbtAnalysis {
    let tx = &psbt.unsigned_tx;
    let mut findings = Findings::default();
    let secp = Secp256k1::verification_only();

    let txid = tx.compute_txid();
    if psbt.inputs.len() != tx.input.len() || psbt.outputs.len() != tx.output.len() {
        findings.tx(
            FindingCode::PsbtMalformed,
            format!(
                "psbt has {} input and {} output maps for a transaction of {} inputs and {} outputs",
                psbt.inputs.len(),
                psbt.outputs.len(),
                tx.input.len(),
                tx.output.len()
            ),
        );
    }

    let mut inputs = Vec::with_capacity(tx.input.len());
    let mut seen = BTreeSet::new();
    let mut duplicate = false;
    for (index, txin) in tx.input.iter().enumerate() {
        if !seen.insert(txin.previous_output) {
            duplicate = true;
            findings.input(
                index,
                FindingCode::InputDuplicate,
                format!("{} is spent twice", txin.previous_output),
            );
        }
        let input = analyze_input(
            policy,
            &secp,
            tx,
            index,
            psbt.inputs.get(index),
            &mut findings,
        );
        inputs.push(input);
    }

    let outputs: Vec<OutputAnalysis> = tx
        .output
        .iter()
        .enumerate()
        .map(|(index, txout)| {
            analyze_output(
                policy,
                &secp,
                index,
                txout,
                psbt.outputs.get(index),
                &mut findings,
            )
        })
        .collect();

    if tx.input.is_empty() {
        findings.tx(
            FindingCode::PsbtNoInputs,
            "transaction has no input".to_owned(),
        );
    }
    if tx.output.is_empty() {
        findings.tx(
            FindingCode::PsbtNoOutputs,
            "transaction has no output".to_owned(),
        );
    }

    let total_in = if duplicate {
        None
    } else {
        sum(
            inputs.iter().map(|i| i.amount),
            "input amounts",
            &mut findings,
        )
    };
    let total_out = sum(
        outputs.iter().map(|o| Some(o.value)),
        "output values",
        &mut findings,
    );
    let class_total = |pred: fn(&OutputClass) -> bool| {
        total_out.and_then(|_| {
            outputs
                .iter()
                .filter(|o| pred(&o.class))
                .try_fold(Amount::ZERO, |acc, o| acc.checked_add(o.value))
        })
    };
    let change_total = class_total(|c| matches!(c, OutputClass::Change { .. }));
    let receive_total = class_total(|c| matches!(c, OutputClass::Receive { .. }));
    let external_total =
        class_total(|c| matches!(c, OutputClass::External | OutputClass::Unproven));

    let fee = match (total_in, total_out) {
        (Some(total_in), Some(total_out)) => {
            let fee = total_in.checked_sub(total_out);
            if fee.is_none() {
                findings.tx(
                    FindingCode::FeeNegative,
                    format!(
                        "outputs spend {} sat but inputs bring only {} sat",
                        total_out.to_sat(),
                        total_in.to_sat()
                    ),
                );
            }
            fee
        }
        _ => None,
    };

    let estimated_weight = estimate_weight(tx, &inputs);
    let estimated_vsize = estimated_weight.map(Weight::to_vbytes_ceil);
    let estimated_feerate = match (fee, estimated_weight) {
        (Some(fee), Some(weight)) => fee.div_by_weight_floor(weight),
        _ => None,
    };

    PsbtAnalysis {
        policy_id: policy.id,
        txid,
        version: tx.version.0,
        lock_time: tx.lock_time,
        inputs,
        outputs,
        total_in,
        total_out,
        change_total,
        receive_total,
        external_total,
        fee,
        estimated_weight,
        estimated_vsize,
        estimated_feerate,
        findings: findings.finish(),
    }
}

/// Collects findings, keeping input, output and transaction findings in that order.
#[derive(Default)]
struct Findings {
    inputs: Vec<Finding>,
    outputs: Vec<Finding>,
    tx: Vec<Finding>,
}

impl Findings {
    fn input(&mut self, index: usize, code: FindingCode, message: String) {
        self.inputs.push(Finding {
            code,
            input: Some(index),
            output: None,
            message,
        });
    }

    fn output(&mut self, index: usize, code: FindingCode, message: String) {
        self.outputs.push(Finding {
            code,
            input: None,
            output: Some(index),
            message,
        });
    }

    fn tx(&mut self, code: FindingCode, message: String) {
        self.tx.push(Finding {
            code,
            input: None,
            output: None,
            message,
        });
    }

    fn finish(self) -> Vec<Finding> {
        let mut all = self.inputs;
        all.extend(self.outputs);
        all.extend(self.tx);
        all
    }
}

/// Sums amounts; `None` if any is `None`, or (with a finding) past 21 million bitcoin.
fn sum(
    amounts: impl Iterator<Item = Option<Amount>>,
    what: &str,
    findings: &mut Findings,
) -> Option<Amount> {
    let mut total = Amount::ZERO;
    for amount in amounts {
        match amount?.checked_add(total) {
            Some(t) if t <= Amount::MAX_MONEY => total = t,
            _ => {
                findings.tx(
                    FindingCode::AmountOverflow,
                    format!("sum of {what} exceeds 21 million bitcoin"),
                );
                return None;
            }
        }
    }
    Some(total)
}

/// What a `bip32_derivation` map says about ownership.
enum Claim {
    /// No recovery-key derivation; whether any of our HSM keys is named.
    None { names_hsm_key: bool },
    /// One well-formed recovery-key derivation.
    Ours(Keychain, u32),
    /// Recovery-key derivations that are malformed or contradict each other.
    Invalid(String),
}

fn read_claim(policy: &PolicyDocument, derivations: &BTreeMap<PublicKey, KeySource>) -> Claim {
    let mut claims = BTreeSet::new();
    let mut malformed = Vec::new();
    let mut names_hsm_key = false;
    for (public_key, source) in derivations {
        // HSM keys first: their (fingerprint, empty path) sources could share the recovery
        // fingerprint by chance.
        if policy.hsm_key_by_pubkey(public_key).is_some() {
            names_hsm_key = true;
            continue;
        }
        if !policy.recovery.is_claimed_by(source) {
            continue;
        }
        match policy.recovery.claimed_derivation(source) {
            Some(claim) => {
                claims.insert(claim);
            }
            None => malformed.push(format!("[{}]{}", source.0, source.1)),
        }
    }
    if !malformed.is_empty() {
        return Claim::Invalid(format!(
            "recovery key derivation {} is not {}/(0|1)/index",
            malformed.join(", "),
            policy.recovery.origin_path()
        ));
    }
    let mut iter = claims.into_iter();
    match (iter.next(), iter.next()) {
        (None, _) => Claim::None { names_hsm_key },
        (Some((keychain, index)), None) => Claim::Ours(keychain, index),
        (Some(a), Some(b)) => Claim::Invalid(format!(
            "several recovery key derivations claimed: {}/{} and {}/{}",
            a.0, a.1, b.0, b.1
        )),
    }
}

fn analyze_input(
    policy: &PolicyDocument,
    secp: &Secp256k1<VerifyOnly>,
    tx: &Transaction,
    index: usize,
    psbt_input: Option<&psbt::Input>,
    findings: &mut Findings,
) -> InputAnalysis {
    let txin = tx.input.get(index);
    let previous_output = txin.map(|t| t.previous_output).unwrap_or_default();
    let sequence = txin.map(|t| t.sequence).unwrap_or_default();
    let mut analysis = InputAnalysis {
        index,
        previous_output,
        sequence,
        ownership: None,
        amount: None,
        sighash_type: None,
        witness_script: None,
        hsm_keys: Vec::new(),
        spending_paths: Vec::new(),
        max_satisfaction_weight: None,
        descriptor: None,
    };
    // The missing map is already a PSBT_MALFORMED finding.
    let Some(input) = psbt_input else {
        return analysis;
    };

    if let Some(sighash) = input.sighash_type {
        analysis.sighash_type = Some(sighash.to_string());
        if sighash.ecdsa_hash_ty() != Ok(EcdsaSighashType::All) {
            findings.input(
                index,
                FindingCode::InputSighashNotAll,
                format!("sighash type {sighash} asked; only ALL is signed"),
            );
        }
    }

    // The amount comes only from the full previous transaction: BIP143 signatures commit to
    // the amount, but a lying witness_utxo on another input can still make us overpay fees.
    let proven_prevout: Option<&TxOut> = match &input.non_witness_utxo {
        None => {
            findings.input(
                index,
                FindingCode::InputPreviousTxMissing,
                format!("no previous transaction for {previous_output}: amount unproven"),
            );
            None
        }
        Some(prev) => {
            let prev_txid = prev.compute_txid();
            if prev_txid != previous_output.txid {
                findings.input(
                    index,
                    FindingCode::InputPreviousTxMismatch,
                    format!(
                        "previous transaction has txid {prev_txid}, outpoint is {previous_output}"
                    ),
                );
                None
            } else {
                let out = usize::try_from(previous_output.vout)
                    .ok()
                    .and_then(|vout| prev.output.get(vout));
                if out.is_none() {
                    findings.input(
                        index,
                        FindingCode::InputPreviousTxMismatch,
                        format!(
                            "previous transaction {prev_txid} has {} outputs, no vout {}",
                            prev.output.len(),
                            previous_output.vout
                        ),
                    );
                }
                out
            }
        }
    };
    match (proven_prevout, &input.witness_utxo) {
        (Some(proven), Some(claimed)) if proven != claimed => findings.input(
            index,
            FindingCode::InputWitnessUtxoMismatch,
            format!(
                "witness_utxo says {} sat to {}, previous transaction says {} sat to {}",
                claimed.value.to_sat(),
                claimed.script_pubkey,
                proven.value.to_sat(),
                proven.script_pubkey
            ),
        ),
        _ => {}
    }
    analysis.amount = proven_prevout.map(|o| o.value);

    let spent_script = proven_prevout
        .or(input.witness_utxo.as_ref())
        .map(|o| o.script_pubkey.clone());
    if let Some(script) = spent_script.as_ref().filter(|s| !s.is_p2wsh()) {
        findings.input(
            index,
            FindingCode::InputNotSegwitV0,
            format!("spent output script {script} is not p2wsh"),
        );
    }

    let (keychain, derivation_index) = match read_claim(policy, &input.bip32_derivation) {
        Claim::None {
            names_hsm_key: false,
        } => {
            findings.input(
                index,
                FindingCode::InputNotOurs,
                "no derivation for the policy's keys".to_owned(),
            );
            return analysis;
        }
        Claim::None {
            names_hsm_key: true,
        } => {
            findings.input(
                index,
                FindingCode::InputDerivationMissing,
                "derivations name our hsm keys but none the recovery key".to_owned(),
            );
            return analysis;
        }
        Claim::Invalid(reason) => {
            findings.input(index, FindingCode::InputDerivationInvalid, reason);
            return analysis;
        }
        Claim::Ours(keychain, derivation_index) => (keychain, derivation_index),
    };

    let derived = match policy.derive(keychain, derivation_index) {
        Ok(d) => d,
        Err(e) => {
            findings.input(index, FindingCode::InputDerivationInvalid, e.to_string());
            return analysis;
        }
    };
    // Scripts come from one concrete derivation with a shared context: converting each
    // descriptor key on demand would build a fresh secp256k1 context per key.
    let concrete = match derived.derived_descriptor(secp) {
        Ok(c) => c,
        Err(e) => {
            findings.input(index, FindingCode::InputDerivationInvalid, e.to_string());
            return analysis;
        }
    };
    let witness_script = match concrete.explicit_script() {
        Ok(s) => s,
        Err(e) => {
            findings.input(index, FindingCode::InputDerivationInvalid, e.to_string());
            return analysis;
        }
    };

    // Whether the spent output is ours comes first: a foreign input is INPUT_NOT_OURS, not
    // a witness script mismatch.
    let expected_script = concrete.script_pubkey();
    match spent_script {
        // No script to compare: the missing previous transaction is already a finding.
        None => return analysis,
        Some(script) if script != expected_script => {
            findings.input(
                index,
                FindingCode::InputNotOurs,
                format!(
                    "claims {keychain}/{derivation_index} but spends {script}, the policy gives {expected_script}"
                ),
            );
            return analysis;
        }
        Some(_) => {}
    }

    match &input.witness_script {
        None => findings.input(
            index,
            FindingCode::InputWitnessScriptMissing,
            format!("no witness script; expected the policy's at {keychain}/{derivation_index}"),
        ),
        Some(given) if *given != witness_script => findings.input(
            index,
            FindingCode::InputWitnessScriptMismatch,
            format!("witness script differs from the policy's at {keychain}/{derivation_index}"),
        ),
        Some(_) => {}
    }

    analysis.ownership = Some(Ownership {
        keychain,
        derivation_index,
    });
    analysis.witness_script = Some(witness_script);
    analysis.descriptor = Some(concrete);
    analysis.hsm_keys = hsm_labels(policy, &derived);
    analysis.max_satisfaction_weight = derived.max_weight_to_satisfy().ok();
    match spending_paths(policy, &derived, tx, sequence) {
        Ok(paths) => {
            if !paths.iter().any(|p| p.satisfiable_now) {
                let needs: Vec<&str> = paths.iter().map(|p| p.description.as_str()).collect();
                findings.input(
                    index,
                    FindingCode::InputNoSatisfiablePath,
                    format!(
                        "no path satisfiable with nSequence {:#010x}, locktime {}, version {}: {}",
                        sequence.to_consensus_u32(),
                        tx.lock_time,
                        tx.version.0,
                        needs.join(" | ")
                    ),
                );
            }
            analysis.spending_paths = paths;
        }
        Err(reason) => {
            findings.input(index, FindingCode::InputNoSatisfiablePath, reason);
        }
    }
    analysis
}

/// Labels of the HSM keys in a derived descriptor, in the policy's order.
fn hsm_labels(policy: &PolicyDocument, derived: &Descriptor<DefiniteDescriptorKey>) -> Vec<String> {
    let mut present = BTreeSet::new();
    derived.for_each_key(|key| {
        if let Some(k) = policy.hsm_key_of(key) {
            present.insert(k.label.clone());
        }
        true
    });
    policy
        .hsm_keys
        .iter()
        .filter(|k| present.contains(&k.label))
        .map(|k| k.label.clone())
        .collect()
}

/// Names keys by label (`recovery` for the recovery key) and hashes by hex.
struct Labeler<'a> {
    policy: &'a PolicyDocument,
}

impl Translator<DefiniteDescriptorKey, String, ()> for Labeler<'_> {
    fn pk(&mut self, key: &DefiniteDescriptorKey) -> Result<String, ()> {
        if let Some(k) = self.policy.hsm_key_of(key) {
            Ok(k.label.clone())
        } else if self.policy.is_recovery_key(key) {
            Ok(RECOVERY_NAME.to_owned())
        } else {
            Ok(key.to_string())
        }
    }

    fn sha256(&mut self, h: &sha256::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }

    fn hash256(&mut self, h: &hash256::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }

    fn ripemd160(&mut self, h: &ripemd160::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }

    fn hash160(&mut self, h: &hash160::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }
}

/// The top-level alternatives of the lifted policy, with their timelocks checked against the
/// input's nSequence and the transaction's locktime and version.
fn spending_paths(
    policy: &PolicyDocument,
    derived: &Descriptor<DefiniteDescriptorKey>,
    tx: &Transaction,
    sequence: Sequence,
) -> Result<Vec<SpendingPath>, String> {
    let lifted = derived
        .lift()
        .map_err(|e| format!("cannot lift the input's policy: {e}"))?;
    let named = lifted
        .normalized()
        .translate_pk(&mut Labeler { policy })
        .map_err(|()| "cannot name the input's keys".to_owned())?;

    // OP_CSV fails below version 2 (compared as unsigned) or with the disable flag set;
    // an age of zero then satisfies no `older`.
    let csv_active = u32::from_ne_bytes(tx.version.0.to_ne_bytes()) >= 2;
    let age = if csv_active {
        sequence
            .to_relative_lock_time()
            .unwrap_or(relative::LockTime::ZERO)
    } else {
        relative::LockTime::ZERO
    };
    // OP_CLTV fails when this input's nSequence is final.
    let lock_time = if sequence.enables_absolute_lock_time() {
        tx.lock_time
    } else {
        absolute::LockTime::ZERO
    };

    let alternatives: Vec<semantic::Policy<String>> = match &named {
        semantic::Policy::Thresh(t) if t.k() == 1 && t.n() > 1 => {
            t.iter().map(|alt| alt.as_ref().clone()).collect()
        }
        other => vec![other.clone()],
    };
    Ok(alternatives
        .into_iter()
        .map(|alt| {
            let mut keys = Vec::new();
            alt.for_each_key(|k| {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
                true
            });
            let satisfiable_now = !alt
                .clone()
                .at_age(age)
                .at_lock_time(lock_time)
                .is_unsatisfiable();
            SpendingPath {
                description: alt.to_string(),
                keys,
                signatures_needed: alt.minimum_n_keys(),
                relative_timelock: alt.relative_timelocks().last().copied(),
                absolute_timelock: alt.absolute_timelocks().last().copied(),
                satisfiable_now,
            }
        })
        .collect())
}

fn analyze_output(
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

/// Unsigned weight, plus the segwit marker and flag, plus for each input its empty-witness
/// count byte and its satisfaction bound. `None` if any input has no bound (not ours), or
/// there is no input.
fn estimate_weight(tx: &Transaction, inputs: &[InputAnalysis]) -> Option<Weight> {
    if inputs.is_empty() {
        return None;
    }
    let mut weight = tx.weight().checked_add(Weight::from_wu(2))?;
    for input in inputs {
        let bound = input.max_satisfaction_weight?;
        weight = weight.checked_add(Weight::from_wu(1))?.checked_add(bound)?;
    }
    Some(weight)
}

fn sats(amount: Option<Amount>) -> String {
    amount.map_or_else(|| "unproven".to_owned(), |a| format!("{} sat", a.to_sat()))
}

impl fmt::Display for PsbtAnalysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "transaction {} (version {}, locktime {}) under policy {}",
            self.txid, self.version, self.lock_time, self.policy_id
        )?;
        for input in &self.inputs {
            let owner = match input.ownership {
                Some(o) => format!("ours {}/{}", o.keychain, o.derivation_index),
                None => "not proven ours".to_owned(),
            };
            writeln!(
                f,
                "input {}: {} nSequence {:#010x}, {}, {}, sighash {}",
                input.index,
                input.previous_output,
                input.sequence.to_consensus_u32(),
                owner,
                sats(input.amount),
                input.sighash_type.as_deref().unwrap_or("ALL (default)")
            )?;
            for path in &input.spending_paths {
                let sigs = path
                    .signatures_needed
                    .map_or("no".to_owned(), |n| n.to_string());
                writeln!(
                    f,
                    "  path {}: {} signature(s) from [{}], {}",
                    path.description,
                    sigs,
                    path.keys.join(", "),
                    if path.satisfiable_now {
                        "satisfiable now"
                    } else {
                        "not satisfiable now"
                    }
                )?;
            }
        }
        for output in &self.outputs {
            let class = match output.class {
                OutputClass::Change { index } => format!("change/{index}"),
                OutputClass::Receive { index } => format!("ours receive/{index}"),
                OutputClass::External => "external".to_owned(),
                OutputClass::Unproven => "claims ours, unproven".to_owned(),
            };
            let to = output
                .address
                .clone()
                .unwrap_or_else(|| output.script_pubkey.to_string());
            writeln!(
                f,
                "output {}: {} sat to {}, {}",
                output.index,
                output.value.to_sat(),
                to,
                class
            )?;
        }
        writeln!(
            f,
            "total in {}, out {} (change {}, receive {}, external {}), fee {}",
            sats(self.total_in),
            sats(self.total_out),
            sats(self.change_total),
            sats(self.receive_total),
            sats(self.external_total),
            sats(self.fee)
        )?;
        match (self.estimated_vsize, self.estimated_feerate) {
            (Some(vsize), Some(rate)) => writeln!(
                f,
                "estimated size at most {vsize} vB, feerate at least {} sat/vB",
                rate.to_sat_per_vb_floor()
            )?,
            (Some(vsize), None) => writeln!(f, "estimated size at most {vsize} vB")?,
            _ => writeln!(f, "estimated size unknown")?,
        }
        if self.findings.is_empty() {
            write!(f, "findings: none")
        } else {
            write!(f, "findings:")?;
            for finding in &self.findings {
                write!(f, "\n  {finding}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_stop_at_21_million_bitcoin() {
        let mut findings = Findings::default();
        let max = Some(Amount::MAX_MONEY);
        assert_eq!(sum([max].into_iter(), "x", &mut findings), max);
        assert!(findings.tx.is_empty());
        assert_eq!(
            sum([max, Some(Amount::ONE_SAT)].into_iter(), "x", &mut findings),
            None
        );
        assert_eq!(findings.tx.len(), 1);
        assert_eq!(findings.tx[0].code, FindingCode::AmountOverflow);
        assert_eq!(
            sum(
                [Some(Amount::MAX), Some(Amount::MAX)].into_iter(),
                "x",
                &mut findings
            ),
            None
        );
        // An unproven amount makes the sum unproven without a finding of its own.
        let mut findings = Findings::default();
        assert_eq!(
            sum(
                [Some(Amount::ONE_SAT), None].into_iter(),
                "x",
                &mut findings
            ),
            None
        );
        assert!(findings.tx.is_empty());
    }

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
