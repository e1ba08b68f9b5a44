//! Test support: start `regtest-standin` as a separate process on free ports,
//! wait until it answers, kill it on drop, and drive it with a typed client.
//!
//! Finding the binary: `env!("CARGO_BIN_EXE_regtest-standin")` exists only
//! inside this package's own tests, so other crates cannot use it. Because the
//! stand-in is a workspace member, `cargo build` (or `cargo test --workspace`,
//! `cargo nextest run --workspace`) builds it into the same
//! `target/<profile>/` directory as the running test, whose executable lives
//! in `target/<profile>/deps/`. [`locate_binary`] looks there (after the
//! `REGTEST_STANDIN_BIN` variable). It does not run cargo itself: a test runs
//! while cargo may still hold the build directory's lock, and a nested build
//! would wait on it forever. A test of another crate that runs alone
//! (`cargo test -p coordinator`) needs `cargo build -p chain-standin` first.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Address, Amount, FeeRate, Transaction, Txid};
use serde::de::DeserializeOwned;

use crate::control::{
    FeeEstimatesRequest, FundManyRequest, FundRequest, Funded, InvalidateRequest, MineRequest,
    Mined, Payee, Tip, WalletInfo,
};
use crate::node::Invalidated;

/// The binary's name.
pub const BINARY: &str = "regtest-standin";
/// How long the process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the stand-in could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The binary is not where it should be.
    #[error(
        "the regtest stand-in binary is not built at {0} (run `cargo build -p chain-standin`, or set REGTEST_STANDIN_BIN)"
    )]
    NotBuilt(PathBuf),
    /// Starting or reading the process failed.
    #[error("starting the regtest stand-in: {0}")]
    Io(#[from] std::io::Error),
    /// It did not say it was ready.
    #[error("the regtest stand-in did not become ready: {0}")]
    NotReady(String),
}

/// An error from the control client.
#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    /// The HTTP request failed.
    #[error("control request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The stand-in answered with an error (for `broadcast`, bitcoind's reason).
    #[error("the stand-in refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Body: `{"error": ...}` for control calls, Esplora's text for `/tx`.
        message: String,
    },
}

/// Where the binary is: `REGTEST_STANDIN_BIN`, else `target/<profile>/regtest-standin`
/// beside the running test executable.
///
/// # Errors
/// [`SpawnError::NotBuilt`] if it is not there.
pub fn locate_binary() -> Result<PathBuf, SpawnError> {
    if let Some(path) = std::env::var_os("REGTEST_STANDIN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("{BINARY}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(SpawnError::NotBuilt(path))
    }
}

/// How to start the stand-in.
#[derive(Debug, Clone)]
pub struct Options {
    /// The binary (default: [`locate_binary`]).
    pub binary: Option<PathBuf>,
    /// Blocks mined to the stand-in's wallet before it serves.
    pub initial_blocks: u32,
    /// JSON-RPC user.
    pub rpc_user: String,
    /// JSON-RPC password (test credentials).
    pub rpc_password: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            binary: None,
            initial_blocks: 0,
            rpc_user: "standin".into(),
            rpc_password: "standin".into(),
        }
    }
}

/// A running stand-in process, killed when dropped.
#[derive(Debug)]
pub struct StandIn {
    child: Child,
    esplora_url: String,
    rpc_url: String,
    options: Options,
    control: ControlClient,
}

impl StandIn {
    /// Starts the stand-in with default options.
    ///
    /// # Errors
    /// See [`SpawnError`].
    pub fn start() -> Result<Self, SpawnError> {
        Self::start_with(Options::default())
    }

    /// Starts the stand-in on free ports, waits for its ready line, then
    /// until its Esplora API answers.
    /// Its logs go to this process's stderr when `REGTEST_STANDIN_LOG` is set.
    ///
    /// # Errors
    /// See [`SpawnError`].
    pub fn start_with(options: Options) -> Result<Self, SpawnError> {
        let binary = match &options.binary {
            Some(b) => b.clone(),
            None => locate_binary()?,
        };
        let stderr = if std::env::var_os("REGTEST_STANDIN_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(&binary)
            .args(["--esplora-port", "0", "--rpc-port", "0", "--rpc-user"])
            .arg(&options.rpc_user)
            .arg("--initial-blocks")
            .arg(options.initial_blocks.to_string())
            .env("REGTEST_STANDIN_RPC_PASSWORD", &options.rpc_password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| SpawnError::NotReady("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(read.map(|_| line));
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                return Err(SpawnError::Io(e));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnError::NotReady(format!(
                    "no ready line within {READY_TIMEOUT:?}"
                )));
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        let (Some(esplora_url), Some(rpc_url)) = (field("esplora="), field("rpc=")) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SpawnError::NotReady(format!(
                "unexpected first line {line:?}"
            )));
        };
        if let Err(e) = wait_until_answering(&esplora_url) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let control = ControlClient::new(&esplora_url);
        Ok(Self {
            child,
            esplora_url,
            rpc_url,
            options,
            control,
        })
    }

    /// Base URL of the Esplora API (no trailing slash), for `esplora-client`.
    pub fn esplora_url(&self) -> &str {
        &self.esplora_url
    }

    /// Base URL of the JSON-RPC face.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// JSON-RPC user and password.
    pub fn rpc_credentials(&self) -> (&str, &str) {
        (&self.options.rpc_user, &self.options.rpc_password)
    }

    /// The control client.
    pub fn control(&self) -> &ControlClient {
        &self.control
    }

    /// The process id (to stop it in a test that simulates an outage).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Asks `GET /blocks/tip/height` over a plain socket (this helper is
/// synchronous) until it answers 200, for at most [`READY_TIMEOUT`].
fn wait_until_answering(esplora_url: &str) -> Result<(), SpawnError> {
    let authority = esplora_url
        .strip_prefix("http://")
        .ok_or_else(|| SpawnError::NotReady(format!("not an http URL: {esplora_url}")))?;
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        match probe(authority) {
            Ok(true) => return Ok(()),
            Ok(false) => last = "answered, but not 200".into(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(SpawnError::NotReady(format!(
        "{esplora_url}/blocks/tip/height did not answer: {last}"
    )))
}

fn probe(authority: &str) -> std::io::Result<bool> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET /blocks/tip/height HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 200"))
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A typed client of the `/control/` endpoints (and Esplora's `POST /tx`).
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
    http: reqwest::Client,
}

impl ControlClient {
    /// A client of the stand-in at `esplora_url`.
    pub fn new(esplora_url: &str) -> Self {
        Self {
            base: esplora_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn answer<T: DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, ControlClientError> {
        let status = response.status();
        if !status.is_success() {
            return Err(ControlClientError::Refused {
                status: status.as_u16(),
                message: response.text().await?,
            });
        }
        Ok(response.json().await?)
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ControlClientError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        Self::answer(response).await
    }

    /// The tip.
    ///
    /// # Errors
    /// HTTP failure.
    pub async fn tip(&self) -> Result<Tip, ControlClientError> {
        let response = self
            .http
            .get(format!("{}/control/tip", self.base))
            .send()
            .await?;
        Self::answer(response).await
    }

    /// The stand-in wallet's address (where blocks pay by default).
    ///
    /// # Errors
    /// HTTP failure, or an address that does not parse.
    pub async fn wallet_address(&self) -> Result<Address, ControlClientError> {
        let response = self
            .http
            .get(format!("{}/control/wallet", self.base))
            .send()
            .await?;
        let info: WalletInfo = Self::answer(response).await?;
        info.address
            .parse::<Address<_>>()
            .map(Address::assume_checked)
            .map_err(|e| ControlClientError::Refused {
                status: 200,
                message: format!("unparsable wallet address: {e}"),
            })
    }

    /// Mines `blocks` blocks to the stand-in's wallet.
    ///
    /// # Errors
    /// HTTP failure.
    pub async fn mine(&self, blocks: u32) -> Result<Mined, ControlClientError> {
        self.post(
            "/control/mine",
            &MineRequest {
                blocks,
                address: None,
            },
        )
        .await
    }

    /// Mines `blocks` blocks paying `address`.
    ///
    /// # Errors
    /// HTTP failure, or an address not for regtest.
    pub async fn mine_to(
        &self,
        blocks: u32,
        address: &Address,
    ) -> Result<Mined, ControlClientError> {
        self.post(
            "/control/mine",
            &MineRequest {
                blocks,
                address: Some(address.to_string()),
            },
        )
        .await
    }

    /// Pays `amount` to `address` from the stand-in's matured coins; mines nothing.
    ///
    /// # Errors
    /// HTTP failure, too few matured coins, or a refused amount (dust).
    pub async fn fund(
        &self,
        address: &Address,
        amount: Amount,
    ) -> Result<Funded, ControlClientError> {
        self.fund_and_mine(address, amount, 0).await
    }

    /// Pays `amount` to `address`, then mines `blocks` blocks.
    ///
    /// # Errors
    /// As [`Self::fund`].
    pub async fn fund_and_mine(
        &self,
        address: &Address,
        amount: Amount,
        blocks: u32,
    ) -> Result<Funded, ControlClientError> {
        self.post(
            "/control/fund",
            &FundRequest {
                address: address.to_string(),
                amount_sat: amount.to_sat(),
                mine_blocks: blocks,
            },
        )
        .await
    }

    /// Pays every `(address, amount)` in one transaction (output `i` pays the
    /// `i`-th), then mines `blocks` blocks.
    ///
    /// # Errors
    /// As [`Self::fund`].
    pub async fn fund_many(
        &self,
        payees: &[(Address, Amount)],
        blocks: u32,
    ) -> Result<Funded, ControlClientError> {
        let outputs = payees
            .iter()
            .map(|(a, v)| Payee {
                address: a.to_string(),
                amount_sat: v.to_sat(),
            })
            .collect();
        self.post(
            "/control/fund-many",
            &FundManyRequest {
                outputs,
                mine_blocks: blocks,
            },
        )
        .await
    }

    /// Takes the last `blocks` blocks off the chain (a reorg once more are mined).
    ///
    /// # Errors
    /// HTTP failure, or more blocks than there are.
    pub async fn invalidate(&self, blocks: u32) -> Result<Invalidated, ControlClientError> {
        self.post("/control/invalidate", &InvalidateRequest { blocks })
            .await
    }

    /// Replaces the fee estimates (target in blocks to fee rate).
    ///
    /// # Errors
    /// HTTP failure, an empty table or a target outside 1..=1008.
    pub async fn set_fee_estimates(
        &self,
        estimates: &BTreeMap<u16, FeeRate>,
    ) -> Result<(), ControlClientError> {
        let sat_per_kvb = estimates
            .iter()
            .map(|(t, r)| (*t, r.to_sat_per_kwu().saturating_mul(4)))
            .collect();
        let response = self
            .http
            .post(format!("{}/control/fee-estimates", self.base))
            .json(&FeeEstimatesRequest { sat_per_kvb })
            .send()
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(ControlClientError::Refused {
            status: response.status().as_u16(),
            message: response.text().await?,
        })
    }

    /// Broadcasts through Esplora's `POST /tx`; a refusal carries bitcoind's reason.
    ///
    /// # Errors
    /// HTTP failure, or [`ControlClientError::Refused`] with the reason.
    pub async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ControlClientError> {
        let response = self
            .http
            .post(format!("{}/tx", self.base))
            .body(serialize_hex(tx))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            return Err(ControlClientError::Refused {
                status: status.as_u16(),
                message: body,
            });
        }
        body.trim()
            .parse()
            .map_err(|e| ControlClientError::Refused {
                status: status.as_u16(),
                message: format!("unparsable txid {body:?}: {e}"),
            })
    }
}
