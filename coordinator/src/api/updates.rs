//! The source of `myUpdates` and of the Lightning invoice status subscriptions: internal
//! transfers and Lightning postings read from the ledger outbox (through the ledger's own
//! [`read_outbox`]), so a subscriber on any coordinator instance sees payments made, and
//! invoices settled, through every instance.
//!
//! A [`super::seq_feed`] source: each [`AppState`](super::AppState) starts one feed on
//! its first subscription; a statement-level trigger on `ledger_outbox` (migration 0005)
//! NOTIFYs once per ledger batch at commit.

use super::PaymentEvent;
use super::seq_feed::{Feed, ReadError, Source};
use crate::bank::events::{Rail, posted_payment};
use crate::commit_order::CommitCursor;
use crate::ledger::{OutboxEvent, outbox_held_back, read_outbox};

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

/// The internal transfer or Lightning payment an outbox event announces, if it is one
/// (the bank's one mapping of posted transactions, [`posted_payment`]). On-chain
/// deposits have their own feed (`deposit_events`).
fn payment(e: &OutboxEvent) -> Option<PaymentEvent> {
    let p = posted_payment(e).filter(|p| p.rail != Rail::OnChain)?;
    Some(PaymentEvent {
        rail: p.rail,
        sender_wallet: p.sender_wallet,
        recipient_wallet: p.recipient_wallet,
        transaction_id: p.transaction_id,
        amount: p.amount,
    })
}
