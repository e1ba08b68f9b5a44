//! The bank as processes: `coordinator serve` beside the regtest stand-in, on a scratch
//! database, driven through its GraphQL API and checked with `coordinator ledger verify`.
//! Shared by the demo and the whole-system tests.
//!
//! Finding the binary: a test's executable lives in `target/<profile>/deps/`, the demo's in
//! `target/<profile>/`; the coordinator's is in `target/<profile>/` either way. Nothing here
//! runs cargo (a test runs while cargo may still hold the build directory's lock):
//! `cargo nextest run --workspace` builds every member's binaries, and the scripts run
//! `cargo build -p coordinator -p chain-standin` first.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, Network};
use policies::{HsmKey, PolicyDocument, RecoveryKey, Template};
use serde_json::{Value, json};
use sqlx::PgPool;

/// A public test key (BIP32 test vector 1's master tpub): the hot wallet's recovery key.
const RECOVERY_TPUB: &str = "tpubD6NzVbkrYhZ4XgiXtGrdW5XDAPFCL9h7we1vwNCpn8tGbBcgfVYjXyhWo4E1xkh56hjod1RhGjxbaTLV3X4FyWuejifB9jusQ46QzG87VKp";
/// The coordinator's deposit driver polls this often (ms): fast, for tests and the demo.
pub const POLL_INTERVAL_MS: u64 = 100;

/// The user's first wallet: settled and pending balances, pending deposits, the latest
/// settled transaction.
pub const WALLET_QUERY: &str = "query { me { defaultAccount { wallets { ... on BTCWallet { id balance \
    pendingIncomingBalance pendingIncomingTransactions { status settlementAmount \
    settlementVia { ... on SettlementViaOnChain { transactionHash vout } } } \
    transactions(first: 1) { edges { node { status settlementAmount \
    settlementVia { ... on SettlementViaOnChain { transactionHash vout } } } } } } } } } }";

/// A child process killed (SIGKILL on Unix) and reaped when dropped.
#[derive(Debug)]
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace binary `name`, built into the same `target/<profile>/` as the running
/// executable (looked up beside it, then one level up from `deps/`).
///
/// # Errors
/// If it is not built, saying how to build it.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the current executable")?;
    let mut dir = exe
        .parent()
        .context("the executable's directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "{} is not built (run `cargo build -p coordinator -p chain-standin`)",
            path.display()
        );
    }
    Ok(path)
}

/// Polls `f` every 100 ms until it gives a value, for 60 s at most.
///
/// # Errors
/// What `f` returns, or a timeout naming `what`.
pub async fn wait_until<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
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

/// A hot-wallet policy with a fixed (public, test-only) key.
///
/// # Errors
/// None in practice: the key and template are constants.
pub fn hot_policy() -> anyhow::Result<PolicyDocument> {
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

/// Writes `hot-policy.json` and `onchain.toml` (the chain at `esplora_url`, one hot
/// wallet, deposits credited after `confirmations`) into `dir`; returns the TOML's path.
///
/// # Errors
/// If a file cannot be written.
pub fn write_onchain(dir: &Path, esplora_url: &str, confirmations: u32) -> anyhow::Result<PathBuf> {
    std::fs::write(dir.join("hot-policy.json"), hot_policy()?.to_json_pretty()?)?;
    let path = dir.join("onchain.toml");
    std::fs::write(
        &path,
        format!(
            "[chain]\nkind = \"esplora\"\nurl = \"{esplora_url}\"\n\n[[wallets]]\nname = \"hot\"\n\
             role = \"hot\"\npolicy_file = \"hot-policy.json\"\n\n[deposits]\n\
             confirmations = {confirmations}\npoll_interval_ms = {POLL_INTERVAL_MS}\n"
        ),
    )?;
    Ok(path)
}

/// A running `coordinator serve` on a free port of 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct Coordinator {
    process: Killed,
    bind: String,
}

impl Coordinator {
    /// Starts `binary serve --onchain <onchain>` on `db_url`, its log (info) in `log`, and
    /// waits until `/healthz` answers.
    ///
    /// # Errors
    /// If it cannot be started, or does not answer within the wait.
    pub async fn serve(
        binary: &Path,
        db_url: &str,
        onchain: &Path,
        log: &Path,
    ) -> anyhow::Result<Coordinator> {
        let onchain = [std::ffi::OsStr::new("--onchain"), onchain.as_os_str()];
        Coordinator::serve_with(binary, db_url, &onchain, log).await
    }

    /// Starts `binary serve <args>` on `db_url`, its log (info, appended) in `log`, and
    /// waits until `/healthz` answers.
    ///
    /// # Errors
    /// If it cannot be started, or does not answer within the wait.
    pub async fn serve_with(
        binary: &Path,
        db_url: &str,
        args: &[&std::ffi::OsStr],
        log: &Path,
    ) -> anyhow::Result<Coordinator> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let bind = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let process = Killed(
            Command::new(binary)
                .args(["--database-url", db_url, "serve", "--bind", &bind])
                .args(args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting coordinator serve")?,
        );
        let http = reqwest::Client::new();
        let health = format!("http://{bind}/healthz");
        // A coordinator that exits at start (bad file, database refused) fails at once.
        let child = std::cell::RefCell::new(process);
        wait_until("the coordinator to answer", || async {
            let exited = child.borrow_mut().0.try_wait()?;
            if let Some(status) = exited {
                bail!("coordinator serve exited with {status}");
            }
            Ok(http
                .get(&health)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success()))
        })
        .await?;
        Ok(Coordinator {
            process: child.into_inner(),
            bind,
        })
    }

    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.bind)
    }

    /// A GraphQL client of its `/graphql`, without a token.
    pub fn api(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            url: format!("{}/graphql", self.url()),
            token: None,
        }
    }

    /// Kills it with SIGKILL (as a crash: no graceful shutdown, its deposit lease is not
    /// given up) and waits for it to be gone.
    ///
    /// # Errors
    /// If the signal cannot be sent.
    pub fn crash(mut self) -> anyhow::Result<()> {
        // `Child::kill` is SIGKILL on Unix.
        self.process.0.kill().context("killing the coordinator")?;
        self.process.0.wait().context("reaping the coordinator")?;
        Ok(())
    }
}

/// Runs the coordinator's CLI `binary` on `db_url` with `args` (`what` names the command in
/// errors); returns what it printed.
///
/// # Errors
/// If it cannot run or exits with an error (with its output).
fn coordinator_cli<S: AsRef<OsStr>>(
    binary: &Path,
    db_url: &str,
    what: &str,
    args: impl IntoIterator<Item = S>,
) -> anyhow::Result<String> {
    let out = Command::new(binary)
        .args(["--database-url", db_url])
        .args(args)
        .output()
        .with_context(|| format!("running coordinator {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Runs `binary ledger verify` on `db_url`; returns its report.
///
/// # Errors
/// If it cannot run or reports a broken invariant (with its output).
pub fn ledger_verify(binary: &Path, db_url: &str) -> anyhow::Result<String> {
    coordinator_cli(binary, db_url, "ledger verify", ["ledger", "verify"])
}

/// Makes a staff member of `role` with the CLI (`coordinator staff create`, the password
/// from a file) and logs them in on `server`'s admin API.
///
/// # Errors
/// The CLI or the login refused.
pub async fn staff_login(
    binary: &Path,
    db_url: &str,
    server: &Coordinator,
    dir: &Path,
    role: &str,
) -> anyhow::Result<Api> {
    let email = format!("{role}@bank.example");
    let password = format!("the {role} demo password");
    let file = dir.join(format!("{role}.password"));
    std::fs::write(&file, &password)?;
    let args = [
        "staff",
        "create",
        "--role",
        role,
        "--username",
        &email,
        "--password-file",
    ];
    let args = args.map(OsStr::new).into_iter().chain([file.as_os_str()]);
    coordinator_cli(binary, db_url, "staff create", args)?;
    let mut admin = Api {
        url: format!("{}/admin/graphql", server.url()),
        ..server.api()
    };
    let login = admin
        .gql(
            "mutation($i: StaffLoginInput!) { staffLogin(input: $i) { authToken errors { code } } }",
            json!({"i": {"email": email, "password": password}}),
        )
        .await?;
    let token = login["staffLogin"]["authToken"]
        .as_str()
        .with_context(|| format!("staffLogin: {login}"))?;
    admin.token = Some(token.to_owned());
    Ok(admin)
}

/// A GraphQL client, with the bearer token once logged in.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Api {
    /// Sends `query`; returns `data`.
    ///
    /// # Errors
    /// HTTP failures, or the `errors` the server answered with.
    pub async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
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

    /// The bearer token, once logged in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The same client against another server (another coordinator instance), keeping the
    /// token.
    pub fn against(&self, server: &Coordinator) -> Api {
        Api {
            url: format!("{}/graphql", server.url()),
            ..self.clone()
        }
    }

    /// Registers `email` (no password), reads the code from the notification outbox (no
    /// notifier is configured), confirms it setting `password`, and keeps the token.
    ///
    /// # Errors
    /// A refused step, or no code in the outbox.
    pub async fn register(
        &mut self,
        pool: &PgPool,
        email: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        self.gql(
            "mutation($i: UserRegisterInput!) { userRegister(input: $i) { success errors { message } } }",
            json!({ "i": { "email": email } }),
        )
        .await?;
        let body: String = sqlx::query_scalar(
            "SELECT body FROM notification_outbox WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(email)
        .fetch_one(pool)
        .await
        .context("reading the registration code from the outbox")?;
        let code = body
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .context("a six-digit code")?;
        let login = self
            .gql(
                "mutation($i: UserCodeLoginInput!) { userCodeLogin(input: $i) { authToken errors { message } } }",
                // The password is set with the first confirmation: only the identity's
                // proven owner may choose it.
                json!({ "i": { "email": email, "code": code, "password": password } }),
            )
            .await?;
        let token = login["userCodeLogin"]["authToken"]
            .as_str()
            .with_context(|| format!("an auth token in {login}"))?;
        self.token = Some(token.to_owned());
        Ok(())
    }

    /// The default wallet's id and a new deposit address of it.
    ///
    /// # Errors
    /// A refused request, or an address that is not a regtest address.
    pub async fn deposit_address(&self) -> anyhow::Result<(String, Address)> {
        let me = self
            .gql(
                "query { me { defaultAccount { defaultWalletId } } }",
                json!({}),
            )
            .await?;
        let wallet = me["me"]["defaultAccount"]["defaultWalletId"]
            .as_str()
            .context("a wallet id")?
            .to_owned();
        let created = self
            .gql(
                "mutation($i: OnChainAddressCreateInput!) { onChainAddressCreate(input: $i) { address errors { message } } }",
                json!({ "i": { "walletId": wallet } }),
            )
            .await?;
        let address = created["onChainAddressCreate"]["address"]
            .as_str()
            .with_context(|| format!("an address in {created}"))?;
        let address = Address::from_str(address)?.require_network(Network::Regtest)?;
        Ok((wallet, address))
    }

    /// The user's first wallet, as [`WALLET_QUERY`] asks for it.
    ///
    /// # Errors
    /// A refused request.
    pub async fn wallet(&self) -> anyhow::Result<Value> {
        let w = self.gql(WALLET_QUERY, json!({})).await?;
        Ok(w["me"]["defaultAccount"]["wallets"][0].clone())
    }
}
