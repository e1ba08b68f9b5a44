//! A wallet transaction as Blink shows it: its initiation and settlement unions, and
//! relay connections of them.

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject, Union};

use super::super::scalars::{
    DisplayCurrencyScalar, LnPaymentPreImageScalar, LnPaymentRequestScalar, LnPaymentSecretScalar,
    MemoScalar, OnChainAddressScalar, OnChainTxHashScalar, PaymentHashScalar, SafeInt,
    SignedAmount, SignedDisplayMajorAmountScalar, Timestamp, TxExternalIdScalar, UsernameScalar,
    WalletIdScalar, sats_as_btc_string,
};
use super::wallet::WalletCurrency;
use super::{app, gql};
use crate::bank::{TransactionPage, TxDirection as DomainDirection, WalletTransaction};
use crate::deposits::Deposit;
use crate::ids::TransactionId;

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

/// A Lightning payment's initiation: the invoice.
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

/// How a payment was initiated: internally, over Lightning or on chain (deposits).
#[derive(Union, Clone, Debug)]
pub enum InitiationVia {
    /// An internal transfer.
    IntraLedger(InitiationViaIntraLedger),
    /// A Lightning invoice (paid over Lightning, or inside the bank).
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

/// A Lightning settlement: the proof of payment.
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

/// How a payment settled: inside the ledger, over Lightning or on chain (deposits).
#[derive(Union, Clone, Debug)]
pub enum SettlementVia {
    /// Settled inside the ledger.
    IntraLedger(SettlementViaIntraLedger),
    /// Settled over Lightning.
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
            lightning: None,
        });
        Transaction {
            line,
            onchain: Some(OnChainRef::of(d)),
        }
    }

    /// The on-chain side, if this is a deposit.
    async fn onchain_ref(&self, ctx: &Context<'_>) -> Result<Option<OnChainRef>> {
        if self.onchain.is_some()
            || self.line.counterparty_wallet_id.is_some()
            || self.line.lightning.is_some()
        {
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
        if let Some(ln) = &self.line.lightning {
            return Ok(InitiationVia::Ln(InitiationViaLn {
                payment_hash: PaymentHashScalar(ln.payment_hash.to_string()),
                payment_request: LnPaymentRequestScalar(ln.payment_request.clone()),
            }));
        }
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
        match &self.line.lightning {
            // An invoice of the bank's own node paid inside the ledger.
            Some(ln) if self.line.counterparty_wallet_id.is_some() => {
                return Ok(SettlementVia::IntraLedger(SettlementViaIntraLedger {
                    counter_party_username: None,
                    counter_party_wallet_id: self
                        .line
                        .counterparty_wallet_id
                        .map(|w| WalletIdScalar(w.to_string())),
                    pre_image: ln
                        .preimage
                        .as_ref()
                        .map(|p| LnPaymentPreImageScalar(p.to_hex())),
                }));
            }
            Some(ln) => {
                return Ok(SettlementVia::Ln(SettlementViaLn {
                    payment_secret: None,
                    pre_image: ln
                        .preimage
                        .as_ref()
                        .map(|p| LnPaymentPreImageScalar(p.to_hex())),
                }));
            }
            None => {}
        }
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
