//! `signer policy …`: the policy ceremony, from the HSM's exported public keys to a policy
//! document, its plain-words description, its addresses, and its verification.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use bitcoin::hashes::{Hash, sha256};
use bitcoin::{Network, NetworkKind};
use hsm_config::pin::UserPin;
use hsm_config::profile::Profile;
use hsm_config::token::{KeyInfo, Module};
use policies::analysis::SpendingPath;
use policies::{HsmKey, Keychain, PolicyDocument, RecoveryKey, Rules, Template};

use super::psbt::read_policy;

/// The recovery timelock when `--recovery-after` is not given: about a year of blocks.
const DEFAULT_RECOVERY_AFTER: u16 = 52_560;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Build a policy document from the HSM's exported keys and a recovery xpub.
    Create(CreateArgs),
    /// Show a policy: descriptors, keys with their HSM labels, spending paths, hashes, rules.
    Show(ShowArgs),
    /// Derive an address of the policy (receive, or change with --change).
    Address(AddressArgs),
    /// Check a policy document against the hash approved at registration, and its keys
    /// against the HSM's.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TemplateArg {
    /// k of n HSM keys, or the recovery key after a timelock.
    Cold,
    /// One HSM key, or the recovery key after a timelock.
    Hot,
    /// A miniscript policy naming HSM keys by label and `recovery` (--miniscript).
    Custom,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// cold, hot or custom.
    #[arg(long)]
    template: TemplateArg,
    /// The output of `hsm-config export-pubkeys --json`.
    #[arg(long)]
    keys: PathBuf,
    /// Use only these labels from the keys file, in this order (repeat; default: all).
    #[arg(long = "key")]
    key_labels: Vec<String>,
    /// The recovery key with its origin: `[fingerprint/path]xpub` (or tpub).
    #[arg(long)]
    recovery: String,
    /// Signatures needed from the HSM keys (cold; default: a majority).
    #[arg(long)]
    threshold: Option<usize>,
    /// Blocks before the recovery key alone may spend (cold and hot).
    #[arg(long, default_value_t = DEFAULT_RECOVERY_AFTER)]
    recovery_after: u16,
    /// The miniscript policy of a custom template, e.g.
    /// `or(9@thresh(2,pk(cold-a),pk(cold-b),pk(cold-c)),1@and(pk(recovery),older(1000)))`.
    #[arg(long)]
    miniscript: Option<String>,
    /// The rules section (JSON), see the policies crate; default: no rules.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// bitcoin, testnet, testnet4, signet or regtest (default: bitcoin for an xpub; a tpub
    /// needs it said).
    #[arg(long)]
    network: Option<Network>,
    /// The policy's name.
    #[arg(long, default_value = "treasury")]
    name: String,
    /// The policy's version.
    #[arg(long, default_value_t = 1)]
    version: u32,
    /// Where to write the document; an existing file is never overwritten.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The policy document.
    #[arg(long)]
    policy: PathBuf,
    /// Print JSON instead of plain words.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AddressArgs {
    /// The policy document.
    #[arg(long)]
    policy: PathBuf,
    /// The derivation index (below 2^31).
    #[arg(long)]
    index: u32,
    /// A change address (`/1/*`) instead of a receive address (`/0/*`).
    #[arg(long)]
    change: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The policy document.
    #[arg(long)]
    policy: PathBuf,
    /// The policy id approved at registration (64 hex digits).
    #[arg(long)]
    expect_hash: String,
    /// Compare the document's keys with this `hsm-config export-pubkeys --json` output.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Compare the document's keys with those on the token of this profile (needs the
    /// user PIN in HSM_USER_PIN or HSM_USER_PIN_FILE).
    #[arg(long)]
    profile: Option<PathBuf>,
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Create(args) => create(args),
        PolicyCommand::Show(args) => show(args),
        PolicyCommand::Address(args) => address(args),
        PolicyCommand::Verify(args) => verify(args),
    }
}

/// Reads `hsm-config export-pubkeys --json` output into HSM keys, checking each fingerprint.
fn read_keys(path: &Path, only: &[String]) -> anyhow::Result<Vec<HsmKey>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading keys {}", path.display()))?;
    let exported: Vec<KeyInfo> = serde_json::from_str(&text)
        .with_context(|| format!("keys {} are not export-pubkeys JSON", path.display()))?;
    let keys: Vec<HsmKey> = exported
        .into_iter()
        .map(|k| {
            let key = HsmKey::new(k.label.clone(), k.public_key);
            if key.fingerprint != k.fingerprint {
                bail!(
                    "key {:?}: the file says fingerprint {} but its public key gives {}",
                    k.label,
                    k.fingerprint,
                    key.fingerprint
                );
            }
            Ok(key)
        })
        .collect::<anyhow::Result<_>>()?;
    if only.is_empty() {
        return Ok(keys);
    }
    only.iter()
        .map(|label| {
            keys.iter()
                .find(|k| &k.label == label)
                .cloned()
                .ok_or_else(|| anyhow!("key {label:?} is not in {}", path.display()))
        })
        .collect()
}

fn network_for(recovery: &RecoveryKey, network: Option<Network>) -> anyhow::Result<Network> {
    match (network, recovery.network_kind()) {
        (Some(n), _) => Ok(n),
        (None, NetworkKind::Main) => Ok(Network::Bitcoin),
        (None, NetworkKind::Test) => bail!(
            "the recovery key is a tpub, which fits testnet, testnet4, signet and regtest: say which with --network"
        ),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let keys = read_keys(&args.keys, &args.key_labels)?;
    let recovery: RecoveryKey = args
        .recovery
        .parse()
        .map_err(|e| anyhow!("--recovery: {e}"))?;
    let network = network_for(&recovery, args.network)?;
    let template = match args.template {
        TemplateArg::Cold => {
            if args.miniscript.is_some() {
                bail!("--miniscript is for --template custom");
            }
            Template::Cold {
                threshold: args.threshold.unwrap_or(keys.len() / 2 + 1),
                hsm_keys: keys,
                recovery,
                recovery_after: args.recovery_after,
            }
        }
        TemplateArg::Hot => {
            if args.threshold.is_some() || args.miniscript.is_some() {
                bail!("a hot policy has one key: --threshold and --miniscript do not apply");
            }
            let [hsm_key] = <[HsmKey; 1]>::try_from(keys).map_err(|keys| {
                anyhow!(
                    "a hot policy has exactly one hsm key, {} given: pick one with --key",
                    keys.len()
                )
            })?;
            Template::Hot {
                hsm_key,
                recovery,
                recovery_after: args.recovery_after,
            }
        }
        TemplateArg::Custom => Template::Custom {
            policy: args
                .miniscript
                .ok_or_else(|| anyhow!("--template custom needs --miniscript"))?,
            hsm_keys: keys,
            recovery,
        },
    };
    let mut doc = PolicyDocument::new(args.name, args.version, network, &template)?;
    if let Some(path) = &args.rules {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading rules {}", path.display()))?;
        let rules: Rules = serde_json::from_str(&text)
            .with_context(|| format!("rules {} are not a rules section", path.display()))?;
        doc = doc.with_rules(rules)?;
    }
    let json = doc.to_json_pretty()?;
    // create_new: a ceremony never overwrites an earlier document.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .with_context(|| format!("creating {} (it must not exist yet)", args.out.display()))?;
    std::io::Write::write_all(&mut file, format!("{json}\n").as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("policy {} written to {}", doc.id, args.out.display());
    println!("descriptor {}", doc.descriptors.receive);
    if let Some(note) = quorum_note(&doc) {
        println!("{note}");
    }
    Ok(())
}

/// SHA-256 of the receive and change descriptors (with checksums), one per line: the hash of
/// what the scripts are, apart from names and rules.
fn descriptor_hash(doc: &PolicyDocument) -> String {
    let text = format!("{}\n{}\n", doc.descriptors.receive, doc.descriptors.change);
    sha256::Hash::hash(text.as_bytes()).to_string()
}

/// A spending path in plain words, e.g. "2 of cold-a, cold-b, cold-c" or "recovery after
/// 52560 blocks".
fn path_words(path: &SpendingPath) -> String {
    let who = match path.signatures_needed {
        Some(n) if n == path.keys.len() && n == 1 => format!("{} alone", path.keys[0]),
        Some(n) if n == path.keys.len() => format!("all of {}", path.keys.join(", ")),
        Some(n) => format!("{n} of {}", path.keys.join(", ")),
        None => "never (unsatisfiable)".to_owned(),
    };
    let mut words = format!("signatures: {who}");
    if let Some(value) = path.relative_timelock {
        // BIP68: bit 22 makes the low 16 bits units of 512 seconds instead of blocks.
        let age = if value & (1 << 22) != 0 {
            format!("{} seconds", u64::from(value & 0xffff) * 512)
        } else {
            format!("{} blocks", value & 0xffff)
        };
        words.push_str(&format!(", once the coin is {age} old"));
    }
    if let Some(lock) = path.absolute_timelock {
        words.push_str(&format!(", from locktime {lock} (after)"));
    }
    format!("{words}; in miniscript {}", path.description)
}

/// The spending paths of the policy at receive/0, read through the analysis's own lifting
/// so that `show` describes exactly what the signer checks.
fn spending_paths(doc: &PolicyDocument) -> anyhow::Result<Vec<SpendingPath>> {
    policies::analysis::describe_paths(doc, Keychain::Receive, 0)
        .map_err(|e| anyhow!("describing spending paths: {e}"))
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let doc = read_policy(&args.policy)?;
    let paths = spending_paths(&doc)?;
    if args.json {
        let value = serde_json::json!({
            "id": doc.id,
            "descriptor_hash": descriptor_hash(&doc),
            "name": doc.name,
            "version": doc.version,
            "network": doc.network,
            "template": doc.template,
            "descriptors": {
                "receive": doc.descriptors.receive.to_string(),
                "change": doc.descriptors.change.to_string(),
            },
            "hsm_keys": doc.hsm_keys,
            "recovery": doc.recovery.to_string(),
            "spending_paths": paths
                .iter()
                .map(|p| serde_json::json!({"words": path_words(p), "path": p}))
                .collect::<Vec<_>>(),
            "rules": doc.rules,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "policy {:?} version {} ({} template, {})",
        doc.name, doc.version, doc.template, doc.network
    );
    println!("id (document hash)  {}", doc.id);
    println!("descriptor hash     {}", descriptor_hash(&doc));
    println!("receive descriptor  {}", doc.descriptors.receive);
    println!("change descriptor   {}", doc.descriptors.change);
    println!("hsm keys:");
    for key in &doc.hsm_keys {
        println!(
            "  {:<16} fingerprint {}  public key {}",
            key.label, key.fingerprint, key.public_key
        );
    }
    println!(
        "  {:<16} {} (offline; derived per address at /0/* and /1/*)",
        "recovery", doc.recovery
    );
    println!("spending paths (any one spends):");
    for (i, path) in paths.iter().enumerate() {
        println!("  {}. {}", i + 1, path_words(path));
    }
    if doc.rules.is_empty() {
        println!("rules: none configured");
    } else {
        println!("rules: {}", serde_json::to_string(&doc.rules)?);
    }
    if let Some(note) = quorum_note(&doc) {
        println!("{note}");
    }
    Ok(())
}

/// A warning for a policy the signer will refuse every spend of.
fn quorum_note(doc: &PolicyDocument) -> Option<String> {
    (doc.template != "hot" && doc.rules.approvals.is_none()).then(|| {
        format!(
            "note: a {} policy without an approval quorum (rules.approvals) is refused by the signer for every spend",
            doc.template
        )
    })
}

fn address(args: AddressArgs) -> anyhow::Result<()> {
    let doc = read_policy(&args.policy)?;
    let keychain = if args.change {
        Keychain::Change
    } else {
        Keychain::Receive
    };
    let address = doc.address(keychain, args.index)?;
    println!("{address}");
    Ok(())
}

/// Compares the document's HSM keys with keys read elsewhere; names the first that differs.
fn compare_keys(
    doc: &PolicyDocument,
    found: &[(String, bitcoin::secp256k1::PublicKey)],
    source: &str,
) -> anyhow::Result<()> {
    for key in &doc.hsm_keys {
        match found.iter().find(|(label, _)| *label == key.label) {
            None => bail!("key {:?} of the policy is not in {source}", key.label),
            Some((_, public_key)) if *public_key != key.public_key => bail!(
                "key {:?} differs: the policy has {} but {source} has {}",
                key.label,
                key.public_key,
                public_key
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let doc = read_policy(&args.policy)?;
    let expected: policies::PolicyId = args
        .expect_hash
        .parse()
        .map_err(|e| anyhow!("--expect-hash: {e}"))?;
    if let Some(path) = &args.keys {
        let keys = read_keys(path, &[])?;
        let found: Vec<_> = keys.into_iter().map(|k| (k.label, k.public_key)).collect();
        compare_keys(
            &doc,
            &found,
            &format!("the exported keys {}", path.display()),
        )?;
    }
    if let Some(path) = &args.profile {
        let profile =
            Profile::load(path).with_context(|| format!("reading profile {}", path.display()))?;
        let pin = UserPin::from_env()?;
        let module = Module::load(&profile.module)?;
        let session = module.open_session(&profile.token_label, &pin)?;
        let mut found = Vec::new();
        for key in &doc.hsm_keys {
            // A key another signer's token holds is not on this one: skip it, the other
            // signer verifies it.
            if !profile.keys.is_empty() && !profile.keys.contains(&key.label) {
                continue;
            }
            let info = session.key(&key.label).with_context(|| {
                format!("key {:?} on token {:?}", key.label, profile.token_label)
            })?;
            found.push((info.label, info.public_key));
        }
        let on_token: Vec<&str> = found.iter().map(|(l, _)| l.as_str()).collect();
        let doc_here = PolicyDocument {
            hsm_keys: doc
                .hsm_keys
                .iter()
                .filter(|k| on_token.contains(&k.label.as_str()))
                .cloned()
                .collect(),
            ..doc.clone()
        };
        compare_keys(
            &doc_here,
            &found,
            &format!("token {:?}", profile.token_label),
        )?;
    }
    if doc.id != expected {
        let hint = if args.keys.is_none() && args.profile.is_none() {
            "; give --keys or --profile to find a key that differs"
        } else {
            ""
        };
        bail!(
            "policy id {} is not the approved {expected}: the document differs from the one registered (descriptor hash {}){hint}",
            doc.id,
            descriptor_hash(&doc)
        );
    }
    println!("policy {} verified", doc.id);
    Ok(())
}
