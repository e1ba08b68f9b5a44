//! The analysis in plain words.

use std::fmt;

use bitcoin::Amount;

use super::{OutputClass, PsbtAnalysis};

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
