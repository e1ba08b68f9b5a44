//! `signer sign-psbt` and `signer inspect-psbt`: the offline PSBT commands.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hsm_config::pin::UserPin;
use hsm_config::profile::Profile;
use hsm_config::token::Module;
use policies::PolicyDocument;
use policies::analysis::analyze;
use signer::psbt_io::{self, Encoding};
use signer::{Pkcs11Hsm, SignError, sign_psbt};

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The policy document (JSON).
    #[arg(long)]
    policy: PathBuf,
    /// The PSBT to sign (binary or base64).
    #[arg(long)]
    psbt: PathBuf,
    /// Where to write the signed PSBT (same encoding as the input unless --encoding).
    #[arg(long)]
    out: PathBuf,
    /// The HSM profile (TOML).
    #[arg(long, env = "HSM_PROFILE")]
    profile: PathBuf,
    /// Overrides the profile's token label.
    #[arg(long)]
    token_label: Option<String>,
    /// Output encoding: base64 or binary.
    #[arg(long)]
    encoding: Option<EncodingArg>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The policy document (JSON).
    #[arg(long)]
    policy: PathBuf,
    /// The PSBT (binary or base64).
    #[arg(long)]
    psbt: PathBuf,
    /// Print the analysis as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EncodingArg {
    Base64,
    Binary,
}

pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let SignArgs {
        policy,
        psbt,
        out,
        profile,
        token_label,
        encoding,
        json,
    } = args;
    let policy = read_policy(&policy)?;
    let (psbt, read_as) = read_psbt(&psbt)?;
    let profile = Profile::load(&profile)
        .with_context(|| format!("reading profile {}", profile.display()))?;
    let token_label = token_label.unwrap_or_else(|| profile.token_label.clone());
    // Open only the policy's keys that this profile's token is meant to hold.
    let labels: Vec<String> = policy
        .hsm_keys
        .iter()
        .map(|k| k.label.clone())
        .filter(|l| profile.keys.is_empty() || profile.keys.contains(l))
        .collect();
    if labels.is_empty() {
        return Err(SignError::NoPolicyKeysHeld {
            policy_keys: policy.hsm_keys.iter().map(|k| k.label.clone()).collect(),
        }
        .into());
    }
    let pin = UserPin::from_env()?;
    let module = Module::load(&profile.module)?;
    let hsm = Pkcs11Hsm::open(
        &module,
        &token_label,
        &pin,
        &labels,
        profile.sessions.unwrap_or(2),
    )?;
    let signed = sign_psbt(&policy, &psbt, &hsm)?;
    let encoding = match encoding {
        Some(EncodingArg::Base64) => Encoding::Base64,
        Some(EncodingArg::Binary) => Encoding::Binary,
        None => read_as,
    };
    std::fs::write(&out, psbt_io::encode(&signed.psbt, encoding))
        .with_context(|| format!("writing {}", out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "summary": signed.summary(&policy),
                "analysis": signed.analysis,
                "not_finalized_because": signed.not_finalized_because,
            }))?
        );
    } else {
        println!("{}", signed.analysis);
        let s = signed.summary(&policy);
        println!(
            "signed: {} signature(s) for txid {}; {}",
            s.signatures,
            s.txid,
            if s.finalized {
                "finalized".to_string()
            } else {
                format!("not final ({})", signed.not_finalized_because.join("; "))
            }
        );
        println!("wrote {}", out.display());
    }
    Ok(())
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let policy = read_policy(&args.policy)?;
    let (psbt, _) = read_psbt(&args.psbt)?;
    let analysis = analyze(&policy, &psbt);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        println!("{analysis}");
    }
    Ok(())
}

pub fn read_policy(path: &Path) -> anyhow::Result<PolicyDocument> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    PolicyDocument::from_json(&text).with_context(|| format!("policy {}", path.display()))
}

pub fn read_psbt(path: &Path) -> anyhow::Result<(bitcoin::Psbt, Encoding)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading psbt {}", path.display()))?;
    psbt_io::decode(&bytes).with_context(|| format!("psbt {}", path.display()))
}
