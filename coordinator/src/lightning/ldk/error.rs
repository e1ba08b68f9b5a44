//! LDK Node's errors as [`LightningError`], and the one way its blocking calls are made.

use ldk_node::NodeError as E;

use crate::lightning::LightningError;

/// What the bank can do about an LDK Node error.
pub(super) fn from_node(e: E) -> LightningError {
    match e {
        E::NotRunning | E::ConnectionFailed | E::TxSyncFailed | E::TxSyncTimeout => {
            LightningError::Unavailable(e.to_string())
        }
        E::PaymentSendingFailed | E::ProbeSendingFailed | E::InsufficientFunds => {
            LightningError::NoRoute(e.to_string())
        }
        E::InvalidAddress
        | E::InvalidSocketAddress
        | E::InvalidPublicKey
        | E::InvalidNodeId
        | E::InvalidPaymentHash
        | E::InvalidPaymentPreimage
        | E::InvalidPaymentSecret
        | E::InvalidAmount
        | E::InvalidInvoice
        | E::InvalidNetwork
        | E::InvalidCustomTlvs
        | E::UnsupportedCurrency => LightningError::Invalid(e.to_string()),
        _ => LightningError::Protocol(e.to_string()),
    }
}

/// Runs a call of LDK Node that may block (it waits on its own tasks inside): never on an
/// async worker thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, LightningError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LightningError::Unavailable(format!("node call: {e}")))?
        .map_err(from_node)
}
