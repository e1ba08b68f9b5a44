//! Blink's `UsdWallet`, declared so that Blink clients' documents with `... on UsdWallet`
//! fragments validate. This bank holds bitcoin only: no such wallet is ever returned, and
//! every field answers `USD_UNSUPPORTED` should one be reached.

use async_graphql::{ErrorExtensions, ID, Object, Result};

use super::scalars::{OnChainAddressScalar, SignedAmount};
use super::types::{Transaction, TransactionConnection, WalletCurrency};

/// A wallet belonging to an account which contains a USD balance and a list of
/// transactions. Not supported by this bank (BTC only).
#[derive(Clone, Debug)]
pub struct UsdWallet;

fn unsupported() -> async_graphql::Error {
    async_graphql::Error::new("USD wallets are not supported: this bank holds bitcoin only")
        .extend_with(|_, ext| ext.set("code", "USD_UNSUPPORTED"))
}

#[Object]
impl UsdWallet {
    pub(crate) async fn id(&self) -> Result<ID> {
        Err(unsupported())
    }

    pub(crate) async fn account_id(&self) -> Result<ID> {
        Err(unsupported())
    }

    pub(crate) async fn balance(&self) -> Result<SignedAmount> {
        Err(unsupported())
    }

    /// An unconfirmed incoming onchain balance.
    pub(crate) async fn pending_incoming_balance(&self) -> Result<SignedAmount> {
        Err(unsupported())
    }

    pub(crate) async fn wallet_currency(&self) -> Result<WalletCurrency> {
        Ok(WalletCurrency::Usd)
    }

    pub(crate) async fn transactions(
        &self,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Option<TransactionConnection>> {
        let _ = (after, before, first, last);
        Err(unsupported())
    }

    pub(crate) async fn transaction_by_id(&self, transaction_id: ID) -> Result<Transaction> {
        let _ = transaction_id;
        Err(unsupported())
    }

    pub(crate) async fn pending_incoming_transactions(&self) -> Result<Vec<Transaction>> {
        Err(unsupported())
    }

    pub(crate) async fn pending_incoming_transactions_by_address(
        &self,
        address: OnChainAddressScalar,
    ) -> Result<Vec<Transaction>> {
        let _ = address;
        Err(unsupported())
    }

    pub(crate) async fn transactions_by_address(
        &self,
        address: OnChainAddressScalar,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Option<TransactionConnection>> {
        let _ = (address, after, before, first, last);
        Err(unsupported())
    }
}
