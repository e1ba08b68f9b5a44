//! HSM signing throughput, measured in one run against one SoftHSM2 token.
//!
//! - raw: `C_Sign` on one session in a loop, and the same number of digests a
//!   PSBT needs sent as one batch through the signer's worker pool (the sessions
//!   `sign_psbt` uses);
//! - `sign_psbt` on a 2-of-3 PSBT with 1 and with 50 inputs, by a signer
//!   holding two of the three keys (so every PSBT is finalized), in signatures
//!   per second.
//!
//! The raw batch and the PSBT are timed in alternating rounds, so a change in
//! machine load during the run hits both sides of each ratio alike. Target:
//! ≥ 0.8× the raw pool rate for 50 inputs.
//!
//! Run with `cargo bench -p system-tests --bench signing`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bitcoin::hashes::{Hash, sha256};
use bitcoin::{Amount, Psbt};
use policies::PolicyDocument;
use signer::{Hsm, Pkcs11Hsm, SignRequest, sign_psbt};
use system_tests::custody::{cold_policy, external_destination, open_hsm};
use system_tests::process::with_private_softhsm;
use system_tests::wallet::{PolicyWallet, SpendPath};
use test_support::softhsm::TestToken;

const SESSIONS: usize = 2;
const MEASURE: Duration = Duration::from_secs(4);

fn digest(n: u64) -> [u8; 32] {
    sha256::Hash::hash(&n.to_le_bytes()).to_byte_array()
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn psbt_with_inputs(policy: &PolicyDocument, inputs: usize) -> Psbt {
    let mut wallet = PolicyWallet::new(policy).unwrap();
    wallet
        .fund(&vec![Amount::from_sat(50_000); inputs])
        .unwrap();
    let psbt = wallet
        .drain(external_destination(2), SpendPath::Hsm)
        .unwrap();
    assert_eq!(psbt.inputs.len(), inputs);
    psbt
}

struct Rates {
    raw: f64,
    psbt: f64,
    analysis: Duration,
    sign: Duration,
    hsm: Duration,
}

/// Alternates one raw batch of the PSBT's signature count and one `sign_psbt`
/// until `MEASURE` has passed.
fn measure(policy: &PolicyDocument, hsm: &Pkcs11Hsm, inputs: usize) -> Rates {
    let psbt = psbt_with_inputs(policy, inputs);
    let signatures = 2 * inputs;
    let batch: Vec<SignRequest> = (0..signatures)
        .map(|i| SignRequest {
            key: i % 2,
            digest: digest(i as u64),
        })
        .collect();
    // Warm up both paths.
    hsm.sign_digests(&batch).unwrap();
    assert!(sign_psbt(policy, &psbt, hsm).unwrap().finalized);

    let (mut hsm_time, mut sign_time, mut analysis_time, mut rounds) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0u32);
    let start = Instant::now();
    while start.elapsed() < MEASURE {
        hsm_time += timed(|| {
            hsm.sign_digests(&batch).unwrap();
        });
        sign_time += timed(|| {
            let signed = sign_psbt(policy, &psbt, hsm).unwrap();
            assert_eq!(signed.signatures, signatures);
            assert!(signed.finalized);
        });
        analysis_time += timed(|| {
            assert!(policies::analysis::analyze(policy, &psbt).is_clean());
        });
        rounds += 1;
    }
    let per_round = |d: Duration| d / rounds;
    Rates {
        raw: signatures as f64 * f64::from(rounds) / hsm_time.as_secs_f64(),
        psbt: signatures as f64 * f64::from(rounds) / sign_time.as_secs_f64(),
        analysis: per_round(analysis_time),
        sign: per_round(sign_time),
        hsm: per_round(hsm_time),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match with_private_softhsm(None) {
        Ok(Some(code)) => return code,
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let token = TestToken::create(&["cold-a", "cold-b", "cold-c"]).unwrap();
    let policy = cold_policy("bench", 2, token.keys());
    let hsm = open_hsm(&token, &["cold-a", "cold-b"], SESSIONS).unwrap();

    // One session, one C_Sign at a time (the token's own speed).
    let session = token.session();
    let (handle, key) = session.signing_key("cold-a").unwrap();
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < MEASURE / 2 {
        n += 1;
        session
            .sign_digest(&handle, &key.public_key, &digest(n))
            .unwrap();
    }
    let raw_single = n as f64 / start.elapsed().as_secs_f64();

    let one = measure(&policy, &hsm, 1);
    let fifty = measure(&policy, &hsm, 50);

    println!("HSM signing throughput (SoftHSM2, secp256k1; pool of {SESSIONS} sessions)");
    println!("  raw C_Sign, one session, one at a time     {raw_single:>7.0} sig/s");
    for (inputs, r) in [(1, &one), (50, &fifty)] {
        println!(
            "  2-of-3, {inputs:>2} input(s): raw pool {:>7.0} sig/s, sign_psbt {:>7.0} sig/s = {:.2}x raw pool",
            r.raw,
            r.psbt,
            r.psbt / r.raw
        );
    }
    println!(
        "  per 50-input PSBT: sign_psbt {:.1} ms = analysis {:.1} ms + hsm {:.1} ms + sighashes, checks and finalize {:.1} ms",
        ms(fifty.sign),
        ms(fifty.analysis),
        ms(fifty.hsm),
        ms(fifty.sign.saturating_sub(fifty.analysis + fifty.hsm))
    );
    println!(
        "  target: 50 inputs >= 0.80x raw pool: {}",
        if fifty.psbt / fifty.raw >= 0.8 {
            "met"
        } else {
            "NOT met"
        }
    );
    ExitCode::SUCCESS
}
