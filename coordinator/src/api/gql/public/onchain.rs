//! On-chain operations of the public schema, with Blink's names: `onChainAddressCreate`,
//! `onChainAddressCurrent`, and the deposits behind the wallet fields
//! `pendingIncomingTransactions`, `pendingIncomingTransactionsByAddress` and
//! `transactionsByAddress`.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::accounts::parse_wallet_id;
use super::{ErrorInterface, payload_error, payload_error_at};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{OnChainAddressScalar, WalletIdScalar};
use crate::api::gql::types::{
    PageInfo, Transaction, TransactionConnection, TransactionEdge, Viewer, app, gql,
};
use crate::api::{AppState, onchain};
use crate::bank::{BankError, StaffAction};
use crate::deposits::{Deposit, DepositState};
use crate::ids::WalletId;

/// Input of `onChainAddressCreate`.
#[derive(InputObject, Debug)]
pub struct OnChainAddressCreateInput {
    /// The wallet to receive into.
    pub wallet_id: WalletIdScalar,
}

/// Input of `onChainAddressCurrent`.
#[derive(InputObject, Debug)]
pub struct OnChainAddressCurrentInput {
    /// The wallet to receive into.
    pub wallet_id: WalletIdScalar,
}

/// An address to deposit to, or why there is none.
#[derive(SimpleObject, Debug)]
pub struct OnChainAddressPayload {
    /// The address.
    pub address: Option<OnChainAddressScalar>,
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
}

fn address_payload(r: Result<String, ApiError>, path: &str) -> OnChainAddressPayload {
    match r {
        Ok(a) => OnChainAddressPayload {
            address: Some(OnChainAddressScalar(a)),
            errors: Vec::new(),
        },
        Err(e) if e.code == "INVALID_INPUT" => OnChainAddressPayload {
            address: None,
            errors: payload_error_at(e, &["input", path]),
        },
        Err(e) => OnChainAddressPayload {
            address: None,
            errors: payload_error(e),
        },
    }
}

/// The on-chain mutations.
#[derive(Debug, Default)]
pub struct OnChainMutation;

#[Object]
impl OnChainMutation {
    /// A new deposit address for one of the caller's BTC wallets (needs the receive
    /// scope). Each call reveals an address never handed out before.
    async fn on_chain_address_create(
        &self,
        ctx: &Context<'_>,
        input: OnChainAddressCreateInput,
    ) -> Result<OnChainAddressPayload> {
        let p = super::principal(ctx, crate::bank::Scope::Receive)?;
        let r = match parse_wallet_id(&input.wallet_id, "walletId") {
            Ok(w) => onchain::address_create(app(ctx), &p, w).await,
            Err(e) => Err(e),
        };
        Ok(address_payload(r, "walletId"))
    }

    /// The wallet's latest deposit address, created on first use (needs the receive
    /// scope). Idempotent.
    async fn on_chain_address_current(
        &self,
        ctx: &Context<'_>,
        input: OnChainAddressCurrentInput,
    ) -> Result<OnChainAddressPayload> {
        let p = super::principal(ctx, crate::bank::Scope::Receive)?;
        let r = match parse_wallet_id(&input.wallet_id, "walletId") {
            Ok(w) => onchain::address_current(app(ctx), &p, w).await,
            Err(e) => Err(e),
        };
        Ok(address_payload(r, "walletId"))
    }
}

async fn settled_line(
    app: &AppState,
    wallet: WalletId,
    d: &Deposit,
) -> Result<Option<crate::bank::WalletTransaction>, BankError> {
    match d.ledger_transaction_id {
        Some(t) => app.bank.sender_transaction(wallet, t).await,
        None => Ok(None),
    }
}

/// A wallet's pending deposits as transactions, for its owner or staff.
pub(crate) async fn wallet_pending(
    app: &AppState,
    viewer: &Viewer,
    wallet: WalletId,
    address: Option<&str>,
) -> Result<Vec<Transaction>> {
    let address = address
        .map(onchain::parse_address)
        .transpose()
        .map_err(|e| e.to_graphql())?;
    let deposits = match viewer {
        Viewer::User(p) => onchain::pending(app, p, wallet, address.as_deref())
            .await
            .map_err(gql)?,
        Viewer::Staff(s) => {
            s.require(StaffAction::ViewTransactions).map_err(gql)?;
            app.deposits
                .pending(wallet, address.as_deref())
                .await
                .map_err(|e| gql(onchain::to_bank(e)))?
        }
    };
    Ok(deposits
        .iter()
        .map(|d| Transaction::deposit(d, None))
        .collect())
}

/// A wallet's deposits to one address (pending and credited), newest first, paged by
/// deposit id.
pub(crate) async fn wallet_by_address(
    app: &AppState,
    viewer: &Viewer,
    wallet: WalletId,
    address: &str,
    first: u32,
    after: Option<&str>,
) -> Result<TransactionConnection> {
    let address = onchain::parse_address(address).map_err(|e| e.to_graphql())?;
    match viewer {
        Viewer::User(p) => {
            p.require(crate::bank::Scope::Read).map_err(gql)?;
            app.bank.wallet(p, wallet).await.map_err(gql)?;
        }
        Viewer::Staff(s) => s.require(StaffAction::ViewTransactions).map_err(gql)?,
    }
    let all = onchain::to_address(app, wallet, &address)
        .await
        .map_err(gql)?;
    let start = match after {
        None => 0,
        Some(c) => {
            all.iter()
                .position(|d| d.id.to_string() == c)
                .ok_or_else(|| ApiError::invalid("invalid cursor").to_graphql())?
                + 1
        }
    };
    let page: Vec<&Deposit> = all.iter().skip(start).take(first as usize).collect();
    let has_next_page = all.len() > start + page.len();
    let mut edges = Vec::with_capacity(page.len());
    for d in page {
        let credit = if d.state == DepositState::Pending {
            None
        } else {
            settled_line(app, wallet, d).await.map_err(gql)?
        };
        edges.push(TransactionEdge {
            cursor: d.id.to_string(),
            node: Transaction::deposit(d, credit),
        });
    }
    Ok(TransactionConnection {
        page_info: PageInfo {
            has_next_page,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        edges,
    })
}
