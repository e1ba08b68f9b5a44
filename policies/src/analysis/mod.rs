//! PSBT analysis against a policy: what is spent, where it goes, and what looks wrong.
//!
//! PSBTs come from an untrusted coordinator. [`analyze`] trusts nothing in them that it cannot
//! prove from the policy: ownership is proven by re-deriving the policy descriptor at the
//! claimed index, amounts by the full previous transaction. Anything it cannot prove, or that
//! is unsafe to sign, becomes a [`Finding`]; a signer refuses any PSBT with a finding.

mod display;
mod fee;
mod findings;
mod input;
mod output;
mod signing;

use std::collections::BTreeSet;

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Amount, FeeRate, Txid, Weight, absolute};
use serde::Serialize;

use crate::document::{PolicyDocument, PolicyId};

use fee::{estimate_weight, sum};
use findings::Findings;
pub use findings::{Finding, FindingCode};
use input::analyze_input;
pub use input::{InputAnalysis, Ownership, SpendingPath, describe_paths};
use output::analyze_output;
pub use output::{OutputAnalysis, OutputClass};
pub use signing::{SigningTarget, hsm_signing_targets};

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
    /// Size in virtual bytes once signed through the cheapest path the HSM keys satisfy, with
    /// 72-byte signatures (what the feerate cap divides by); `None` if any input has no
    /// [`InputAnalysis::signing_weight`].
    pub signed_vsize: Option<u64>,
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

    if tx.version.0 != 1 && tx.version.0 != 2 {
        findings.tx(
            FindingCode::TxVersionNonStandard,
            format!("transaction version {} is not 1 or 2", tx.version.0),
        );
    }
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

    let signed_vsize = fee::signed_weight(tx, &inputs).map(Weight::to_vbytes_ceil);

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
        signed_vsize,
        findings: findings.finish(),
    }
}
