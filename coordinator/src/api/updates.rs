//! The source of `myUpdates`: internal transfers read from the ledger outbox, so a
//! subscriber on any coordinator instance sees payments made through every instance.
//!
//! Each [`AppState`](super::AppState) starts one feed on its first subscription. The feed
//! LISTENs on [`CHANNEL`] (a statement-level trigger on `ledger_outbox`, migration 0005,
//! NOTIFYs once per ledger batch at commit) and, when woken, reads the outbox rows after
//! the last `seq` it has seen and broadcasts them to its subscribers. Notifications only
//! wake it; the outbox is the record. A lost listener connection is re-established by
//! sqlx (listening again) and the feed then reads from its last `seq`, so nothing
//! committed meanwhile is lost and nothing is broadcast twice. It also reads every
//! [`POLL_INTERVAL`], in case a connection died silently.
//!
//! Reading "after the last `seq`" is complete because only the ledger's single writer
//! inserts outbox rows, one batch statement after another, so rows become visible in
//! `seq` order (a second concurrent writer would break this and need gap tracking).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Row, postgres::PgRow};
use tokio::sync::{Notify, OnceCell, broadcast, watch};
use uuid::Uuid;

use super::PaymentEvent;
use crate::amount::Msats;
use crate::ids::{TransactionId, WalletId};

/// The NOTIFY channel of the outbox trigger (migration 0005).
pub const CHANNEL: &str = "ledger_outbox";

/// The `application_name` of the listener's connection, for operators (and tests).
pub const LISTENER_APPLICATION_NAME: &str = "bastion-outbox-listener";

/// A fallback read when no notification arrived.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Outbox rows read per query.
const BATCH: i64 = 500;

/// Subscribers more than this many events behind skip ahead (and log it).
const CAPACITY: usize = 1024;

/// The outbox feed of one API instance, started on first use.
#[derive(Debug)]
pub(crate) struct OutboxFeed {
    pool: PgPool,
    running: OnceCell<Running>,
}

#[derive(Debug)]
struct Running {
    events: broadcast::Sender<PaymentEvent>,
    // Dropped with the feed: its tasks see the channel close and stop.
    _stop: watch::Sender<()>,
}

impl OutboxFeed {
    pub(crate) fn new(pool: PgPool) -> OutboxFeed {
        OutboxFeed {
            pool,
            running: OnceCell::new(),
        }
    }

    /// A receiver of every internal transfer committed from now on.
    ///
    /// # Errors
    /// The database, when the feed cannot start listening.
    pub(crate) async fn subscribe(&self) -> Result<broadcast::Receiver<PaymentEvent>, sqlx::Error> {
        let running = self
            .running
            .get_or_try_init(|| start(self.pool.clone()))
            .await?;
        Ok(running.events.subscribe())
    }
}

async fn start(pool: PgPool) -> Result<Running, sqlx::Error> {
    let listen_pool = crate::db::listener_pool(&pool, LISTENER_APPLICATION_NAME);
    let mut listener = PgListener::connect_with(&listen_pool).await?;
    listener.listen(CHANNEL).await?;
    // Listening before taking the high-water mark: a batch committed in between is read
    // by the first pass rather than missed.
    let last: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM ledger_outbox")
        .fetch_one(&pool)
        .await?;
    let (events, _) = broadcast::channel(CAPACITY);
    let (stop, stopped) = watch::channel(());
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(listener, wake.clone(), stopped.clone()));
    tokio::spawn(read(pool, last, events.clone(), wake, stopped));
    Ok(Running {
        events,
        _stop: stop,
    })
}

/// Turns notifications and reconnections into wake-ups of the reader.
async fn listen(mut listener: PgListener, wake: Arc<Notify>, mut stop: watch::Receiver<()>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            r = listener.try_recv() => r,
        };
        match received {
            Ok(Some(_)) => backoff = Duration::from_millis(100),
            // The connection was lost and sqlx has reconnected and listens again: what
            // committed meanwhile was not notified, so the reader looks.
            Ok(None) => tracing::warn!("outbox listener reconnected"),
            Err(e) => {
                tracing::warn!(error = %e, "outbox listener failed; retrying");
                wake.notify_one();
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(POLL_INTERVAL);
            }
        }
        wake.notify_one();
    }
}

/// Reads new outbox rows when woken (or every [`POLL_INTERVAL`]) and broadcasts them.
async fn read(
    pool: PgPool,
    mut last: i64,
    events: broadcast::Sender<PaymentEvent>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let wait = match read_new(&pool, &mut last, &events).await {
            Ok(()) => POLL_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, last, "reading the ledger outbox failed; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

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

async fn read_new(
    pool: &PgPool,
    last: &mut i64,
    events: &broadcast::Sender<PaymentEvent>,
) -> Result<(), sqlx::Error> {
    loop {
        let rows = sqlx::query(READ_BATCH)
            .bind(*last)
            .bind(BATCH)
            .fetch_all(pool)
            .await?;
        let full = rows.len() as i64 == BATCH;
        for r in &rows {
            let row = outbox_row(r)?;
            if let Some(event) = row.event() {
                // Nobody subscribed is fine.
                let _ = events.send(event);
            }
            *last = row.seq;
        }
        if !full {
            return Ok(());
        }
    }
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
