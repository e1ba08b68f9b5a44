//! The signer's view of an HSM: fixed secp256k1 keys that sign 32-byte digests.
//!
//! PKCS#11 sessions are not `Sync` and a session must never be held across an
//! `.await`, so [`Pkcs11Hsm`] gives each session to one blocking worker thread
//! and talks to the workers over channels. Callers see a plain `Send + Sync`
//! handle that signs batches: one PSBT becomes one batch, split across the
//! sessions, so a 50-input PSBT uses every session the token allows.

mod fault;
#[cfg(feature = "test-hooks")]
pub mod hang;
pub mod pool;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use bitcoin::secp256k1::{PublicKey, ecdsa::Signature};
use hsm_config::ObjectHandle;
use hsm_config::pin::UserPin;
use hsm_config::token::{Module, TokenSession};

/// A key the HSM holds, as the signer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmKeyInfo {
    /// The key's `CKA_LABEL`, unique on its token.
    pub label: String,
    /// The compressed secp256k1 public key read from the token.
    pub public_key: PublicKey,
}

/// One digest to sign with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignRequest {
    /// Index into [`Hsm::keys`].
    pub key: usize,
    /// The 32-byte message digest (a BIP143 sighash for our inputs).
    pub digest: [u8; 32],
}

/// Errors from an HSM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The token or module refused or failed an operation.
    #[error("hsm: {0}")]
    Token(#[from] hsm_config::Error),
    /// A request named a key index this HSM does not have.
    #[error("hsm: no key at index {index} ({count} keys held)")]
    UnknownKey {
        /// The index requested.
        index: usize,
        /// How many keys the HSM holds.
        count: usize,
    },
    /// A worker thread is gone (it panicked or the HSM is shutting down).
    #[error("hsm: signing worker unavailable")]
    WorkerGone,
    /// The HSM was opened with no sessions or no keys.
    #[error("hsm: {0}")]
    Config(String),
}

/// An HSM that signs digests with fixed secp256k1 keys.
///
/// Implementations return signatures that are low-S and verified against the
/// key's public key: a caller never sees a signature that would not verify.
pub trait Hsm: Send + Sync {
    /// The keys this HSM holds; [`SignRequest::key`] indexes this slice.
    fn keys(&self) -> &[HsmKeyInfo];

    /// Signs every request, returning the signatures in request order.
    ///
    /// Not idempotent in its output (ECDSA in an HSM uses a random nonce), but
    /// harmless to repeat: each result is a valid signature over the same digest.
    ///
    /// # Errors
    /// Any token failure fails the whole batch; no partial result is returned.
    fn sign_digests(&self, requests: &[SignRequest]) -> Result<Vec<Signature>, HsmError>;

    /// Position of the key with this label in [`Hsm::keys`].
    fn key_index(&self, label: &str) -> Option<usize> {
        self.keys().iter().position(|k| k.label == label)
    }
}

type Batch = Vec<(usize, SignRequest)>;
type Reply = Result<Vec<(usize, Signature)>, HsmError>;

struct Job {
    batch: Batch,
    reply: mpsc::Sender<Reply>,
}

struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// An [`Hsm`] over a PKCS#11 token, with one worker thread per session.
pub struct Pkcs11Hsm {
    keys: Vec<HsmKeyInfo>,
    workers: Vec<Worker>,
    next: AtomicUsize,
    signed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Pkcs11Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Hsm")
            .field("keys", &self.keys)
            .field("sessions", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Hsm {
    /// Opens `sessions` logged-in sessions on the token labelled `token_label`
    /// and resolves the private keys named by `key_labels` in each.
    ///
    /// # Errors
    /// Fails if the token or any key is missing, a label is duplicated, the PIN
    /// is wrong, or `sessions` or `key_labels` is empty.
    pub fn open(
        module: &Module,
        token_label: &str,
        pin: &UserPin,
        key_labels: &[String],
        sessions: usize,
    ) -> Result<Self, HsmError> {
        if sessions == 0 {
            return Err(HsmError::Config("at least one session is needed".into()));
        }
        if key_labels.is_empty() {
            return Err(HsmError::Config("no key labels given".into()));
        }
        let signed = Arc::new(AtomicU64::new(0));
        let mut keys = Vec::with_capacity(key_labels.len());
        let mut workers = Vec::with_capacity(sessions);
        for n in 0..sessions {
            let session = module.open_session(token_label, pin)?;
            let mut handles = Vec::with_capacity(key_labels.len());
            for label in key_labels {
                let info = session.key(label)?;
                if n == 0 {
                    keys.push(HsmKeyInfo {
                        label: info.label.clone(),
                        public_key: info.public_key,
                    });
                }
                handles.push((session.private_key_handle(label)?, info.public_key));
            }
            workers.push(spawn_worker(n, session, handles, Arc::clone(&signed))?);
        }
        Ok(Self {
            keys,
            workers,
            next: AtomicUsize::new(0),
            signed,
        })
    }

    /// How many signatures this handle has received from the token since it was opened.
    ///
    /// Tests use it to prove that a refused PSBT caused no HSM call.
    pub fn signatures_made(&self) -> u64 {
        self.signed.load(Ordering::Relaxed)
    }

    /// Number of sessions (and worker threads).
    pub fn sessions(&self) -> usize {
        self.workers.len()
    }
}

fn spawn_worker(
    n: usize,
    session: TokenSession,
    keys: Vec<(ObjectHandle, PublicKey)>,
    signed: Arc<AtomicU64>,
) -> Result<Worker, HsmError> {
    let (jobs, inbox) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new()
        .name(format!("hsm-session-{n}"))
        .spawn(move || {
            // The session lives and dies on this thread.
            for job in inbox {
                let mut out = Vec::with_capacity(job.batch.len());
                let mut failed = None;
                for (position, request) in job.batch {
                    let Some((handle, public_key)) = keys.get(request.key) else {
                        failed = Some(HsmError::UnknownKey {
                            index: request.key,
                            count: keys.len(),
                        });
                        break;
                    };
                    match session.sign_digest(handle, public_key, &request.digest) {
                        Ok(signature) => {
                            signed.fetch_add(1, Ordering::Relaxed);
                            out.push((position, signature));
                        }
                        Err(e) => {
                            failed = Some(e.into());
                            break;
                        }
                    }
                }
                let reply = match failed {
                    Some(e) => Err(e),
                    None => Ok(out),
                };
                // The caller may have given up; nothing to do then.
                let _ = job.reply.send(reply);
            }
        })
        .map_err(|e| HsmError::Config(format!("cannot start worker thread: {e}")))?;
    Ok(Worker {
        jobs: Some(jobs),
        thread: Some(thread),
    })
}

impl Hsm for Pkcs11Hsm {
    fn keys(&self) -> &[HsmKeyInfo] {
        &self.keys
    }

    fn sign_digests(&self, requests: &[SignRequest]) -> Result<Vec<Signature>, HsmError> {
        if let Some(bad) = requests.iter().find(|r| r.key >= self.keys.len()) {
            return Err(HsmError::UnknownKey {
                index: bad.key,
                count: self.keys.len(),
            });
        }
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        // Split into one contiguous chunk per worker; small batches rotate
        // over the workers so concurrent callers spread out too.
        let workers = self.workers.len().min(requests.len());
        let chunk = requests.len().div_ceil(workers);
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let (reply, replies) = mpsc::channel();
        let mut sent = 0;
        for (i, part) in requests.chunks(chunk).enumerate() {
            let batch: Batch = part
                .iter()
                .enumerate()
                .map(|(j, r)| (i * chunk + j, *r))
                .collect();
            let worker = &self.workers[(first + i) % self.workers.len()];
            let jobs = worker.jobs.as_ref().ok_or(HsmError::WorkerGone)?;
            jobs.send(Job {
                batch,
                reply: reply.clone(),
            })
            .map_err(|_| HsmError::WorkerGone)?;
            sent += 1;
        }
        drop(reply);
        let mut out: Vec<Option<Signature>> = vec![None; requests.len()];
        let mut first_error = None;
        for _ in 0..sent {
            match replies.recv().map_err(|_| HsmError::WorkerGone)? {
                Ok(signed) => {
                    for (position, signature) in signed {
                        out[position] = Some(signature);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        out.into_iter()
            .map(|s| s.ok_or(HsmError::WorkerGone))
            .collect()
    }
}

impl Drop for Pkcs11Hsm {
    fn drop(&mut self) {
        // Closing the channels ends the workers; joining closes their sessions.
        for worker in &mut self.workers {
            worker.jobs.take();
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
