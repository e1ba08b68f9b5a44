//! [`ChainSource`] over Esplora's HTTP API, with `esplora-client`'s async client (the client
//! bdk_esplora uses; its own retries are off, ours apply).

use std::sync::Arc;

use async_trait::async_trait;
use bdk_wallet::bitcoin::{Block, BlockHash, FeeRate, Transaction, Txid};
use esplora_client::{AsyncClient, Error as EsploraError};

use super::blocks::{self, BlockReader};
use super::call::Caller;
use super::config::redact_url;
use super::{
    BlockBatch, BlockId, BlockLocator, CallPolicy, ChainError, ChainHealth, ChainSource,
    FeeEstimates, TxStatus,
};

const NAME: &str = "esplora";

/// An Esplora server as a chain source.
#[derive(Debug)]
pub struct EsploraSource {
    client: AsyncClient,
    caller: Caller,
}

impl EsploraSource {
    /// A source for the Esplora server at `url`. Makes no call.
    ///
    /// # Errors
    /// [`ChainError::Config`] if the URL does not parse or the HTTP client cannot be built.
    pub fn new(url: &str, policy: CallPolicy) -> Result<EsploraSource, ChainError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ChainError::Config {
            reason: format!("esplora url {url:?}: {e}"),
        })?;
        let http = reqwest::Client::builder()
            .timeout(policy.timeout())
            .connect_timeout(policy.timeout())
            .build()
            .map_err(|e| ChainError::Config {
                reason: format!("http client: {e}"),
            })?;
        let base = url.trim_end_matches('/').to_owned();
        Ok(EsploraSource {
            client: AsyncClient::from_client(base, http),
            caller: Caller::new(NAME, redact_url(&parsed), policy),
        })
    }

    /// Maps a client error to what the caller can act on.
    fn map(&self, e: EsploraError) -> ChainError {
        match e {
            EsploraError::Reqwest(e) if e.is_decode() => self.caller.invalid(e.to_string()),
            EsploraError::Reqwest(e) => self.caller.unavailable(e.to_string()),
            EsploraError::HttpResponse { status, message } if status >= 500 || status == 429 => {
                self.caller.unavailable(format!("http {status}: {message}"))
            }
            EsploraError::HttpResponse { status, message } => {
                self.caller.invalid(format!("http {status}: {message}"))
            }
            other => self.caller.invalid(other.to_string()),
        }
    }

    /// `Ok(None)` for a 404, the error mapped otherwise.
    fn optional<T>(&self, r: Result<T, EsploraError>) -> Result<Option<T>, ChainError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(EsploraError::HttpResponse { status: 404, .. }) => Ok(None),
            Err(e) => Err(self.map(e)),
        }
    }
}

/// Whether an Esplora broadcast refusal means the node already has the transaction.
fn already_known(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("txn-already-in-mempool")
        || m.contains("txn-already-known")
        || m.contains("already in block chain")
        // Bitcoin Core 26 and later: RPC_VERIFY_ALREADY_IN_CHAIN says this.
        || m.contains("already in utxo set")
        || m.contains("\"code\":-27")
        || m.contains("transaction already in mempool")
}

#[async_trait]
impl BlockReader for EsploraSource {
    async fn tip(&self) -> Result<BlockId, ChainError> {
        self.caller
            .idempotent("tip", || async {
                // Two requests: read the hash, then its height, so the pair is consistent
                // even if a block arrives in between.
                let hash = self.client.get_tip_hash().await.map_err(|e| self.map(e))?;
                let status = self
                    .client
                    .get_block_status(&hash)
                    .await
                    .map_err(|e| self.map(e))?;
                let height = status
                    .height
                    .ok_or_else(|| self.caller.invalid(format!("tip {hash} has no height")))?;
                Ok(BlockId { height, hash })
            })
            .await
    }

    async fn hash_at(&self, height: u32) -> Result<Option<BlockHash>, ChainError> {
        self.caller
            .idempotent("block-height", || async {
                self.optional(self.client.get_block_hash(height).await)
            })
            .await
    }

    async fn block(&self, hash: BlockHash) -> Result<Option<Block>, ChainError> {
        self.caller
            .idempotent("block", || async {
                match self.client.get_block_by_hash(&hash).await {
                    Ok(block) => Ok(block),
                    Err(EsploraError::HttpResponse { status: 404, .. }) => Ok(None),
                    Err(e) => Err(self.map(e)),
                }
            })
            .await
    }

    fn source_name(&self) -> &'static str {
        NAME
    }
}

#[async_trait]
impl ChainSource for EsploraSource {
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
        self.caller
            .idempotent("mempool-txids", || async {
                self.client
                    .get_mempool_txids()
                    .await
                    .map_err(|e| self.map(e))
            })
            .await
    }

    async fn transaction(&self, txid: Txid) -> Result<Option<Arc<Transaction>>, ChainError> {
        self.caller
            .idempotent("tx", || async {
                match self.client.get_tx(&txid).await {
                    Ok(tx) => Ok(tx.map(Arc::new)),
                    Err(EsploraError::HttpResponse { status: 404, .. }) => Ok(None),
                    Err(e) => Err(self.map(e)),
                }
            })
            .await
    }

    async fn tx_status(&self, txid: Txid) -> Result<TxStatus, ChainError> {
        self.caller
            .idempotent("tx-status", || async {
                let Some(status) = self.optional(self.client.get_tx_status(&txid).await)? else {
                    return Ok(TxStatus::Unknown);
                };
                match (status.confirmed, status.block_height, status.block_hash) {
                    (true, Some(height), Some(hash)) => Ok(TxStatus::Confirmed {
                        block: BlockId { height, hash },
                    }),
                    (true, _, _) => Err(self
                        .caller
                        .invalid(format!("confirmed {txid} without a block"))),
                    // Esplora (electrs) answers "unconfirmed" for any txid it has not seen in a
                    // block, known or not: ask for the transaction itself.
                    (false, _, _) => match self.client.get_tx(&txid).await {
                        Ok(Some(_)) => Ok(TxStatus::Mempool),
                        Ok(None) | Err(EsploraError::HttpResponse { status: 404, .. }) => {
                            Ok(TxStatus::Unknown)
                        }
                        Err(e) => Err(self.map(e)),
                    },
                }
            })
            .await
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let txid = tx.compute_txid();
        self.caller
            .idempotent("broadcast", || async {
                match self.client.broadcast(tx).await {
                    Ok(()) => Ok(txid),
                    Err(EsploraError::HttpResponse { status, message })
                        if (400..500).contains(&status) && status != 429 =>
                    {
                        if already_known(&message) {
                            Ok(txid)
                        } else {
                            Err(ChainError::Rejected { reason: message })
                        }
                    }
                    Err(e) => Err(self.map(e)),
                }
            })
            .await
    }

    async fn fee_estimates(&self) -> Result<FeeEstimates, ChainError> {
        let raw = self
            .caller
            .idempotent("fee-estimates", || async {
                self.client
                    .get_fee_estimates()
                    .await
                    .map_err(|e| self.map(e))
            })
            .await?;
        let mut estimates = FeeEstimates::default();
        for (target, sat_per_vb) in raw {
            estimates
                .0
                .insert(target, fee_rate_from_sat_per_vb(sat_per_vb)?);
        }
        Ok(estimates)
    }

    fn health(&self) -> ChainHealth {
        self.caller.health.snapshot()
    }
}

/// Esplora gives fee rates as decimal sat/vB. A fee rate is an estimate, not an amount held:
/// it becomes an integer sat/kwu (1 sat/vB = 250 sat/kwu), rounded up so a rate is never
/// below the estimate.
fn fee_rate_from_sat_per_vb(sat_per_vb: f64) -> Result<FeeRate, ChainError> {
    if !(0.0..=1_000_000.0).contains(&sat_per_vb) {
        return Err(ChainError::InvalidResponse {
            source_name: NAME,
            reason: format!("fee estimate {sat_per_vb} sat/vB is out of range"),
        });
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked finite, non-negative and at most 2.5e8 above"
    )]
    let sat_per_kwu = (sat_per_vb * 250.0).ceil() as u64;
    Ok(FeeRate::from_sat_per_kwu(sat_per_kwu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rates_round_up_and_refuse_nonsense() {
        assert_eq!(
            fee_rate_from_sat_per_vb(1.0).unwrap(),
            FeeRate::from_sat_per_vb_u32(1)
        );
        assert_eq!(
            fee_rate_from_sat_per_vb(1.001).unwrap(),
            FeeRate::from_sat_per_kwu(251)
        );
        assert!(fee_rate_from_sat_per_vb(f64::NAN).is_err());
        assert!(fee_rate_from_sat_per_vb(-1.0).is_err());
        assert!(fee_rate_from_sat_per_vb(1e12).is_err());
    }

    #[test]
    fn already_known_answers_are_recognised() {
        assert!(already_known(
            "sendrawtransaction RPC error: {\"code\":-27,\"message\":\"Transaction already in block chain\"}"
        ));
        assert!(already_known("txn-already-in-mempool"));
        assert!(!already_known("bad-txns-inputs-missingorspent"));
    }
}
