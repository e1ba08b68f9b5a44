//! On-chain operations shared by GraphQL and REST: deposit addresses from the hot wallet's
//! address book, and the deposits of a wallet (pending, by address). Each checks the
//! caller's scope and that the wallet is the caller's before touching anything.

use std::sync::Arc;

use crate::api::AppState;
use crate::api::errors::ApiError;
use crate::bank::{BankError, Principal, Scope};
use crate::deposits::{Deposit, DepositError, DepositState};
use crate::ids::WalletId;
use crate::wallets::{OnchainWalletId, WalletError, Wallets};

/// The wallet that hands out deposit addresses.
#[derive(Clone, Debug)]
pub struct OnchainConfig {
    /// The wallets and their address book.
    pub wallets: Wallets,
    /// The hot wallet: every account's receive addresses come from it.
    pub hot_wallet: OnchainWalletId,
}

pub(crate) fn deposit_error(e: &DepositError) -> ApiError {
    match e {
        DepositError::NotFound { what } => ApiError {
            code: "NOT_FOUND",
            message: format!("{what} not found"),
            http_status: 404,
        },
        DepositError::AlreadyResolved { resolution, .. } => ApiError {
            code: "ALREADY_RESOLVED",
            message: format!("the alert was already resolved as {resolution}"),
            http_status: 409,
        },
        DepositError::Ledger(crate::ledger::LedgerError::InsufficientBalance { .. }) => ApiError {
            code: "INSUFFICIENT_BALANCE",
            message: "the wallet no longer holds the deposit's amount; nothing was posted".into(),
            http_status: 422,
        },
        other => ApiError::internal(other),
    }
}

pub(crate) fn wallet_error(e: &WalletError) -> ApiError {
    match e {
        WalletError::IndexesExhausted(_) => ApiError {
            code: "ADDRESSES_EXHAUSTED",
            message: "the on-chain wallet has no address left".into(),
            http_status: 503,
        },
        other => ApiError::internal(other),
    }
}

fn unavailable() -> ApiError {
    ApiError {
        code: "ONCHAIN_UNAVAILABLE",
        message: "on-chain deposits are not configured on this server".into(),
        http_status: 503,
    }
}

fn onchain(app: &AppState) -> Result<&Arc<OnchainConfig>, ApiError> {
    app.onchain.as_ref().ok_or_else(unavailable)
}

/// Checks that `wallet` is one of the caller's BTC wallets (another account's wallet is
/// not found, so its existence does not leak).
async fn own_wallet(app: &AppState, p: &Principal, wallet: WalletId) -> Result<(), ApiError> {
    let w = app
        .bank
        .receiving_wallet(p, wallet)
        .await
        .map_err(|e| ApiError::from(&e))?;
    if w.currency != "BTC" {
        return Err(ApiError::invalid(
            "only BTC wallets receive on-chain deposits",
        ));
    }
    Ok(())
}

/// A new deposit address for the caller's wallet (`onChainAddressCreate`): never handed out
/// before, never handed to anyone else.
pub(crate) async fn address_create(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
) -> Result<String, ApiError> {
    p.require(Scope::Receive).map_err(|e| ApiError::from(&e))?;
    own_wallet(app, p, wallet).await?;
    let o = onchain(app)?;
    let record = o
        .wallets
        .reveal_address_for(o.hot_wallet, p.account_id)
        .await
        .map_err(|e| wallet_error(&e))?;
    Ok(record.address.to_string())
}

/// The caller's latest deposit address, created if it has none (`onChainAddressCurrent`).
pub(crate) async fn address_current(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
) -> Result<String, ApiError> {
    p.require(Scope::Receive).map_err(|e| ApiError::from(&e))?;
    own_wallet(app, p, wallet).await?;
    let o = onchain(app)?;
    let record = o
        .wallets
        .current_address(o.hot_wallet, p.account_id)
        .await
        .map_err(|e| wallet_error(&e))?;
    Ok(record.address.to_string())
}

/// Checks an address's form (at most 90 characters of bech32 or base58) before it is used
/// to filter: a bad one is `INVALID_INPUT`, not an empty list.
pub(crate) fn parse_address(address: &str) -> Result<String, ApiError> {
    let a = address.trim();
    a.parse::<bdk_wallet::bitcoin::Address<bdk_wallet::bitcoin::address::NetworkUnchecked>>()
        .map_err(|_| ApiError::invalid("invalid address: not a Bitcoin address"))?;
    Ok(a.to_owned())
}

/// The wallet's pending incoming deposits, newest first (optionally to one address).
pub(crate) async fn pending(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
    address: Option<&str>,
) -> Result<Vec<Deposit>, BankError> {
    p.require(Scope::Read)?;
    app.bank.wallet(p, wallet).await?;
    app.deposits.pending(wallet, address).await.map_err(to_bank)
}

/// A deposits failure as the bank's error, for the shared error mapping.
pub(crate) fn to_bank(e: DepositError) -> BankError {
    match e {
        DepositError::Database(e) => BankError::Database(e),
        DepositError::Ledger(e) => BankError::Ledger(e),
        other => BankError::Corrupt(other.to_string()),
    }
}

/// The wallet's deposits to an address that are pending or credited, newest first.
pub(crate) async fn to_address(
    app: &AppState,
    wallet: WalletId,
    address: &str,
) -> Result<Vec<Deposit>, BankError> {
    Ok(app
        .deposits
        .to_address(wallet, address)
        .await
        .map_err(to_bank)?
        .into_iter()
        .filter(|d| {
            matches!(
                d.state,
                DepositState::Pending | DepositState::Settled | DepositState::Reversed
            )
        })
        .collect())
}
