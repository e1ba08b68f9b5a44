//! Signing requests per second through the service's HTTP API (router, auth,
//! idempotency claim, analysis, rules, HSM, velocity, audit chain, commit,
//! anchor), against the raw rate of the same HSM's sessions, measured in one run.
//!
//! Each round sends one request of N inputs through the API and one raw batch
//! of the same N digests through a `Pkcs11Hsm` with as many sessions as the
//! service's pool, alternately, so load changes hit both sides of the ratio.
//!
//! The policy is the hot one (one HSM key, 1 signature per input): the 50-input
//! case signs 50 digests per request. It stands in for the 50-input 2-of-3
//! PSBT with pre-signed approvals, which this bench does not drive yet.
//!
//! Run with `cargo bench -p signer --bench service`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bitcoin::Amount;
use bitcoin::hashes::{Hash, sha256};
use hsm_config::softhsm::TestToken;
use signer::{Hsm, SignRequest};
use system_tests::custody::{external_destination, open_hsm};
use system_tests::process::with_private_softhsm;
use system_tests::wallet::{PolicyWallet, SpendPath};

const MEASURE: Duration = Duration::from_secs(4);
const SESSIONS: usize = 2;
const CONCURRENT: usize = 4;

fn main() -> ExitCode {
    match with_private_softhsm(None) {
        Ok(Some(code)) => return code,
        Ok(None) => {}
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let token = TestToken::create(&[support::HOT, "cold-a", "cold-b", "cold-c"]).unwrap();
    let raw = open_hsm(&token, &[support::HOT], SESSIONS).unwrap();
    let rt = support::runtime();
    let service = rt.block_on(support::Service::start(token, |t| {
        let mut s = support::settings(t, &[support::HOT]);
        s.sessions = SESSIONS;
        s
    }));
    println!("service bench: hot policy, {SESSIONS} HSM sessions, one client, sequential requests");
    for inputs in [1usize, 50] {
        let mut wallet = PolicyWallet::new(&service.hot).unwrap();
        wallet
            .fund(&vec![Amount::from_sat(60_000); inputs])
            .unwrap();
        let psbt = wallet
            .drain(external_destination(4), SpendPath::Hsm)
            .unwrap();
        assert_eq!(psbt.inputs.len(), inputs);
        let batch: Vec<SignRequest> = (0..inputs)
            .map(|i| SignRequest {
                key: 0,
                digest: sha256::Hash::hash(&(i as u64).to_le_bytes()).to_byte_array(),
            })
            .collect();
        // Warm up both paths.
        raw.sign_digests(&batch).unwrap();
        let (_, body) = rt.block_on(service.submit(&service.hot, &psbt, &format!("warm-{inputs}")));
        assert_eq!(body["status"], "signed", "{body}");
        let (mut api, mut hsm, mut rounds) = (Duration::ZERO, Duration::ZERO, 0u32);
        let start = Instant::now();
        while start.elapsed() < MEASURE {
            let t = Instant::now();
            raw.sign_digests(&batch).unwrap();
            hsm += t.elapsed();
            let t = Instant::now();
            let (_, body) =
                rt.block_on(service.submit(&service.hot, &psbt, &format!("r-{inputs}-{rounds}")));
            api += t.elapsed();
            assert_eq!(body["status"], "signed", "{body}");
            rounds += 1;
        }
        // The same with CONCURRENT requests in flight per round: they share the
        // policy's row lock, the audit head and the anchor writes.
        let (mut api_c, mut hsm_c, mut rounds_c) = (Duration::ZERO, Duration::ZERO, 0u32);
        let start = Instant::now();
        while start.elapsed() < MEASURE {
            let t = Instant::now();
            for _ in 0..CONCURRENT {
                raw.sign_digests(&batch).unwrap();
            }
            hsm_c += t.elapsed();
            let t = Instant::now();
            let answers = rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for c in 0..CONCURRENT {
                    let app = service.app.clone();
                    let token = service.client.clone();
                    let body = serde_json::json!({"policy_id": service.hot.id.to_string(),
                        "psbt": psbt.to_string(), "purpose": "bench",
                        "idempotency_key": format!("c-{inputs}-{rounds_c}-{c}")})
                    .to_string();
                    set.spawn(async move {
                        support::call(
                            &app,
                            "POST",
                            "/v1/signing-requests",
                            Some(&token),
                            Some(body),
                        )
                        .await
                    });
                }
                set.join_all().await
            });
            api_c += t.elapsed();
            for (_, body) in &answers {
                assert_eq!(body["status"], "signed", "{body}");
            }
            rounds_c += 1;
        }
        let n = f64::from(rounds_c * CONCURRENT as u32);
        println!(
            "{inputs:>2} input(s), {CONCURRENT} at once: API {:8.1} requests/s, raw HSM {:8.1} batches/s, ratio {:.2}x",
            n / api_c.as_secs_f64(),
            n / hsm_c.as_secs_f64(),
            hsm_c.as_secs_f64() / api_c.as_secs_f64(),
        );
        let api_rate = f64::from(rounds) / api.as_secs_f64();
        let raw_rate = f64::from(rounds) / hsm.as_secs_f64();
        println!(
            "{inputs:>2} input(s): API {api_rate:8.1} requests/s ({:8.0} signatures/s), \
             raw HSM {raw_rate:8.1} batches/s ({:8.0} signatures/s), ratio {:.2}x ({rounds} rounds)",
            api_rate * inputs as f64,
            raw_rate * inputs as f64,
            api_rate / raw_rate,
        );
    }
    // What one audit-anchor write costs (a token object created, the old one destroyed).
    let head = rt.block_on(signer::audit::head(&service.store)).unwrap();
    let writes = 50u32;
    let t = Instant::now();
    for i in 0..writes {
        let next = signer::audit::Head {
            seq: head.seq + 1 + i64::from(i),
            hash: head.hash,
        };
        rt.block_on(service.hsm.write_anchor(next)).unwrap();
    }
    println!(
        "anchor write: {:.2} ms each ({writes} writes)",
        t.elapsed().as_secs_f64() * 1000.0 / f64::from(writes)
    );
    ExitCode::SUCCESS
}
