//! The `myUpdates` subscription.

use async_graphql::futures_util::Stream;
use async_graphql::futures_util::stream;
use async_graphql::{Context, Enum, Result, SimpleObject, Subscription, Union};

use super::accounts::User;
use super::payments::find_line;
use super::{ErrorInterface, payload_error, principal};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{PaymentHashScalar, SatAmount, WalletIdScalar};
use crate::api::gql::types::{Transaction, app, gql};
use crate::api::{AppState, PaymentEvent};
use crate::bank::{BankError, Principal, Scope};
use crate::ids::WalletId;

/// What happened to a wallet in an internal transfer.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "TxNotificationType")]
pub enum TxNotificationType {
    /// The wallet paid.
    #[graphql(name = "IntraLedgerPayment")]
    IntraLedgerPayment,
    /// The wallet received.
    #[graphql(name = "IntraLedgerReceipt")]
    IntraLedgerReceipt,
}

/// An internal transfer touched one of the caller's wallets. Blink's deprecated float
/// price fields (`usdPerSat`, `displayCurrencyPerSat`) are left out: no price feed here.
#[derive(SimpleObject, Clone, Debug)]
pub struct IntraLedgerUpdate {
    /// Amount in satoshis.
    pub amount: SatAmount,
    /// The wallet's side of the transaction.
    pub transaction: Transaction,
    /// Payment or receipt.
    pub tx_notification_type: TxNotificationType,
    /// The wallet.
    pub wallet_id: WalletIdScalar,
}

/// Payment status of a Lightning invoice.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "InvoicePaymentStatus")]
pub enum InvoicePaymentStatus {
    /// Expired unpaid.
    Expired,
    /// Paid.
    Paid,
    /// Waiting.
    Pending,
}

/// A Lightning invoice update. Declared so that Blink clients' `myUpdates` documents
/// validate; never sent until Lightning exists here.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnUpdate {
    /// The invoice's payment hash.
    pub payment_hash: PaymentHashScalar,
    /// Its status.
    pub status: InvoicePaymentStatus,
    /// The transaction.
    pub transaction: Transaction,
    /// The wallet.
    pub wallet_id: WalletIdScalar,
}

/// An update for the caller. Only internal transfers exist so far; `LnUpdate` is
/// declared for Blink clients' fragments.
#[derive(Union, Clone, Debug)]
#[allow(dead_code, reason = "LnUpdate exists for schema compatibility only")]
pub enum UserUpdate {
    /// An internal transfer.
    IntraLedgerUpdate(IntraLedgerUpdate),
    /// A Lightning invoice (not yet).
    LnUpdate(LnUpdate),
}

/// One event of `myUpdates`.
#[derive(SimpleObject, Clone, Debug)]
pub struct MyUpdatesPayload {
    /// Errors.
    pub errors: Vec<ErrorInterface>,
    /// The caller.
    pub me: Option<User>,
    /// What happened.
    pub update: Option<UserUpdate>,
}

/// The public subscription root.
#[derive(Debug, Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Internal transfers into and out of the caller's wallets, as they happen (needs the
    /// read scope).
    async fn my_updates(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = MyUpdatesPayload> + use<>> {
        let p = principal(ctx, Scope::Read)?;
        let app = app(ctx).clone();
        let wallets: Vec<WalletId> = app
            .bank
            .wallets_of(p.account_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(|w| w.id)
            .collect();
        let rx = app
            .updates
            .subscribe()
            .await
            .map_err(|e| ApiError::internal(&e).to_graphql())?;
        Ok(stream::unfold(
            (rx, app, p, wallets),
            |(mut rx, app, p, wallets)| async move {
                loop {
                    let event = match rx.recv().await {
                        Ok(ev) => ev,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "myUpdates subscriber lagged");
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    };
                    let (wallet, kind) = if wallets.contains(&event.sender_wallet) {
                        (event.sender_wallet, TxNotificationType::IntraLedgerPayment)
                    } else if wallets.contains(&event.recipient_wallet) {
                        (
                            event.recipient_wallet,
                            TxNotificationType::IntraLedgerReceipt,
                        )
                    } else {
                        continue;
                    };
                    let payload = update_with_retry(&app, &p, wallet, kind, &event).await;
                    match payload {
                        Ok(Some(payload)) => return Some((payload, (rx, app, p, wallets))),
                        Ok(None) => continue,
                        Err(e) => {
                            let api = ApiError::from(&e);
                            let payload = MyUpdatesPayload {
                                errors: payload_error(api),
                                me: None,
                                update: None,
                            };
                            return Some((payload, (rx, app, p, wallets)));
                        }
                    }
                }
            },
        ))
    }
}

/// [`update_payload`], retried over a short database outage: the transfer is committed,
/// so a passing failure to read it should not turn the update into an error. The reads
/// are idempotent.
async fn update_with_retry(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
    kind: TxNotificationType,
    event: &PaymentEvent,
) -> Result<Option<MyUpdatesPayload>, BankError> {
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..5 {
        match update_payload(app, p, wallet, kind, event).await {
            Err(
                BankError::Database(e) | BankError::Ledger(crate::ledger::LedgerError::Database(e)),
            ) => {
                tracing::warn!(error = %e, "myUpdates: reading the update failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    update_payload(app, p, wallet, kind, event).await
}

async fn update_payload(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
    kind: TxNotificationType,
    event: &PaymentEvent,
) -> Result<Option<MyUpdatesPayload>, BankError> {
    let Some(line) = find_line(app, p, wallet, event.transaction_id).await? else {
        return Ok(None);
    };
    let transaction = Transaction::new(line);
    let account = app.bank.me(p).await?;
    Ok(Some(MyUpdatesPayload {
        errors: Vec::new(),
        me: Some(User {
            account,
            principal: p.clone(),
        }),
        update: Some(UserUpdate::IntraLedgerUpdate(IntraLedgerUpdate {
            amount: SatAmount(event.amount.to_sat()),
            transaction,
            tx_notification_type: kind,
            wallet_id: WalletIdScalar(wallet.to_string()),
        })),
    }))
}
