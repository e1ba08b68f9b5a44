//! The source of `myUpdates`: internal transfers read from the ledger outbox, so a
//! subscriber on any coordinator instance sees payments made through every instance.
//!
//! A [`super::seq_feed`] source: each [`AppState`](super::AppState) starts one feed on
//! its first subscription; a statement-level trigger on `ledger_outbox` (migration 0005)
//! NOTIFYs once per ledger batch at commit.
//!
//! Reading "after the last `seq`" is complete because only the ledger's single writer
//! inserts outbox rows, one batch statement after another, so rows become visible in
//! `seq` order (a second concurrent writer would break this and need gap tracking).

use sqlx::{Row, postgres::PgRow};
use uuid::Uuid;

use super::PaymentEvent;
use super::seq_feed::{Decoded, Feed, Source};
use crate::amount::Msats;
use crate::ids::{TransactionId, WalletId};

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
    high_water: "SELECT coalesce(max(seq), 0) FROM ledger_outbox",
    read_batch: READ_BATCH,
    decode,
};

/// One outbox row, with the two sides of an internal transfer.
struct OutboxRow {
    seq: i64,
    transaction_id: Uuid,
    intraledger: bool,
    sender: Option<Uuid>,
    recipient: Option<Uuid>,
    amount_msat: Option<i64>,
}

// The two sides and the amount come from the ledger entries, not from the payment row,
// whose SUCCESS is recorded after the posting (docs/adr/0003-payment-reserve-commit.md).
const READ_BATCH: &str = "
SELECT o.seq, o.transaction_id, x.intraledger, d.account_id, c.account_id, d.amount
FROM ledger_outbox o
CROSS JOIN LATERAL (
    SELECT o.event_type = 'ledger.transaction_posted'
           AND coalesce(o.payload->>'external_id', '') ~ '^intraledger:[0-9a-f-]{36}$'
           AS intraledger
) x
LEFT JOIN LATERAL (
    SELECT e.account_id, e.amount FROM ledger_entries e
    WHERE x.intraledger AND e.transaction_id = o.transaction_id AND e.direction = 'debit'
    ORDER BY e.seq LIMIT 1
) d ON true
LEFT JOIN LATERAL (
    SELECT e.account_id FROM ledger_entries e
    WHERE x.intraledger AND e.transaction_id = o.transaction_id AND e.direction = 'credit'
    ORDER BY e.seq LIMIT 1
) c ON true
WHERE o.seq > $1
ORDER BY o.seq
LIMIT $2";

fn outbox_row(r: &PgRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        seq: r.try_get(0)?,
        transaction_id: r.try_get(1)?,
        intraledger: r.try_get(2)?,
        sender: r.try_get(3)?,
        recipient: r.try_get(4)?,
        amount_msat: r.try_get(5)?,
    })
}

fn decode(r: &PgRow) -> Decoded<PaymentEvent> {
    let row = outbox_row(r)?;
    Ok((row.seq, row.event()))
}

impl OutboxRow {
    fn event(&self) -> Option<PaymentEvent> {
        if !self.intraledger {
            return None;
        }
        let amount = u64::try_from(self.amount_msat?)
            .ok()
            .and_then(|m| Msats::new(m).ok())?
            .to_sats_floor();
        Some(PaymentEvent {
            sender_wallet: WalletId::from_uuid(self.sender?),
            recipient_wallet: WalletId::from_uuid(self.recipient?),
            transaction_id: TransactionId::from_uuid(self.transaction_id),
            amount,
        })
    }
}
