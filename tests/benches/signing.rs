//! HSM signing throughput, measured in one run against one SoftHSM2 token:
//!
//! 1. raw: `C_Sign` on one session in a loop, and batches through the
//!    signer's worker pool (the same sessions `sign_psbt` uses);
//! 2. `sign_psbt` on a 2-of-3 PSBT with 1 and with 50 inputs, by a signer
//!    holding two of the three keys (so every PSBT is finalized), counted in
//!    signatures per second.
//!
//! The ratios compare 2 against 1. Target: ≥ 0.8 of the raw pool rate for 50
//! inputs. Run with `cargo bench -p system-tests --bench signing`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bitcoin::Amount;
use bitcoin::hashes::{Hash, sha256};
use hsm_config::softhsm::TestToken;
use signer::{Hsm, Pkcs11Hsm, SignRequest, sign_psbt};
use system_tests::custody::{cold_policy, external_destination};
use system_tests::process::with_private_softhsm;
use system_tests::wallet::{PolicyWallet, SpendPath};

const SESSIONS: usize = 2;
const MIN_TIME: Duration = Duration::from_secs(3);

fn digest(n: u64) -> [u8; 32] {
    sha256::Hash::hash(&n.to_le_bytes()).to_byte_array()
}

/// Runs `f` (which reports how many signatures it made) until `MIN_TIME` has
/// passed, and returns signatures per second.
fn rate(mut f: impl FnMut() -> usize) -> f64 {
    f(); // warm up
    let start = Instant::now();
    let mut signatures = 0usize;
    while start.elapsed() < MIN_TIME {
        signatures += f();
    }
    signatures as f64 / start.elapsed().as_secs_f64()
}

fn main() -> ExitCode {
    // `cargo test --benches` runs bench binaries with `--bench` absent: do nothing then.
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
    let labels = vec!["cold-a".to_string(), "cold-b".to_string()];
    let hsm = Pkcs11Hsm::open(
        token.module(),
        token.token_label(),
        &TestToken::user_pin(),
        &labels,
        SESSIONS,
    )
    .unwrap();

    // 1a. One session, one C_Sign at a time.
    let session = token.session();
    let (handle, key) = session.signing_key("cold-a").unwrap();
    let mut n = 0u64;
    let raw_single = rate(|| {
        n += 1;
        session
            .sign_digest(&handle, &key.public_key, &digest(n))
            .unwrap();
        1
    });

    // 1b. The worker pool, in batches the size of a 50-input PSBT's.
    let batch: Vec<SignRequest> = (0..100)
        .map(|i| SignRequest {
            key: (i % 2) as usize,
            digest: digest(1_000_000 + i),
        })
        .collect();
    let raw_pool = rate(|| hsm.sign_digests(&batch).unwrap().len());

    // 2. sign_psbt.
    let psbt_rate = |inputs: usize| {
        let mut wallet = PolicyWallet::new(&policy).unwrap();
        wallet
            .fund(&vec![Amount::from_sat(50_000); inputs])
            .unwrap();
        let psbt = wallet
            .drain(external_destination(2), SpendPath::Hsm)
            .unwrap();
        assert_eq!(psbt.inputs.len(), inputs);
        rate(|| {
            let signed = sign_psbt(&policy, &psbt, &hsm).unwrap();
            assert!(signed.finalized);
            signed.signatures
        })
    };
    let one = psbt_rate(1);
    let fifty = psbt_rate(50);

    println!("HSM signing throughput (SoftHSM2, secp256k1, {SESSIONS} sessions in the pool)");
    println!("  raw C_Sign, one session          {raw_single:>9.0} sig/s");
    println!("  raw, signer worker pool          {raw_pool:>9.0} sig/s");
    println!(
        "  sign_psbt 2-of-3, 1 input        {one:>9.0} sig/s   {:.2}x raw pool",
        one / raw_pool
    );
    println!(
        "  sign_psbt 2-of-3, 50 inputs      {fifty:>9.0} sig/s   {:.2}x raw pool   {:.2}x raw one session   (target >= 0.80x raw pool)",
        fifty / raw_pool,
        fifty / raw_single
    );
    ExitCode::SUCCESS
}
