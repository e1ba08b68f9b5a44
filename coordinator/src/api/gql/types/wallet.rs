//! Wallets (`BTCWallet` behind the `Wallet` interface, `UsdWallet` declared) and an
//! account's limits.

use async_graphql::{Context, Enum, ID, Interface, Object, Result, SimpleObject};

use super::super::scalars::{
    LnPaymentRequestScalar, OnChainAddressScalar, PaymentHashScalar, SatAmount, Seconds,
    SignedAmount,
};
use super::transaction::*;
use super::{Viewer, app, gql, page_size};
use crate::api::AppState;
use crate::api::errors::ApiError;
use crate::bank::{BankError, LimitView, Limits, StaffAction, TransactionPage, WalletView};
use crate::ids::{TransactionId, WalletId};

/// Currency of a wallet.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "WalletCurrency")]
pub enum WalletCurrency {
    /// Bitcoin, in satoshis: the only currency of this bank.
    Btc,
    /// Present for compatibility with Blink clients; this bank has no USD wallets.
    Usd,
}

/// KYC level of an account.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "AccountLevel")]
pub enum AccountLevel {
    /// Level 0: no identity checked.
    Zero,
    /// Level 1.
    One,
    /// Level 2.
    Two,
    /// Level 3.
    Three,
}

impl AccountLevel {
    /// From the domain level.
    pub fn from_level(level: crate::bank::Level) -> AccountLevel {
        match level.get() {
            0 => AccountLevel::Zero,
            1 => AccountLevel::One,
            2 => AccountLevel::Two,
            _ => AccountLevel::Three,
        }
    }

    /// To the domain level.
    pub fn to_level(self) -> crate::bank::Level {
        let n = match self {
            AccountLevel::Zero => 0,
            AccountLevel::One => 1,
            AccountLevel::Two => 2,
            AccountLevel::Three => 3,
        };
        crate::bank::Level::new(n).expect("levels 0 to 3 are valid")
    }
}

/// A page of a wallet's history as the viewer may see it.
pub(crate) async fn wallet_page(
    app: &AppState,
    viewer: &Viewer,
    wallet: WalletId,
    first: u32,
    after: Option<&str>,
) -> Result<TransactionPage, BankError> {
    match viewer {
        Viewer::User(p) => app.bank.transactions(p, wallet, first, after).await,
        Viewer::Staff(s) => {
            s.require(StaffAction::ViewTransactions)?;
            app.bank.wallet_transactions(wallet, first, after).await
        }
    }
}

/// A wallet holding a BTC balance and a list of transactions.
#[derive(Clone, Debug)]
pub struct BtcWallet {
    view: WalletView,
    viewer: Viewer,
}

impl BtcWallet {
    /// A wallet as `viewer` sees it.
    pub(crate) fn new(view: WalletView, viewer: Viewer) -> BtcWallet {
        BtcWallet { view, viewer }
    }
}

/// A wallet belonging to an account which contains a BTC balance and a list of
/// transactions. Amounts are integer satoshis.
#[Object(name = "BTCWallet")]
impl BtcWallet {
    async fn id(&self) -> Result<ID> {
        self.viewer.may_read()?;
        Ok(ID(self.view.id.to_string()))
    }

    async fn account_id(&self) -> Result<ID> {
        self.viewer.may_read()?;
        Ok(ID(self.view.account_id.to_string()))
    }

    /// Settled balance in satoshis.
    async fn balance(&self) -> Result<SignedAmount> {
        self.viewer.may_read()?;
        Ok(SignedAmount(
            i64::try_from(self.view.balance.to_sat()).unwrap_or(i64::MAX),
        ))
    }

    /// Incoming funds not yet settled, in satoshis.
    async fn pending_incoming_balance(&self) -> Result<SignedAmount> {
        self.viewer.may_read()?;
        Ok(SignedAmount(
            i64::try_from(self.view.pending_incoming.to_sat()).unwrap_or(i64::MAX),
        ))
    }

    async fn wallet_currency(&self) -> Result<WalletCurrency> {
        self.viewer.may_read()?;
        Ok(WalletCurrency::Btc)
    }

    /// Transactions, newest first (forward pagination: `first`, `after`).
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Option<TransactionConnection>> {
        self.viewer.may_read()?;
        let n = page_size(first, last, before.as_ref()).map_err(|e| e.to_graphql())?;
        let page = wallet_page(app(ctx), &self.viewer, self.view.id, n, after.as_deref())
            .await
            .map_err(gql)?;
        Ok(Some(TransactionConnection::from_page(
            page,
            after.is_some(),
        )))
    }

    /// Pending incoming on-chain transactions, newest first. When one settles it gets a
    /// new id and is found in `transactions`.
    async fn pending_incoming_transactions(&self, ctx: &Context<'_>) -> Result<Vec<Transaction>> {
        self.viewer.may_read()?;
        super::super::public::wallet_pending(app(ctx), &self.viewer, self.view.id, None).await
    }

    /// Pending incoming on-chain transactions to one address, newest first.
    async fn pending_incoming_transactions_by_address(
        &self,
        ctx: &Context<'_>,
        address: OnChainAddressScalar,
    ) -> Result<Vec<Transaction>> {
        self.viewer.may_read()?;
        super::super::public::wallet_pending(app(ctx), &self.viewer, self.view.id, Some(&address.0))
            .await
    }

    /// On-chain transactions to one address (pending and settled), newest first.
    async fn transactions_by_address(
        &self,
        ctx: &Context<'_>,
        address: OnChainAddressScalar,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Option<TransactionConnection>> {
        self.viewer.may_read()?;
        let n = page_size(first, last, before.as_ref()).map_err(|e| e.to_graphql())?;
        super::super::public::wallet_by_address(
            app(ctx),
            &self.viewer,
            self.view.id,
            &address.0,
            n,
            after.as_deref(),
        )
        .await
        .map(Some)
    }

    /// An invoice of this wallet by payment hash.
    async fn invoice_by_payment_hash(
        &self,
        ctx: &Context<'_>,
        payment_hash: PaymentHashScalar,
    ) -> Result<super::Invoice> {
        self.viewer.may_read()?;
        let hash = parse_payment_hash(&payment_hash)?;
        let v = app(ctx).bank.ln_invoice_by_hash(&hash).await.map_err(gql)?;
        if v.wallet_id != self.view.id {
            return Err(gql(BankError::NotFound { what: "invoice" }));
        }
        Ok(super::Invoice::from(&v))
    }

    /// This wallet's invoices, newest first (forward pagination: `first`, `after`).
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Option<super::InvoiceConnection>> {
        self.viewer.may_read()?;
        let n = page_size(first, last, before.as_ref()).map_err(|e| e.to_graphql())?;
        let mut list = app(ctx)
            .bank
            .ln_wallet_invoices(self.view.id, n + 1, after.as_deref())
            .await
            .map_err(gql)?;
        let has_next_page = list.len() > n as usize;
        list.truncate(n as usize);
        let edges: Vec<super::InvoiceEdge> = list
            .iter()
            .map(|v| super::InvoiceEdge {
                cursor: v.payment_hash.to_string(),
                node: super::Invoice::from(v),
            })
            .collect();
        Ok(Some(super::InvoiceConnection {
            page_info: PageInfo {
                has_next_page,
                has_previous_page: after.is_some(),
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges: Some(edges),
        }))
    }

    /// This wallet's transactions of the Lightning payment or invoice with this hash.
    async fn transactions_by_payment_hash(
        &self,
        ctx: &Context<'_>,
        payment_hash: PaymentHashScalar,
    ) -> Result<Vec<Transaction>> {
        self.viewer.may_read()?;
        let hash = parse_payment_hash(&payment_hash)?;
        ln_transactions(ctx, &self.viewer, self.view.id, &hash).await
    }

    /// This wallet's transactions of the Lightning payment or invoice with this request.
    async fn transactions_by_payment_request(
        &self,
        ctx: &Context<'_>,
        payment_request: LnPaymentRequestScalar,
    ) -> Result<Vec<Transaction>> {
        self.viewer.may_read()?;
        let network = app(ctx)
            .bank
            .lightning()
            .map(|r| r.config().network)
            .ok_or_else(|| gql(BankError::LightningUnavailable))?;
        let decoded = crate::lightning::decode_invoice(&payment_request.0, network)
            .map_err(|e| ApiError::invalid(format!("invalid paymentRequest: {e}")).to_graphql())?;
        ln_transactions(ctx, &self.viewer, self.view.id, &decoded.payment_hash).await
    }

    /// One transaction of this wallet.
    async fn transaction_by_id(
        &self,
        ctx: &Context<'_>,
        transaction_id: ID,
    ) -> Result<Transaction> {
        self.viewer.may_read()?;
        if let Viewer::Staff(s) = &self.viewer {
            s.require(StaffAction::ViewTransactions).map_err(gql)?;
        }
        let id: TransactionId = transaction_id.parse().map_err(|_| {
            ApiError::invalid("invalid transactionId: not a transaction id").to_graphql()
        })?;
        // The wallet itself was checked when this object was made (its owner or staff).
        app(ctx)
            .bank
            .sender_transaction(self.view.id, id)
            .await
            .map_err(gql)?
            .map(Transaction::new)
            .ok_or_else(|| {
                gql(BankError::NotFound {
                    what: "transaction",
                })
            })
    }
}

/// A generic wallet which stores value in one of our supported currencies.
#[allow(
    clippy::duplicated_attributes,
    reason = "each `field`/`arg` of the interface derive is a distinct item, not a duplicate"
)]
#[derive(Interface, Clone, Debug)]
#[graphql(
    field(name = "id", ty = "ID"),
    field(name = "account_id", ty = "ID"),
    field(name = "balance", ty = "SignedAmount"),
    field(name = "pending_incoming_balance", ty = "SignedAmount"),
    field(name = "wallet_currency", ty = "WalletCurrency"),
    field(
        name = "transactions",
        ty = "Option<TransactionConnection>",
        arg(name = "after", ty = "Option<String>"),
        arg(name = "before", ty = "Option<String>"),
        arg(name = "first", ty = "Option<i32>"),
        arg(name = "last", ty = "Option<i32>")
    ),
    field(
        name = "transaction_by_id",
        ty = "Transaction",
        arg(name = "transaction_id", ty = "ID")
    ),
    field(name = "pending_incoming_transactions", ty = "Vec<Transaction>"),
    field(
        name = "pending_incoming_transactions_by_address",
        ty = "Vec<Transaction>",
        arg(name = "address", ty = "OnChainAddressScalar")
    ),
    field(
        name = "transactions_by_address",
        ty = "Option<TransactionConnection>",
        arg(name = "address", ty = "OnChainAddressScalar"),
        arg(name = "after", ty = "Option<String>"),
        arg(name = "before", ty = "Option<String>"),
        arg(name = "first", ty = "Option<i32>"),
        arg(name = "last", ty = "Option<i32>")
    )
)]
#[allow(dead_code, reason = "UsdWallet exists for schema compatibility only")]
pub enum Wallet {
    /// A BTC wallet.
    #[graphql(name = "BTCWallet")]
    BtcWallet(BtcWallet),
    /// A USD wallet: the type exists as in Blink's schema; this bank has none.
    UsdWallet(super::super::usd_wallet::UsdWallet),
}

/// A limit over a rolling 24 hours, in satoshis (Blink states these in US cents; this
/// bank is BTC-only and has no price feed, so the amounts are satoshis).
#[derive(Clone, Copy, Debug)]
pub struct OneDayAccountLimit {
    view: LimitView,
}

#[Object]
impl OneDayAccountLimit {
    /// The rolling time interval in seconds that the limit applies for.
    async fn interval(&self) -> Option<Seconds> {
        Some(Seconds(86_400))
    }

    /// The satoshis left below the limit for the current 24 hour period.
    async fn remaining_limit(&self) -> Option<SatAmount> {
        Some(SatAmount(self.view.remaining.to_sat()))
    }

    /// The maximum for a 24 hour period, in satoshis.
    async fn total_limit(&self) -> SatAmount {
        SatAmount(self.view.total.to_sat())
    }
}

/// A limit of an account.
#[derive(Interface, Clone, Debug)]
#[graphql(
    field(name = "interval", ty = "Option<Seconds>"),
    field(name = "remaining_limit", ty = "Option<SatAmount>"),
    field(name = "total_limit", ty = "SatAmount")
)]
pub enum AccountLimit {
    /// A rolling 24-hour limit.
    OneDayAccountLimit(OneDayAccountLimit),
}

/// An account's limits.
#[derive(SimpleObject, Clone, Debug)]
pub struct AccountLimits {
    /// Limits for converting between currencies among an account's own wallets: none in a
    /// BTC-only bank.
    pub convert: Vec<AccountLimit>,
    /// Limits for sending to other internal accounts.
    pub internal_send: Vec<AccountLimit>,
    /// Limits for withdrawing to external on-chain or Lightning destinations.
    pub withdrawal: Vec<AccountLimit>,
}

impl From<Limits> for AccountLimits {
    fn from(l: Limits) -> AccountLimits {
        AccountLimits {
            convert: Vec::new(),
            internal_send: vec![AccountLimit::OneDayAccountLimit(OneDayAccountLimit {
                view: l.internal_send,
            })],
            withdrawal: vec![AccountLimit::OneDayAccountLimit(OneDayAccountLimit {
                view: l.withdrawal,
            })],
        }
    }
}

fn parse_payment_hash(h: &PaymentHashScalar) -> Result<crate::lightning::PaymentHash> {
    h.0.parse()
        .map_err(|_| ApiError::invalid("invalid paymentHash: expected 64 hex digits").to_graphql())
}

async fn ln_transactions(
    ctx: &Context<'_>,
    viewer: &Viewer,
    wallet: WalletId,
    hash: &crate::lightning::PaymentHash,
) -> Result<Vec<Transaction>> {
    if let Viewer::Staff(s) = viewer {
        s.require(StaffAction::ViewTransactions).map_err(gql)?;
    }
    Ok(app(ctx)
        .bank
        .ln_wallet_transactions(wallet, hash)
        .await
        .map_err(gql)?
        .into_iter()
        .map(Transaction::new)
        .collect())
}
