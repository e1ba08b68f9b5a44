//! Starts the LND stand-in as a process from tests: locates the binary in
//! `target/<profile>/` (beside the test executable), starts it on free ports with a data
//! directory, waits for its ready line, and kills it when dropped. A test may kill it and
//! start it again on the same data directory and gRPC port (a node restart).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary's name.
pub const BINARY: &str = "lnd-standin";
/// How long the process may take to print its ready line (LDK Node syncs once first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the stand-in could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The binary is not where it should be.
    #[error(
        "the LND stand-in binary is not built at {0} (run `cargo build -p lnd-standin-server`, or set LND_STANDIN_BIN)"
    )]
    NotBuilt(PathBuf),
    /// Starting or reading the process failed.
    #[error("starting the LND stand-in: {0}")]
    Io(#[from] std::io::Error),
    /// It did not say it was ready.
    #[error("the LND stand-in did not become ready: {0}")]
    NotReady(String),
}

/// Where the binary is: `LND_STANDIN_BIN`, else `target/<profile>/lnd-standin` beside the
/// running test executable.
///
/// # Errors
/// [`SpawnError::NotBuilt`] if it is not there.
pub fn locate_binary() -> Result<PathBuf, SpawnError> {
    if let Some(path) = std::env::var_os("LND_STANDIN_BIN") {
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

/// A running stand-in, killed when dropped. Its data directory is the caller's, so a
/// test can start another on the same directory (a restart).
#[derive(Debug)]
pub struct LndStandIn {
    child: Child,
    data_dir: PathBuf,
    esplora_url: String,
    grpc_url: String,
    p2p_address: String,
    pubkey: String,
}

impl LndStandIn {
    /// Starts the stand-in on `data_dir` against the Esplora API at `esplora_url`, on free
    /// ports. Its logs go to this process's stderr when `LND_STANDIN_LOG` is set.
    ///
    /// # Errors
    /// See [`SpawnError`].
    pub fn start(data_dir: &Path, esplora_url: &str) -> Result<Self, SpawnError> {
        Self::start_on(data_dir, esplora_url, 0, 0)
    }

    /// Kills the process if it still runs and starts it again on the same data directory,
    /// gRPC port and Lightning P2P port (so that clients configured with its address and
    /// peers that know it find it again), as an operator restarts LND.
    ///
    /// # Errors
    /// See [`SpawnError`].
    pub fn restart(&mut self) -> Result<(), SpawnError> {
        self.kill();
        let port = |address: &str| {
            address
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| SpawnError::NotReady(format!("no port in {address}")))
        };
        let (grpc, p2p) = (port(&self.grpc_url)?, port(&self.p2p_address)?);
        let started = Self::start_on(&self.data_dir, &self.esplora_url, grpc, p2p)?;
        // The old (dead) process is replaced; dropping it kills nothing that runs.
        *self = started;
        Ok(())
    }

    fn start_on(
        data_dir: &Path,
        esplora_url: &str,
        grpc_port: u16,
        p2p_port: u16,
    ) -> Result<Self, SpawnError> {
        let binary = locate_binary()?;
        let stderr = if std::env::var_os("LND_STANDIN_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(&binary)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--esplora-url", esplora_url])
            .arg("--grpc-port")
            .arg(grpc_port.to_string())
            .arg("--p2p-port")
            .arg(p2p_port.to_string())
            .args(["--sync-interval-ms", "500"])
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
        let fail = |mut child: Child, e: SpawnError| {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        };
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return fail(child, SpawnError::Io(e)),
            Err(_) => {
                return fail(
                    child,
                    SpawnError::NotReady(format!("no ready line within {READY_TIMEOUT:?}")),
                );
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        let (Some(grpc_url), Some(p2p_address), Some(pubkey)) =
            (field("grpc="), field("p2p="), field("pubkey="))
        else {
            return fail(
                child,
                SpawnError::NotReady(format!("unexpected first line {line:?}")),
            );
        };
        Ok(Self {
            child,
            data_dir: data_dir.to_path_buf(),
            esplora_url: esplora_url.to_string(),
            grpc_url,
            p2p_address,
            pubkey,
        })
    }

    /// The gRPC address, `https://127.0.0.1:<port>`.
    pub fn grpc_url(&self) -> &str {
        &self.grpc_url
    }

    /// The Lightning P2P address, `127.0.0.1:<port>`.
    pub fn p2p_address(&self) -> &str {
        &self.p2p_address
    }

    /// The node's public key, hex.
    pub fn pubkey(&self) -> &str {
        &self.pubkey
    }

    /// `pubkey@host:port`, as `connect_peer` takes it.
    pub fn peer_uri(&self) -> String {
        format!("{}@{}", self.pubkey, self.p2p_address)
    }

    /// Its TLS certificate (PEM), as LND's `tls.cert`.
    pub fn tls_cert_path(&self) -> PathBuf {
        self.data_dir.join("tls.cert")
    }

    /// Its admin macaroon, as LND's `admin.macaroon`.
    pub fn macaroon_path(&self) -> PathBuf {
        self.data_dir.join("admin.macaroon")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process and waits for it (a crash, as far as clients can tell).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LndStandIn {
    fn drop(&mut self) {
        self.kill();
    }
}
