//! The source of `myUpdates`: internal transfers read from the ledger outbox (through
//! the ledger's own [`read_outbox`]), so a subscriber on any coordinator instance sees
//! payments made through every instance.
//!
//! A [`super::seq_feed`] source: each [`AppState`](super::AppState) starts one feed on
//! its first subscription; a statement-level trigger on `ledger_outbox` (migration 0005)
//! NOTIFYs once per ledger batch at commit.

use super::PaymentEvent;
use super::seq_feed::{Feed, ReadError, Source};
use crate::commit_order::CommitCursor;
use crate::ids::WalletId;
use crate::ledger::{Direction, OutboxEvent, TRANSACTION_POSTED, outbox_held_back, read_outbox};

/// The NOTIFY channel of the outbox trigger (migration 0005).
pub const CHANNEL: &str = "ledger_outbox";

/// The `application_name` of the listener's connection, for operators (and tests).
pub const LISTENER_APPLICATION_NAME: &str = "bastion-outbox-listener";

/// The outbox feed of one API instance.
pub(crate) type OutboxFeed = Feed<PaymentEvent>;

/// The ledger outbox.
pub(crate) static SOURCE: Source<PaymentEvent> = Source {
    what: "ledger outbox",
    channel: CHANNEL,
    application_name: LISTENER_APPLICATION_NAME,
    read: |pool, cursor: &CommitCursor, limit| {
        Box::pin(async move {
            let events = read_outbox(pool, cursor, limit).await?;
            Ok::<_, ReadError>(events.iter().map(|e| (e.position, payment(e))).collect())
        })
    },
    held_back: |pool, cursor: &CommitCursor| {
        Box::pin(async move { Ok::<_, ReadError>(outbox_held_back(pool, cursor).await?) })
    },
};

/// The internal transfer an outbox event announces, if it is one. The two sides and the
/// amount come from the ledger entries, not from the payment row, whose SUCCESS is
/// recorded after the posting (docs/adr/0003-payment-reserve-commit.md).
fn payment(e: &OutboxEvent) -> Option<PaymentEvent> {
    let intraledger = e.event_type == TRANSACTION_POSTED
        && e.external_id
            .strip_prefix("intraledger:")
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
    if !intraledger {
        return None;
    }
    let debit = e.entries.iter().find(|x| x.direction == Direction::Debit)?;
    let credit = e
        .entries
        .iter()
        .find(|x| x.direction == Direction::Credit)?;
    Some(PaymentEvent {
        sender_wallet: WalletId::from_uuid(debit.account_id.as_uuid()),
        recipient_wallet: WalletId::from_uuid(credit.account_id.as_uuid()),
        transaction_id: e.transaction_id,
        amount: debit.amount.to_sats_floor(),
    })
}
