//! What a posted ledger transaction means for customers' wallets: the one mapping from an
//! outbox event to a payment event, shared by `myUpdates` and the webhooks. A new rail
//! adds its external-id prefix to [`Rail::of`].

use crate::amount::Sats;
use crate::ids::{TransactionId, WalletId};
use crate::ledger::{Direction, Layer, OutboxEvent, TRANSACTION_POSTED};

/// The rail a payment went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rail {
    /// Between two wallets of this bank.
    IntraLedger,
    /// An on-chain deposit credited to a wallet.
    OnChain,
    /// A Lightning payment: an invoice of a wallet settled, or a payment out settled.
    Lightning,
}

impl Rail {
    /// The rail of a ledger external id; `None` for postings that are not payments
    /// (reversals, fees, test fixtures).
    fn of(external_id: &str) -> Option<Rail> {
        if let Some(id) = external_id.strip_prefix("intraledger:") {
            return uuid::Uuid::parse_str(id)
                .is_ok()
                .then_some(Rail::IntraLedger);
        }
        if external_id.starts_with("lnrecv:") {
            return Some(Rail::Lightning);
        }
        // A payment out: its final posting (the hold is not a payment yet); an invoice of
        // the bank's own node paid inside the ledger is an internal transfer, as in Blink.
        if let Some(rest) = external_id.strip_prefix("lnsend:") {
            return match rest.rsplit_once(':') {
                Some((_, "final")) => Some(Rail::Lightning),
                Some((_, "internal")) => Some(Rail::IntraLedger),
                _ => None,
            };
        }
        crate::deposits::parse_credit_external_id(external_id).map(|_| Rail::OnChain)
    }

    /// Blink's name of the rail in event types (`send.intraledger`, `receive.onchain`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rail::IntraLedger => "intraledger",
            Rail::OnChain => "onchain",
            Rail::Lightning => "lightning",
        }
    }
}

/// A payment a posted transaction made: the wallets it debited and credited. For an
/// on-chain deposit the debited account is the bank's, not a customer wallet; a reader
/// keeps the sides that are its customers' wallets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostedPayment {
    /// The rail.
    pub rail: Rail,
    /// The ledger transaction.
    pub transaction_id: TransactionId,
    /// The debited ledger account as a wallet id (the payer, for internal transfers).
    pub sender_wallet: WalletId,
    /// The credited ledger account as a wallet id (the payee).
    pub recipient_wallet: WalletId,
    /// The amount, whole satoshis (rounded down).
    pub amount: Sats,
}

/// The payment an outbox event announces, if it is one. The sides and the amount come
/// from the ledger entries, not from the payment row, whose SUCCESS is recorded after the
/// posting (docs/adr/0003-payment-reserve-commit.md).
pub fn posted_payment(e: &OutboxEvent) -> Option<PostedPayment> {
    if e.event_type != TRANSACTION_POSTED {
        return None;
    }
    let rail = Rail::of(&e.external_id)?;
    // Settled entries only: a Lightning payment's final posting also releases its pending
    // hold, which moves no money; a failed one has nothing settled and is no payment.
    let settled = || e.entries.iter().filter(|x| x.layer == Layer::Settled);
    let debit = settled().find(|x| x.direction == Direction::Debit)?;
    let credit = settled().find(|x| x.direction == Direction::Credit)?;
    Some(PostedPayment {
        rail,
        transaction_id: e.transaction_id,
        sender_wallet: WalletId::from_uuid(debit.account_id.as_uuid()),
        recipient_wallet: WalletId::from_uuid(credit.account_id.as_uuid()),
        amount: debit.amount.to_sats_floor(),
    })
}

#[cfg(test)]
mod tests {
    use super::Rail;

    #[test]
    fn rails_by_external_id() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            Rail::of(&format!("intraledger:{id}")),
            Some(Rail::IntraLedger)
        );
        assert_eq!(Rail::of("intraledger:nope"), None);
        let txid = "ab".repeat(32);
        assert_eq!(Rail::of(&format!("deposit:{txid}:1")), Some(Rail::OnChain));
        assert_eq!(Rail::of(&format!("deposit-reversal:{txid}:1")), None);
        assert_eq!(Rail::of("fund-1"), None);
        assert_eq!(
            Rail::of(&format!("lnrecv:{}", "ab".repeat(32))),
            Some(Rail::Lightning)
        );
        assert_eq!(
            Rail::of(&format!("lnsend:{id}:final")),
            Some(Rail::Lightning)
        );
        assert_eq!(
            Rail::of(&format!("lnsend:{id}:internal")),
            Some(Rail::IntraLedger)
        );
        assert_eq!(Rail::of(&format!("lnsend:{id}:hold")), None);
    }
}
