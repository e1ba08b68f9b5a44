//! On-chain operations under `/v1`, as in GraphQL: a wallet's deposit address (new or
//! current), its pending incoming deposits, and its deposits to one address.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::errors::{ApiError, ErrorBody};
use super::{AppState, onchain};
use crate::bank::{Principal, Scope};
use crate::deposits::{Deposit, DepositState};
use crate::ids::WalletId;

/// A deposit address.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddressDto {
    /// The address.
    pub address: String,
}

/// An on-chain deposit to a wallet.
#[derive(Debug, Serialize, ToSchema)]
pub struct DepositDto {
    /// The Bitcoin transaction.
    pub transaction_hash: String,
    /// The output index.
    pub vout: u32,
    /// The address paid.
    pub address: String,
    /// Amount in satoshis.
    pub amount_sats: u64,
    /// PENDING or SUCCESS (credited).
    pub status: String,
    /// Height of its block, if confirmed.
    pub block_height: Option<u32>,
    /// The ledger transaction of the credit, once credited.
    pub transaction_id: Option<String>,
    /// When it was first seen (RFC 3339).
    pub seen_at: DateTime<Utc>,
}

impl From<&Deposit> for DepositDto {
    fn from(d: &Deposit) -> DepositDto {
        DepositDto {
            transaction_hash: d.outpoint.txid.to_string(),
            vout: d.outpoint.vout,
            address: d.address.clone(),
            amount_sats: d.amount.to_sat(),
            status: match d.state {
                DepositState::Pending => "PENDING",
                _ => "SUCCESS",
            }
            .to_owned(),
            block_height: d.block_height,
            transaction_id: d.ledger_transaction_id.map(|t| t.to_string()),
            seen_at: d.seen_at,
        }
    }
}

/// Filter by address.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AddressQuery {
    /// Only deposits to this address.
    pub address: Option<String>,
}

fn wallet_id(s: &str) -> Result<WalletId, ApiError> {
    s.trim()
        .parse()
        .map_err(|_| ApiError::invalid("invalid wallet_id: not a wallet id"))
}

type ApiResult<T> = Result<T, ApiError>;

/// A new deposit address for the wallet (`onChainAddressCreate`): never handed out before.
/// Needs the receive scope.
#[utoipa::path(post, path = "/v1/wallets/{wallet_id}/onchain-address", tag = "onchain",
    params(("wallet_id" = String, Path, description = "Wallet id"),
           ("Idempotency-Key" = String, Header, description = "1 to 200 characters")),
    responses((status = 200, body = AddressDto), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn create_address(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<AddressDto>> {
    p.require(Scope::Receive)?;
    let address = onchain::address_create(&app, &p, wallet_id(&id)?).await?;
    Ok(Json(AddressDto { address }))
}

/// The wallet's latest deposit address, created on first use (`onChainAddressCurrent`):
/// asking again returns the same address. Needs the receive scope.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/onchain-address", tag = "onchain",
    params(("wallet_id" = String, Path, description = "Wallet id")),
    responses((status = 200, body = AddressDto), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn current_address(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<AddressDto>> {
    p.require(Scope::Receive)?;
    let address = onchain::address_current(&app, &p, wallet_id(&id)?).await?;
    Ok(Json(AddressDto { address }))
}

/// The wallet's pending incoming deposits, newest first (`pendingIncomingTransactions`,
/// or `...ByAddress` with `address`).
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/pending-incoming", tag = "onchain",
    params(("wallet_id" = String, Path, description = "Wallet id"), AddressQuery),
    responses((status = 200, body = [DepositDto]), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn pending_incoming(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<AddressQuery>,
) -> ApiResult<Json<Vec<DepositDto>>> {
    p.require(Scope::Read)?;
    let address = q
        .address
        .as_deref()
        .map(onchain::parse_address)
        .transpose()?;
    let found = onchain::pending(&app, &p, wallet_id(&id)?, address.as_deref()).await?;
    Ok(Json(found.iter().map(DepositDto::from).collect()))
}

/// The wallet's deposits to one address, pending and credited, newest first
/// (`transactionsByAddress`).
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/deposits", tag = "onchain",
    params(("wallet_id" = String, Path, description = "Wallet id"), AddressQuery),
    responses((status = 200, body = [DepositDto]), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn deposits(
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<AddressQuery>,
) -> ApiResult<Json<Vec<DepositDto>>> {
    p.require(Scope::Read)?;
    let wallet = wallet_id(&id)?;
    app.bank.wallet(&p, wallet).await?;
    let address = q
        .address
        .as_deref()
        .ok_or_else(|| ApiError::invalid("address is required"))
        .and_then(onchain::parse_address)?;
    let found = onchain::to_address(&app, wallet, &address).await?;
    Ok(Json(found.iter().map(DepositDto::from).collect()))
}

/// The on-chain part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(create_address, current_address, pending_incoming, deposits))]
pub(super) struct OnchainDoc;

/// The routes, to be merged under the authenticated `/v1` router.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/wallets/{wallet_id}/onchain-address",
            get(current_address).merge(post(create_address)),
        )
        .route(
            "/v1/wallets/{wallet_id}/pending-incoming",
            get(pending_incoming),
        )
        .route("/v1/wallets/{wallet_id}/deposits", get(deposits))
}
