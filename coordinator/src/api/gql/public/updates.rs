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
use crate::bank::events::Rail;
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

/// A Lightning invoice of one of the caller's wallets was paid (status PAID): over
/// Lightning (the transaction settles via Lightning) or by another wallet of this bank
/// (via the ledger), as Blink announces both.
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

/// An update for the caller: internal transfers, paid Lightning invoices and on-chain
/// deposits.
#[derive(Union, Clone, Debug)]
#[allow(
    clippy::enum_variant_names,
    reason = "the member names are Blink's type names"
)]
pub enum UserUpdate {
    /// An internal transfer.
    IntraLedgerUpdate(IntraLedgerUpdate),
    /// A Lightning invoice paid.
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

/// The `myUpdates` subscription.
#[derive(Debug, Default)]
pub struct UpdatesSubscription;

#[Subscription]
impl UpdatesSubscription {
    /// Internal transfers into and out of the caller's wallets, Lightning invoices of
    /// theirs paid, and on-chain deposits to them (pending, then credited), as they happen
    /// (needs the read scope). A Lightning payment out sends nothing, as in Blink.
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
                    let Some(side) = side(&event, &wallets) else {
                        continue;
                    };
                    let payload = update_with_retry(&app, &p, side, &event).await;
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

/// Which of the subscriber's wallets a payment concerns, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The wallet paid inside the bank (an internal transfer, or an invoice of this bank
    /// paid through the ledger).
    Paid(WalletId),
    /// The wallet received (a transfer, or one of its invoices paid).
    Received(WalletId),
}

/// The side of `event` that the owner of `wallets` hears about, if any. The payer of a
/// Lightning payment settled over Lightning hears nothing: Blink publishes no update for
/// a Lightning payment out (its `LnUpdate` is an invoice's, and `TxNotificationType` has
/// no Lightning payment); the payment's answer, `lnInvoicePaymentStatusByHash` and the
/// transaction history tell the payer.
fn side(event: &PaymentEvent, wallets: &[WalletId]) -> Option<Side> {
    if wallets.contains(&event.sender_wallet) {
        return (event.rail == Rail::IntraLedger).then_some(Side::Paid(event.sender_wallet));
    }
    wallets
        .contains(&event.recipient_wallet)
        .then_some(Side::Received(event.recipient_wallet))
}

/// [`update_payload`], retried over a short database outage: the transfer is committed,
/// so a passing failure to read it should not turn the update into an error. The reads
/// are idempotent.
async fn update_with_retry(
    app: &AppState,
    p: &Principal,
    side: Side,
    event: &PaymentEvent,
) -> Result<Option<MyUpdatesPayload>, BankError> {
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..5 {
        match update_payload(app, p, side, event).await {
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
    update_payload(app, p, side, event).await
}

async fn update_payload(
    app: &AppState,
    p: &Principal,
    side: Side,
    event: &PaymentEvent,
) -> Result<Option<MyUpdatesPayload>, BankError> {
    let (wallet, kind) = match side {
        Side::Paid(w) => (w, TxNotificationType::IntraLedgerPayment),
        Side::Received(w) => (w, TxNotificationType::IntraLedgerReceipt),
    };
    let Some(line) = find_line(app, p, wallet, event.transaction_id).await? else {
        return Ok(None);
    };
    // A receipt initiated by a Lightning invoice (paid over Lightning or, from another
    // wallet here, through the ledger) is that invoice's LnUpdate, as in Blink.
    let invoice = match (side, &line.lightning) {
        (Side::Received(_), Some(ln)) => Some(PaymentHashScalar(ln.payment_hash.to_string())),
        _ => None,
    };
    let transaction = Transaction::new(line);
    let update = match invoice {
        Some(payment_hash) => UserUpdate::LnUpdate(LnUpdate {
            payment_hash,
            status: InvoicePaymentStatus::Paid,
            transaction,
            wallet_id: WalletIdScalar(wallet.to_string()),
        }),
        // A Lightning posting that is not an invoice's receipt has no update here.
        None if event.rail != Rail::IntraLedger => return Ok(None),
        None => UserUpdate::IntraLedgerUpdate(IntraLedgerUpdate {
            amount: SatAmount(event.amount.to_sat()),
            transaction,
            tx_notification_type: kind,
            wallet_id: WalletIdScalar(wallet.to_string()),
        }),
    };
    let account = app.bank.me(p).await?;
    Ok(Some(MyUpdatesPayload {
        errors: Vec::new(),
        me: Some(User {
            account,
            principal: p.clone(),
        }),
        update: Some(update),
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

#[cfg(test)]
mod tests {
    use super::{PaymentEvent, Rail, Side, side};
    use crate::amount::Sats;
    use crate::ids::{TransactionId, WalletId};

    fn event(rail: Rail, from: WalletId, to: WalletId) -> PaymentEvent {
        PaymentEvent {
            rail,
            sender_wallet: from,
            recipient_wallet: to,
            transaction_id: TransactionId::from_uuid(uuid::Uuid::now_v7()),
            amount: Sats::new(1_000).unwrap(),
        }
    }

    #[test]
    fn who_hears_of_a_payment() {
        let (mine, other, bank) = (
            WalletId::from_uuid(uuid::Uuid::now_v7()),
            WalletId::from_uuid(uuid::Uuid::now_v7()),
            WalletId::from_uuid(uuid::Uuid::now_v7()),
        );
        let wallets = [mine];
        // Internal transfers and invoices paid through the ledger: both sides.
        assert_eq!(
            side(&event(Rail::IntraLedger, mine, other), &wallets),
            Some(Side::Paid(mine))
        );
        assert_eq!(
            side(&event(Rail::IntraLedger, other, mine), &wallets),
            Some(Side::Received(mine))
        );
        // An invoice paid over Lightning: the receiver.
        assert_eq!(
            side(&event(Rail::Lightning, bank, mine), &wallets),
            Some(Side::Received(mine))
        );
        // A payment out over Lightning: nobody (Blink sends nothing).
        assert_eq!(side(&event(Rail::Lightning, mine, bank), &wallets), None);
        // Someone else's payments.
        assert_eq!(side(&event(Rail::IntraLedger, other, bank), &wallets), None);
        assert_eq!(side(&event(Rail::Lightning, bank, other), &wallets), None);
    }
}
