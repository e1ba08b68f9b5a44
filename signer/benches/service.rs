//! Signing requests per second through the service's HTTP API (router, auth,
//! approvals, analysis, rules, HSM, velocity, audit chain, commit, anchor),
//! against the raw rate of the same HSM's sessions, measured in one run.
//!
//! Two PSBTs: a hot 1-input one (one HSM key, signed on submission) and a
//! 50-input one under a cold 2-of-3 policy whose quorum is two officers. For
//! the cold one, the request is submitted and the first officer's approval
//! posted before the clock starts; the timed call is the second officer's
//! approval (pre-signed), which completes the quorum and signs.
//!
//! Each round sends K requests at once through the API (K = 1, 4, 16), then K
//! raw batches at once on a `Pkcs11Hsm` with as many sessions as the service's
//! pool, each batch the same number of digests with the same keys as one
//! request signs (counted from the pool's `C_Sign` counter, not assumed), so
//! load changes hit both sides of the ratio.
//!
//! Run with `cargo bench -p signer --bench service`; with
//! `RUST_LOG=signer::service=debug` each signing logs where its time went.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/officers/mod.rs"]
mod officers;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bitcoin::Psbt;
use bitcoin::hashes::{Hash, sha256};
use serde_json::Value;
use signer::{Hsm, Pkcs11Hsm, SignRequest};
use system_tests::custody::{external_destination, open_hsm};
use system_tests::process::with_private_softhsm;
use system_tests::wallet::{PolicyWallet, SpendPath};
use test_support::softhsm::TestToken;

use common::{Bench, FUNDING};

/// API time per row (at least two rounds).
const MEASURE: Duration = Duration::from_secs(3);
const SESSIONS: usize = 2;
const IN_FLIGHT: [usize; 3] = [1, 4, 16];

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Hot,
    Cold,
}

struct Row {
    api: Duration,
    raw: Duration,
    requests: u32,
}

fn main() -> ExitCode {
    match with_private_softhsm(None) {
        Ok(Some(code)) => return code,
        Ok(None) => {}
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut labels = vec![support::HOT];
    labels.extend(support::COLD);
    let token = TestToken::create(&labels).unwrap();
    let raw = open_hsm(&token, &labels, SESSIONS).unwrap();
    let rt = support::runtime();
    let bench = rt.block_on(Bench::start(&token, SESSIONS));
    println!(
        "service bench: {SESSIONS} HSM sessions, one client; the raw side signs the same \
         digest count with the same keys on {SESSIONS} sessions, as many batches at once"
    );
    for (case, inputs) in [(Case::Hot, 1usize), (Case::Cold, 50)] {
        let policy = match case {
            Case::Hot => &bench.hot,
            Case::Cold => &bench.cold,
        };
        let mut wallet = PolicyWallet::new(policy).unwrap();
        wallet.fund(&vec![FUNDING; inputs]).unwrap();
        let psbt = wallet
            .drain(external_destination(4), SpendPath::Hsm)
            .unwrap();
        assert_eq!(psbt.inputs.len(), inputs);
        // Warm up both paths, and count what one request hands to C_Sign.
        let before = bench.hsm.sign_calls();
        let mut round = 0u32;
        rt.block_on(api_round(&bench, case, &psbt, 1, &mut round));
        let per_request = bench.hsm.sign_calls() - before;
        let batch = raw_batch(&raw, policy, inputs, per_request);
        raw_round(&raw, &batch, 1);
        let name = match case {
            Case::Hot => "hot, 1 input",
            Case::Cold => "cold 2-of-3, 50 inputs",
        };
        for k in IN_FLIGHT {
            let mut row = Row {
                api: Duration::ZERO,
                raw: Duration::ZERO,
                requests: 0,
            };
            let mut rounds = 0;
            while row.api < MEASURE || rounds < 2 {
                row.raw += raw_round(&raw, &batch, k);
                row.api += rt.block_on(api_round(&bench, case, &psbt, k, &mut round));
                row.requests += k as u32;
                rounds += 1;
            }
            let n = f64::from(row.requests);
            let api_rate = n / row.api.as_secs_f64();
            let raw_rate = n / row.raw.as_secs_f64();
            println!(
                "{name}, {per_request} signatures a request, {k:>2} in flight: \
                 API {api_rate:7.1} requests/s, raw HSM {raw_rate:7.1} batches/s, \
                 ratio {:.2}x ({} requests)",
                api_rate / raw_rate,
                row.requests,
            );
        }
    }
    // What one audit-anchor write costs on this token.
    let head = rt.block_on(signer::audit::head(&bench.store)).unwrap();
    let writes = 50u32;
    let t = Instant::now();
    for i in 0..writes {
        let next = signer::audit::Head {
            seq: head.seq + 1 + i64::from(i),
            hash: head.hash,
        };
        rt.block_on(bench.hsm.write_anchor(next)).unwrap();
    }
    println!(
        "anchor write: {:.2} ms each ({writes} writes)",
        t.elapsed().as_secs_f64() * 1000.0 / f64::from(writes)
    );
    ExitCode::SUCCESS
}

/// `per_request` digests with the policy's keys in turn, as the service signs.
fn raw_batch(
    raw: &Pkcs11Hsm,
    policy: &policies::PolicyDocument,
    inputs: usize,
    per_request: u64,
) -> Vec<SignRequest> {
    let keys: Vec<usize> = policy
        .hsm_keys
        .iter()
        .map(|k| raw.key_index(&k.label).unwrap())
        .collect();
    let per_input = usize::try_from(per_request).unwrap() / inputs;
    assert_eq!(per_input * inputs, usize::try_from(per_request).unwrap());
    (0..inputs)
        .flat_map(|i| {
            keys.iter().take(per_input).map(move |key| SignRequest {
                key: *key,
                digest: sha256::Hash::hash(&(i as u64).to_le_bytes()).to_byte_array(),
            })
        })
        .collect()
}

/// `k` batches signed at once; the time they took.
fn raw_round(raw: &Pkcs11Hsm, batch: &[SignRequest], k: usize) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..k {
            s.spawn(|| raw.sign_digests(batch).unwrap());
        }
    });
    t.elapsed()
}

/// `k` requests at once through the API (for the cold case, prepared untimed
/// up to the last approval); the time the timed calls took.
async fn api_round(bench: &Bench, case: Case, psbt: &Psbt, k: usize, round: &mut u32) -> Duration {
    *round += 1;
    let text = psbt.to_string();
    let mut prepared = Vec::with_capacity(k);
    for c in 0..k {
        let key = format!("r{round}-{c}");
        prepared.push(match case {
            Case::Hot => None,
            Case::Cold => Some(bench.pending(&text, &key).await),
        });
    }
    let t = Instant::now();
    let answers: Vec<Value> = futures_join(bench, case, &text, prepared, *round).await;
    let elapsed = t.elapsed();
    for answer in &answers {
        let status = match case {
            Case::Hot => &answer["status"],
            Case::Cold => &answer["request"]["status"],
        };
        assert_eq!(status, "signed", "{answer}");
    }
    elapsed
}

async fn futures_join(
    bench: &Bench,
    case: Case,
    psbt: &str,
    prepared: Vec<Option<(String, Value)>>,
    round: u32,
) -> Vec<Value> {
    let mut set = tokio::task::JoinSet::new();
    for (c, approval) in prepared.into_iter().enumerate() {
        let app = bench.app.clone();
        let token = bench.client.clone();
        let (uri, body) = match (case, approval) {
            (Case::Cold, Some((uri, approval))) => (uri, approval.to_string()),
            _ => (
                "/v1/signing-requests".to_owned(),
                serde_json::json!({"policy_id": bench.hot.id.to_string(), "psbt": psbt,
                    "purpose": "bench", "idempotency_key": format!("h{round}-{c}")})
                .to_string(),
            ),
        };
        set.spawn(async move {
            support::call(&app, "POST", &uri, Some(&token), Some(body))
                .await
                .1
        });
    }
    set.join_all().await
}
