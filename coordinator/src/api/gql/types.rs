//! GraphQL object types shared by the public and the admin schema, named and shaped as in
//! Blink's schema (`BTCWallet` implementing `Wallet`, `Transaction` with its
//! `InitiationVia`/`SettlementVia` unions, relay connections, `AccountLimits`).
//!
//! Every field that shows a user's data checks the viewer again: a user's credential needs
//! the `read` scope, a staff member the `ViewTransactions` action. The root fields check
//! first; these checks are the second line, so a type reached by a new path stays guarded.

use async_graphql::{Context, Enum, ID, Interface, Object, Result, SimpleObject, Union};

use super::scalars::{
    DisplayCurrencyScalar, LnPaymentPreImageScalar, LnPaymentRequestScalar, LnPaymentSecretScalar,
    MemoScalar, OnChainAddressScalar, OnChainTxHashScalar, PaymentHashScalar, SafeInt, SatAmount,
    Seconds, SignedAmount, SignedDisplayMajorAmountScalar, Timestamp, TxExternalIdScalar,
    UsernameScalar, WalletIdScalar, sats_as_btc_string,
};
use crate::api::AppState;
use crate::api::errors::ApiError;
use crate::bank::{
    BankError, LimitView, Limits, Principal, Scope, StaffAction, StaffPrincipal, TransactionPage,
    TxDirection as DomainDirection, WalletTransaction, WalletView,
};
use crate::deposits::Deposit;
use crate::ids::{TransactionId, WalletId};

/// Largest page of transactions a client may ask for.
pub const MAX_PAGE: i32 = 100;
/// Page size when the client gives none.
pub const DEFAULT_PAGE: i32 = 20;

/// The application state shared by every resolver.
pub(crate) fn app<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// A domain error as a top-level GraphQL error.
pub(crate) fn gql(err: BankError) -> async_graphql::Error {
    ApiError::from(&err).to_graphql()
}

/// Who looks at a wallet: its owner (through a credential with scopes) or staff.
#[derive(Clone, Debug)]
pub(crate) enum Viewer {
    /// A customer.
    User(Principal),
    /// A staff member.
    Staff(StaffPrincipal),
}

impl Viewer {
    /// Fails unless the viewer may read account data.
    pub(crate) fn may_read(&self) -> Result<()> {
        match self {
            Viewer::User(p) => p.require(Scope::Read).map_err(gql),
            Viewer::Staff(s) => s.require(StaffAction::ViewAccounts).map_err(gql),
        }
    }
}

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

/// Direction of a transaction from the wallet's side.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "TxDirection")]
pub enum TxDirection {
    /// Money in.
    Receive,
    /// Money out.
    Send,
}

/// Status of a transaction.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "TxStatus")]
pub enum TxStatus {
    /// Failed.
    Failure,
    /// Not settled yet.
    Pending,
    /// Settled.
    Success,
}

/// Price of one settlement minor unit (a satoshi) in display minor units. The display
/// currency is BTC, so one satoshi is worth exactly one satoshi: base 1, offset 0.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "PriceOfOneSettlementMinorUnitInDisplayMinorUnit")]
pub struct SettlementPrice {
    /// Base (price = base / 10^offset).
    pub base: SafeInt,
    /// The display currency's minor unit.
    pub currency_unit: String,
    /// The price as text.
    pub formatted_amount: String,
    /// Offset.
    pub offset: i32,
}

/// How an internal transfer was initiated: the other party.
#[derive(SimpleObject, Clone, Debug)]
pub struct InitiationViaIntraLedger {
    /// The other party's username, when it has one.
    pub counter_party_username: Option<UsernameScalar>,
    /// The other party's wallet.
    pub counter_party_wallet_id: Option<WalletIdScalar>,
}

/// A Lightning payment's initiation. Declared so that Blink clients' fragments on it
/// validate; never produced until Lightning exists here.
#[derive(SimpleObject, Clone, Debug)]
pub struct InitiationViaLn {
    /// The payment hash.
    pub payment_hash: PaymentHashScalar,
    /// The BOLT 11 invoice.
    pub payment_request: LnPaymentRequestScalar,
}

/// An on-chain payment's initiation: the address a deposit paid.
#[derive(SimpleObject, Clone, Debug)]
pub struct InitiationViaOnChain {
    /// The address.
    pub address: OnChainAddressScalar,
}

/// How a payment was initiated: internally or on chain (deposits); the Lightning member
/// is declared for Blink clients' fragments.
#[derive(Union, Clone, Debug)]
#[allow(
    dead_code,
    reason = "the Lightning member exists for schema compatibility only"
)]
pub enum InitiationVia {
    /// An internal transfer.
    IntraLedger(InitiationViaIntraLedger),
    /// A Lightning payment (not yet).
    Ln(InitiationViaLn),
    /// An on-chain deposit.
    OnChain(InitiationViaOnChain),
}

/// How an internal transfer settled: the other party.
#[derive(SimpleObject, Clone, Debug)]
pub struct SettlementViaIntraLedger {
    /// The other party's username (null if it has none).
    pub counter_party_username: Option<UsernameScalar>,
    /// The other party's wallet.
    pub counter_party_wallet_id: Option<WalletIdScalar>,
    /// Always null: internal transfers have no preimage.
    pub pre_image: Option<LnPaymentPreImageScalar>,
}

/// A Lightning settlement. Declared for Blink clients' fragments; never produced yet.
#[derive(SimpleObject, Clone, Debug)]
pub struct SettlementViaLn {
    /// Deprecated in Blink in favour of `preImage`.
    pub payment_secret: Option<LnPaymentSecretScalar>,
    /// The preimage.
    pub pre_image: Option<LnPaymentPreImageScalar>,
}

/// An on-chain settlement: the transaction and output of a deposit.
#[derive(SimpleObject, Clone, Debug)]
pub struct SettlementViaOnChain {
    /// When it is expected in the mempool.
    pub arrival_in_mempool_estimated_at: Option<Timestamp>,
    /// The Bitcoin transaction.
    pub transaction_hash: Option<OnChainTxHashScalar>,
    /// The output index.
    pub vout: Option<i32>,
}

/// How a payment settled: inside the ledger or on chain (deposits); the Lightning member
/// is declared for Blink clients' fragments.
#[derive(Union, Clone, Debug)]
#[allow(
    dead_code,
    reason = "the Lightning member exists for schema compatibility only"
)]
pub enum SettlementVia {
    /// Settled inside the ledger.
    IntraLedger(SettlementViaIntraLedger),
    /// Settled over Lightning (not yet).
    Ln(SettlementViaLn),
    /// Settled on chain (a deposit).
    OnChain(SettlementViaOnChain),
}

/// The on-chain side of a deposit: the output that paid, and the address it paid.
#[derive(Clone, Debug)]
pub(crate) struct OnChainRef {
    txid: String,
    vout: u32,
    address: String,
}

impl OnChainRef {
    fn of(d: &Deposit) -> OnChainRef {
        OnChainRef {
            txid: d.outpoint.txid.to_string(),
            vout: d.outpoint.vout,
            address: d.address.clone(),
        }
    }
}

/// One transaction of a wallet, as Blink shows it.
#[derive(Clone, Debug)]
pub struct Transaction {
    line: WalletTransaction,
    /// Known when made from a deposit; otherwise looked up for lines without counterparty.
    onchain: Option<OnChainRef>,
}

impl Transaction {
    /// Wraps a history line.
    pub fn new(line: WalletTransaction) -> Transaction {
        Transaction {
            line,
            onchain: None,
        }
    }

    /// A deposit: its ledger credit's history line once settled, otherwise a pending
    /// incoming transaction whose id is the deposit's (as in Blink, a pending on-chain
    /// receipt gets a new id when it settles).
    pub(crate) fn deposit(d: &Deposit, credit: Option<WalletTransaction>) -> Transaction {
        let line = credit.unwrap_or_else(|| WalletTransaction {
            id: TransactionId::from_uuid(d.id),
            direction: DomainDirection::Receive,
            status: "PENDING",
            amount: d.amount,
            fee: crate::Sats::ZERO,
            memo: String::new(),
            counterparty_wallet_id: None,
            counterparty_username: None,
            created_at: d.seen_at,
            cursor: d.id.to_string(),
        });
        Transaction {
            line,
            onchain: Some(OnChainRef::of(d)),
        }
    }

    /// The on-chain side, if this is a deposit.
    async fn onchain_ref(&self, ctx: &Context<'_>) -> Result<Option<OnChainRef>> {
        if self.onchain.is_some() || self.line.counterparty_wallet_id.is_some() {
            return Ok(self.onchain.clone());
        }
        let found = app(ctx)
            .deposits
            .by_ledger_transaction(self.line.id)
            .await
            .map_err(|e| gql(crate::api::onchain::to_bank(e)))?;
        Ok(found.as_ref().map(OnChainRef::of))
    }

    fn signed(&self, sats: u64) -> i64 {
        // Sats are at most 21e14, far below i64::MAX.
        let v = i64::try_from(sats).unwrap_or(i64::MAX);
        match self.line.direction {
            DomainDirection::Send => -v,
            DomainDirection::Receive => v,
        }
    }
}

/// Give details about an individual transaction.
#[Object]
impl Transaction {
    async fn id(&self) -> ID {
        ID(self.line.id.to_string())
    }

    async fn created_at(&self) -> Timestamp {
        self.line.created_at.into()
    }

    async fn direction(&self) -> TxDirection {
        match self.line.direction {
            DomainDirection::Send => TxDirection::Send,
            DomainDirection::Receive => TxDirection::Receive,
        }
    }

    async fn status(&self) -> TxStatus {
        match self.line.status {
            "PENDING" => TxStatus::Pending,
            "FAILURE" => TxStatus::Failure,
            _ => TxStatus::Success,
        }
    }

    async fn memo(&self) -> Option<MemoScalar> {
        (!self.line.memo.is_empty()).then(|| MemoScalar(self.line.memo.clone()))
    }

    /// The client's external reference: no operation of this bank takes one yet, so it is
    /// always null.
    async fn external_id(&self) -> Option<TxExternalIdScalar> {
        None
    }

    /// Amount of the settlement currency sent (negative) or received, in satoshis.
    async fn settlement_amount(&self) -> SignedAmount {
        SignedAmount(self.signed(self.line.amount.to_sat()))
    }

    /// Fee paid by this wallet, in satoshis.
    async fn settlement_fee(&self) -> SignedAmount {
        SignedAmount(i64::try_from(self.line.fee.to_sat()).unwrap_or(i64::MAX))
    }

    async fn settlement_currency(&self) -> WalletCurrency {
        WalletCurrency::Btc
    }

    /// The amount in BTC (the display currency), as a decimal string.
    async fn settlement_display_amount(&self) -> SignedDisplayMajorAmountScalar {
        SignedDisplayMajorAmountScalar(sats_as_btc_string(self.signed(self.line.amount.to_sat())))
    }

    /// The fee in BTC, as a decimal string.
    async fn settlement_display_fee(&self) -> SignedDisplayMajorAmountScalar {
        SignedDisplayMajorAmountScalar(sats_as_btc_string(
            i64::try_from(self.line.fee.to_sat()).unwrap_or(i64::MAX),
        ))
    }

    async fn settlement_display_currency(&self) -> DisplayCurrencyScalar {
        DisplayCurrencyScalar("BTC".to_owned())
    }

    async fn settlement_price(&self) -> SettlementPrice {
        SettlementPrice {
            base: SafeInt(1),
            currency_unit: "BTCSAT".to_owned(),
            formatted_amount: "1".to_owned(),
            offset: 0,
        }
    }

    /// The other party, or the address an on-chain deposit paid. Other ledger postings
    /// that are not payments show no counterparty.
    async fn initiation_via(&self, ctx: &Context<'_>) -> Result<InitiationVia> {
        if let Some(o) = self.onchain_ref(ctx).await? {
            return Ok(InitiationVia::OnChain(InitiationViaOnChain {
                address: OnChainAddressScalar(o.address),
            }));
        }
        Ok(InitiationVia::IntraLedger(InitiationViaIntraLedger {
            counter_party_username: self.line.counterparty_username.clone().map(UsernameScalar),
            counter_party_wallet_id: self
                .line
                .counterparty_wallet_id
                .map(|w| WalletIdScalar(w.to_string())),
        }))
    }

    /// The other party, or the on-chain output of a deposit (`transactionHash`, `vout`).
    async fn settlement_via(&self, ctx: &Context<'_>) -> Result<SettlementVia> {
        if let Some(o) = self.onchain_ref(ctx).await? {
            return Ok(SettlementVia::OnChain(SettlementViaOnChain {
                arrival_in_mempool_estimated_at: None,
                transaction_hash: Some(OnChainTxHashScalar(o.txid)),
                vout: Some(i32::try_from(o.vout).unwrap_or(i32::MAX)),
            }));
        }
        Ok(SettlementVia::IntraLedger(SettlementViaIntraLedger {
            counter_party_username: self.line.counterparty_username.clone().map(UsernameScalar),
            counter_party_wallet_id: self
                .line
                .counterparty_wallet_id
                .map(|w| WalletIdScalar(w.to_string())),
            pre_image: None,
        }))
    }
}

/// Information to aid in pagination.
#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    /// Whether older items follow.
    pub has_next_page: bool,
    /// Whether newer items precede (true when paginating after a cursor).
    pub has_previous_page: bool,
    /// Cursor of the first item.
    pub start_cursor: Option<String>,
    /// Cursor of the last item.
    pub end_cursor: Option<String>,
}

/// An edge in a connection.
#[derive(SimpleObject, Clone, Debug)]
pub struct TransactionEdge {
    /// A cursor for use in pagination.
    pub cursor: String,
    /// The item at the end of the edge.
    pub node: Transaction,
}

/// A connection to a list of transactions, newest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct TransactionConnection {
    /// A list of edges.
    pub edges: Vec<TransactionEdge>,
    /// Information to aid in pagination.
    pub page_info: PageInfo,
}

impl TransactionConnection {
    /// A connection from a history page.
    pub fn from_page(page: TransactionPage, after: bool) -> TransactionConnection {
        let start_cursor = page.lines.first().map(|l| l.cursor.clone());
        let end_cursor = page.lines.last().map(|l| l.cursor.clone());
        TransactionConnection {
            edges: page
                .lines
                .into_iter()
                .map(|l| TransactionEdge {
                    cursor: l.cursor.clone(),
                    node: Transaction::new(l),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                has_previous_page: after,
                start_cursor,
                end_cursor,
            },
        }
    }
}

/// Checks relay arguments: forward pagination only, 1 to 100 items.
pub(crate) fn page_size(
    first: Option<i32>,
    last: Option<i32>,
    before: Option<&String>,
) -> Result<u32, ApiError> {
    if last.is_some() || before.is_some() {
        return Err(ApiError::invalid(
            "backward pagination (last, before) is not supported; use first and after",
        ));
    }
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(ApiError::invalid(format!("first must be 1 to {MAX_PAGE}")));
    }
    u32::try_from(first).map_err(|_| ApiError::invalid("first must be positive"))
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
        super::public::wallet_pending(app(ctx), &self.viewer, self.view.id, None).await
    }

    /// Pending incoming on-chain transactions to one address, newest first.
    async fn pending_incoming_transactions_by_address(
        &self,
        ctx: &Context<'_>,
        address: OnChainAddressScalar,
    ) -> Result<Vec<Transaction>> {
        self.viewer.may_read()?;
        super::public::wallet_pending(app(ctx), &self.viewer, self.view.id, Some(&address.0)).await
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
        super::public::wallet_by_address(
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
    UsdWallet(super::usd_wallet::UsdWallet),
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
