//! Staff views and actions on deposits (our extension of the admin schema): deposits that
//! need an operator (below the minimum, held for a closed account, pending), compliance
//! alerts of reorgs after settlement, and their resolution. Viewing needs
//! `ViewTransactions` (every role); reversing or dismissing an alert needs `CloseAccount`
//! (compliance and admin), the role that already decides on closing accounts.

use async_graphql::{Enum, ID, InputObject, SimpleObject};

use super::public::ErrorInterface;
use super::scalars::{OnChainAddressScalar, OnChainTxHashScalar, Timestamp, WalletIdScalar};
use crate::api::AppState;
use crate::api::errors::ApiError;
use crate::api::onchain::deposit_error;
use crate::bank::StaffPrincipal;
use crate::deposits::{AlertResolution, Deposit, DepositAlert, DepositState};

/// Where a deposit stands.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "OnChainDepositState")]
pub enum DepositStateEnum {
    /// Seen, not yet credited.
    Pending,
    /// Credited.
    Settled,
    /// Gone before settlement.
    Removed,
    /// Below the minimum: never credited.
    BelowMinimum,
    /// Confirmed to a closed account: not credited.
    Held,
    /// Credited, then reversed by an operator after a reorg.
    Reversed,
}

impl From<DepositState> for DepositStateEnum {
    fn from(s: DepositState) -> Self {
        match s {
            DepositState::Pending => DepositStateEnum::Pending,
            DepositState::Settled => DepositStateEnum::Settled,
            DepositState::Removed => DepositStateEnum::Removed,
            DepositState::BelowMinimum => DepositStateEnum::BelowMinimum,
            DepositState::Held => DepositStateEnum::Held,
            DepositState::Reversed => DepositStateEnum::Reversed,
        }
    }
}

impl From<DepositStateEnum> for DepositState {
    fn from(s: DepositStateEnum) -> Self {
        match s {
            DepositStateEnum::Pending => DepositState::Pending,
            DepositStateEnum::Settled => DepositState::Settled,
            DepositStateEnum::Removed => DepositState::Removed,
            DepositStateEnum::BelowMinimum => DepositState::BelowMinimum,
            DepositStateEnum::Held => DepositState::Held,
            DepositStateEnum::Reversed => DepositState::Reversed,
        }
    }
}

/// A deposit as operators see it.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "OnChainDeposit")]
pub struct DepositView {
    /// Its id.
    pub id: ID,
    /// The Bitcoin transaction.
    pub transaction_hash: OnChainTxHashScalar,
    /// The output index.
    pub vout: i32,
    /// The wallet credited.
    pub wallet_id: WalletIdScalar,
    /// The wallet's account.
    pub account_id: ID,
    /// The address paid.
    pub address: OnChainAddressScalar,
    /// Amount in satoshis.
    pub amount_sat: String,
    /// Where it stands.
    pub state: DepositStateEnum,
    /// Height of its block in the best chain, if confirmed.
    pub block_height: Option<i32>,
    /// The ledger credit, once settled.
    pub ledger_transaction_id: Option<ID>,
    /// When it was first seen.
    pub seen_at: Timestamp,
}

impl From<&Deposit> for DepositView {
    fn from(d: &Deposit) -> Self {
        DepositView {
            id: ID(d.id.to_string()),
            transaction_hash: OnChainTxHashScalar(d.outpoint.txid.to_string()),
            vout: i32::try_from(d.outpoint.vout).unwrap_or(i32::MAX),
            wallet_id: WalletIdScalar(d.wallet_id.to_string()),
            account_id: ID(d.account_id.to_string()),
            address: OnChainAddressScalar(d.address.clone()),
            amount_sat: d.amount.to_sat().to_string(),
            state: d.state.into(),
            block_height: d.block_height.and_then(|h| i32::try_from(h).ok()),
            ledger_transaction_id: d.ledger_transaction_id.map(|t| ID(t.to_string())),
            seen_at: d.seen_at.into(),
        }
    }
}

/// How an alert was resolved.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "OnChainDepositAlertResolution")]
pub enum ResolutionEnum {
    /// The credit was reversed.
    Reversed,
    /// Nothing to undo.
    Dismissed,
}

/// A compliance alert: a reorg took a settled deposit's block out of the best chain.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "OnChainDepositAlert")]
pub struct AlertView {
    /// Its id.
    pub id: ID,
    /// `REORGED_AFTER_SETTLEMENT`.
    pub kind: String,
    /// The deposit.
    pub deposit: DepositView,
    /// Height of the block that left the best chain.
    pub block_height: i32,
    /// When it was raised.
    pub created_at: Timestamp,
    /// How it was resolved, if it was.
    pub resolution: Option<ResolutionEnum>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// Why.
    pub resolution_reason: Option<String>,
    /// The reversing ledger transaction.
    pub reversal_transaction_id: Option<ID>,
}

impl From<&DepositAlert> for AlertView {
    fn from(a: &DepositAlert) -> Self {
        AlertView {
            id: ID(a.id.to_string()),
            kind: a.kind.clone(),
            deposit: (&a.deposit).into(),
            block_height: i32::try_from(a.block_height).unwrap_or(i32::MAX),
            created_at: a.created_at.into(),
            resolution: a.resolution.map(|r| match r {
                AlertResolution::Reversed => ResolutionEnum::Reversed,
                AlertResolution::Dismissed => ResolutionEnum::Dismissed,
            }),
            resolved_by: a.resolved_by.clone(),
            resolution_reason: a.resolution_reason.clone(),
            reversal_transaction_id: a.reversal_transaction_id.map(|t| ID(t.to_string())),
        }
    }
}

/// Input of `onChainDepositAlertResolve`.
#[derive(InputObject, Debug)]
pub struct OnChainDepositAlertResolveInput {
    /// The alert.
    pub alert_id: ID,
    /// Reverse the credit (posting `deposit-reversal:<txid>:<vout>`), or dismiss.
    pub resolution: ResolutionEnum,
    /// Why (1 to 1000 characters, kept with the alert).
    pub reason: String,
}

/// The alert after the action, or why it failed.
#[derive(SimpleObject, Debug)]
pub struct OnChainDepositAlertPayload {
    /// The alert.
    pub alert: Option<AlertView>,
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
}

/// Deposits in `states` (default: those needing an operator), newest first.
pub(crate) async fn deposits(
    app: &AppState,
    states: Option<Vec<DepositStateEnum>>,
    first: Option<i32>,
) -> Result<Vec<DepositView>, ApiError> {
    let states: Vec<DepositState> = match states {
        Some(s) => s.into_iter().map(Into::into).collect(),
        None => vec![
            DepositState::BelowMinimum,
            DepositState::Held,
            DepositState::Pending,
        ],
    };
    // The page bounds of every list: the document guard prices a list by them.
    let limit = super::types::page_size(first, None, None)?;
    let found = app
        .deposits
        .for_operators(&states, limit)
        .await
        .map_err(|e| deposit_error(&e))?;
    Ok(found.iter().map(Into::into).collect())
}

/// Alerts, oldest first.
pub(crate) async fn alerts(app: &AppState, open_only: bool) -> Result<Vec<AlertView>, ApiError> {
    let found = app
        .deposits
        .alerts(open_only)
        .await
        .map_err(|e| deposit_error(&e))?;
    Ok(found.iter().map(Into::into).collect())
}

/// Reverses or dismisses an alert; idempotent (the same resolution again returns it).
pub(crate) async fn resolve(
    app: &AppState,
    staff: &StaffPrincipal,
    input: OnChainDepositAlertResolveInput,
) -> OnChainDepositAlertPayload {
    let failed = |e: ApiError| OnChainDepositAlertPayload {
        alert: None,
        errors: super::public::payload_errors(e),
    };
    let Ok(id) = input.alert_id.parse::<uuid::Uuid>() else {
        return failed(ApiError::invalid("invalid alertId: not an alert id"));
    };
    let reason = input.reason.trim();
    if reason.is_empty() || reason.len() > 1000 {
        return failed(ApiError::invalid("reason must be 1 to 1000 characters"));
    }
    let actor = format!("staff:{}", staff.staff_id);
    let result = match input.resolution {
        ResolutionEnum::Reversed => app.deposits.reverse(id, &actor, reason).await,
        ResolutionEnum::Dismissed => app.deposits.dismiss(id, &actor, reason).await,
    };
    match result {
        Ok(a) => OnChainDepositAlertPayload {
            alert: Some((&a).into()),
            errors: Vec::new(),
        },
        Err(e) => failed(deposit_error(&e)),
    }
}
