//! A table read in commit order and broadcast to this instance's subscribers: the
//! machinery shared by the sources of `myUpdates` (the ledger outbox, deposit events).
//!
//! Each feed starts on its first subscription. It LISTENs on its table's NOTIFY channel
//! (a statement-level trigger NOTIFYs at commit) and, when woken, reads the rows after its
//! [`CommitCursor`] and broadcasts them. Notifications only wake it; the table is the
//! record. A lost listener connection is re-established by sqlx (listening again) and the
//! feed then reads from its cursor, so nothing committed meanwhile is lost and nothing is
//! broadcast twice. It also reads every [`POLL_INTERVAL`], in case a connection died
//! silently. Commit order (crate::commit_order) keeps this exact with any number of
//! instances writing the table.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, OnceCell, broadcast, watch};

use crate::commit_order::{CommitCursor, CommitPosition};

/// A fallback read when no notification arrived.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Rows read per query.
const BATCH: i64 = 500;

/// Subscribers more than this many events behind skip ahead (and log it).
const CAPACITY: usize = 1024;

/// Why a read failed (logged, then retried).
pub(crate) type ReadError = Box<dyn std::error::Error + Send + Sync>;

/// The rows after a cursor, at most a limit, in commit order: each row's position and the
/// event it makes, if any.
pub(crate) type Read<E> = for<'a> fn(
    &'a PgPool,
    &'a CommitCursor,
    i64,
) -> Pin<
    Box<dyn Future<Output = Result<Vec<(CommitPosition, Option<E>)>, ReadError>> + Send + 'a>,
>;

/// Whether rows after a cursor have committed but wait behind an older transaction.
pub(crate) type HeldBack =
    for<'a> fn(
        &'a PgPool,
        &'a CommitCursor,
    ) -> Pin<Box<dyn Future<Output = Result<bool, ReadError>> + Send + 'a>>;

/// What a feed reads.
#[derive(Debug)]
pub(crate) struct Source<E> {
    /// Its name in logs.
    pub what: &'static str,
    /// The NOTIFY channel of the table's trigger.
    pub channel: &'static str,
    /// The `application_name` of the listener's connection, for operators (and tests).
    pub application_name: &'static str,
    /// Reads the rows after a cursor through the table's owner.
    pub read: Read<E>,
    /// Says whether committed rows wait behind an older transaction: their notification
    /// has come and gone, so the feed looks again shortly instead of at the next one.
    pub held_back: HeldBack,
}

/// The first and the longest pause before looking again at rows held back.
const HELD_BACK_RETRY: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(250));

/// The feed of one source in one API instance, started on first use.
#[derive(Debug)]
pub(crate) struct Feed<E: 'static> {
    pool: PgPool,
    source: &'static Source<E>,
    running: OnceCell<Running<E>>,
}

#[derive(Debug)]
struct Running<E> {
    events: broadcast::Sender<E>,
    // Dropped with the feed: its tasks see the channel close and stop.
    _stop: watch::Sender<()>,
}

impl<E: Clone + Send + 'static> Feed<E> {
    pub(crate) fn new(pool: PgPool, source: &'static Source<E>) -> Feed<E> {
        Feed {
            pool,
            source,
            running: OnceCell::new(),
        }
    }

    /// A receiver of every event committed from now on.
    ///
    /// # Errors
    /// The database, when the feed cannot start listening.
    pub(crate) async fn subscribe(&self) -> Result<broadcast::Receiver<E>, sqlx::Error> {
        let running = self
            .running
            .get_or_try_init(|| start(self.pool.clone(), self.source))
            .await?;
        Ok(running.events.subscribe())
    }
}

async fn start<E: Clone + Send + 'static>(
    pool: PgPool,
    source: &'static Source<E>,
) -> Result<Running<E>, sqlx::Error> {
    let listen_pool = crate::db::listener_pool(&pool, source.application_name);
    let mut listener = PgListener::connect_with(&listen_pool).await?;
    listener.listen(source.channel).await?;
    // Listening before taking the cursor: a row committed in between is read by the first
    // pass rather than missed.
    let cursor = CommitCursor::now(&pool).await?;
    let (events, _) = broadcast::channel(CAPACITY);
    let (stop, stopped) = watch::channel(());
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(source.what, listener, wake.clone(), stopped.clone()));
    tokio::spawn(read(pool, source, cursor, events.clone(), wake, stopped));
    Ok(Running {
        events,
        _stop: stop,
    })
}

/// Turns notifications and reconnections into wake-ups of the reader.
async fn listen(
    what: &'static str,
    mut listener: PgListener,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<()>,
) {
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
            Ok(None) => tracing::warn!(feed = what, "listener reconnected"),
            Err(e) => {
                tracing::warn!(feed = what, error = %e, "listener failed; retrying");
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

/// Reads new rows when woken (or every [`POLL_INTERVAL`]) and broadcasts their events.
async fn read<E: Clone>(
    pool: PgPool,
    source: &'static Source<E>,
    mut cursor: CommitCursor,
    events: broadcast::Sender<E>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<()>,
) {
    let mut held_pause = HELD_BACK_RETRY.0;
    loop {
        let read = match read_new(&pool, source, &mut cursor, &events).await {
            Ok(()) => (source.held_back)(&pool, &cursor).await,
            Err(e) => Err(e),
        };
        let wait = match read {
            Ok(true) => {
                let pause = held_pause;
                held_pause = (held_pause * 2).min(HELD_BACK_RETRY.1);
                pause
            }
            Ok(false) => {
                held_pause = HELD_BACK_RETRY.0;
                POLL_INTERVAL
            }
            Err(e) => {
                tracing::warn!(
                    feed = source.what, error = %e, after = ?cursor.after,
                    "reading failed; retrying"
                );
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

async fn read_new<E: Clone>(
    pool: &PgPool,
    source: &Source<E>,
    cursor: &mut CommitCursor,
    events: &broadcast::Sender<E>,
) -> Result<(), ReadError> {
    loop {
        let rows = (source.read)(pool, cursor, BATCH).await?;
        let full = rows.len() as i64 == BATCH;
        for (position, event) in rows {
            if let Some(event) = event {
                // Nobody subscribed is fine.
                let _ = events.send(event);
            }
            cursor.advance(position);
        }
        if !full {
            return Ok(());
        }
    }
}
