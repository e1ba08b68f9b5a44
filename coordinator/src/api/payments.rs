//! Internal payments, shared by GraphQL and REST: send, then show the sender's line of
//! the transfer when the credential may read it.

use crate::api::AppState;
use crate::bank::{BankError, PaymentStatus, Principal, Scope, SendRequest, WalletTransaction};
use crate::ids::{TransactionId, WalletId};

/// Sends an internal transfer; with `want_line`, also the sender's line of it.
pub(crate) async fn send_payment(
    app: &AppState,
    p: &Principal,
    request: SendRequest,
    want_line: bool,
) -> Result<
    (
        PaymentStatus,
        Option<TransactionId>,
        Option<WalletTransaction>,
    ),
    BankError,
> {
    // `myUpdates` learns of the transfer from the ledger outbox, on every instance.
    let result = app.bank.send_internal(p, &request).await?;
    let line = match result.transaction_id {
        Some(tx) if want_line && p.require(Scope::Read).is_ok() => {
            find_line(app, p, request.wallet_id, tx).await?
        }
        _ => None,
    };
    Ok((result.status, result.transaction_id, line))
}

/// The line of `tx` in a recent page of `wallet`'s history.
pub(crate) async fn find_line(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
    tx: TransactionId,
) -> Result<Option<WalletTransaction>, BankError> {
    // Ownership and the read scope first; then the one line, without a page scan.
    app.bank.wallet(p, wallet).await?;
    app.bank.sender_transaction(wallet, tx).await
}
