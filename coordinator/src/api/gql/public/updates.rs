//! The `myUpdates` subscription.

use async_graphql::futures_util::Stream;
use async_graphql::futures_util::stream;
use async_graphql::{Context, Enum, Result, SimpleObject, Subscription, Union};

use super::accounts::User;
use super::{ErrorInterface, payload_error, principal};
use crate::api::deposit_updates::{DepositEvent, DepositEventKind};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{OnChainTxHashScalar, PaymentHashScalar, SatAmount, WalletIdScalar};
use crate::api::gql::types::{InvoicePaymentStatus, Transaction, app, gql};
use crate::api::payments::find_line;
use crate::api::{AppState, PaymentEvent};
use crate::bank::{BankError, Principal, Scope};
use crate::ids::WalletId;

/// What happened to a wallet.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "TxNotificationType")]
pub enum TxNotificationType {
    /// The wallet paid.
    #[graphql(name = "IntraLedgerPayment")]
    IntraLedgerPayment,
    /// The wallet received.
    #[graphql(name = "IntraLedgerReceipt")]
    IntraLedgerReceipt,
    /// An on-chain payment out (declared for Blink clients; no withdrawals yet).
    #[graphql(name = "OnchainPayment")]
    OnchainPayment,
    /// An on-chain deposit was credited.
    #[graphql(name = "OnchainReceipt")]
    OnchainReceipt,
    /// An on-chain deposit was seen (mempool or too few confirmations): pending.
    #[graphql(name = "OnchainReceiptPending")]
    OnchainReceiptPending,
}

/// An on-chain deposit to one of the caller's wallets, pending or credited. Blink's
/// deprecated float price fields (`usdPerSat`, `displayCurrencyPerSat`) are left out: no
/// price feed here.
#[derive(SimpleObject, Clone, Debug)]
pub struct OnChainUpdate {
    /// Amount in satoshis.
    pub amount: SatAmount,
    /// The deposit as a transaction (pending, or its ledger credit).
    pub transaction: Transaction,
    /// The Bitcoin transaction.
    pub tx_hash: OnChainTxHashScalar,
    /// Pending or credited.
    pub tx_notification_type: TxNotificationType,
    /// The wallet.
    pub wallet_id: WalletIdScalar,
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

/// An update for the caller: internal transfers and on-chain deposits; `LnUpdate` is
/// declared for Blink clients' fragments.
#[derive(Union, Clone, Debug)]
#[allow(dead_code, reason = "LnUpdate exists for schema compatibility only")]
#[allow(
    clippy::enum_variant_names,
    reason = "the member names are Blink's type names"
)]
pub enum UserUpdate {
    /// An internal transfer.
    IntraLedgerUpdate(IntraLedgerUpdate),
    /// A Lightning invoice (not yet).
    LnUpdate(LnUpdate),
    /// An on-chain deposit.
    OnChainUpdate(OnChainUpdate),
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
    /// Internal transfers into and out of the caller's wallets and on-chain deposits to
    /// them (pending, then credited), as they happen (needs the read scope).
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
        let drx = app
            .deposit_updates
            .subscribe()
            .await
            .map_err(|e| ApiError::internal(&e).to_graphql())?;
        Ok(stream::unfold(
            (rx, drx, app, p, wallets),
            |(mut rx, mut drx, app, p, wallets)| async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    let event = tokio::select! {
                        r = rx.recv() => match r {
                            Ok(ev) => ev,
                            Err(RecvError::Lagged(n)) => {
                                tracing::warn!(missed = n, "myUpdates subscriber lagged");
                                continue;
                            }
                            Err(RecvError::Closed) => return None,
                        },
                        r = drx.recv() => match r {
                            Ok(ev) => {
                                if !wallets.contains(&ev.wallet_id) {
                                    continue;
                                }
                                let payload = match deposit_update(&app, &p, &ev).await {
                                    Ok(Some(payload)) => payload,
                                    Ok(None) => continue,
                                    Err(e) => MyUpdatesPayload {
                                        errors: payload_error(ApiError::from(&e)),
                                        me: None,
                                        update: None,
                                    },
                                };
                                return Some((payload, (rx, drx, app, p, wallets)));
                            }
                            Err(RecvError::Lagged(n)) => {
                                tracing::warn!(missed = n, "myUpdates subscriber lagged (deposits)");
                                continue;
                            }
                            Err(RecvError::Closed) => return None,
                        },
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
                        Ok(Some(payload)) => return Some((payload, (rx, drx, app, p, wallets))),
                        Ok(None) => continue,
                        Err(e) => {
                            let api = ApiError::from(&e);
                            let payload = MyUpdatesPayload {
                                errors: payload_error(api),
                                me: None,
                                update: None,
                            };
                            return Some((payload, (rx, drx, app, p, wallets)));
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

/// The `OnChainUpdate` of a deposit event (a removed deposit sends none: Blink has no such
/// notification; it leaves `pendingIncomingTransactions`). Read with the same retries as
/// transfers: the event is committed.
async fn deposit_update(
    app: &AppState,
    p: &Principal,
    event: &DepositEvent,
) -> Result<Option<MyUpdatesPayload>, BankError> {
    let kind = match event.kind {
        DepositEventKind::Pending => TxNotificationType::OnchainReceiptPending,
        DepositEventKind::Settled => TxNotificationType::OnchainReceipt,
        DepositEventKind::Removed => return Ok(None),
    };
    let mut delay = std::time::Duration::from_millis(100);
    let mut attempt = 0;
    let deposit = loop {
        match app.deposits.by_id(event.deposit_id).await {
            Ok(d) => break d,
            Err(crate::deposits::DepositError::Database(e)) if attempt < 5 => {
                tracing::warn!(error = %e, "myUpdates: reading the deposit failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(crate::api::onchain::to_bank(e)),
        }
    };
    let Some(deposit) = deposit else {
        return Ok(None);
    };
    let credit = match (kind, deposit.ledger_transaction_id) {
        (TxNotificationType::OnchainReceipt, Some(t)) => {
            app.bank.sender_transaction(event.wallet_id, t).await?
        }
        _ => None,
    };
    let account = app.bank.me(p).await?;
    Ok(Some(MyUpdatesPayload {
        errors: Vec::new(),
        me: Some(User {
            account,
            principal: p.clone(),
        }),
        update: Some(UserUpdate::OnChainUpdate(OnChainUpdate {
            amount: SatAmount(deposit.amount.to_sat()),
            tx_hash: OnChainTxHashScalar(deposit.outpoint.txid.to_string()),
            transaction: Transaction::deposit(&deposit, credit),
            tx_notification_type: kind,
            wallet_id: WalletIdScalar(event.wallet_id.to_string()),
        })),
    }))
}
