//! [`ChainSource`] over Bitcoin Core's JSON-RPC: a small async client over reqwest (the HTTP
//! stack the coordinator already has), so every call gets our timeout, retries and health.
//! Blocks come whole (`getblock <hash> 0`) and are scanned by the caller, as with Esplora.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bdk_wallet::bitcoin::consensus::encode;
use bdk_wallet::bitcoin::{Amount, Block, BlockHash, FeeRate, Transaction, Txid};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use super::blocks::{self, BlockReader};
use super::call::Caller;
use super::config::{BitcoindAuth, redact_url};
use super::{
    BlockBatch, BlockId, BlockLocator, CallPolicy, ChainError, ChainHealth, ChainSource,
    FeeEstimates, TxStatus,
};

const NAME: &str = "bitcoind";

/// Bitcoin Core's RPC error codes this adapter acts on (src/rpc/protocol.h).
mod code {
    /// Block or transaction not found.
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    /// Height out of range and similar.
    pub const INVALID_PARAMETER: i64 = -8;
    /// Transaction or block refused (missing inputs, script failure...).
    pub const VERIFY_ERROR: i64 = -25;
    /// Transaction refused by policy or consensus.
    pub const VERIFY_REJECTED: i64 = -26;
    /// Transaction already in the chain.
    pub const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
    /// The node is starting.
    pub const IN_WARMUP: i64 = -28;
}

/// The confirmation targets asked of `estimatesmartfee`.
const FEE_TARGETS: [u16; 5] = [1, 3, 6, 25, 144];

/// A Bitcoin Core node as a chain source.
#[derive(Debug)]
pub struct BitcoindSource {
    http: reqwest::Client,
    url: reqwest::Url,
    auth: BitcoindAuth,
    credentials: RwLock<Credentials>,
    next_id: AtomicU64,
    caller: Caller,
}

/// User and password; `Debug` shows the user only.
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Deserialize)]
struct RpcError {
    code: i64,
    message: String,
}

#[derive(Debug, Deserialize)]
struct RpcResponse {
    result: Option<Value>,
    error: Option<RpcError>,
}

/// What a call came back with: a result or the node's error.
enum Answer {
    Result(Value),
    Error(RpcError),
}

fn config_error(reason: impl Into<String>) -> ChainError {
    ChainError::Config {
        reason: reason.into(),
    }
}

fn read_secret_file(path: &Path) -> Result<String, ChainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

pub(crate) fn read_credentials(auth: &BitcoindAuth) -> Result<Credentials, ChainError> {
    match auth {
        BitcoindAuth::Cookie { cookie_file } => {
            let text = zeroize::Zeroizing::new(read_secret_file(cookie_file)?);
            let (user, password) = text.split_once(':').ok_or_else(|| {
                config_error(format!(
                    "cookie file {} is not user:password",
                    cookie_file.display()
                ))
            })?;
            Ok(Credentials {
                user: user.to_owned(),
                password: SecretString::from(password.to_owned()),
            })
        }
        BitcoindAuth::UserPassword {
            user,
            password_file,
        } => Ok(Credentials {
            user: user.clone(),
            password: SecretString::from(read_secret_file(password_file)?),
        }),
    }
}

impl BitcoindSource {
    /// A source for the node at `url`, reading the credentials now. Makes no call.
    ///
    /// # Errors
    /// [`ChainError::Config`] for a malformed URL or an unreadable credentials file.
    pub fn new(url: &str, auth: BitcoindAuth, policy: CallPolicy) -> Result<Self, ChainError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| config_error(format!("bitcoind url {url:?}: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(config_error(
                "bitcoind url must not hold credentials; use auth.cookie_file or auth.password_file",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(policy.timeout())
            .connect_timeout(policy.timeout())
            .build()
            .map_err(|e| config_error(format!("http client: {e}")))?;
        let credentials = RwLock::new(read_credentials(&auth)?);
        Ok(BitcoindSource {
            http,
            caller: Caller::new(NAME, redact_url(&url), policy),
            url,
            auth,
            credentials,
            next_id: AtomicU64::new(1),
        })
    }

    /// The cookie file, if credentials come from one.
    fn cookie_file(&self) -> Option<&PathBuf> {
        match &self.auth {
            BitcoindAuth::Cookie { cookie_file } => Some(cookie_file),
            BitcoindAuth::UserPassword { .. } => None,
        }
    }

    /// Sends one request with the current credentials.
    async fn send(&self, body: &Value) -> Result<reqwest::Response, reqwest::Error> {
        let creds = self.credentials.read().await;
        self.http
            .post(self.url.clone())
            .basic_auth(&creds.user, Some(creds.password.expose_secret()))
            .json(body)
            .send()
            .await
    }

    /// Reads the cookie file again; whether it changed.
    async fn reload_cookie(&self) -> bool {
        let Some(path) = self.cookie_file() else {
            return false;
        };
        let Ok(fresh) = read_credentials(&BitcoindAuth::Cookie {
            cookie_file: path.clone(),
        }) else {
            return false;
        };
        let mut creds = self.credentials.write().await;
        let changed = creds.user != fresh.user
            || creds.password.expose_secret() != fresh.password.expose_secret();
        *creds = fresh;
        changed
    }

    /// One JSON-RPC request (no retry, but one resend after a new cookie).
    async fn request(&self, method: &str, params: Value) -> Result<Answer, ChainError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let unreachable = |e: reqwest::Error| self.caller.unavailable(format!("{method}: {e}"));
        let mut response = self.send(&body).await.map_err(unreachable)?;
        // The node writes a new cookie at each start: read it again and resend once.
        if response.status() == reqwest::StatusCode::UNAUTHORIZED && self.reload_cookie().await {
            response = self.send(&body).await.map_err(unreachable)?;
        }
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(self
                .caller
                .unavailable(format!("{method}: credentials refused (http 401)")));
        }
        if status.is_server_error() && status != reqwest::StatusCode::INTERNAL_SERVER_ERROR {
            // 500 carries RPC errors (JSON-RPC 1.0); 502/503 are a proxy or a busy node.
            return Err(self.caller.unavailable(format!("{method}: http {status}")));
        }
        let text = response
            .text()
            .await
            .map_err(|e| self.caller.unavailable(format!("{method}: {e}")))?;
        let parsed: RpcResponse = serde_json::from_str(&text).map_err(|e| {
            self.caller.invalid(format!(
                "{method}: http {status}, not a JSON-RPC answer: {e}"
            ))
        })?;
        match (parsed.error, parsed.result) {
            (Some(e), _) if e.code == code::IN_WARMUP => Err(self
                .caller
                .unavailable(format!("{method}: node warming up: {}", e.message))),
            (Some(e), _) => Ok(Answer::Error(e)),
            (None, Some(v)) => Ok(Answer::Result(v)),
            (None, None) => Ok(Answer::Result(Value::Null)),
        }
    }

    /// An idempotent call whose RPC errors are all unexpected.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<T, ChainError> {
        self.caller
            .idempotent(method, || async {
                match self.request(method, params.clone()).await? {
                    Answer::Result(v) => self.decode(method, v),
                    Answer::Error(e) => Err(self.rpc_error(method, &e)),
                }
            })
            .await
    }

    /// An idempotent call where one RPC error code means "not there".
    async fn call_optional<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
        absent: i64,
    ) -> Result<Option<T>, ChainError> {
        self.caller
            .idempotent(method, || async {
                match self.request(method, params.clone()).await? {
                    Answer::Result(v) => self.decode(method, v).map(Some),
                    Answer::Error(e) if e.code == absent => Ok(None),
                    Answer::Error(e) => Err(self.rpc_error(method, &e)),
                }
            })
            .await
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        v: Value,
    ) -> Result<T, ChainError> {
        serde_json::from_value(v).map_err(|e| self.caller.invalid(format!("{method}: {e}")))
    }

    fn rpc_error(&self, method: &str, e: &RpcError) -> ChainError {
        self.caller
            .invalid(format!("{method}: rpc error {}: {}", e.code, e.message))
    }

    fn hex<T: encode::Decodable>(&self, what: &str, hex: &str) -> Result<T, ChainError> {
        encode::deserialize_hex(hex).map_err(|e| self.caller.invalid(format!("{what}: {e}")))
    }
}

#[derive(Deserialize)]
struct ChainInfo {
    blocks: u32,
    bestblockhash: BlockHash,
}

#[async_trait]
impl BlockReader for BitcoindSource {
    async fn tip(&self) -> Result<BlockId, ChainError> {
        // One call: height and hash of the same tip.
        let info: ChainInfo = self.call("getblockchaininfo", json!([])).await?;
        Ok(BlockId {
            height: info.blocks,
            hash: info.bestblockhash,
        })
    }

    async fn hash_at(&self, height: u32) -> Result<Option<BlockHash>, ChainError> {
        self.call_optional("getblockhash", json!([height]), code::INVALID_PARAMETER)
            .await
    }

    async fn block(&self, hash: BlockHash) -> Result<Option<Block>, ChainError> {
        let hex: Option<String> = self
            .call_optional("getblock", json!([hash, 0]), code::INVALID_ADDRESS_OR_KEY)
            .await?;
        hex.map(|h| self.hex("getblock", &h)).transpose()
    }

    fn source_name(&self) -> &'static str {
        NAME
    }
}

#[derive(Deserialize)]
struct VerboseTx {
    blockhash: Option<BlockHash>,
}

#[derive(Deserialize)]
struct BlockHeaderInfo {
    height: u32,
    confirmations: i64,
}

#[derive(Deserialize)]
struct SmartFee {
    /// BTC per kvB; absent when the node has too little data.
    feerate: Option<f64>,
}

#[async_trait]
impl ChainSource for BitcoindSource {
    async fn tip(&self) -> Result<BlockId, ChainError> {
        BlockReader::tip(self).await
    }

    async fn blocks_since(
        &self,
        locator: &BlockLocator,
        max_blocks: usize,
    ) -> Result<BlockBatch, ChainError> {
        blocks::blocks_since(self, locator, max_blocks).await
    }

    async fn mempool_txids(&self) -> Result<Vec<Txid>, ChainError> {
        self.call("getrawmempool", json!([])).await
    }

    async fn transaction(&self, txid: Txid) -> Result<Option<Arc<Transaction>>, ChainError> {
        let hex: Option<String> = self
            .call_optional(
                "getrawtransaction",
                json!([txid, false]),
                code::INVALID_ADDRESS_OR_KEY,
            )
            .await?;
        hex.map(|h| {
            self.hex::<Transaction>("getrawtransaction", &h)
                .map(Arc::new)
        })
        .transpose()
    }

    async fn tx_status(&self, txid: Txid) -> Result<TxStatus, ChainError> {
        let in_mempool: Option<Value> = self
            .call_optional(
                "getmempoolentry",
                json!([txid]),
                code::INVALID_ADDRESS_OR_KEY,
            )
            .await?;
        if in_mempool.is_some() {
            return Ok(TxStatus::Mempool);
        }
        let verbose: Option<VerboseTx> = self
            .call_optional(
                "getrawtransaction",
                json!([txid, true]),
                code::INVALID_ADDRESS_OR_KEY,
            )
            .await?;
        let Some(hash) = verbose.and_then(|v| v.blockhash) else {
            return Ok(TxStatus::Unknown);
        };
        let header: Option<BlockHeaderInfo> = self
            .call_optional(
                "getblockheader",
                json!([hash, true]),
                code::INVALID_ADDRESS_OR_KEY,
            )
            .await?;
        Ok(match header {
            // A block off the best chain has confirmations -1.
            Some(h) if h.confirmations > 0 => TxStatus::Confirmed {
                block: BlockId {
                    height: h.height,
                    hash,
                },
            },
            _ => TxStatus::Unknown,
        })
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let txid = tx.compute_txid();
        let hex = encode::serialize_hex(tx);
        self.caller
            .idempotent("sendrawtransaction", || async {
                match self
                    .request("sendrawtransaction", json!([hex.clone()]))
                    .await?
                {
                    Answer::Result(v) => {
                        let answered: Txid = self.decode("sendrawtransaction", v)?;
                        if answered == txid {
                            Ok(txid)
                        } else {
                            Err(self.caller.invalid(format!(
                                "sendrawtransaction: sent {txid}, node answered {answered}"
                            )))
                        }
                    }
                    Answer::Error(e) if e.code == code::VERIFY_ALREADY_IN_CHAIN => Ok(txid),
                    Answer::Error(e)
                        if e.code == code::VERIFY_REJECTED
                            && e.message.contains("txn-already-in-mempool") =>
                    {
                        Ok(txid)
                    }
                    Answer::Error(e)
                        if e.code == code::VERIFY_REJECTED || e.code == code::VERIFY_ERROR =>
                    {
                        Err(ChainError::Rejected { reason: e.message })
                    }
                    Answer::Error(e) => Err(self.rpc_error("sendrawtransaction", &e)),
                }
            })
            .await
    }

    async fn fee_estimates(&self) -> Result<FeeEstimates, ChainError> {
        let mut estimates = FeeEstimates::default();
        for target in FEE_TARGETS {
            let fee: SmartFee = self
                .call("estimatesmartfee", json!([target, "conservative"]))
                .await?;
            if let Some(btc_per_kvb) = fee.feerate {
                estimates.0.insert(target, self.fee_rate(btc_per_kvb)?);
            }
        }
        Ok(estimates)
    }

    fn health(&self) -> ChainHealth {
        self.caller.health.snapshot()
    }
}

impl BitcoindSource {
    /// BTC/kvB (Bitcoin Core's unit) to a fee rate: sat/kvB / 4 = sat/kwu, rounded up.
    fn fee_rate(&self, btc_per_kvb: f64) -> Result<FeeRate, ChainError> {
        let per_kvb = Amount::from_btc(btc_per_kvb).map_err(|e| {
            self.caller
                .invalid(format!("estimatesmartfee: fee rate {btc_per_kvb}: {e}"))
        })?;
        Ok(FeeRate::from_sat_per_kwu(per_kvb.to_sat().div_ceil(4)))
    }
}
