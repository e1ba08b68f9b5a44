//! The payouts of a transaction, to count an RBF replacement of the same payouts once.

use std::collections::BTreeSet;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::{Amount, OutPoint, ScriptBuf};
use serde::Serialize;

use super::CompiledRules;
use super::evaluate::counts_as_payout;
use crate::analysis::PsbtAnalysis;

/// The payees and amounts of a transaction (each external or allowlisted output), and the
/// outpoints it spends.
///
/// Two transactions are a replacement of the same payouts when their payouts are equal and
/// they spend at least one outpoint in common: then at most one of them can confirm, so the
/// velocity windows count the payouts once and the fee difference only. Payouts alone are not
/// enough: two transactions with the same payouts and disjoint inputs can both confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayoutFingerprint {
    /// Payee scripts and amounts, sorted (repeats kept).
    pub payouts: Vec<(ScriptBuf, Amount)>,
    /// Outpoints spent.
    pub inputs: BTreeSet<OutPoint>,
}

impl PayoutFingerprint {
    /// The fingerprint of an analysed transaction under these rules.
    pub fn of(rules: &CompiledRules, analysis: &PsbtAnalysis) -> PayoutFingerprint {
        let mut payouts: Vec<(ScriptBuf, Amount)> = analysis
            .outputs
            .iter()
            .filter(|o| counts_as_payout(rules, o))
            .map(|o| (o.script_pubkey.clone(), o.value))
            .collect();
        payouts.sort();
        PayoutFingerprint {
            payouts,
            inputs: analysis.inputs.iter().map(|i| i.previous_output).collect(),
        }
    }

    /// SHA-256 over the sorted payouts (not the inputs), for looking up earlier
    /// transactions with the same payouts; confirm with [`PayoutFingerprint::is_replacement_of`].
    pub fn payout_digest(&self) -> [u8; 32] {
        let mut bytes = Vec::new();
        for (script, amount) in &self.payouts {
            bytes.extend_from_slice(&amount.to_sat().to_le_bytes());
            bytes.extend_from_slice(&(script.len() as u64).to_le_bytes());
            bytes.extend_from_slice(script.as_bytes());
        }
        sha256::Hash::hash(&bytes).to_byte_array()
    }

    /// True when `self` replaces `earlier`: the same payouts, and a common input (so both
    /// cannot confirm). A transaction with no payout replaces nothing.
    pub fn is_replacement_of(&self, earlier: &PayoutFingerprint) -> bool {
        !self.payouts.is_empty()
            && self.payouts == earlier.payouts
            && !self.inputs.is_disjoint(&earlier.inputs)
    }
}
