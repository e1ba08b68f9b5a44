//! `signer officer …`: the treasury officers' commands.
//!
//! Keys: `key create` writes an officer key file (the secret encrypted under a
//! passphrase, or a reference to a key generated on the officer's own PKCS#11
//! token). Review and approval talk to the service over HTTP: the base URL from
//! `--url` / `SIGNER_URL`, the bearer token from `SIGNER_TOKEN` or the file named
//! by `SIGNER_TOKEN_FILE` (never an argument); `SIGNER_CA_FILE` names a PEM CA
//! for a privately issued service certificate. The passphrase comes from the
//! file named by `--passphrase-file` / `OFFICER_PASSPHRASE_FILE`, or a prompt.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

mod http;

use anyhow::{Context as _, bail};
use hsm_config::pin::UserPin;
use http::Api;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use signer::approvals::keyfile::KeyStore;
use signer::approvals::review::describe;
use signer::approvals::token::TokenKeyRef;
use signer::approvals::{
    ApprovalMessage, ChangeMessage, DEFAULT_TTL_SECS, FileKey, KdfParams, KeyFile, MAX_TTL_SECS,
    OfficerKey, Passphrase, TokenKey,
};

#[derive(Debug, clap::Subcommand)]
pub enum OfficerCommand {
    /// Officer keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// List signing requests waiting for approvals, newest first.
    Pending {
        #[command(flatten)]
        server: Server,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Requests per page.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one signing request in plain words.
    Show {
        #[command(flatten)]
        server: Server,
        /// The request id.
        id: String,
    },
    /// Show a signing request, ask for confirmation, then sign and submit an approval.
    Approve {
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        key: KeyArgs,
        /// The request id.
        id: String,
        /// Skip the confirmation.
        #[arg(long)]
        yes: bool,
        /// Seconds the approval stays valid (default 2 h, at most 24 h).
        #[arg(long, default_value_t = DEFAULT_TTL_SECS)]
        ttl_secs: u64,
    },
    /// List policy changes (pending first when filtered), newest first.
    Changes {
        #[command(flatten)]
        server: Server,
        /// `pending`, `effective` or `failed`.
        #[arg(long)]
        status: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Changes per page.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a policy change, ask for confirmation, then sign and submit an approval of it.
    ApproveChange {
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        key: KeyArgs,
        /// The change id.
        id: String,
        /// Skip the confirmation.
        #[arg(long)]
        yes: bool,
        /// Seconds the approval stays valid (default 2 h, at most 24 h).
        #[arg(long, default_value_t = DEFAULT_TTL_SECS)]
        ttl_secs: u64,
    },
    /// Propose revoking an officer and sign the revocation (it takes effect at the quorum).
    Revoke {
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        key: KeyArgs,
        /// The officer's public key.
        officer: String,
        /// Skip the confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create an officer key; prints the public key (the officer's id).
    Create {
        /// Where to write the key file (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// A file holding the passphrase (otherwise it is asked for twice).
        #[arg(long, env = "OFFICER_PASSPHRASE_FILE")]
        passphrase_file: Option<PathBuf>,
        /// Generate the key on this PKCS#11 module's token instead (PIN from HSM_USER_PIN or HSM_USER_PIN_FILE).
        #[arg(long, requires_all = ["token_label", "key_label"])]
        pkcs11_module: Option<PathBuf>,
        /// The officer's token.
        #[arg(long)]
        token_label: Option<String>,
        /// The key's label on the token.
        #[arg(long)]
        key_label: Option<String>,
    },
    /// Print the public key (officer id) of a key file.
    Show {
        /// The key file.
        #[arg(long, env = "OFFICER_KEY")]
        key: PathBuf,
    },
}

/// Where the service is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct Server {
    /// The signer service's base URL.
    #[arg(long, env = "SIGNER_URL", default_value = "http://127.0.0.1:8480")]
    url: String,
}

/// The officer's key.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// The officer key file.
    #[arg(long, env = "OFFICER_KEY")]
    key: PathBuf,
    /// A file holding the key file's passphrase (otherwise it is asked for).
    #[arg(long, env = "OFFICER_PASSPHRASE_FILE")]
    passphrase_file: Option<PathBuf>,
}

pub fn run(cmd: OfficerCommand) -> anyhow::Result<()> {
    match cmd {
        OfficerCommand::Key(KeyCommand::Create {
            out,
            passphrase_file,
            pkcs11_module,
            token_label,
            key_label,
        }) => create_key(
            &out,
            passphrase_file.as_deref(),
            pkcs11_module,
            token_label,
            key_label,
        ),
        OfficerCommand::Key(KeyCommand::Show { key }) => {
            println!("{}", KeyFile::load(&key)?.public_key);
            Ok(())
        }
        other => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(remote(other))
        }
    }
}

fn create_key(
    out: &Path,
    passphrase_file: Option<&Path>,
    module: Option<PathBuf>,
    token_label: Option<String>,
    key_label: Option<String>,
) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} exists; an officer key file is never overwritten",
            out.display()
        );
    }
    let file = match (module, token_label, key_label) {
        (Some(module), Some(token_label), Some(key_label)) => {
            let reference = TokenKeyRef {
                module,
                token_label,
                key_label,
            };
            let key = TokenKey::generate(&reference, &UserPin::from_env()?)?;
            KeyFile {
                format: signer::approvals::keyfile::FORMAT.to_owned(),
                version: 1,
                public_key: key.public_key(),
                store: KeyStore::Pkcs11(reference),
            }
        }
        _ => {
            let passphrase = match passphrase_file {
                Some(path) => Passphrase::from_file(path)?,
                None => {
                    let first = prompt("New passphrase for the officer key: ")?;
                    let second = prompt("Repeat it: ")?;
                    if first.expose_secret() != second.expose_secret() {
                        bail!("the passphrases differ");
                    }
                    Passphrase::checked(first.expose_secret())?
                }
            };
            FileKey::generate(&passphrase, KdfParams::default())?.1
        }
    };
    file.save_new(out)?;
    eprintln!(
        "officer key written to {}; its public key (your officer id):",
        out.display()
    );
    println!("{}", file.public_key);
    Ok(())
}

fn prompt(text: &str) -> anyhow::Result<SecretString> {
    Ok(SecretString::from(
        rpassword::prompt_password(text).context("reading the passphrase from the terminal")?,
    ))
}

fn open_key(args: &KeyArgs) -> anyhow::Result<Box<dyn OfficerKey>> {
    let file = KeyFile::load(&args.key)?;
    Ok(match &file.store {
        KeyStore::Pkcs11(reference) => Box::new(TokenKey::open(reference, &UserPin::from_env()?)?),
        KeyStore::Encrypted(_) => {
            let passphrase = match &args.passphrase_file {
                Some(path) => Passphrase::from_file(path)?,
                None => Passphrase::checked(
                    prompt(&format!("Passphrase for {}: ", args.key.display()))?.expose_secret(),
                )?,
            };
            Box::new(FileKey::decrypt(&file, &passphrase)?)
        }
    })
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn expiry(ttl_secs: u64) -> anyhow::Result<u64> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        bail!("--ttl-secs must be 1 to {MAX_TTL_SECS}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    Ok(now + ttl_secs)
}

fn field<T: std::str::FromStr>(view: &Value, name: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    view[name]
        .as_str()
        .with_context(|| format!("the service's answer has no {name}"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("the service's {name} does not parse: {e}"))
}

async fn remote(cmd: OfficerCommand) -> anyhow::Result<()> {
    match cmd {
        OfficerCommand::Key(_) => unreachable!("handled locally"),
        OfficerCommand::Pending {
            server,
            page,
            limit,
        } => {
            let api = Api::new(&server)?;
            let value = api
                .page("/signing-requests", "&status=pending_approval", page, limit)
                .await?;
            let requests = value["requests"].as_array().cloned().unwrap_or_default();
            if requests.is_empty() {
                println!("no pending requests on page {page}");
            }
            for r in &requests {
                let leaving = r["analysis"]["external_total"]
                    .as_u64()
                    .map_or("?".into(), signer::approvals::review::btc_and_sats);
                println!(
                    "{}  {}  leaving {leaving}  {}",
                    r["id"].as_str().unwrap_or("?"),
                    r["created_at"].as_str().unwrap_or("?"),
                    r["purpose"].as_str().unwrap_or("")
                );
            }
            if value["next_before"].is_string() {
                println!("(more: --page {})", page + 1);
            }
            Ok(())
        }
        OfficerCommand::Show { server, id } => {
            let api = Api::new(&server)?;
            print!("{}", show(&api, &id).await?.0);
            Ok(())
        }
        OfficerCommand::Approve {
            server,
            key,
            id,
            yes,
            ttl_secs,
        } => {
            let api = Api::new(&server)?;
            let (text, binding) = show(&api, &id).await?;
            print!("{text}");
            if binding["status"] != "pending_approval" {
                bail!(
                    "request {id} is {}, not waiting for approvals",
                    binding["status"]
                );
            }
            if !yes && !confirm("Approve this request?")? {
                bail!("not approved");
            }
            let key = open_key(&key)?;
            let approval = ApprovalMessage {
                instance: field(&binding, "instance")?,
                policy_id: field(&binding, "policy_id")?,
                request_id: field(&binding, "request_id")?,
                txid: field(&binding, "unsigned_txid")?,
                analysis_hash: field(&binding, "analysis_sha256")?,
                expires_at: expiry(ttl_secs)?,
                officer: signer::approvals::OfficerId(key.public_key()),
            }
            .sign(key.as_ref())?;
            let answer = api
                .post(
                    &format!("/signing-requests/{id}/approvals"),
                    serde_json::to_value(&approval)?,
                )
                .await?;
            println!(
                "approved; {} of {} approvals counted; request is {}",
                answer["approvals"]["counted"],
                answer["approvals"]["required"],
                answer["request"]["status"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        OfficerCommand::Changes {
            server,
            status,
            page,
            limit,
        } => {
            let api = Api::new(&server)?;
            let query = status.map(|s| format!("&status={s}")).unwrap_or_default();
            let value = api.page("/policy-changes", &query, page, limit).await?;
            for c in value["changes"].as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {} {}  {} of {} approvals  not before {}",
                    c["id"].as_str().unwrap_or("?"),
                    c["status"].as_str().unwrap_or("?"),
                    c["direction"].as_str().unwrap_or("?"),
                    c["kind"].as_str().unwrap_or("?"),
                    c["approvals"],
                    c["quorum"],
                    c["not_before"].as_str().unwrap_or("?"),
                );
            }
            if value["next_before"].is_string() {
                println!("(more: --page {})", page + 1);
            }
            Ok(())
        }
        OfficerCommand::ApproveChange {
            server,
            key,
            id,
            yes,
            ttl_secs,
        } => {
            let api = Api::new(&server)?;
            let change = api.get(&format!("/policy-changes/{id}")).await?;
            approve_change(&api, &change, &key, yes, ttl_secs).await
        }
        OfficerCommand::Revoke {
            server,
            key,
            officer,
            yes,
        } => {
            let officer: signer::approvals::OfficerId = officer.parse()?;
            let api = Api::new(&server)?;
            let change = api
                .post(
                    "/policy-changes",
                    json!({
                        "change": {"kind": "revoke_officer", "officer": officer},
                        "idempotency_key": format!("revoke-{officer}"),
                    }),
                )
                .await?;
            approve_change(&api, &change, &key, yes, DEFAULT_TTL_SECS).await
        }
    }
}

async fn show(api: &Api, id: &str) -> anyhow::Result<(String, Value)> {
    let request = api.get(&format!("/signing-requests/{id}")).await?;
    let binding = api
        .get(&format!("/signing-requests/{id}/approvals"))
        .await?;
    // What is shown must be what is signed.
    if binding["unsigned_txid"] != request["unsigned_txid"]
        || binding["analysis_sha256"] != request["analysis_sha256"]
    {
        bail!("the service's views of request {id} disagree; not approving");
    }
    Ok((describe(&request, &binding), binding))
}

async fn approve_change(
    api: &Api,
    change: &Value,
    key: &KeyArgs,
    yes: bool,
    ttl_secs: u64,
) -> anyhow::Result<()> {
    println!(
        "Policy change {} ({} {}, {}), proposed by {}\n  quorum {}, {} approval(s) so far, not before {}\n  document: {}\n  document sha256: {}",
        change["id"].as_str().unwrap_or("?"),
        change["direction"].as_str().unwrap_or("?"),
        change["kind"].as_str().unwrap_or("?"),
        change["status"].as_str().unwrap_or("?"),
        change["proposed_by"].as_str().unwrap_or("?"),
        change["quorum"],
        change["approvals"],
        change["not_before"].as_str().unwrap_or("?"),
        change["document"].as_str().unwrap_or("?"),
        change["document_sha256"].as_str().unwrap_or("?"),
    );
    // The hash signed is recomputed from the document shown, not taken on trust.
    let document = change["document"].as_str().context("no document")?;
    let hash = bitcoin::hashes::sha256::Hash::hash(document.as_bytes());
    use bitcoin::hashes::Hash as _;
    if hash.to_string() != change["document_sha256"].as_str().unwrap_or("") {
        bail!("the document does not hash to the stated sha256; not approving");
    }
    if change["status"] != "pending" {
        bail!("the change is {}, not pending", change["status"]);
    }
    if !yes && !confirm("Approve this policy change?")? {
        bail!("not approved");
    }
    let key = open_key(key)?;
    let approval = ChangeMessage {
        instance: field(change, "instance")?,
        change_id: field(change, "id")?,
        document_hash: hash,
        expires_at: expiry(ttl_secs)?,
        officer: signer::approvals::OfficerId(key.public_key()),
    }
    .sign(key.as_ref())?;
    let id = change["id"].as_str().unwrap_or("?");
    let answer = api
        .post(
            &format!("/policy-changes/{id}/approvals"),
            serde_json::to_value(&approval)?,
        )
        .await?;
    println!(
        "approved; change {id} is {} with {} of {} approvals",
        answer["status"].as_str().unwrap_or("?"),
        answer["approvals"],
        answer["quorum"]
    );
    Ok(())
}
