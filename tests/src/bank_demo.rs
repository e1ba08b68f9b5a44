//! The bank part of the demo: the regtest stand-in and `coordinator serve` as separate
//! processes, a user registered through the GraphQL API, a deposit to the user's address
//! shown pending, then settled after a block, then `coordinator ledger verify`.
#![allow(clippy::print_stdout, reason = "the demo narrates what it does")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, Amount, Network};
use chain_standin::spawn::{Options, StandIn};
use coordinator::db::ScratchDatabase;
use policies::{HsmKey, PolicyDocument, RecoveryKey, Template};
use serde_json::{Value, json};

/// A public test key (BIP32 test vector 1's master tpub): the demo's recovery key.
const RECOVERY_TPUB: &str = "tpubD6NzVbkrYhZ4XgiXtGrdW5XDAPFCL9h7we1vwNCpn8tGbBcgfVYjXyhWo4E1xkh56hjod1RhGjxbaTLV3X4FyWuejifB9jusQ46QzG87VKp";
const DEPOSIT_SAT: u64 = 250_000;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the demo's directory")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is not built (run `cargo build -p coordinator -p chain-standin`)",
            path.display()
        );
    }
    Ok(path)
}

/// The database URL with another database name.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (head, tail) = url.rsplit_once('/').context("a database URL")?;
    let query = tail
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Ok(format!("{head}/{name}{query}"))
}

fn hot_policy() -> anyhow::Result<PolicyDocument> {
    let sk = SecretKey::from_slice(&[0x42; 32])?;
    let template = Template::Hot {
        hsm_key: HsmKey::new("hot-1", PublicKey::from_secret_key(&Secp256k1::new(), &sk)),
        recovery: RecoveryKey::from_str(RECOVERY_TPUB)?,
        recovery_after: 144,
    };
    Ok(PolicyDocument::new(
        "demo-hot",
        1,
        Network::Regtest,
        &template,
    )?)
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Api {
    async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let body: Value = req.send().await?.json().await?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }
}

async fn wait_until<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const WALLET: &str = "query { me { defaultAccount { wallets { ... on BTCWallet { id balance \
    pendingIncomingBalance pendingIncomingTransactions { status settlementAmount \
    settlementVia { ... on SettlementViaOnChain { transactionHash vout } } } \
    transactions(first: 1) { edges { node { status settlementAmount \
    settlementVia { ... on SettlementViaOnChain { transactionHash vout } } } } } } } } } }";

/// Runs the bank demo, writing its files and the coordinator's log under `dir`.
///
/// # Errors
/// Any step that fails, with what it was doing.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    println!("\n== bank: a deposit, pending then settled ==");
    let standin = StandIn::start_with(Options {
        initial_blocks: 101,
        ..Options::default()
    })
    .context("starting the regtest stand-in")?;
    println!(
        "regtest stand-in (not a Bitcoin node) at {}",
        standin.esplora_url()
    );

    let admin_url = coordinator::db::database_url_from_env();
    let db = ScratchDatabase::create(&admin_url, "bastion_demo")
        .await
        .context("creating the demo database (is PostgreSQL at DATABASE_URL?)")?;
    let db_url = with_database(&admin_url, db.name())?;

    let policy_path = dir.join("hot-policy.json");
    std::fs::write(&policy_path, hot_policy()?.to_json_pretty()?)?;
    let onchain = dir.join("onchain.toml");
    std::fs::write(
        &onchain,
        format!(
            "[chain]\nkind = \"esplora\"\nurl = \"{}\"\n\n[[wallets]]\nname = \"hot\"\nrole = \"hot\"\n\
             policy_file = \"hot-policy.json\"\n\n[deposits]\nconfirmations = 1\npoll_interval_ms = 100\n",
            standin.esplora_url()
        ),
    )?;

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let bind = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("coordinator.log"))?;
    let coordinator = sibling_binary("coordinator")?;
    let _server = Killed(
        Command::new(&coordinator)
            .args([
                "--database-url",
                &db_url,
                "serve",
                "--bind",
                &bind,
                "--onchain",
            ])
            .arg(&onchain)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting coordinator serve")?,
    );
    let http = reqwest::Client::new();
    let health = format!("http://{bind}/healthz");
    wait_until("the coordinator to answer", || async {
        Ok(http
            .get(&health)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success()))
    })
    .await?;
    println!(
        "coordinator serving at http://{bind} (log: {})",
        dir.join("coordinator.log").display()
    );

    let mut api = Api {
        http: http.clone(),
        url: format!("http://{bind}/graphql"),
        token: None,
    };
    let email = "satoshi@example.com";
    api.gql(
        "mutation($i: UserRegisterInput!) { userRegister(input: $i) { success errors { message } } }",
        json!({ "i": { "email": email } }),
    )
    .await?;
    let pool = db.pool(1).await?;
    let body: String = sqlx::query_scalar(
        "SELECT body FROM notification_outbox WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(email)
    .fetch_one(&pool)
    .await
    .context("reading the registration code from the outbox")?;
    let code = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .context("a six-digit code")?;
    let login = api
        .gql(
            "mutation($i: UserCodeLoginInput!) { userCodeLogin(input: $i) { authToken errors { message } } }",
            // The password is set with the first confirmation: only the identity's
            // proven owner may choose it.
            json!({ "i": { "email": email, "code": code, "password": "correct horse battery" } }),
        )
        .await?;
    let token = login["userCodeLogin"]["authToken"]
        .as_str()
        .context("an auth token")?;
    api.token = Some(token.to_owned());
    println!("registered {email} through the API");

    let me = api
        .gql(
            "query { me { defaultAccount { defaultWalletId } } }",
            json!({}),
        )
        .await?;
    let wallet = me["me"]["defaultAccount"]["defaultWalletId"]
        .as_str()
        .context("a wallet id")?
        .to_owned();
    let created = api
        .gql(
            "mutation($i: OnChainAddressCreateInput!) { onChainAddressCreate(input: $i) { address errors { message } } }",
            json!({ "i": { "walletId": wallet } }),
        )
        .await?;
    let address = created["onChainAddressCreate"]["address"]
        .as_str()
        .context("an address")?
        .to_owned();
    println!("deposit address of wallet {wallet}: {address}");

    let to = Address::from_str(&address)?.require_network(Network::Regtest)?;
    let funded = standin
        .control()
        .fund(&to, Amount::from_sat(DEPOSIT_SAT))
        .await
        .context("funding from the stand-in")?;
    println!(
        "the stand-in paid {DEPOSIT_SAT} sat in {}:{} (mempool)",
        funded.txid, funded.vout
    );

    let pending = wait_until("the pending deposit", || async {
        let w = api.gql(WALLET, json!({})).await?;
        let w = w["me"]["defaultAccount"]["wallets"][0].clone();
        Ok((w["pendingIncomingBalance"].as_i64() == Some(DEPOSIT_SAT as i64)).then_some(w))
    })
    .await?;
    println!(
        "pending: balance {} sat, pending incoming {} sat, {}",
        pending["balance"],
        pending["pendingIncomingBalance"],
        pending["pendingIncomingTransactions"][0]
    );

    standin.control().mine(1).await.context("mining")?;
    println!("mined one block (the demo credits after 1 confirmation)");
    let settled = wait_until("the settled deposit", || async {
        let w = api.gql(WALLET, json!({})).await?;
        let w = w["me"]["defaultAccount"]["wallets"][0].clone();
        Ok((w["balance"].as_i64() == Some(DEPOSIT_SAT as i64)).then_some(w))
    })
    .await?;
    println!(
        "settled: balance {} sat, pending incoming {} sat, {}",
        settled["balance"],
        settled["pendingIncomingBalance"],
        settled["transactions"]["edges"][0]["node"]
    );

    let verify = Command::new(&coordinator)
        .args(["--database-url", &db_url, "ledger", "verify"])
        .output()
        .context("running coordinator ledger verify")?;
    print!("{}", String::from_utf8_lossy(&verify.stdout));
    if !verify.status.success() {
        bail!(
            "ledger verify failed: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    pool.close().await;
    Ok(())
}
