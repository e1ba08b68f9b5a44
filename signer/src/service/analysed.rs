//! A request's PSBT, decoded and analysed once: at submission, kept in the
//! service's memory for the approvals that complete it.
//!
//! A 50-input PSBT costs tens of milliseconds to decode, analyse and hash;
//! before, every approval and every approvals view paid that again. An entry
//! is used only for the request it was made for, and only while the stored
//! PSBT and analysis hash are the ones it was made from (the stored PSBT is
//! hashed again on every use); anything else (a restart, an evicted entry)
//! analyses the stored PSBT again, so the cache changes speed, never answers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bitcoin::Psbt;
use policies::PolicyDocument;
use policies::analysis::{PsbtAnalysis, analyze};
use serde_json::json;

use super::ApiError;
use crate::audit::canonical_json;
use crate::psbt_io;
use crate::store::{RequestId, SigningRequestRecord, sha256};

/// Requests kept at most (pending ones, waiting for officers): about half a
/// megabyte each for 50 inputs.
const CAPACITY: usize = 64;

/// A PSBT with its analysis under one policy.
#[derive(Debug)]
pub struct Analysed {
    /// The PSBT.
    pub psbt: Arc<Psbt>,
    /// `policies::analysis::analyze(policy, psbt)`.
    pub analysis: PsbtAnalysis,
    /// The analysis in words (kept in the audit log).
    pub text: String,
    /// SHA-256 of the analysis' canonical JSON: what approvals bind.
    pub analysis_sha256: [u8; 32],
    /// SHA-256 of the PSBT's stored text.
    psbt_sha256: [u8; 32],
    policy_id: String,
}

impl Analysed {
    /// Decodes `psbt_text` and analyses it under `policy`; also the analysis
    /// as stored (`{text, detail}`).
    ///
    /// # Errors
    /// [`ApiError::PsbtMalformed`] when it does not decode.
    pub fn new(
        policy: &PolicyDocument,
        psbt_text: &str,
    ) -> Result<(Analysed, serde_json::Value), ApiError> {
        let psbt = psbt_io::decode(psbt_text.as_bytes())
            .map(|(psbt, _)| psbt)
            .map_err(|e| ApiError::PsbtMalformed(e.to_string()))?;
        let analysis = analyze(policy, &psbt);
        let detail =
            serde_json::to_value(&analysis).map_err(|e| ApiError::Internal(e.to_string()))?;
        let analysis_sha256 = sha256(canonical_json(&detail).as_bytes());
        let text = analysis.to_string();
        let stored = json!({"text": text, "detail": detail});
        Ok((
            Analysed {
                psbt: Arc::new(psbt),
                analysis,
                text,
                analysis_sha256,
                psbt_sha256: sha256(psbt_text.as_bytes()),
                policy_id: policy.id.to_string(),
            },
            stored,
        ))
    }
}

/// The entries, and their ids oldest first (the first evicted).
type Entries = (HashMap<RequestId, Arc<Analysed>>, VecDeque<RequestId>);

/// The kept analyses of pending requests.
#[derive(Debug, Default)]
pub struct AnalysisCache {
    inner: Mutex<Entries>,
}

impl AnalysisCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `analysed` for request `id`.
    pub fn insert(&self, id: RequestId, analysed: Arc<Analysed>) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        if map.insert(id, analysed).is_none() {
            order.push_back(id);
        }
        while map.len() > CAPACITY {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            map.remove(&oldest);
        }
    }

    /// Forgets request `id` (decided: no approval will need it again).
    pub fn remove(&self, id: RequestId) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        if map.remove(&id).is_some() {
            order.retain(|o| *o != id);
        }
    }

    /// The analysis of `record`'s stored PSBT under `policy`: the kept one
    /// when it was made from this very PSBT and policy, otherwise made again.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the stored PSBT does not decode or its
    /// analysis no longer has the stored hash (approvals bind that hash).
    pub fn get(
        &self,
        record: &SigningRequestRecord,
        policy: &PolicyDocument,
    ) -> Result<Arc<Analysed>, ApiError> {
        let kept = self.lock().0.get(&record.id).cloned();
        if let Some(kept) = kept
            && kept.policy_id == record.policy_id
            && kept.policy_id == policy.id.to_string()
            && Some(kept.analysis_sha256) == record.analysis_sha256
            && kept.psbt_sha256 == sha256(record.psbt_in.as_bytes())
        {
            return Ok(kept);
        }
        let (analysed, _) = Analysed::new(policy, &record.psbt_in).map_err(|e| {
            ApiError::Internal(format!("stored psbt of request {}: {e}", record.id))
        })?;
        if Some(analysed.analysis_sha256) != record.analysis_sha256 {
            return Err(ApiError::Internal(
                "the analysis changed since the request was made".into(),
            ));
        }
        let analysed = Arc::new(analysed);
        self.insert(record.id, Arc::clone(&analysed));
        Ok(analysed)
    }
}
