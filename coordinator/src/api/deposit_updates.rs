//! The on-chain source of `myUpdates`: deposit events (pending, settled, removed) read from
//! `deposit_events` (migration 0013), so a subscriber on any instance sees deposits the
//! driver of any instance recorded.
//!
//! A [`super::seq_feed`] source, read through the deposits domain's
//! [`read_deposit_events`].

use uuid::Uuid;

use super::seq_feed::{Feed, ReadError, Source};
use crate::commit_order::CommitCursor;
use crate::deposits::{DepositEventRecord, deposit_events_held_back, read_deposit_events};
use crate::ids::WalletId;

/// The NOTIFY channel of the deposit events trigger.
pub(crate) const CHANNEL: &str = "deposit_events";

/// What happened to a deposit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DepositEventKind {
    /// Seen: pending incoming.
    Pending,
    /// Credited.
    Settled,
    /// Gone before settlement.
    Removed,
}

/// One deposit event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DepositEvent {
    /// The deposit.
    pub deposit_id: Uuid,
    /// The wallet it goes to.
    pub wallet_id: WalletId,
    /// What happened.
    pub kind: DepositEventKind,
}

/// The deposit feed of one API instance.
pub(crate) type DepositFeed = Feed<DepositEvent>;

/// `deposit_events` (migration 0013).
pub(crate) static SOURCE: Source<DepositEvent> = Source {
    what: "deposit events",
    channel: CHANNEL,
    application_name: "bastion-deposit-listener",
    read: |pool, cursor: &CommitCursor, limit| {
        Box::pin(async move {
            let records = read_deposit_events(pool, cursor, limit).await?;
            Ok::<_, ReadError>(records.iter().map(|r| (r.position, event(r))).collect())
        })
    },
    held_back: |pool, cursor: &CommitCursor| {
        Box::pin(async move { Ok::<_, ReadError>(deposit_events_held_back(pool, cursor).await?) })
    },
};

fn event(r: &DepositEventRecord) -> Option<DepositEvent> {
    let kind = match r.kind.as_str() {
        "PENDING" => DepositEventKind::Pending,
        "SETTLED" => DepositEventKind::Settled,
        "REMOVED" => DepositEventKind::Removed,
        _ => return None,
    };
    Some(DepositEvent {
        deposit_id: r.deposit_id,
        wallet_id: r.wallet_id,
        kind,
    })
}
