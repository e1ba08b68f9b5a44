//! The on-chain source of `myUpdates`: deposit events (pending, settled, removed) read from
//! `deposit_events` (migration 0013), so a subscriber on any instance sees deposits the
//! driver of any instance recorded.
//!
//! Works as the ledger outbox feed ([`super::updates`]): LISTEN on [`CHANNEL`] (a
//! statement trigger NOTIFYs at commit), read the rows after the last `seq` seen, and read
//! every [`POLL_INTERVAL`] in case a connection died silently. Reading "after the last
//! `seq`" is complete because only the deposit driver holding the lease writes events, one
//! transaction after another under the lease row's lock.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, OnceCell, broadcast, watch};
use uuid::Uuid;

use crate::ids::WalletId;

/// The NOTIFY channel of the deposit events trigger.
pub(crate) const CHANNEL: &str = "deposit_events";

const LISTENER_APPLICATION_NAME: &str = "bastion-deposit-listener";
const POLL_INTERVAL: Duration = Duration::from_secs(5);
const BATCH: i64 = 500;
const CAPACITY: usize = 1024;

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

/// The deposit feed of one API instance, started on first use.
#[derive(Debug)]
pub(crate) struct DepositFeed {
    pool: PgPool,
    running: OnceCell<Running>,
}

#[derive(Debug)]
struct Running {
    events: broadcast::Sender<DepositEvent>,
    _stop: watch::Sender<()>,
}

impl DepositFeed {
    pub(crate) fn new(pool: PgPool) -> DepositFeed {
        DepositFeed {
            pool,
            running: OnceCell::new(),
        }
    }

    /// A receiver of every deposit event committed from now on.
    ///
    /// # Errors
    /// The database, when the feed cannot start listening.
    pub(crate) async fn subscribe(&self) -> Result<broadcast::Receiver<DepositEvent>, sqlx::Error> {
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
    // Listening before taking the high-water mark: an event committed in between is read
    // by the first pass rather than missed.
    let last: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM deposit_events")
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

async fn listen(mut listener: PgListener, wake: Arc<Notify>, mut stop: watch::Receiver<()>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            r = listener.try_recv() => r,
        };
        match received {
            Ok(Some(_)) => backoff = Duration::from_millis(100),
            Ok(None) => tracing::warn!("deposit events listener reconnected"),
            Err(e) => {
                tracing::warn!(error = %e, "deposit events listener failed; retrying");
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

async fn read(
    pool: PgPool,
    mut last: i64,
    events: broadcast::Sender<DepositEvent>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let wait = match read_new(&pool, &mut last, &events).await {
            Ok(()) => POLL_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, last, "reading deposit events failed; retrying");
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

async fn read_new(
    pool: &PgPool,
    last: &mut i64,
    events: &broadcast::Sender<DepositEvent>,
) -> Result<(), sqlx::Error> {
    loop {
        let rows = sqlx::query(
            "SELECT seq, deposit_id, wallet_id, kind FROM deposit_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(*last)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let full = rows.len() as i64 == BATCH;
        for r in &rows {
            let seq: i64 = r.try_get(0)?;
            let kind: String = r.try_get(3)?;
            let kind = match kind.as_str() {
                "PENDING" => Some(DepositEventKind::Pending),
                "SETTLED" => Some(DepositEventKind::Settled),
                "REMOVED" => Some(DepositEventKind::Removed),
                _ => None,
            };
            if let Some(kind) = kind {
                // Nobody subscribed is fine.
                let _ = events.send(DepositEvent {
                    deposit_id: r.try_get(1)?,
                    wallet_id: WalletId::from_uuid(r.try_get(2)?),
                    kind,
                });
            }
            *last = seq;
        }
        if !full {
            return Ok(());
        }
    }
}
