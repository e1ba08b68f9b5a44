//! Authentications remembered in-process, so that a request with a known session token or
//! API key costs no database round trip.
//!
//! Revocation must still take effect at once, on every instance. A trigger on `sessions`
//! and `api_keys` (migration 0007) notifies the channel [`CHANNEL`] with the credential's
//! hash whenever a credential is revoked, re-scoped, re-dated or deleted, by this
//! coordinator or by hand; each instance listens on its own connection and forgets that
//! entry. Entries are used only while that connection listens: when it is lost, the cache
//! is emptied and bypassed until listening again (a notification may have been missed in
//! between), and every entry also ages out after the configured time to live.
//!
//! A look-up that races with a revocation could store what it read before the revocation
//! after the entry was evicted; a generation counter, bumped by every eviction, makes such
//! a look-up not store anything. Keys are the credentials' SHA-256 hashes (as stored in
//! the database), never the credentials.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{broadcast, watch};

use super::Principal;

/// The channel of migration 0007's triggers.
pub const CHANNEL: &str = "auth_revoked";

/// The `application_name` of the listening connection, so operators can find it.
pub const LISTENER_APPLICATION_NAME: &str = "bastion-auth-listener";

/// Most credentials remembered at once; the least used are dropped first.
const CAPACITY: u64 = 100_000;

#[derive(Clone)]
struct Entry {
    principal: Principal,
    /// The credential's own expiry.
    expires_at: Option<DateTime<Utc>>,
    /// The credential's expiry, or for an API key the moment its last use must be
    /// recorded again (`API_KEY_LAST_USED_GRANULARITY`), whichever is first.
    valid_until: Option<DateTime<Utc>>,
}

/// What a revocation says to those holding a credential open (WebSocket connections):
/// the hash (hex) of the credential that changed, or `None` when anything may have
/// changed (the listener lost its connection and notifications may have been missed).
pub(crate) type Revocation = Option<Arc<str>>;

/// Revocations kept for slow receivers; one that falls further behind re-checks.
const REVOCATIONS_BUFFERED: usize = 1024;

pub(crate) struct AuthCache {
    entries: moka::sync::Cache<String, Entry>,
    /// Bumped by every eviction (under `evicting`).
    generation: AtomicU64,
    /// Orders "check the generation, then insert" against "bump, then evict".
    evicting: Mutex<()>,
    /// True while the listener's connection listens.
    live: AtomicBool,
    /// Every eviction and reset, for open WebSocket connections.
    revocations: broadcast::Sender<Revocation>,
    /// Dropped with the cache, which stops the listener.
    _stop: watch::Sender<()>,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they name who is logged in.
        f.debug_struct("AuthCache")
            .field("entries", &self.entries.entry_count())
            .field("live", &self.is_live())
            .finish_non_exhaustive()
    }
}

/// What a look-up must show [`AuthCache::remember`] so that a revocation in between
/// is not undone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(u64);

impl AuthCache {
    /// A cache whose listener runs on its own connection (outside `pool`'s limit) until
    /// the cache is dropped; `None` when `ttl` is zero (every authentication then reads the
    /// database). Needs a Tokio runtime.
    pub(crate) fn spawn(pool: &PgPool, ttl: Duration) -> Option<Arc<AuthCache>> {
        if ttl.is_zero() {
            return None;
        }
        let (stop, stopped) = watch::channel(());
        let cache = Arc::new(AuthCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
            generation: AtomicU64::new(0),
            evicting: Mutex::new(()),
            live: AtomicBool::new(false),
            revocations: broadcast::channel(REVOCATIONS_BUFFERED).0,
            _stop: stop,
        });
        let listen_pool = crate::db::listener_pool(pool, LISTENER_APPLICATION_NAME);
        tokio::spawn(listen(listen_pool, Arc::downgrade(&cache), stopped));
        Some(cache)
    }

    /// The remembered principal of a credential hash and the credential's expiry, if it
    /// is remembered, still valid and the cache is live.
    pub(crate) fn get(&self, hash: &[u8]) -> Option<(Principal, Option<DateTime<Utc>>)> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.get(&super::secrets::hex(hash))?;
        match entry.valid_until {
            Some(at) if at <= Utc::now() => None,
            _ => Some((entry.principal, entry.expires_at)),
        }
    }

    /// Every revocation from now on.
    pub(crate) fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.revocations.subscribe()
    }

    /// Taken before reading the database.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Remembers what the database said, unless something was evicted since `ticket`.
    pub(crate) fn remember(
        &self,
        ticket: Ticket,
        hash: &[u8],
        principal: &Principal,
        expires_at: Option<DateTime<Utc>>,
        valid_until: Option<DateTime<Utc>>,
    ) {
        let _guard = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        if self.live.load(Ordering::Acquire) && self.generation.load(Ordering::Acquire) == ticket.0
        {
            self.entries.insert(
                super::secrets::hex(hash),
                Entry {
                    principal: principal.clone(),
                    expires_at,
                    valid_until,
                },
            );
        }
    }

    /// Forgets one credential (by its hash in hex).
    pub(crate) fn evict(&self, hash_hex: &str) {
        let _guard = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(hash_hex);
        // No receiver is not an error: no connection holds a credential open.
        let _ = self.revocations.send(Some(Arc::from(hash_hex)));
    }

    /// Forgets everything and stops (or resumes) using entries.
    fn reset(&self, live: bool) {
        let _guard = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.live.store(live, Ordering::Release);
        self.entries.invalidate_all();
        let _ = self.revocations.send(None);
    }

    /// Whether entries are in use (the listener listens).
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

/// Listens for revocations until the cache is dropped; reconnects with a back-off.
async fn listen(pool: PgPool, cache: Weak<AuthCache>, mut stop: watch::Receiver<()>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = stop.changed() => return,
            l = listening => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "auth listener cannot listen; retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        // Nothing remembered from before can be trusted: notifications may have been
        // missed while not listening.
        match cache.upgrade() {
            Some(c) => c.reset(true),
            None => return,
        }
        loop {
            let received = tokio::select! {
                _ = stop.changed() => return,
                r = listener.try_recv() => r,
            };
            let Some(cache) = cache.upgrade() else { return };
            match received {
                Ok(Some(n)) => cache.evict(n.payload()),
                Ok(None) | Err(_) => {
                    tracing::warn!("auth listener lost its connection; not caching until back");
                    cache.reset(false);
                    break;
                }
            }
        }
    }
}
