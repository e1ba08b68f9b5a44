//! `hsm-config`: initialise tokens, generate keys, export public keys, smoke-test.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::rand::{RngCore, thread_rng};
use clap::{Parser, Subcommand};
use hsm_config::{KeyInfo, Module, Profile, SoPin, TokenSession, UserPin};

/// Key ceremony tooling for PKCS#11 HSMs holding secp256k1 custody keys.
///
/// PINs are read from HSM_USER_PIN / HSM_USER_PIN_FILE and HSM_SO_PIN / HSM_SO_PIN_FILE
/// (the file wins when both are set), never from arguments.
#[derive(Debug, Parser)]
#[command(name = "hsm-config", version)]
struct Cli {
    /// Module profile (TOML); or set HSM_PROFILE.
    #[arg(long, env = "HSM_PROFILE", global = true)]
    profile: Option<PathBuf>,

    /// Use this token label instead of the profile's.
    #[arg(long, global = true)]
    token_label: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Initialise a free token with the SO PIN and set its user PIN.
    InitToken {
        /// Token label (default: the profile's token label).
        #[arg(long)]
        label: Option<String>,
    },
    /// Generate a secp256k1 key pair on the token (refuses an existing label).
    GenKey {
        /// Key label.
        #[arg(long)]
        label: String,
    },
    /// List the secp256k1 keys on the token.
    List,
    /// Export the public keys for the policy tooling.
    ExportPubkeys {
        /// Print a JSON array of {label, id, public_key, fingerprint}.
        #[arg(long)]
        json: bool,
        /// Export every key on the token, not only the profile's keys.
        #[arg(long)]
        all: bool,
    },
    /// Sign a random digest with each key and verify it.
    SmokeTest {
        /// Test every key on the token, not only the profile's keys.
        #[arg(long)]
        all: bool,
    },
    /// Print the security attributes of a private key, read back from the token.
    Attributes {
        /// Key label.
        #[arg(long)]
        label: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Some(profile_path) = &cli.profile else {
        bail!("no profile given: pass --profile <file.toml> or set HSM_PROFILE");
    };
    let profile = Profile::load(profile_path)?;
    let token = cli
        .token_label
        .clone()
        .unwrap_or_else(|| profile.token_label.clone());
    tracing::debug!(profile = %profile.name, token = %token, "profile loaded");

    match cli.command {
        Command::InitToken { label } => {
            let label = label.unwrap_or(token);
            let so_pin = SoPin::from_env()?;
            let user_pin = UserPin::from_env()?;
            let module = Module::load(&profile.module)?;
            let summary = module.init_token(&label, &so_pin, &user_pin)?;
            println!("token {} serial {}", summary.label, summary.serial);
        }
        Command::GenKey { label } => {
            if !profile.keys.is_empty() && !profile.keys.contains(&label) {
                tracing::warn!(key = %label, profile = %profile.name, "the key label is not in the profile's keys");
            }
            let session = open(&profile, &token)?;
            let key = session.generate_key(&label)?;
            println!("{}", serde_json::to_string_pretty(&key)?);
        }
        Command::List => {
            let session = open(&profile, &token)?;
            let keys = session.list_keys()?;
            if keys.is_empty() {
                println!("no keys on token {token}");
            } else {
                print_table(&keys);
            }
        }
        Command::ExportPubkeys { json, all } => {
            let session = open(&profile, &token)?;
            let keys = selected_keys(&session, &profile, all)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for key in &keys {
                    println!("{} {} {}", key.label, key.fingerprint, key.public_key);
                }
            }
        }
        Command::SmokeTest { all } => {
            let session = open(&profile, &token)?;
            let keys = selected_keys(&session, &profile, all)?;
            if keys.is_empty() {
                bail!("no keys to test on token {token}");
            }
            let mut failed = 0usize;
            for key in &keys {
                match smoke_test(&session, key) {
                    Ok(()) => println!("OK   {} {}", key.label, key.fingerprint),
                    Err(err) => {
                        failed += 1;
                        println!("FAIL {} {}: {err:#}", key.label, key.fingerprint);
                    }
                }
            }
            if failed > 0 {
                eprintln!(
                    "error: {failed} of {} keys failed the smoke test",
                    keys.len()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Attributes { label, json } => {
            let session = open(&profile, &token)?;
            let attrs = session.key_attributes(&label)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&attrs)?);
            } else {
                let rows = [
                    ("CKA_SENSITIVE", attrs.sensitive),
                    ("CKA_ALWAYS_SENSITIVE", attrs.always_sensitive),
                    ("CKA_EXTRACTABLE", attrs.extractable),
                    ("CKA_NEVER_EXTRACTABLE", attrs.never_extractable),
                    ("CKA_LOCAL", attrs.local),
                    ("CKA_TOKEN", attrs.token),
                    ("CKA_PRIVATE", attrs.private),
                    ("CKA_SIGN", attrs.sign),
                    ("CKA_DECRYPT", attrs.decrypt),
                    ("CKA_UNWRAP", attrs.unwrap),
                    ("CKA_DERIVE", attrs.derive),
                ];
                for (name, value) in rows {
                    println!("{name:<22} {value}");
                }
            }
            let problems = attrs.problems();
            if !problems.is_empty() {
                eprintln!(
                    "error: key {label} does not meet the custody key policy: {}",
                    problems.join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(profile: &Profile, token: &str) -> anyhow::Result<TokenSession> {
    let user_pin = UserPin::from_env()?;
    let module = Module::load(&profile.module)?;
    Ok(module.open_session(token, &user_pin)?)
}

/// The profile's keys in profile order, or every key with `all` (or an empty key list).
fn selected_keys(
    session: &TokenSession,
    profile: &Profile,
    all: bool,
) -> anyhow::Result<Vec<KeyInfo>> {
    if all || profile.keys.is_empty() {
        return Ok(session.list_keys()?);
    }
    profile
        .keys
        .iter()
        .map(|label| {
            session
                .key(label)
                .with_context(|| format!("key {label:?} of profile {}", profile.name))
        })
        .collect()
}

fn smoke_test(session: &TokenSession, key: &KeyInfo) -> anyhow::Result<()> {
    let handle = session.private_key_handle(&key.label)?;
    let mut digest = [0u8; 32];
    thread_rng().fill_bytes(&mut digest);
    // sign_digest verifies against the public key and normalises to low-S.
    let signature = session.sign_digest(&handle, &key.public_key, &digest)?;
    let mut normalised = signature;
    normalised.normalize_s();
    if normalised != signature {
        bail!("signature is not low-S");
    }
    tracing::debug!(key = %key.label, digest = %digest.to_lower_hex_string(), "signed and verified");
    Ok(())
}

fn print_table(keys: &[KeyInfo]) {
    let width = keys.iter().map(|k| k.label.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<width$}  {:<11}  {:<40}  PUBLIC KEY",
        "LABEL", "FINGERPRINT", "ID"
    );
    for key in keys {
        println!(
            "{:<width$}  {:<11}  {:<40}  {}",
            key.label,
            key.fingerprint.to_string(),
            key.id.to_lower_hex_string(),
            key.public_key
        );
    }
}
