//! The local demo: a private SoftHSM2 token, the keys of a cold 2-of-3 policy
//! generated inside it, a PSBT built by a watch-only bdk wallet, checked and
//! signed by two signers each holding one key, finalized, and accepted by the
//! stand-in chain only after Bitcoin Core's script interpreter verified it. Then the bank:
//! `coordinator serve` and the regtest stand-in as processes, a user registered through
//! the API, a deposit shown pending, then settled after a block, then the ledger verified.
//!
//! Everything it writes goes to `demo-work/` (or `--dir`).
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bitcoin::Amount;
use hsm_config::pin::{SoPin, UserPin};
use hsm_config::token::Module;
use secrecy::SecretString;
use signer::psbt_io::{self, Encoding};
use signer::{Pkcs11Hsm, sign_psbt};
use system_tests::custody::{cold_policy, external_destination, recovery_key};
use system_tests::process::with_private_softhsm;
use system_tests::wallet::{PolicyWallet, SpendPath};
use test_support::softhsm::module_path;

const TOKEN: &str = "custody-demo";
const KEYS: [&str; 3] = ["cold-a", "cold-b", "cold-c"];

fn main() -> ExitCode {
    let dir = work_dir();
    // The parent prepares the directory; the child (with SOFTHSM2_CONF set) runs the demo.
    if test_support::softhsm::conf_from_env().is_none()
        && let Err(e) = fresh_dir(&dir)
    {
        eprintln!("error: preparing {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    match with_private_softhsm(Some(&dir.join("softhsm"))) {
        Ok(Some(code)) => return code,
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    match run(&dir).and_then(|()| run_bank(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run the custody demo on a private SoftHSM2 token.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Where the token, the policy and the PSBTs are written (emptied first).
    #[arg(long, default_value = "demo-work")]
    dir: PathBuf,
}

/// The bank part: the coordinator and the chain stand-in as processes, a deposit.
fn run_bank(dir: &Path) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(system_tests::bank_demo::run(dir))
}

fn work_dir() -> PathBuf {
    <Args as clap::Parser>::parse().dir
}

fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir.join("softhsm"))
}

fn step(n: u32, title: &str) {
    println!("\n[{n}] {title}");
}

/// Demo PINs, unless the operator set real ones the way production does.
fn pins() -> (SoPin, UserPin) {
    let so =
        SoPin::from_env().unwrap_or_else(|_| SoPin::new(SecretString::from("demo-so-pin-0000")));
    let user = UserPin::from_env()
        .unwrap_or_else(|_| UserPin::new(SecretString::from("demo-user-pin-1234")));
    (so, user)
}

fn run(dir: &Path) -> anyhow::Result<()> {
    println!("Bastion custody demo: HSM keys, a cold 2-of-3 policy, a policy-checked PSBT signing");
    println!("work directory: {}", dir.display());

    step(1, "Initialise a private SoftHSM2 token");
    let module_path = module_path()?;
    let module = Module::load(&module_path)?;
    let (so_pin, user_pin) = pins();
    let token = module.init_token(TOKEN, &so_pin, &user_pin)?;
    println!(
        "  module {}; token {:?} serial {} (found by label, never by slot)",
        module_path.display(),
        token.label,
        token.serial
    );
    println!(
        "  PINs come from HSM_SO_PIN / HSM_USER_PIN (or *_FILE); demo values otherwise, never printed"
    );

    step(
        2,
        "Generate the cold keys inside the token (secp256k1, sensitive, never extractable)",
    );
    let session = module.open_session(TOKEN, &user_pin)?;
    let mut keys = Vec::new();
    for label in KEYS {
        let key = session.generate_key(label)?;
        let attributes = session.key_attributes(label)?;
        anyhow::ensure!(
            attributes.problems().is_empty(),
            "key {label} breaks the custody rules: {:?}",
            attributes.problems()
        );
        println!(
            "  {label}: {} fingerprint {}  sensitive={} extractable={} local={}",
            key.public_key,
            key.fingerprint,
            attributes.sensitive,
            attributes.extractable,
            attributes.local
        );
        keys.push(key);
    }

    step(
        3,
        "Compile the cold policy: 2 of the HSM keys, or the offline recovery key after 144 blocks",
    );
    let policy = cold_policy("demo-treasury", 2, &keys);
    println!(
        "  recovery key (demo seed; real ones are made offline): {}",
        recovery_key().public
    );
    println!("  receive: {}", policy.descriptors.receive);
    println!("  change:  {}", policy.descriptors.change);
    println!(
        "  policy id {} (SHA-256 of its canonical content)",
        policy.id
    );
    let policy_path = dir.join("policy.json");
    std::fs::write(&policy_path, policy.to_json_pretty()?)?;
    println!("  wrote {}", policy_path.display());

    step(4, "Receive three deposits on the stand-in regtest chain");
    let mut wallet = PolicyWallet::new(&policy)?;
    let amounts = [
        Amount::from_sat(1_000_000),
        Amount::from_sat(400_000),
        Amount::from_sat(250_000),
    ];
    wallet.fund(&amounts)?;
    for (index, amount) in amounts.iter().enumerate() {
        let index = u32::try_from(index)?;
        println!(
            "  {} sat to {}",
            amount.to_sat(),
            policy.address(policies::Keychain::Receive, index)?
        );
    }

    step(
        5,
        "The coordinator builds a PSBT: 1,200,000 sat to a customer, change back to the policy",
    );
    let psbt = wallet.pay(
        external_destination(42),
        Amount::from_sat(1_200_000),
        SpendPath::Hsm,
    )?;
    let unsigned_path = dir.join("unsigned.psbt");
    std::fs::write(&unsigned_path, psbt_io::encode(&psbt, Encoding::Base64))?;
    println!("  wrote {}", unsigned_path.display());
    println!("  what the signer sees (signer inspect-psbt):");
    for line in policies::analysis::analyze(&policy, &psbt)
        .to_string()
        .lines()
    {
        println!("    {line}");
    }

    step(6, "A tampered PSBT is refused before any HSM call");
    let officer_a = Pkcs11Hsm::open(&module, TOKEN, &user_pin, &["cold-a".to_string()], 1)?;
    let mut tampered = psbt.clone();
    if let Some(utxo) = tampered.inputs[0].witness_utxo.as_mut() {
        // The segwit v0 fee attack: understate what the input spends.
        utxo.value = utxo
            .value
            .checked_sub(Amount::from_sat(100_000))
            .context("amount")?;
    }
    match sign_psbt(&policy, &tampered, &officer_a) {
        Ok(_) => anyhow::bail!("the tampered PSBT was signed"),
        Err(e) => println!(
            "  refused: {}  (HSM signatures made: {})",
            e.code(),
            officer_a.signatures_made()
        ),
    }

    step(
        7,
        "Signer A (holds cold-a) checks and signs: one of two signatures",
    );
    let first = sign_psbt(&policy, &psbt, &officer_a)?;
    println!(
        "  {} signature(s), finalized: {}",
        first.signatures, first.finalized
    );

    step(
        8,
        "Signer B (holds cold-b, two HSM sessions) checks and signs: the PSBT is final",
    );
    let officer_b = Pkcs11Hsm::open(&module, TOKEN, &user_pin, &["cold-b".to_string()], 2)?;
    let second = sign_psbt(&policy, &first.psbt, &officer_b)?;
    anyhow::ensure!(
        second.finalized,
        "not final: {:?}",
        second.not_finalized_because
    );
    let signed_path = dir.join("signed.psbt");
    std::fs::write(
        &signed_path,
        psbt_io::encode(&second.psbt, Encoding::Base64),
    )?;
    println!(
        "  {} signature(s), finalized: {}; wrote {}",
        second.signatures,
        second.finalized,
        signed_path.display()
    );

    step(
        9,
        "Extract and verify with Bitcoin Core's script interpreter (libbitcoinconsensus)",
    );
    let tx = second.psbt.extract_tx()?;
    wallet.broadcast_and_mine(&tx)?;
    let fee = second.analysis.fee.context("the fee is proven")?;
    println!(
        "  accepted: txid {} ({} vbytes, fee {} sat, {:.1} sat/vB) confirmed at height {}",
        tx.compute_txid(),
        tx.vsize(),
        fee.to_sat(),
        fee.to_sat() as f64 / tx.vsize() as f64,
        wallet.height()
    );
    std::fs::write(
        dir.join("transaction.hex"),
        bitcoin::consensus::encode::serialize_hex(&tx),
    )?;
    println!("\ndone: files in {}", dir.display());
    Ok(())
}
