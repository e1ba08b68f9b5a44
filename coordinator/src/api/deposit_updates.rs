//! The on-chain source of `myUpdates`: deposit events (pending, settled, removed) read from
//! `deposit_events` (migration 0013), so a subscriber on any instance sees deposits the
//! driver of any instance recorded.
//!
//! A [`super::seq_feed`] source. Reading "after the last `seq`" is complete because only
//! the deposit driver holding the lease writes events, one transaction after another under
//! the lease row's lock.

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::seq_feed::{Decoded, Feed, Source};
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
    high_water: "SELECT coalesce(max(seq), 0) FROM deposit_events",
    read_batch: "SELECT seq, deposit_id, wallet_id, kind FROM deposit_events \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
    decode,
};

fn decode(r: &PgRow) -> Decoded<DepositEvent> {
    let seq: i64 = r.try_get(0)?;
    let kind: String = r.try_get(3)?;
    let kind = match kind.as_str() {
        "PENDING" => DepositEventKind::Pending,
        "SETTLED" => DepositEventKind::Settled,
        "REMOVED" => DepositEventKind::Removed,
        _ => return Ok((seq, None)),
    };
    let event = DepositEvent {
        deposit_id: r.try_get(1)?,
        wallet_id: WalletId::from_uuid(r.try_get(2)?),
        kind,
    };
    Ok((seq, Some(event)))
}
