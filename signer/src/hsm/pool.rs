//! The service's HSM: a [`Pkcs11Hsm`] that re-opens itself after faults, with a
//! timeout on every call and a limit on wrong-PIN attempts.
//!
//! Every call runs on a blocking thread under a tokio timeout, so a hung
//! PKCS#11 call answers 503 to its own request and never blocks others: the
//! handle it hung on is taken out of the pool (the stuck thread keeps its own
//! reference and finishes or not; nothing waits for it; its sessions are never
//! closed, see `State::retired`) and the next call opens fresh sessions. After a session or token fault (`CKR_SESSION_HANDLE_INVALID`,
//! `CKR_DEVICE_REMOVED`, `CKR_TOKEN_NOT_PRESENT`, a vanished key…) every handle
//! is dropped, so the module is finalized and loaded again, which makes the
//! module scan its tokens again: the pool recovers by itself once the HSM is back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::Psbt;
use hsm_config::pin::UserPin;
use hsm_config::token::{Module, TokenSession};
use policies::PolicyDocument;
use policies::analysis::{PsbtAnalysis, analyze};

pub use super::fault::HsmFault;
use super::fault::classify_hsm;
use super::{Hsm, HsmError, HsmKeyInfo, Pkcs11Hsm, SignRequest};
use crate::audit::{Head, anchor};
use crate::error::SignError;
use crate::sign::{Signed, sign_analyzed};

/// How the service reaches its HSM.
#[derive(Debug, Clone)]
pub struct HsmSettings {
    /// The PKCS#11 module.
    pub module_path: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The user PIN.
    pub pin: UserPin,
    /// The key labels to open.
    pub key_labels: Vec<String>,
    /// Signing sessions (one worker thread each).
    pub sessions: usize,
    /// The limit on any one HSM call.
    pub call_timeout: Duration,
    /// Wrong-PIN answers accepted before the pool stops trying until restarted
    /// (SoftHSM has no lockout; a real HSM's is usually a little higher).
    pub max_pin_attempts: u32,
    /// The least time between two attempts to open the token after a failure.
    pub retry_after: Duration,
}

/// What a policy-checked signing through the pool gives.
#[derive(Debug)]
pub enum PoolSign {
    /// Signed.
    Signed(Box<Signed>),
    /// The PSBT was refused before any HSM call.
    Refused(SignError),
}

struct Open {
    hsm: Pkcs11Hsm,
    // A separate session for the anchor and health checks, so they never queue
    // behind signing batches.
    control: Mutex<TokenSession>,
    // Kept last: the module is finalized once every handle on it is gone.
    _module: Module,
}

#[derive(Default)]
struct State {
    open: Option<Arc<Open>>,
    fault: Option<HsmFault>,
    last_attempt: Option<Instant>,
    pin_failures: u32,
    // Set after a token or session fault: the next open finalizes the module
    // first, so that it scans its tokens again (SoftHSM keeps a vanished
    // token's slot broken until C_Finalize / C_Initialize).
    reinitialise: bool,
    // Handles dropped after a fault, kept and never closed: once the module is
    // initialised again, their session handle numbers can name the fresh
    // sessions (SoftHSM numbers them from 1 again), so closing them late (when
    // a hung call finally returns) would close the new pool's sessions. Costs
    // the old worker threads, per fault.
    retired: Vec<Arc<Open>>,
}

/// The service's HSM (see the module documentation).
pub struct HsmPool {
    settings: HsmSettings,
    state: Mutex<State>,
    sign_calls: Arc<AtomicU64>,
    #[cfg(feature = "test-hooks")]
    hang: Arc<super::hang::Hang>,
}

impl std::fmt::Debug for HsmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmPool")
            .field("token", &self.settings.token_label)
            .field("sessions", &self.settings.sessions)
            .finish_non_exhaustive()
    }
}

/// An [`Hsm`] that counts every digest handed to the token, so that tests can
/// prove a refused request never reached `C_Sign`.
struct Counting<'a> {
    inner: &'a Pkcs11Hsm,
    calls: &'a AtomicU64,
}

impl Hsm for Counting<'_> {
    fn keys(&self) -> &[HsmKeyInfo] {
        self.inner.keys()
    }

    fn sign_digests(
        &self,
        requests: &[SignRequest],
    ) -> Result<Vec<bitcoin::secp256k1::ecdsa::Signature>, HsmError> {
        self.calls
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        self.inner.sign_digests(requests)
    }
}

impl HsmPool {
    /// A pool that opens the token on first use.
    pub fn new(settings: HsmSettings) -> HsmPool {
        HsmPool {
            settings,
            state: Mutex::new(State::default()),
            sign_calls: Arc::new(AtomicU64::new(0)),
            #[cfg(feature = "test-hooks")]
            hang: Arc::default(),
        }
    }

    /// Test hook: the next signing call blocks until the guard is dropped (see
    /// [`super::hang`]).
    #[cfg(feature = "test-hooks")]
    pub fn hang_next_sign(&self) -> super::hang::HangGuard {
        self.hang.arm()
    }

    /// Test hook: the next signing call waits until the guard is dropped,
    /// then signs (see [`super::hang`]).
    #[cfg(feature = "test-hooks")]
    pub fn hold_next_sign(&self) -> super::hang::HangGuard {
        self.hang.arm_hold()
    }

    /// Digests handed to the token for signing since the pool was made.
    pub fn sign_calls(&self) -> u64 {
        self.sign_calls.load(Ordering::Relaxed)
    }

    /// The settings.
    pub fn settings(&self) -> &HsmSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_blocking(settings: &HsmSettings, reinitialise: bool) -> Result<Open, HsmError> {
        if reinitialise {
            // Every handle of ours was dropped with the fault; finalizing ends
            // the library's old state so that loading it again re-reads the tokens.
            match cryptoki::context::Pkcs11::new(&settings.module_path) {
                Ok(ctx) => {
                    if let Err(e) = ctx.finalize() {
                        tracing::debug!(error = %e, "C_Finalize before re-initialising");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "loading the module to finalize it"),
            }
        }
        let module = Module::load(&settings.module_path)?;
        let control = module.open_session(&settings.token_label, &settings.pin)?;
        let hsm = Pkcs11Hsm::open(
            &module,
            &settings.token_label,
            &settings.pin,
            &settings.key_labels,
            settings.sessions,
        )?;
        Ok(Open {
            hsm,
            control: Mutex::new(control),
            _module: module,
        })
    }

    /// The open handle, opening the token if needed (at most once per
    /// `retry_after` after a failure, and never after too many wrong PINs).
    async fn open(self: &Arc<Self>) -> Result<Arc<Open>, HsmFault> {
        {
            let state = self.lock();
            if let Some(open) = &state.open {
                return Ok(Arc::clone(open));
            }
            if let Some(fault @ HsmFault::PinAttemptsExhausted { .. }) = &state.fault {
                return Err(fault.clone());
            }
            if let (Some(fault), Some(at)) = (&state.fault, state.last_attempt)
                && at.elapsed() < self.settings.retry_after
            {
                return Err(fault.clone());
            }
        }
        let pool = Arc::clone(self);
        let reinitialise = self.lock().reinitialise;
        let opened = self
            .call(move || {
                let result = HsmPool::open_blocking(&pool.settings, reinitialise);
                result.map_err(|e| {
                    let wrong_pin =
                        matches!(e, HsmError::Token(hsm_config::Error::WrongPin { .. }));
                    (classify_hsm(&pool.settings, &e), wrong_pin)
                })
            })
            .await;
        let mut state = self.lock();
        state.last_attempt = Some(Instant::now());
        match opened {
            Ok(Ok(open)) => {
                let open = Arc::new(open);
                state.open = Some(Arc::clone(&open));
                state.fault = None;
                state.pin_failures = 0;
                state.reinitialise = false;
                tracing::info!(token = %self.settings.token_label, "hsm opened");
                Ok(open)
            }
            Ok(Err((fault, wrong_pin))) => {
                let fault = if wrong_pin {
                    state.pin_failures += 1;
                    let max = self.settings.max_pin_attempts;
                    if state.pin_failures >= max {
                        HsmFault::PinAttemptsExhausted {
                            token: self.settings.token_label.clone(),
                            max,
                        }
                    } else {
                        HsmFault::WrongPin {
                            token: self.settings.token_label.clone(),
                            attempts: state.pin_failures,
                            max,
                        }
                    }
                } else {
                    fault
                };
                tracing::warn!(code = fault.code(), %fault, "hsm unavailable");
                state.fault = Some(fault.clone());
                Err(fault)
            }
            Err(fault) => {
                state.fault = Some(fault.clone());
                Err(fault)
            }
        }
    }

    /// Runs `f` on a blocking thread with the call timeout.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HsmFault> {
        let timeout = self.settings.call_timeout;
        match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(join)) => Err(HsmFault::Failed {
                detail: format!("hsm call panicked: {join}"),
            }),
            Err(_) => Err(HsmFault::Timeout {
                millis: timeout.as_millis(),
            }),
        }
    }

    /// Drops `open` from the pool after a fault (if it is still the current one).
    fn discard(&self, open: &Arc<Open>, fault: &HsmFault) {
        let mut state = self.lock();
        if state.open.as_ref().is_some_and(|o| Arc::ptr_eq(o, open)) {
            state.open = None;
            state.retired.push(Arc::clone(open));
            state.fault = Some(fault.clone());
            state.last_attempt = None;
            state.reinitialise = true;
            tracing::warn!(code = fault.code(), %fault, "hsm handle dropped; the next call re-opens it");
        }
    }

    fn is_token_fault(fault: &HsmFault) -> bool {
        matches!(
            fault,
            HsmFault::SessionLost { .. }
                | HsmFault::TokenMissing { .. }
                | HsmFault::Timeout { .. }
                | HsmFault::Failed { .. }
        )
    }

    /// Checks `psbt` against `policy` and signs it with the keys held (see
    /// [`sign_psbt`]), on a blocking thread under the call timeout.
    ///
    /// # Errors
    /// An [`HsmFault`] when the HSM cannot be used; a refusal of the PSBT is
    /// [`PoolSign::Refused`].
    pub async fn sign_psbt(
        self: &Arc<Self>,
        policy: Arc<PolicyDocument>,
        psbt: Arc<Psbt>,
    ) -> Result<PoolSign, HsmFault> {
        self.sign(policy, psbt, None).await
    }

    /// As [`HsmPool::sign_psbt`], with the caller's analysis of these values
    /// (see [`crate::sign::sign_analyzed`]).
    ///
    /// # Errors
    /// As [`HsmPool::sign_psbt`].
    pub async fn sign_analyzed(
        self: &Arc<Self>,
        policy: Arc<PolicyDocument>,
        psbt: Arc<Psbt>,
        analysis: PsbtAnalysis,
    ) -> Result<PoolSign, HsmFault> {
        self.sign(policy, psbt, Some(analysis)).await
    }

    async fn sign(
        self: &Arc<Self>,
        policy: Arc<PolicyDocument>,
        psbt: Arc<Psbt>,
        analysis: Option<PsbtAnalysis>,
    ) -> Result<PoolSign, HsmFault> {
        let open = self.open().await?;
        let worker = Arc::clone(&open);
        let calls = Arc::clone(&self.sign_calls);
        #[cfg(feature = "test-hooks")]
        let hang = Arc::clone(&self.hang);
        let result = self
            .call(move || {
                #[cfg(feature = "test-hooks")]
                if hang.block_if_armed() {
                    return Err(SignError::Hsm(HsmError::WorkerGone));
                }
                let hsm = Counting {
                    inner: &worker.hsm,
                    calls: &calls,
                };
                // Analysed here, on the blocking thread, when the caller has not.
                let analysis = analysis.unwrap_or_else(|| analyze(&policy, &psbt));
                sign_analyzed(&policy, &psbt, analysis, &hsm)
            })
            .await;
        match result {
            Ok(Ok(signed)) => Ok(PoolSign::Signed(Box::new(signed))),
            Ok(Err(SignError::Hsm(e))) => {
                let fault = classify_hsm(&self.settings, &e);
                if HsmPool::is_token_fault(&fault) {
                    self.discard(&open, &fault);
                }
                Err(fault)
            }
            Ok(Err(refusal)) => Ok(PoolSign::Refused(refusal)),
            Err(fault) => {
                self.discard(&open, &fault);
                Err(fault)
            }
        }
    }

    async fn with_control<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&TokenSession) -> Result<T, HsmFault> + Send + 'static,
    ) -> Result<T, HsmFault> {
        let open = self.open().await?;
        let worker = Arc::clone(&open);
        let result = self
            .call(move || {
                let session = worker.control.lock().unwrap_or_else(|p| p.into_inner());
                f(&session)
            })
            .await
            .and_then(|r| r);
        if let Err(fault) = &result
            && HsmPool::is_token_fault(fault)
        {
            self.discard(&open, fault);
        }
        result
    }

    /// Whether the token is reachable and its session logged in.
    ///
    /// # Errors
    /// The fault, when it is not.
    pub async fn health(self: &Arc<Self>) -> Result<(), HsmFault> {
        let label = self
            .settings
            .key_labels
            .first()
            .cloned()
            .unwrap_or_default();
        self.with_control(move |session| {
            use cryptoki::session::SessionState;
            let info = session
                .raw()
                .get_session_info()
                .map_err(|e| HsmFault::SessionLost {
                    detail: e.to_string(),
                })?;
            if !matches!(
                info.session_state(),
                SessionState::RwUser | SessionState::RoUser
            ) {
                return Err(HsmFault::SessionLost {
                    detail: format!("session is not logged in ({:?})", info.session_state()),
                });
            }
            // A round trip to the token's objects, not only to the library.
            session
                .key(&label)
                .map(|_| ())
                .map_err(|e| HsmFault::SessionLost {
                    detail: e.to_string(),
                })
        })
        .await
    }

    /// The audit head anchored on the token, if any.
    ///
    /// # Errors
    /// The fault, when the token cannot be read.
    pub async fn read_anchor(self: &Arc<Self>) -> Result<Option<Head>, HsmFault> {
        self.with_control(|session| {
            anchor::read(session).map_err(|e| HsmFault::Failed {
                detail: e.to_string(),
            })
        })
        .await
    }

    /// Writes `head` as the token's audit anchor.
    ///
    /// # Errors
    /// The fault, when the token cannot be written.
    pub async fn write_anchor(self: &Arc<Self>, head: Head) -> Result<(), HsmFault> {
        self.with_control(move |session| {
            anchor::write(session, head).map_err(|e| HsmFault::Failed {
                detail: e.to_string(),
            })
        })
        .await
    }
}
