//! The signing service: REST under `/v1` (axum), OpenAPI at `/v1/openapi.json`.
//!
//! # Adding routes from another file
//! A file `service/<area>.rs` exposes `pub(crate) fn routes() -> Router<AppState>`
//! (paths relative to `/v1`) and a `#[derive(utoipa::OpenApi)] pub(crate) struct
//! <Area>Doc` listing its paths; it is wired in by one `.merge(<area>::routes())`
//! line in [`v1_routes`] and one `doc.merge(<area>::<Area>Doc::openapi())` line
//! in [`openapi`]. Handlers reach the store and the HSM through [`AppState`],
//! write their rows in a [`crate::store::Tx`], and complete a request with
//! [`signing::try_complete`].

pub mod analysed;
pub mod approvals;
mod auth;
mod commit;
pub mod decide;
mod error;
mod health;
mod openapi;
pub mod policy_changes;
mod requests;
pub mod signing;
pub mod views;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use policies::PolicyDocument;
use policies::analysis::PsbtAnalysis;
use policies::rules::CompiledRules;

pub use auth::AuthClient;
pub use error::{ApiError, ApiJson, ErrorBody};
pub use openapi::{openapi, openapi_json};

use crate::audit::{self, Head};
use crate::hsm::pool::{HsmFault, HsmPool};
use crate::store::policies::PolicyState;
use crate::store::{SigningRequestRecord, Store, Tx};

/// The boxed future of [`QuorumCheck::quorum`].
pub type QuorumFuture<'a> =
    Pin<Box<dyn Future<Output = Result<QuorumStatus, ApiError>> + Send + 'a>>;

/// Where a request's quorum stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    /// Approvals the quorum needs (`None`: no quorum can allow the request).
    pub required: Option<u32>,
    /// Officers whose stored approvals of the request verify now.
    pub approvers: BTreeSet<crate::approvals::OfficerId>,
}

impl QuorumStatus {
    /// Whether enough approvals verify.
    pub fn met(&self) -> bool {
        self.required
            .is_some_and(|required| self.approvers.len() >= required as usize)
    }
}

/// Where the officers' quorum stands on a request.
///
/// Called by [`signing::try_complete`] with the request row locked in `tx`,
/// the request's active policy, its compiled rules and the analysis of its
/// PSBT under it (made once per request: a 50-input analysis costs
/// milliseconds); an implementation reads its approvals through `tx` and must
/// check that each one binds the request id, the unsigned txid and the
/// analysis hash. The approvers it answers are the ones the decision counts.
pub trait QuorumCheck: Send + Sync + 'static {
    /// The approvals needed and the officers whose approvals verify.
    fn quorum<'a>(
        &'a self,
        tx: &'a mut Tx,
        request: &'a SigningRequestRecord,
        policy: &'a PolicyDocument,
        analysis: &'a PsbtAnalysis,
        rules: &'a CompiledRules,
    ) -> QuorumFuture<'a>;
}

/// The quorum check used until officers' approvals exist: never met, so a
/// request that needs a quorum stays `pending_approval`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQuorum;

impl QuorumCheck for NoQuorum {
    fn quorum<'a>(
        &'a self,
        _tx: &'a mut Tx,
        _request: &'a SigningRequestRecord,
        _policy: &'a PolicyDocument,
        _analysis: &'a PsbtAnalysis,
        _rules: &'a CompiledRules,
    ) -> QuorumFuture<'a> {
        Box::pin(async { Ok(QuorumStatus::default()) })
    }
}

struct Inner {
    store: Store,
    hsm: Arc<HsmPool>,
    quorum: Arc<dyn QuorumCheck>,
    // Parsed documents by id (content-addressed, so never stale; the state is read fresh).
    documents: Mutex<HashMap<String, Arc<PolicyDocument>>>,
    rules: Mutex<HashMap<String, Arc<CompiledRules>>>,
    analyses: analysed::AnalysisCache,
    // The chain tip the locktime rule compares with (the signer has no chain
    // source of its own; `serve --tip-height` and `set_tip_height` set it).
    tip_height: AtomicU32,
    anchored: tokio::sync::Mutex<Head>,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a store and an HSM whose anchor is at `anchored` (see [`check_anchor`]).
    pub fn new(
        store: Store,
        hsm: Arc<HsmPool>,
        quorum: Arc<dyn QuorumCheck>,
        anchored: Head,
    ) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                store,
                hsm,
                quorum,
                documents: Mutex::new(HashMap::new()),
                rules: Mutex::new(HashMap::new()),
                analyses: analysed::AnalysisCache::default(),
                tip_height: AtomicU32::new(0),
                anchored: tokio::sync::Mutex::new(anchored),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The HSM.
    pub fn hsm(&self) -> &Arc<HsmPool> {
        &self.inner.hsm
    }

    /// The officers' quorum check.
    pub fn quorum(&self) -> &dyn QuorumCheck {
        self.inner.quorum.as_ref()
    }

    /// Pending requests' PSBTs, decoded and analysed at submission.
    pub fn analyses(&self) -> &analysed::AnalysisCache {
        &self.inner.analyses
    }

    /// The registered, active policy `policy_id`.
    ///
    /// # Errors
    /// [`ApiError::UnknownPolicy`], [`ApiError::PolicyRetired`], or a store failure.
    pub async fn active_policy(&self, policy_id: &str) -> Result<Arc<PolicyDocument>, ApiError> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM signer_policies WHERE id = $1")
                .bind(policy_id)
                .fetch_optional(self.store().pool())
                .await
                .map_err(crate::store::StoreError::from)?;
        match state.as_deref() {
            None => return Err(ApiError::UnknownPolicy(policy_id.to_owned())),
            Some("active") => {}
            Some(_) => return Err(ApiError::PolicyRetired(policy_id.to_owned())),
        }
        if let Some(doc) = self.documents().get(policy_id) {
            return Ok(Arc::clone(doc));
        }
        let registered = self
            .store()
            .policy(policy_id)
            .await?
            .ok_or_else(|| ApiError::UnknownPolicy(policy_id.to_owned()))?;
        if registered.state != PolicyState::Active {
            return Err(ApiError::PolicyRetired(policy_id.to_owned()));
        }
        self.documents()
            .insert(policy_id.to_owned(), Arc::clone(&registered.document));
        Ok(registered.document)
    }

    /// The compiled rules of `policy` (cached by policy id).
    ///
    /// # Errors
    /// [`ApiError::Internal`] when a registered policy's rules do not compile.
    pub fn compiled_rules(&self, policy: &PolicyDocument) -> Result<Arc<CompiledRules>, ApiError> {
        let id = policy.id.to_string();
        let mut cache = self.inner.rules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rules) = cache.get(&id) {
            return Ok(Arc::clone(rules));
        }
        let rules =
            Arc::new(CompiledRules::new(policy).map_err(|e| ApiError::Internal(e.to_string()))?);
        cache.insert(id, Arc::clone(&rules));
        Ok(rules)
    }

    /// The chain tip height the locktime rule compares with.
    pub fn tip_height(&self) -> u32 {
        self.inner.tip_height.load(Ordering::Relaxed)
    }

    /// Sets the chain tip height (never lowers it).
    pub fn set_tip_height(&self, height: u32) {
        self.inner.tip_height.fetch_max(height, Ordering::Relaxed);
    }

    fn documents(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PolicyDocument>>> {
        self.inner
            .documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure a head at or after `head` (a committed head) is anchored in
    /// the HSM before the caller releases anything `head` covers.
    ///
    /// Group commit: the write anchors the database's current head, read once
    /// this call holds the anchor lock, which covers every record committed so
    /// far; requests that committed meanwhile and queued behind the lock find
    /// their head anchored and return without a write of their own.
    ///
    /// # Errors
    /// [`ApiError::Anchor`] when the HSM cannot be written: the caller must not
    /// release a signature then; or a store failure.
    pub async fn anchor(&self, head: Head) -> Result<(), ApiError> {
        let mut anchored = self.inner.anchored.lock().await;
        if anchored.seq >= head.seq {
            return Ok(());
        }
        // Never older than `head`: the head row only moves forward, and
        // `head` was committed before this call.
        let current = audit::head(self.store()).await?;
        let write = if current.seq >= head.seq {
            current
        } else {
            head
        };
        self.hsm()
            .write_anchor(write)
            .await
            .map_err(ApiError::Anchor)?;
        *anchored = write;
        Ok(())
    }

    /// Anchors the database's current head (before replaying a stored signature).
    ///
    /// # Errors
    /// As [`AppState::anchor`], or a store failure.
    pub async fn anchor_current_head(&self) -> Result<(), ApiError> {
        let head = audit::head(self.store()).await?;
        self.anchor(head).await
    }
}

/// Why `serve` refuses to start on this database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorCheckError {
    /// The database's audit log is behind the HSM's anchor: an older backup.
    #[error(
        "the database's audit log ends at record {db_seq} but the HSM anchors record {anchor_seq}: \
         this database is older than the last signing (a restored backup?); refusing to start, \
         since it would re-open velocity budget already spent"
    )]
    Behind {
        /// The database's head.
        db_seq: i64,
        /// The anchor's seq.
        anchor_seq: i64,
    },
    /// The record at the anchored seq has another hash: another history.
    #[error(
        "the database's audit record {seq} does not match the HSM anchor: this is not the \
         database this HSM signed with; refusing to start"
    )]
    Forked {
        /// The anchored seq.
        seq: i64,
    },
    /// The HSM cannot be read.
    #[error("cannot read the audit anchor from the HSM: {0}")]
    Hsm(#[from] HsmFault),
    /// The database cannot be read.
    #[error("cannot read the audit log: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Compares the database's audit log with the HSM's anchor; returns the
/// anchored head (the empty head when the token has none yet).
///
/// # Errors
/// [`AnchorCheckError::Behind`] or [`AnchorCheckError::Forked`] when the
/// database is not the one the HSM last signed with.
pub async fn check_anchor(store: &Store, hsm: &Arc<HsmPool>) -> Result<Head, AnchorCheckError> {
    let Some(anchor) = hsm.read_anchor().await? else {
        return Ok(Head::EMPTY);
    };
    let db = audit::head(store).await?;
    if db.seq < anchor.seq {
        return Err(AnchorCheckError::Behind {
            db_seq: db.seq,
            anchor_seq: anchor.seq,
        });
    }
    if anchor.seq > 0 && audit::hash_at(store, anchor.seq).await? != Some(anchor.hash) {
        return Err(AnchorCheckError::Forked { seq: anchor.seq });
    }
    Ok(anchor)
}

fn v1_routes() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(requests::routes())
        .merge(approvals::routes())
        .merge(policy_changes::routes())
        .merge(openapi::routes())
}

/// The service's router, `/v1/…`.
pub fn router(state: AppState) -> Router {
    Router::new().nest("/v1", v1_routes()).with_state(state)
}
