//! A signing request in plain words, for the officer who approves it.
//!
//! Built from the service's JSON views (the request and its approvals), so the
//! officer's tool and the service agree on what is shown. Amounts are integer
//! satoshis throughout; BTC is only a way of writing them.

use std::fmt::Write as _;

use bitcoin::Amount;
use serde_json::Value;

fn sats(value: &Value) -> Option<u64> {
    value.as_u64()
}

/// `0.40000000 BTC (40000000 sat)`.
pub fn btc_and_sats(sat: u64) -> String {
    let btc = Amount::from_sat(sat).to_string_in(bitcoin::Denomination::Bitcoin);
    // Eight decimals always, so amounts line up and no digit is implied.
    let btc = match btc.split_once('.') {
        Some((whole, frac)) => format!("{whole}.{frac:0<8}"),
        None => format!("{btc}.00000000"),
    };
    format!("{btc} BTC ({sat} sat)")
}

/// `fee / vsize` in sat/vB with two decimals, by integer arithmetic.
pub fn feerate(fee_sat: u64, vsize: u64) -> Option<String> {
    if vsize == 0 {
        return None;
    }
    let hundredths = u128::from(fee_sat) * 100 / u128::from(vsize);
    Some(format!(
        "{}.{:02} sat/vB",
        hundredths / 100,
        hundredths % 100
    ))
}

fn class_words(class: &Value) -> String {
    match class["kind"].as_str() {
        Some("change") => format!(
            "change back to this policy, proven: the script re-derives at change index {}",
            class["index"]
        ),
        Some("receive") => format!(
            "to this policy's own receive address, proven at index {}",
            class["index"]
        ),
        Some("external") => "PAYMENT leaving the policy".to_owned(),
        Some("unproven") => {
            "claims to be ours but does NOT re-derive: treated as leaving".to_owned()
        }
        _ => format!("unknown class {class}"),
    }
}

/// The request (`GET /v1/signing-requests/{id}`) and its approvals
/// (`GET /v1/signing-requests/{id}/approvals`) in plain words.
pub fn describe(request: &Value, approvals: &Value) -> String {
    let mut out = String::new();
    let a = &request["analysis"];
    let _ = writeln!(
        out,
        "Request {} ({})",
        request["id"].as_str().unwrap_or("?"),
        request["status"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "  policy:      {}",
        request["policy_id"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "  purpose:     {}",
        request["purpose"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        out,
        "  transaction: {}",
        request["unsigned_txid"].as_str().unwrap_or("?")
    );
    let _ = writeln!(out, "Outputs:");
    for output in a["outputs"].as_array().into_iter().flatten() {
        let value = sats(&output["value"]).map_or("?".to_owned(), btc_and_sats);
        let to = output["address"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("script {}", output["script_pubkey"]));
        let _ = writeln!(
            out,
            "  #{} {value}\n      to {to}\n      {}",
            output["index"],
            class_words(&output["class"])
        );
    }
    let leaving = sats(&a["external_total"]);
    match (
        sats(&a["fee"]),
        a["signed_vsize"].as_u64().or(a["estimated_vsize"].as_u64()),
    ) {
        (Some(fee), vsize) => {
            let rate = vsize
                .and_then(|v| feerate(fee, v).map(|r| format!(", {r} over {v} vB")))
                .unwrap_or_default();
            let _ = writeln!(out, "Fee: {}{rate}", btc_and_sats(fee));
            if let Some(external) = leaving {
                let total = external.checked_add(fee);
                if let Some(total) = total {
                    let _ = writeln!(
                        out,
                        "Leaving the policy (payments + fee): {}",
                        btc_and_sats(total)
                    );
                }
            }
        }
        (None, _) => {
            let _ = writeln!(out, "Fee: UNPROVEN (a previous transaction is missing)");
        }
    }
    let _ = writeln!(out, "Spending path:");
    for input in a["inputs"].as_array().into_iter().flatten() {
        let amount = sats(&input["amount"]).map_or("?".to_owned(), btc_and_sats);
        let _ = writeln!(out, "  input #{} spends {amount}", input["index"]);
        for path in input["spending_paths"].as_array().into_iter().flatten() {
            let now = if path["satisfiable_now"].as_bool() == Some(true) {
                "usable now"
            } else {
                "not usable now"
            };
            let _ = writeln!(
                out,
                "      {} ({} signature(s), {now})",
                path["description"].as_str().unwrap_or("?"),
                path["signatures_needed"]
            );
        }
    }
    let _ = writeln!(out, "Rules:");
    let outcomes = request["rule_outcomes"].as_array();
    if outcomes.is_none_or(Vec::is_empty) {
        let _ = writeln!(out, "  (no rule outcomes reported)");
    }
    for rule in outcomes.into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<5} {}: {}",
            rule["outcome"].as_str().unwrap_or("?"),
            rule["rule_id"].as_str().unwrap_or("?"),
            rule["message"].as_str().unwrap_or("")
        );
    }
    let required = approvals["required"]
        .as_u64()
        .map_or("no quorum can allow it".to_owned(), |r| r.to_string());
    let _ = writeln!(
        out,
        "Approvals: {} counted, {required} required",
        approvals["counted"]
    );
    let _ = writeln!(
        out,
        "An approval binds: instance {}, txid {}, analysis {}",
        approvals["instance"].as_str().unwrap_or("?"),
        approvals["unsigned_txid"].as_str().unwrap_or("?"),
        approvals["analysis_sha256"].as_str().unwrap_or("?")
    );
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn amounts_in_btc_and_sats_without_floats() {
        assert_eq!(btc_and_sats(40_000_000), "0.40000000 BTC (40000000 sat)");
        assert_eq!(btc_and_sats(1), "0.00000001 BTC (1 sat)");
        assert_eq!(btc_and_sats(150_000_000), "1.50000000 BTC (150000000 sat)");
        assert_eq!(btc_and_sats(0), "0.00000000 BTC (0 sat)");
        assert_eq!(feerate(1_000, 300).as_deref(), Some("3.33 sat/vB"));
        assert_eq!(feerate(1_000, 0), None);
    }

    #[test]
    fn each_output_fee_path_and_rule_is_described() {
        let request = json!({
            "id": "r1", "status": "pending_approval", "policy_id": "p", "purpose": "payout",
            "unsigned_txid": "t",
            "analysis": {
                "outputs": [
                    {"index": 0, "value": 40_000_000, "address": "bcrt1qpay", "class": {"kind": "external"}},
                    {"index": 1, "value": 9_990_000, "address": "bcrt1qchange", "class": {"kind": "change", "index": 3}}
                ],
                "external_total": 40_000_000, "fee": 10_000, "signed_vsize": 400,
                "inputs": [{"index": 0, "amount": 50_000_000, "spending_paths": [
                    {"description": "2 of cold-a, cold-b, cold-c", "signatures_needed": 2, "satisfiable_now": true}
                ]}]
            },
            "rule_outcomes": [{"rule_id": "max_per_tx", "outcome": "pass", "message": "within"}]
        });
        let approvals = json!({"required": 2, "counted": 1, "instance": "s", "unsigned_txid": "t", "analysis_sha256": "h"});
        let text = describe(&request, &approvals);
        for needle in [
            "0.40000000 BTC (40000000 sat)",
            "to bcrt1qpay",
            "PAYMENT leaving the policy",
            "change back to this policy, proven: the script re-derives at change index 3",
            "Fee: 0.00010000 BTC (10000 sat), 25.00 sat/vB over 400 vB",
            "Leaving the policy (payments + fee): 0.40010000 BTC (40010000 sat)",
            "2 of cold-a, cold-b, cold-c (2 signature(s), usable now)",
            "pass  max_per_tx: within",
            "Approvals: 1 counted, 2 required",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }
}
