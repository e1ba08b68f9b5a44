//! Why an approval is refused, with stable machine codes.

/// Why an approval (of a signing request or of a policy change) is refused, or
/// an officer key cannot be used.
///
/// Every refusal has a stable [`ApprovalError::code`]; a refused approval is
/// never stored and never counts towards a quorum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The approval names another signer instance or policy.
    #[error("approval is for {field} {found}, this request's is {expected}")]
    WrongPolicy {
        /// `instance` or `policy_id`.
        field: &'static str,
        /// What the request has.
        expected: String,
        /// What the approval names.
        found: String,
    },
    /// The approval was made for another request (or another change).
    #[error("approval is for request {found}, not {expected}")]
    WrongRequest {
        /// This request's id.
        expected: String,
        /// The id the approval names.
        found: String,
    },
    /// The approval names another unsigned transaction.
    #[error("approval is for txid {found}, this request's is {expected}")]
    WrongTxid {
        /// This request's txid.
        expected: String,
        /// The txid the approval names.
        found: String,
    },
    /// The approval names another analysis: what the officer reviewed is not
    /// what would be signed (the PSBT changed).
    #[error("approval is for analysis {found}, this request's is {expected}")]
    WrongAnalysis {
        /// This request's analysis hash.
        expected: String,
        /// The hash the approval names.
        found: String,
    },
    /// The approval names another policy-change document.
    #[error("approval is for document {found}, this change's is {expected}")]
    WrongDocument {
        /// This change's document hash.
        expected: String,
        /// The hash the approval names.
        found: String,
    },
    /// The approval has expired.
    #[error("approval expired at {expires_at} (now {now})")]
    Expired {
        /// Its expiry (unix seconds).
        expires_at: u64,
        /// The time of the check (unix seconds).
        now: u64,
    },
    /// The approval's expiry is further away than the maximum allowed.
    #[error("approval expires at {expires_at}, more than {max_secs} s after {now}")]
    ExpiryTooFar {
        /// Its expiry (unix seconds).
        expires_at: u64,
        /// The time of the check (unix seconds).
        now: u64,
        /// The longest allowed life.
        max_secs: u64,
    },
    /// The signature does not verify for the named officer.
    #[error("approval signature does not verify for officer {officer}")]
    SignatureInvalid {
        /// The officer named.
        officer: String,
    },
    /// The officer is not registered.
    #[error("officer {officer} is not registered")]
    UnknownOfficer {
        /// The officer named.
        officer: String,
    },
    /// The officer was revoked.
    #[error("officer {officer} was revoked")]
    RevokedOfficer {
        /// The officer named.
        officer: String,
    },
    /// The officer is the one who initiated what they approve.
    #[error("officer {officer} initiated this and cannot approve it")]
    SelfApproval {
        /// The officer named.
        officer: String,
    },
    /// The officer already approved with another signature; one officer counts once.
    #[error("officer {officer} already approved this")]
    Duplicate {
        /// The officer named.
        officer: String,
    },
    /// The request or change is not waiting for approvals.
    #[error("{what} {id} is {status}, not waiting for approvals")]
    NotPending {
        /// `request` or `change`.
        what: &'static str,
        /// Its id.
        id: String,
        /// Its status.
        status: String,
    },
    /// The approval is malformed (a field does not parse).
    #[error("malformed approval: {0}")]
    Malformed(String),
    /// The officer's key (file or token) could not be used.
    #[error("officer key: {0}")]
    Key(String),
}

impl ApprovalError {
    /// The stable machine code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalError::WrongPolicy { .. } => "APPROVAL_WRONG_POLICY",
            ApprovalError::WrongRequest { .. } => "APPROVAL_WRONG_REQUEST",
            ApprovalError::WrongTxid { .. } => "APPROVAL_WRONG_TXID",
            ApprovalError::WrongAnalysis { .. } => "APPROVAL_WRONG_ANALYSIS",
            ApprovalError::WrongDocument { .. } => "APPROVAL_WRONG_DOCUMENT",
            ApprovalError::Expired { .. } => "APPROVAL_EXPIRED",
            ApprovalError::ExpiryTooFar { .. } => "APPROVAL_EXPIRY_TOO_FAR",
            ApprovalError::SignatureInvalid { .. } => "APPROVAL_SIGNATURE_INVALID",
            ApprovalError::UnknownOfficer { .. } => "APPROVAL_OFFICER_UNKNOWN",
            ApprovalError::RevokedOfficer { .. } => "APPROVAL_OFFICER_REVOKED",
            ApprovalError::SelfApproval { .. } => "APPROVAL_SELF",
            ApprovalError::Duplicate { .. } => "APPROVAL_DUPLICATE_OFFICER",
            ApprovalError::NotPending { .. } => "APPROVAL_NOT_PENDING",
            ApprovalError::Malformed(_) => "APPROVAL_MALFORMED",
            ApprovalError::Key(_) => "OFFICER_KEY_ERROR",
        }
    }

    /// Every code, for documentation checks.
    pub const CODES: [&'static str; 15] = [
        "APPROVAL_WRONG_POLICY",
        "APPROVAL_WRONG_REQUEST",
        "APPROVAL_WRONG_TXID",
        "APPROVAL_WRONG_ANALYSIS",
        "APPROVAL_WRONG_DOCUMENT",
        "APPROVAL_EXPIRED",
        "APPROVAL_EXPIRY_TOO_FAR",
        "APPROVAL_SIGNATURE_INVALID",
        "APPROVAL_OFFICER_UNKNOWN",
        "APPROVAL_OFFICER_REVOKED",
        "APPROVAL_SELF",
        "APPROVAL_DUPLICATE_OFFICER",
        "APPROVAL_NOT_PENDING",
        "APPROVAL_MALFORMED",
        "OFFICER_KEY_ERROR",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Officers read the codes in their runbook: every one must be there.
    #[test]
    fn every_code_is_in_the_officers_runbook() {
        let runbook = include_str!("../../../docs/officers-runbook.md");
        for code in ApprovalError::CODES {
            assert!(
                runbook.contains(&format!("`{code}`")),
                "{code} is not in the runbook"
            );
        }
        let samples = [
            ApprovalError::Malformed(String::new()),
            ApprovalError::Key(String::new()),
            ApprovalError::Duplicate {
                officer: String::new(),
            },
        ];
        for e in samples {
            assert!(ApprovalError::CODES.contains(&e.code()));
        }
    }
}
